"""Account credentials: password policy, generation and argon2id hashing, token digests,
and the checks of user names, roles and jurisdiction entries.

Pure helpers of `hub.auth.service` (no storage, no clock); argon2 verification is slow
on purpose and is run by the service off the event loop.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import string
from collections.abc import Sequence

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from hub.auth.principal import Role

log = logging.getLogger(__name__)

_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,63}")


_HASHER = PasswordHasher()
# Verified against when the user does not exist, so the answer takes as long.
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))


class AccountError(ValueError):
    """A user or key change that cannot be made (name taken, weak password, no such user)."""


def token_hash(token: str) -> str:
    """The stored form of a session, CSRF or API key token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_password_policy(password: str, username: str, min_length: int = 12) -> list[str]:
    """Why a password is refused (empty when it is acceptable)."""
    problems: list[str] = []
    if len(password) < min_length:
        problems.append(f"at least {min_length} characters")
    if username and username.lower() in password.lower():
        problems.append("must not contain the user name")
    classes = sum(
        (
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        )
    )
    if classes < 3:
        problems.append("at least three of: lower case, upper case, digits, symbols")
    if len(set(password)) < 5:
        problems.append("too few different characters")
    return problems


def generate_password(length: int = 20) -> str:
    """A random password that passes the policy (for first start and resets)."""
    alphabet = string.ascii_letters + string.digits + "-_.!@#%"
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(length))
        if not check_password_policy(candidate, "", min_length=12):
            return candidate


def _check_username(username: str) -> str:
    if not _USERNAME.fullmatch(username):
        raise AccountError("user name: 2-64 letters, digits, '.', '_' or '-'")
    return username


def _check_jurisdictions(entries: Sequence[str]) -> tuple[str, ...]:
    cleaned = tuple(dict.fromkeys(e.strip() for e in entries if e.strip()))
    if not cleaned:
        raise AccountError("at least one jurisdiction (a code, or / for everything)")
    for entry in cleaned:
        if len(entry) > 64 or not re.fullmatch(r"/|[/A-Za-z0-9_-]+", entry):
            raise AccountError(f"invalid jurisdiction {entry!r}")
    return cleaned


def _role(value: str | Role) -> Role:
    try:
        return Role(value)
    except ValueError as exc:
        raise AccountError(f"unknown role {value!r}; one of {[r.value for r in Role]}") from exc


def _verify(password_hash: str, password: str) -> tuple[bool, bool]:
    """(matches, needs rehash) — runs in a worker thread (argon2 is deliberately slow)."""
    try:
        _HASHER.verify(password_hash, password)
    except VerifyMismatchError:
        return False, False
    except (VerificationError, InvalidHashError):
        log.warning("a stored password hash could not be verified")
        return False, False
    return True, _HASHER.check_needs_rehash(password_hash)
