"""Authentication: users with argon2 passwords, login sessions, API keys, lockout.

The HTTP side (cookies, bearer header, CSRF header) is in `hub.auth.guards`; this
module owns the rules and talks to storage through `hub.auth.storage`. Tokens
handed out (session cookies, CSRF tokens, API key secrets) are random; only
their SHA-256 is stored, so a copy of the database lets nobody in. Passwords are
hashed with argon2id off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import secrets
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from hub.auth import audit_storage as audit_log
from hub.auth import storage as repo
from hub.auth.credentials import (
    _DUMMY_HASH,
    _HASHER,
    AccountError,
    _check_jurisdictions,
    _check_username,
    _role,
    _verify,
    check_password_policy,
    generate_password,
    token_hash,
)
from hub.auth.outcomes import LoginRefused, LoginResult, NewApiKey, SessionPrincipal
from hub.auth.principal import Principal, Role, system_actor, user_actor
from hub.config import AuthSettings
from hub.storage import SqlStore, Tx

__all__ = [
    "ALL_JURISDICTIONS",
    "API_KEY_PREFIX",
    "AccountError",
    "Authenticator",
    "LoginRefused",
    "LoginResult",
    "NewApiKey",
    "SessionPrincipal",
    "check_password_policy",
    "generate_password",
    "token_hash",
]

log = logging.getLogger(__name__)

#: The jurisdiction entry that means "the whole tree".
ALL_JURISDICTIONS = "/"
API_KEY_PREFIX = "gw_"
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{1,63}")
_KEY_ID = re.compile(r"[0-9a-f]{12}")
_HOUSEKEEPING_EVERY_S = 3600.0
#: The audit actor of what authentication does by itself (first admin, lockouts).
_SYSTEM = system_actor("auth")
# Sliding the idle expiry on every request would write on every request.
_TOUCH_AFTER = timedelta(seconds=30)
# Failed logins under a name that is no account are forgotten after a quiet day.
_FORGET_NAMES_AFTER = timedelta(days=1)


class Authenticator:
    """Users, sessions and API keys of one hub, on its store."""

    def __init__(self, store: SqlStore, settings: AuthSettings) -> None:
        self.store = store
        self.settings = settings
        self._tree_available = False
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------

    async def start(self, *, bootstrap: bool = True) -> str | None:
        """Check the jurisdiction tree; on an empty user table create `admin`.

        Returns the one-time admin password when one was created.
        """
        await self.refresh_tree()
        created = await self.ensure_first_admin() if bootstrap else None
        self._task = asyncio.create_task(self._housekeeping(), name="auth-housekeeping")
        return created

    async def stop(self) -> None:
        """Stop the housekeeping loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def refresh_tree(self) -> None:
        """Note whether the registry's jurisdiction table exists (to resolve codes)."""
        async with self.store.reading() as tx:
            self._tree_available = await repo.jurisdictions_available(tx, self.store.dialect)

    async def ensure_first_admin(self) -> str | None:
        """Create `admin` with a random must-change password if there are no users at all."""
        password = generate_password()
        password_hash = await asyncio.to_thread(_HASHER.hash, password)
        now = datetime.now(UTC)
        async with self.store.transaction() as tx:
            await repo.hold_first_user_lock(tx, postgresql=self.store.dialect.is_postgresql)
            if await repo.count_users(tx) > 0:
                return None
            await repo.insert_user(
                tx,
                self._new_user("admin", password_hash, Role.ADMIN, (ALL_JURISDICTIONS,), now, True),
            )
            await audit_log.record(tx, _SYSTEM, "user.create", "admin", None, {"first": True})
        # Deliberately not through logging's redaction: this line is the only
        # way the operator learns the password. It must be changed at first login.
        log.warning(
            "created the first user 'admin'; its one-time password goes to the terminal "
            "or a 0600 file, never to the log"
        )
        return password

    async def _housekeeping(self) -> None:
        while True:
            try:
                now = datetime.now(UTC)
                sessions = await repo.purge_sessions(self.store, now)
                rows = await audit_log.purge(self.store, now, self.settings.audit_retention_days)
                if sessions or rows:
                    log.info("removed %d expired sessions, %d old audit rows", sessions, rows)
            except Exception:
                # A storage outage must not end the loop; the next run retries.
                log.exception("auth housekeeping failed; will retry")
            await asyncio.sleep(_HOUSEKEEPING_EVERY_S)

    # -- scope -----------------------------------------------------------------

    async def scope_paths(self, tx: Tx, entries: Sequence[str]) -> tuple[str, ...]:
        """Materialized paths for a user's or key's jurisdiction entries.

        `/` is everything; an entry starting with `/` is already a path; other
        entries are codes looked up in the registry's tree (unknown codes see nothing).
        """
        if ALL_JURISDICTIONS in entries:
            return (ALL_JURISDICTIONS,)
        paths = [e for e in entries if e.startswith("/")]
        codes = [e for e in entries if not e.startswith("/")]
        if codes and self._tree_available:
            resolved = await repo.resolve_jurisdiction_paths(tx, codes)
            missing = sorted(set(codes) - set(resolved))
            if missing:
                log.warning("jurisdiction codes not in the tree (they grant nothing): %s", missing)
            paths.extend(resolved[c] for c in codes if c in resolved)
        elif codes:
            log.warning("no jurisdiction tree yet: codes %s grant nothing", codes)
        return tuple(dict.fromkeys(paths))

    # -- login -----------------------------------------------------------------

    async def login(
        self, username: str, password: str, remote_addr: str | None, now: datetime
    ) -> LoginResult:
        """Check a password and open a session; raises LoginRefused (audited either way)."""
        async with self.store.reading() as tx:
            user = await repo.get_user_by_name(tx, username)
        if user is None or user.disabled:
            await self._refuse_unknown(username, password, remote_addr, now, user is None)
        if user.locked_until is not None and user.locked_until > now:
            await self._audit(
                user_actor(username), "login.locked", username, remote_addr, "account locked"
            )
            raise _locked(user.locked_until, now)
        ok, needs_rehash = await asyncio.to_thread(_verify, user.password_hash, password)
        if not ok:
            lock_end = now + timedelta(minutes=self.settings.lockout_minutes)
            async with self.store.transaction() as tx:
                locked = await repo.record_login_failure(
                    tx,
                    user.id,
                    now,
                    threshold=self.settings.lockout_threshold,
                    lock_until=lock_end,
                )
                await audit_log.record(
                    tx,
                    user_actor(username),
                    "login.failed",
                    username,
                    remote_addr,
                    {"reason": "password"},
                )
                if locked is not None:
                    await audit_log.record(
                        tx, _SYSTEM, "user.lockout", username, remote_addr, {"until": str(locked)}
                    )
            raise LoginRefused(401, "invalid user name or password")
        new_hash = await asyncio.to_thread(_HASHER.hash, password) if needs_rehash else None
        session_token = secrets.token_urlsafe(32)
        csrf_token = secrets.token_urlsafe(32)
        expires = self._expiry(now, now)
        async with self.store.transaction() as tx:
            if new_hash is not None:
                await repo.set_password(
                    tx, user.id, new_hash, now, must_change=user.must_change_password
                )
            await repo.record_login_success(tx, user.id, now)
            await repo.insert_session(
                tx,
                repo.SessionRecord(
                    id=token_hash(session_token),
                    user_id=user.id,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=expires,
                    csrf_hash=token_hash(csrf_token),
                    remote_addr=remote_addr,
                ),
            )
            await audit_log.record(tx, user_actor(username), "login", username, remote_addr, {})
        return LoginResult(session_token, csrf_token, expires, user)

    def _expiry(self, created: datetime, now: datetime) -> datetime:
        idle_end = now + timedelta(minutes=self.settings.session_idle_minutes)
        hard_end = created + timedelta(hours=self.settings.session_max_hours)
        return min(idle_end, hard_end)

    async def _refuse_unknown(
        self, username: str, password: str, remote_addr: str | None, now: datetime, unknown: bool
    ) -> NoReturn:
        """Refuse a login under a name that is no (enabled) account exactly as a wrong
        password of an account is refused, lockout included: same status, body and work."""
        name = username[:64]
        async with self.store.reading() as tx:
            locked_until = await repo.name_locked_until(tx, name)
        if locked_until is not None and locked_until > now:
            await self._audit(_claimed(username), "login.locked", name, remote_addr, "name locked")
            raise _locked(locked_until, now)
        await asyncio.to_thread(_verify, _DUMMY_HASH, password)
        async with self.store.transaction() as tx:
            locked = await repo.record_name_failure(
                tx,
                name,
                now,
                threshold=self.settings.lockout_threshold,
                lock_until=now + timedelta(minutes=self.settings.lockout_minutes),
                forget_before=now - _FORGET_NAMES_AFTER,
            )
            await audit_log.record(
                tx,
                _claimed(username),
                "login.failed",
                name,
                remote_addr,
                {"reason": "unknown user" if unknown else "disabled"},
            )
            if locked is not None:
                await audit_log.record(
                    tx, _SYSTEM, "user.lockout", name, remote_addr, {"until": str(locked)}
                )
        raise LoginRefused(401, "invalid user name or password")

    async def logout(self, session_token: str, actor: str, remote_addr: str | None) -> None:
        """End the session this cookie token names."""
        async with self.store.transaction() as tx:
            await repo.delete_session(tx, token_hash(session_token))
            await audit_log.record(tx, actor, "logout", actor, remote_addr, {})

    async def session(
        self, session_token: str, remote_addr: str | None, now: datetime
    ) -> SessionPrincipal | None:
        """The principal of a live session cookie; None when unknown, expired or disabled."""
        session_id = token_hash(session_token)
        async with self.store.reading() as tx:
            found = await repo.session_with_user(tx, session_id)
            if found is None:
                return None
            record, user = found
            if record.expires_at <= now or user.disabled:
                return None
            try:
                role = Role(user.role)
            except ValueError:
                log.warning("user %s has an unknown role %r", user.username, user.role)
                return None
            paths = await self.scope_paths(tx, user.jurisdictions)
        if now - record.last_seen_at >= _TOUCH_AFTER:
            async with self.store.transaction() as tx:
                await repo.touch_session(tx, session_id, now, self._expiry(record.created_at, now))
        principal = Principal(
            subject=user.username,
            role=role,
            scope_paths=paths,
            via="session",
            remote_addr=remote_addr,
        )
        return SessionPrincipal(principal, record.csrf_hash, user.must_change_password, session_id)

    async def api_key(self, token: str, remote_addr: str | None, now: datetime) -> Principal | None:
        """The principal of an API key token `gw_<id>_<secret>`; None when invalid or revoked."""
        if not token.startswith(API_KEY_PREFIX):
            return None
        key_id, _, secret = token.removeprefix(API_KEY_PREFIX).partition("_")
        if not _KEY_ID.fullmatch(key_id) or not secret:
            return None
        async with self.store.reading() as tx:
            record = await repo.get_api_key(tx, key_id)
            if record is None or record.revoked_at is not None:
                return None
            if not hmac.compare_digest(record.secret_hash, token_hash(secret)):
                return None
            try:
                role = Role(record.role)
            except ValueError:
                return None
            paths = await self.scope_paths(tx, record.jurisdictions)
        if record.last_used_at is None or now - record.last_used_at >= _TOUCH_AFTER:
            async with self.store.transaction() as tx:
                await repo.touch_api_key(tx, key_id, now)
        return Principal(
            subject=f"key:{record.name}",
            role=role,
            scope_paths=paths,
            via="api_key",
            remote_addr=remote_addr,
        )

    # -- users -----------------------------------------------------------------

    def _new_user(
        self,
        username: str,
        password_hash: str,
        role: Role,
        jurisdictions: tuple[str, ...],
        now: datetime,
        must_change: bool,
        display_name: str = "",
    ) -> repo.UserRecord:
        return repo.UserRecord(
            id=str(uuid.uuid4()),
            username=username,
            password_hash=password_hash,
            role=role.value,
            jurisdictions=jurisdictions,
            disabled=False,
            failed_logins=0,
            locked_until=None,
            must_change_password=must_change,
            display_name=display_name,
            created_at=now,
            updated_at=now,
            last_login_at=None,
        )

    def _policy(self, password: str, username: str) -> None:
        problems = check_password_policy(password, username, self.settings.password_min_length)
        if problems:
            raise AccountError("password: " + "; ".join(problems))

    async def create_user(
        self,
        username: str,
        password: str,
        role: str | Role,
        jurisdictions: Sequence[str],
        *,
        actor: str,
        remote_addr: str | None = None,
        must_change: bool = False,
        display_name: str = "",
    ) -> repo.UserRecord:
        """Add a user; raises AccountError for a taken name, weak password or bad role."""
        _check_username(username)
        parsed_role = _role(role)
        scope = _check_jurisdictions(jurisdictions)
        self._policy(password, username)
        password_hash = await asyncio.to_thread(_HASHER.hash, password)
        now = datetime.now(UTC)
        user = self._new_user(
            username, password_hash, parsed_role, scope, now, must_change, display_name
        )
        async with self.store.transaction() as tx:
            if await repo.get_user_by_name(tx, username) is not None:
                raise AccountError(f"user {username!r} exists")
            await repo.insert_user(tx, user)
            await audit_log.record(
                tx,
                actor,
                "user.create",
                username,
                remote_addr,
                {"role": parsed_role.value, "jurisdictions": list(scope)},
            )
        return user

    async def set_password(
        self,
        username: str,
        password: str,
        *,
        actor: str,
        remote_addr: str | None = None,
        must_change: bool = False,
        current_password: str | None = None,
    ) -> None:
        """Set a password (checking `current_password` when given); ends the user's sessions."""
        self._policy(password, username)
        async with self.store.reading() as tx:
            user = await repo.get_user_by_name(tx, username)
        if user is None:
            raise AccountError(f"no user {username!r}")
        if current_password is not None:
            ok, _ = await asyncio.to_thread(_verify, user.password_hash, current_password)
            if not ok:
                await self._audit(actor, "password.change_failed", username, remote_addr, "")
                raise AccountError("the current password is wrong")
            if current_password == password:
                raise AccountError("password: must differ from the current one")
        password_hash = await asyncio.to_thread(_HASHER.hash, password)
        async with self.store.transaction() as tx:
            await repo.set_password(
                tx, user.id, password_hash, datetime.now(UTC), must_change=must_change
            )
            await repo.delete_user_sessions(tx, user.id)
            await audit_log.record(
                tx, actor, "user.password", username, remote_addr, {"must_change": must_change}
            )

    async def update_user(
        self,
        username: str,
        *,
        actor: str,
        remote_addr: str | None = None,
        role: str | Role | None = None,
        jurisdictions: Sequence[str] | None = None,
        disabled: bool | None = None,
        display_name: str | None = None,
        unlock: bool = False,
    ) -> repo.UserRecord:
        """Change a user's role, scope, display name, disabled flag or lock."""
        parsed_role = _role(role) if role is not None else None
        scope = _check_jurisdictions(jurisdictions) if jurisdictions is not None else None
        now = datetime.now(UTC)
        async with self.store.transaction() as tx:
            user = await repo.get_user_by_name(tx, username)
            if user is None:
                raise AccountError(f"no user {username!r}")
            await repo.update_user(
                tx,
                user.id,
                now,
                role=parsed_role.value if parsed_role else None,
                jurisdictions=scope,
                disabled=disabled,
                display_name=display_name,
                unlock=unlock,
            )
            if disabled or parsed_role is not None or scope is not None:
                # A narrower role or scope takes effect now, not at the next login.
                await repo.delete_user_sessions(tx, user.id)
            changes: dict[str, Any] = {
                k: v
                for k, v in (
                    ("role", parsed_role.value if parsed_role else None),
                    ("jurisdictions", list(scope) if scope is not None else None),
                    ("disabled", disabled),
                    ("display_name", display_name),
                    ("unlock", unlock or None),
                )
                if v is not None
            }
            await audit_log.record(tx, actor, "user.update", username, remote_addr, changes)
            updated = await repo.get_user(tx, user.id)
        if updated is None:  # pragma: no cover - just updated inside the same transaction
            raise AccountError(f"no user {username!r}")
        return updated

    async def users(self) -> list[repo.UserRecord]:
        """Every user."""
        async with self.store.reading() as tx:
            return await repo.list_users(tx)

    async def user(self, username: str) -> repo.UserRecord | None:
        """One user by login name."""
        async with self.store.reading() as tx:
            return await repo.get_user_by_name(tx, username)

    # -- API keys --------------------------------------------------------------

    async def create_api_key(
        self,
        name: str,
        role: str | Role,
        jurisdictions: Sequence[str],
        *,
        actor: str,
        remote_addr: str | None = None,
    ) -> NewApiKey:
        """A new key for a machine integration; its token is returned once."""
        if not _KEY_NAME.fullmatch(name):
            raise AccountError("key name: 2-64 letters, digits, spaces, '.', '_' or '-'")
        parsed_role = _role(role)
        scope = _check_jurisdictions(jurisdictions)
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        record = repo.ApiKeyRecord(
            id=key_id,
            name=name,
            secret_hash=token_hash(secret),
            role=parsed_role.value,
            jurisdictions=scope,
            created_by=actor,
            created_at=datetime.now(UTC),
            last_used_at=None,
            revoked_at=None,
        )
        async with self.store.transaction() as tx:
            if await repo.get_api_key_by_name(tx, name) is not None:
                raise AccountError(f"an API key named {name!r} exists")
            await repo.insert_api_key(tx, record)
            await audit_log.record(
                tx,
                actor,
                "apikey.create",
                f"key:{name}",
                remote_addr,
                {"id": key_id, "role": parsed_role.value, "jurisdictions": list(scope)},
            )
        return NewApiKey(record, f"{API_KEY_PREFIX}{key_id}_{secret}")

    async def revoke_api_key(
        self, key_id: str, *, actor: str, remote_addr: str | None = None
    ) -> bool:
        """Revoke a key at once; False when there is no such live key."""
        async with self.store.transaction() as tx:
            record = await repo.get_api_key(tx, key_id)
            done = await repo.revoke_api_key(tx, key_id, datetime.now(UTC))
            if done and record is not None:
                await audit_log.record(
                    tx, actor, "apikey.revoke", f"key:{record.name}", remote_addr, {"id": key_id}
                )
        return done

    async def api_keys(self) -> list[repo.ApiKeyRecord]:
        """Every key (secrets are not stored, so none is returned)."""
        async with self.store.reading() as tx:
            return await repo.list_api_keys(tx)

    # -- audit -----------------------------------------------------------------

    async def _audit(
        self,
        actor: str,
        action: str,
        target: str | None,
        remote_addr: str | None,
        reason: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        body = dict(details or {})
        if reason:
            body["reason"] = reason
        async with self.store.transaction() as tx:
            await audit_log.record(tx, actor, action, target, remote_addr, body)


def _locked(until: datetime, now: datetime) -> LoginRefused:
    wait = int((until - now).total_seconds()) + 1
    return LoginRefused(429, "too many failed logins; try again later", wait)


def _claimed(username: str) -> str:
    """The actor of a login attempt: the name typed, even if no such user exists."""
    return user_actor(username[:64] if username.strip() else "(empty)")
