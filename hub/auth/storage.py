"""Users, login sessions and API keys, and the jurisdiction lookups that scope them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hub.storage.base import Json, Row, SqlStore, Tx, from_json, from_ts, to_db_time
from hub.storage.dialect import Dialect

__all__ = [
    "ApiKeyRecord",
    "SessionRecord",
    "UserRecord",
    "count_users",
    "delete_session",
    "delete_user_sessions",
    "get_api_key",
    "get_api_key_by_name",
    "get_user",
    "get_user_by_name",
    "hold_first_user_lock",
    "insert_api_key",
    "insert_session",
    "insert_user",
    "jurisdictions_available",
    "list_api_keys",
    "list_users",
    "purge_sessions",
    "record_login_failure",
    "record_login_success",
    "resolve_jurisdiction_paths",
    "revoke_api_key",
    "session_with_user",
    "set_password",
    "touch_api_key",
    "touch_session",
    "update_user",
]

_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user row (the password hash never leaves the hub)."""

    id: str
    username: str
    password_hash: str
    role: str
    jurisdictions: tuple[str, ...]
    disabled: bool
    failed_logins: int
    locked_until: datetime | None
    must_change_password: bool
    display_name: str
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A login session; `id` is the hash of the cookie token."""

    id: str
    user_id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    csrf_hash: str
    remote_addr: str | None


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key for a machine integration; only the secret's hash is kept."""

    id: str
    name: str
    secret_hash: str
    role: str
    jurisdictions: tuple[str, ...]
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


_USER_COLUMNS = (
    "id, username, password_hash, role, jurisdictions, disabled, failed_logins, locked_until,"
    " must_change_password, display_name, created_at, updated_at, last_login_at"
)
_USER_COLUMNS_U = ", ".join("u." + c.strip() for c in _USER_COLUMNS.split(","))
_SESSION_COLUMNS = "id, user_id, created_at, last_seen_at, expires_at, csrf_hash, remote_addr"
_SESSION_COLUMNS_S = ", ".join("s." + c.strip() for c in _SESSION_COLUMNS.split(","))
_KEY_COLUMNS = (
    "id, name, secret_hash, role, jurisdictions, created_by, created_at, last_used_at, revoked_at"
)


def _codes(value: Any) -> tuple[str, ...]:
    decoded = from_json(value) or []
    return tuple(str(code) for code in decoded)


def _user(row: Row) -> UserRecord:
    return UserRecord(
        id=row[0],
        username=row[1],
        password_hash=row[2],
        role=row[3],
        jurisdictions=_codes(row[4]),
        disabled=bool(row[5]),
        failed_logins=int(row[6]),
        locked_until=from_ts(row[7]),
        must_change_password=bool(row[8]),
        display_name=row[9] or "",
        created_at=from_ts(row[10]) or _EPOCH,
        updated_at=from_ts(row[11]) or _EPOCH,
        last_login_at=from_ts(row[12]),
    )


def _session(row: Row) -> SessionRecord:
    return SessionRecord(
        id=row[0],
        user_id=row[1],
        created_at=from_ts(row[2]) or _EPOCH,
        last_seen_at=from_ts(row[3]) or _EPOCH,
        expires_at=from_ts(row[4]) or _EPOCH,
        csrf_hash=row[5],
        remote_addr=row[6],
    )


def _key(row: Row) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row[0],
        name=row[1],
        secret_hash=row[2],
        role=row[3],
        jurisdictions=_codes(row[4]),
        created_by=row[5],
        created_at=from_ts(row[6]) or _EPOCH,
        last_used_at=from_ts(row[7]),
        revoked_at=from_ts(row[8]),
    )


# -- users -------------------------------------------------------------------


#: Transaction lock key ("gwfu") under which a starting node checks for the first user.
_FIRST_USER_LOCK = 0x67776675


async def hold_first_user_lock(tx: Tx, *, postgresql: bool) -> None:
    """Until `tx` ends, be the only node deciding whether the first user is needed
    (hub nodes starting together on an empty database would each create one)."""
    if postgresql:
        await tx.execute("SELECT pg_advisory_xact_lock(%s)", (_FIRST_USER_LOCK,))


async def count_users(tx: Tx) -> int:
    """How many users exist (disabled ones included)."""
    row = await tx.fetchone("SELECT COUNT(*) FROM users")
    return int(row[0]) if row else 0


async def get_user_by_name(tx: Tx, username: str) -> UserRecord | None:
    """The user with this login name, if any."""
    row = await tx.fetchone(
        f"SELECT {_USER_COLUMNS} FROM users WHERE username = %s",  # noqa: S608
        (username,),
    )
    return _user(row) if row else None


async def get_user(tx: Tx, user_id: str) -> UserRecord | None:
    """The user with this id, if any."""
    row = await tx.fetchone(
        f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s",  # noqa: S608
        (user_id,),
    )
    return _user(row) if row else None


async def list_users(tx: Tx) -> list[UserRecord]:
    """Every user, by login name."""
    rows = await tx.fetchall(f"SELECT {_USER_COLUMNS} FROM users ORDER BY username")  # noqa: S608
    return [_user(row) for row in rows]


async def insert_user(tx: Tx, user: UserRecord) -> None:
    """Store a new user (the caller checked the name is free)."""
    await tx.execute(
        f"INSERT INTO users ({_USER_COLUMNS}) VALUES"  # noqa: S608
        " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            user.id,
            user.username,
            user.password_hash,
            user.role,
            Json(list(user.jurisdictions)),
            user.disabled,
            user.failed_logins,
            user.locked_until,
            user.must_change_password,
            user.display_name,
            to_db_time(user.created_at),
            to_db_time(user.updated_at),
            user.last_login_at,
        ),
    )


async def update_user(
    tx: Tx,
    user_id: str,
    now: datetime,
    *,
    role: str | None = None,
    jurisdictions: Sequence[str] | None = None,
    disabled: bool | None = None,
    display_name: str | None = None,
    unlock: bool = False,
) -> bool:
    """Change the given fields of a user; False when there is no such user."""
    sets: list[str] = ["updated_at = %s"]
    params: list[Any] = [to_db_time(now)]
    for column, value in (
        ("role", role),
        ("jurisdictions", Json(list(jurisdictions)) if jurisdictions is not None else None),
        ("disabled", disabled),
        ("display_name", display_name),
    ):
        if value is not None:
            sets.append(f"{column} = %s")
            params.append(value)
    if unlock:
        sets.append("failed_logins = 0")
        sets.append("locked_until = NULL")
    sql = f"UPDATE users SET {', '.join(sets)} WHERE id = %s"  # noqa: S608
    return await tx.execute(sql, [*params, user_id]) > 0


async def set_password(
    tx: Tx, user_id: str, password_hash: str, now: datetime, *, must_change: bool
) -> None:
    """Replace a user's password hash (clearing failures and any lock)."""
    when = to_db_time(now)
    await tx.execute(
        "UPDATE users SET password_hash = %s, must_change_password = %s,"
        " password_changed_at = %s, updated_at = %s, failed_logins = 0, locked_until = NULL"
        " WHERE id = %s",
        (password_hash, must_change, when, when, user_id),
    )


async def record_login_failure(
    tx: Tx, user_id: str, now: datetime, *, threshold: int, lock_until: datetime
) -> datetime | None:
    """Count a failed login; lock the account at `threshold` failures. Returns the lock end."""
    row = await tx.fetchone(
        "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = %s RETURNING failed_logins",
        (user_id,),
    )
    failures = int(row[0]) if row else 0
    if failures < threshold:
        return None
    await tx.execute(
        "UPDATE users SET locked_until = %s, failed_logins = 0 WHERE id = %s",
        (to_db_time(lock_until), user_id),
    )
    return lock_until


async def name_locked_until(tx: Tx, username: str) -> datetime | None:
    """When the lock of a name that is no (enabled) account ends; None when not locked."""
    row = await tx.fetchone(
        "SELECT locked_until FROM login_throttle WHERE username = %s", (username,)
    )
    return from_ts(row[0]) if row else None


async def record_name_failure(
    tx: Tx,
    username: str,
    now: datetime,
    *,
    threshold: int,
    lock_until: datetime,
    forget_before: datetime,
) -> datetime | None:
    """Count a failed login under a name that is no (enabled) account, as
    `record_login_failure` counts an account's; names idle since `forget_before`
    are forgotten. Returns the lock end when this failure locks the name."""
    await tx.execute(
        "DELETE FROM login_throttle WHERE updated_at < %s"
        " AND (locked_until IS NULL OR locked_until < %s)",
        (to_db_time(forget_before), to_db_time(now)),
    )
    row = await tx.fetchone(
        "INSERT INTO login_throttle (username, failed_logins, updated_at) VALUES (%s, 1, %s)"
        " ON CONFLICT (username) DO UPDATE SET"
        " failed_logins = login_throttle.failed_logins + 1, updated_at = EXCLUDED.updated_at"
        " RETURNING failed_logins",
        (username, to_db_time(now)),
    )
    failures = int(row[0]) if row else 0
    if failures < threshold:
        return None
    await tx.execute(
        "UPDATE login_throttle SET locked_until = %s, failed_logins = 0 WHERE username = %s",
        (to_db_time(lock_until), username),
    )
    return lock_until


async def record_login_success(tx: Tx, user_id: str, now: datetime) -> None:
    """Reset the failure count after a good login and note its time."""
    await tx.execute(
        "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = %s WHERE id = %s",
        (to_db_time(now), user_id),
    )


# -- sessions ----------------------------------------------------------------


async def insert_session(tx: Tx, session: SessionRecord) -> None:
    """Store a new login session."""
    await tx.execute(
        f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",  # noqa: S608
        (
            session.id,
            session.user_id,
            to_db_time(session.created_at),
            to_db_time(session.last_seen_at),
            to_db_time(session.expires_at),
            session.csrf_hash,
            session.remote_addr,
        ),
    )


async def session_with_user(tx: Tx, session_id: str) -> tuple[SessionRecord, UserRecord] | None:
    """A session and its user, looked up by the hash of the cookie token."""
    row = await tx.fetchone(
        f"SELECT {_SESSION_COLUMNS_S}, {_USER_COLUMNS_U} FROM sessions s"  # noqa: S608
        " JOIN users u ON u.id = s.user_id WHERE s.id = %s",
        (session_id,),
    )
    if row is None:
        return None
    return _session(row[:7]), _user(row[7:])


async def touch_session(tx: Tx, session_id: str, now: datetime, expires_at: datetime) -> None:
    """Slide a session's idle expiry forward."""
    await tx.execute(
        "UPDATE sessions SET last_seen_at = %s, expires_at = %s WHERE id = %s",
        (to_db_time(now), to_db_time(expires_at), session_id),
    )


async def delete_session(tx: Tx, session_id: str) -> int:
    """End one session."""
    return await tx.execute("DELETE FROM sessions WHERE id = %s", (session_id,))


async def delete_user_sessions(tx: Tx, user_id: str) -> int:
    """End every session of a user (password change, disabling)."""
    return await tx.execute("DELETE FROM sessions WHERE user_id = %s", (user_id,))


async def purge_sessions(store: SqlStore, now: datetime) -> int:
    """Delete expired sessions."""
    async with store.transaction() as tx:
        return await tx.execute("DELETE FROM sessions WHERE expires_at < %s", (to_db_time(now),))


# -- API keys ----------------------------------------------------------------


async def insert_api_key(tx: Tx, key: ApiKeyRecord) -> None:
    """Store a new API key."""
    await tx.execute(
        f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES"  # noqa: S608
        " (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            key.id,
            key.name,
            key.secret_hash,
            key.role,
            Json(list(key.jurisdictions)),
            key.created_by,
            to_db_time(key.created_at),
            key.last_used_at,
            key.revoked_at,
        ),
    )


async def get_api_key(tx: Tx, key_id: str) -> ApiKeyRecord | None:
    """The key with this id, revoked or not."""
    row = await tx.fetchone(
        f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = %s",  # noqa: S608
        (key_id,),
    )
    return _key(row) if row else None


async def get_api_key_by_name(tx: Tx, name: str) -> ApiKeyRecord | None:
    """The key with this name, revoked or not."""
    row = await tx.fetchone(
        f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE name = %s",  # noqa: S608
        (name,),
    )
    return _key(row) if row else None


async def list_api_keys(tx: Tx) -> list[ApiKeyRecord]:
    """Every key, newest first."""
    rows = await tx.fetchall(
        f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC"  # noqa: S608
    )
    return [_key(row) for row in rows]


async def revoke_api_key(tx: Tx, key_id: str, now: datetime) -> bool:
    """Revoke a key; False when there is no such live key."""
    changed = await tx.execute(
        "UPDATE api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
        (to_db_time(now), key_id),
    )
    return changed > 0


async def touch_api_key(tx: Tx, key_id: str, now: datetime) -> None:
    """Note when a key was last used."""
    await tx.execute(
        "UPDATE api_keys SET last_used_at = %s WHERE id = %s", (to_db_time(now), key_id)
    )


# -- jurisdictions -----------------------------------------------------------


async def jurisdictions_available(tx: Tx, dialect: str) -> bool:
    """True when the registry's `jurisdictions` table exists."""
    return await Dialect(dialect).table_exists(tx, "jurisdictions")


async def resolve_jurisdiction_paths(tx: Tx, codes: Sequence[str]) -> dict[str, str]:
    """Materialized paths of the given jurisdiction codes (unknown codes are absent)."""
    if not codes:
        return {}
    marks = ", ".join("%s" for _ in codes)
    rows = await tx.fetchall(
        f"SELECT code, path FROM jurisdictions WHERE code IN ({marks})",  # noqa: S608
        list(codes),
    )
    return {str(row[0]): str(row[1]) for row in rows}
