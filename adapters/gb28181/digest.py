"""HTTP digest authentication for SIP REGISTER (RFC 2617, MD5), as GB/T 28181 uses it.

GB/T 28181 mandates MD5 digest: the platform answers a REGISTER without
credentials with `401` and `WWW-Authenticate: Digest realm="<domain>",nonce="…"`
(optionally `qop="auth"`), and the device repeats the REGISTER with an
`Authorization` header whose `response` proves it knows the password. MD5 is what
the standard and every device speak; it is not a choice of this module.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

__all__ = [
    "DigestCredentials",
    "DigestError",
    "authorization_header",
    "challenge_header",
    "digest_response",
    "parse_digest",
    "verify",
]

_PARAM = re.compile(r'\s*([A-Za-z0-9_\-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')
_MAX_HEADER = 2048


class DigestError(ValueError):
    """An Authorization header that cannot be read as MD5 digest credentials."""


def _md5(text: str) -> str:
    # MD5 is mandated by RFC 2617 digest as GB/T 28181 uses it.
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """The parameters of a `Digest` Authorization header."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_digest(value: str | None) -> DigestCredentials:
    """Read a `Digest username="…", realm="…", …` header; raises DigestError."""
    if not value:
        raise DigestError("no Authorization header")
    if len(value) > _MAX_HEADER:
        raise DigestError("Authorization header too long")
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"authorization scheme {scheme[:20]!r} is not Digest")
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None or match.end() == position:
            raise DigestError("malformed digest parameters")
        params[match.group(1).lower()] = _unquote(match.group(2))
        position = match.end()
    missing = [k for k in ("username", "realm", "nonce", "uri", "response") if not params.get(k)]
    if missing:
        raise DigestError(f"digest parameters missing: {', '.join(missing)}")
    algorithm = params.get("algorithm", "MD5")
    if algorithm.upper() != "MD5":
        raise DigestError(f"digest algorithm {algorithm[:20]!r} is not MD5")
    qop = params.get("qop")
    if qop is not None and qop != "auth":
        raise DigestError(f"digest qop {qop[:20]!r} is not supported (only auth)")
    if qop and not (params.get("nc") and params.get("cnonce")):
        raise DigestError("qop=auth needs nc and cnonce")
    return DigestCredentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"].lower(),
        algorithm="MD5",
        qop=qop,
        nc=params.get("nc"),
        cnonce=params.get("cnonce"),
        opaque=params.get("opaque"),
    )


def digest_response(
    *,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """The `response` value RFC 2617 defines for these parameters."""
    ha1 = _md5(f"{username}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    if qop:
        return _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _md5(f"{ha1}:{nonce}:{ha2}")


def verify(credentials: DigestCredentials, *, method: str, password: str) -> bool:
    """True when `credentials` prove knowledge of `password` (constant-time compare)."""
    expected = digest_response(
        username=credentials.username,
        realm=credentials.realm,
        password=password,
        method=method,
        uri=credentials.uri,
        nonce=credentials.nonce,
        qop=credentials.qop,
        nc=credentials.nc,
        cnonce=credentials.cnonce,
    )
    return hmac.compare_digest(expected, credentials.response)


def challenge_header(realm: str, nonce: str, *, qop: bool = False) -> str:
    """The WWW-Authenticate value of a 401 to a REGISTER."""
    value = f'Digest realm="{realm}",nonce="{nonce}",algorithm=MD5'
    return value + (',qop="auth"' if qop else "")


def authorization_header(
    *,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str = "00000001",
    cnonce: str = "0a4f113b",
) -> str:
    """The Authorization value a device sends back (used by the device simulator)."""
    response = digest_response(
        username=username,
        realm=realm,
        password=password,
        method=method,
        uri=uri,
        nonce=nonce,
        qop=qop,
        nc=nc if qop else None,
        cnonce=cnonce if qop else None,
    )
    value = (
        f'Digest username="{username}",realm="{realm}",nonce="{nonce}",uri="{uri}",'
        f'response="{response}",algorithm=MD5'
    )
    if qop:
        value += f',qop={qop},nc={nc},cnonce="{cnonce}"'
    return value


def parse_challenge(value: str) -> dict[str, str]:
    """The parameters of a WWW-Authenticate `Digest` challenge (realm, nonce, qop …)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"challenge scheme {scheme[:20]!r} is not Digest")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(rest.strip()):
        params[match.group(1).lower()] = _unquote(match.group(2))
    if "realm" not in params or "nonce" not in params:
        raise DigestError("challenge without realm or nonce")
    return params
