"""Camera URLs and the logins inside them: put in, take out, redact.

The one place that knows how a login travels in a URL (``rtsp://user:pass@host``,
percent-encoded; IPv6 literals in brackets) and in query parameters some cameras
use (``?user=…&pwd=…``, ``?token=…``). Every service that builds a URL to pull a
stream, and every path that shows a URL to a person or a log, goes through here.
Pure functions, no I/O.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

__all__ = [
    "CREDENTIAL_QUERY_KEYS",
    "REDACTED",
    "mask_passwords",
    "redact_text",
    "redact_url",
    "with_credentials",
    "without_credentials",
]

REDACTED = "***"

#: Query parameter names that carry a login or a token in camera URLs.
CREDENTIAL_QUERY_KEYS = frozenset(
    {
        "user",
        "username",
        "usr",
        "pass",
        "password",
        "pwd",
        "passwd",
        "auth",
        "token",
        "access_token",
        "apikey",
        "api_key",
        "key",
        "sig",
        "signature",
    }
)

# scheme://userinfo@ inside free text (error messages, ffmpeg output).
_TEXT_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s'\"]*)@")
# scheme://user:password@ — the password is everything up to the '@' before the host.
_TEXT_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*:)[^\s/]*(?=@)")
_TEXT_ENCODED_PASSWORD = re.compile(
    r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*%3A%2F%2F[^\s%/@]*%3A).*?(?=%40)", re.IGNORECASE
)
_TEXT_QUERY_SECRET = re.compile(
    r"(?P<head>[?&](?:" + "|".join(sorted(CREDENTIAL_QUERY_KEYS)) + r")=)[^&#\s'\"]+",
    re.IGNORECASE,
)


def _host_port(netloc: str) -> str:
    """The ``host[:port]`` part of a netloc, IPv6 brackets kept, userinfo dropped."""
    return netloc.rpartition("@")[2]


def _query_without(query: str, *, replace: str | None) -> str:
    if not query:
        return query
    kept: list[tuple[str, str]] = []
    changed = False
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.lower() in CREDENTIAL_QUERY_KEYS:
            changed = True
            if replace is not None:
                kept.append((key, replace))
            continue
        kept.append((key, value))
    if not changed:
        return query
    return urlencode(kept, safe="*")


def with_credentials(url: str, username: str | None, password: str | None) -> str:
    """`url` with ``user:password@`` in its authority, percent-encoded; server-side use only.

    A login already in `url` is replaced, not doubled; no `username` leaves `url` as it is.
    """
    if not username:
        return url
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url
    userinfo = quote(username, safe="")
    if password:
        userinfo += ":" + quote(password, safe="")
    return urlunsplit(
        (
            parts.scheme,
            f"{userinfo}@{_host_port(parts.netloc)}",
            parts.path,
            parts.query,
            parts.fragment,
        )
    )


def without_credentials(url: str) -> str:
    """`url` without ``user:pass@`` and without credential-carrying query parameters."""
    parts = urlsplit(url)
    return urlunsplit(
        (
            parts.scheme,
            _host_port(parts.netloc),
            parts.path,
            _query_without(parts.query, replace=None),
            parts.fragment,
        )
    )


def redact_url(url: str) -> str:
    """`url` safe for logs, errors and the API: userinfo shown as ``***@``, secrets as ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unreadable url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{_host_port(netloc)}"
    query = _query_without(parts.query, replace=REDACTED)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """`text` with the userinfo of every URL inside it replaced by ``***`` (and query secrets)."""
    text = _TEXT_USERINFO.sub(lambda match: f"{match['scheme']}{REDACTED}@", text)
    return _TEXT_QUERY_SECRET.sub(lambda match: match["head"] + REDACTED, text)


def mask_passwords(text: str) -> str:
    """`text` with URL passwords (also percent-encoded URLs) masked, user names kept.

    The form log lines use: a reader still sees which login a request used.
    """
    text = _TEXT_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)
    text = _TEXT_ENCODED_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)
    return _TEXT_QUERY_SECRET.sub(lambda match: match["head"] + REDACTED, text)
