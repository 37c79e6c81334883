"""The one hardened HTTP client for every request to a camera (ONVIF SOAP and snapshots).

Everything a camera sends is untrusted. `CameraHttp`:
- sends a request only to the host and port it is pinned to (and never downgrades
  an `https` camera to plain HTTP); redirects are never followed;
- caps every answer (10 MiB for SOAP by default, a per-call cap for snapshots) and
  reads it against a total deadline, so a camera that trickles one byte per second
  is cut off;
- never decompresses (no `gzip` bombs): it asks for `identity` and refuses
  anything else;
- answers a snapshot's Basic or Digest challenge only when the camera asks,
  so a password never goes to a camera that did not request it;
- speaks `https://` with certificate verification on by default (a site can
  trust its own CA bundle, or turn verification off for self-signed cameras).

It runs on aiohttp's connection pool, which keeps idle connections per camera
(host, port, TLS) — finding a connection for a request does not scan every
other camera's, so the cost per request stays flat with thousands of event
channels long-polling at once.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import logging
import secrets
import ssl
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import aiohttp

from adapters.onvif.models import ProbeFailure
from adapters.onvif.security import ForeignHostRefused, format_host, redact_uri
from adapters.safexml import MAX_XML_BYTES

__all__ = [
    "DEFAULT_TIMEOUT",
    "Answer",
    "CameraHttp",
    "CameraRequestError",
    "ResponseTooLarge",
    "digest_authorization",
    "tls_context",
]

logger = logging.getLogger(__name__)

#: Default deadline for one call to a camera, seconds.
DEFAULT_TIMEOUT = 10.0

_DEFAULT_PORTS = {"http": 80, "https": 443}


class ResponseTooLarge(Exception):
    """A camera's answer exceeded the response size cap (or came compressed)."""


class CameraRequestError(Exception):
    """An HTTP-level failure talking to a camera, classified for the operator."""

    def __init__(self, failure: ProbeFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure


@dataclass(frozen=True, slots=True)
class Answer:
    """A camera's complete, capped answer."""

    status: int
    content_type: str
    body: bytes


def tls_context(*, verify: bool = True, ca_file: str | None = None) -> ssl.SSLContext:
    """The TLS context for `https://` cameras: verified against the system CAs or
    `ca_file` by default; `verify=False` accepts any certificate (self-signed cameras)."""
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=ca_file)


@functools.cache
def _default_tls() -> ssl.SSLContext:
    # Loading the system CAs costs tenths of a second: once per process, not per client.
    return tls_context()


def _challenge_fields(header: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    rest = header.strip()
    while rest:
        name, _, rest = rest.partition("=")
        name = name.strip().lstrip(",").strip().lower()
        rest = rest.lstrip()
        if rest.startswith('"'):
            value, _, rest = rest[1:].partition('"')
        else:
            value, _, rest = rest.partition(",")
        rest = rest.lstrip().lstrip(",")
        if name:
            fields[name] = value.strip()
    return fields


def digest_authorization(
    challenge: str,
    username: str,
    password: str,
    method: str,
    uri: str,
    *,
    cnonce: str,
    nonce_count: int = 1,
) -> str | None:
    """The `Authorization` value answering an HTTP Digest challenge (RFC 7616,
    MD5 or SHA-256, qop `auth` or none); None for a challenge it cannot answer."""
    scheme, _, params = challenge.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    fields = _challenge_fields(params)
    realm, nonce = fields.get("realm"), fields.get("nonce")
    if realm is None or nonce is None:
        return None
    algorithm = fields.get("algorithm", "MD5")
    hashes = {"md5": hashlib.md5, "sha-256": hashlib.sha256}
    hash_function = hashes.get(algorithm.lower())
    if hash_function is None:
        return None

    def digest(text: str) -> str:
        return hash_function(text.encode()).hexdigest()

    ha1 = digest(f"{username}:{realm}:{password}")
    ha2 = digest(f"{method}:{uri}")
    qops = [q.strip() for q in fields.get("qop", "").split(",") if q.strip()]
    nc = f"{nonce_count:08x}"
    parts = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        f"algorithm={algorithm}",
    ]
    if "auth" in qops:
        response = digest(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        parts += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
    elif qops:
        return None  # only auth-int offered: the body would have to be hashed too
    else:
        response = digest(f"{ha1}:{nonce}:{ha2}")
    parts.append(f'response="{response}"')
    if "opaque" in fields:
        parts.append(f'opaque="{fields["opaque"]}"')
    return "Digest " + ", ".join(parts)


@functools.lru_cache(maxsize=65_536)
def _pin_refusal(url: str, host: str, port: int, scheme: str | None) -> str | None:
    """Why `url` is not on the pinned camera, or None when it is (cached: every pull
    of a channel asks about the same subscription address)."""
    parts = urlsplit(url)
    try:
        url_port = parts.port
    except ValueError:
        return f"refusing to send a request to an unreadable address {redact_uri(url)}"
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    if (
        default is None
        or parts.hostname is None
        or format_host(parts.hostname).lower() != format_host(host).lower()
        or (url_port or default) != port
        or (scheme is not None and parts.scheme.lower() != scheme.lower())
    ):
        where = f"{scheme}://" if scheme else ""
        return (
            f"refusing to send a request to {redact_uri(url)}: "
            f"configured camera is {where}{host}:{port}"
        )
    return None


class CameraHttp:
    """Hardened HTTP client shared by many cameras (one connection pool, no threads)."""

    def __init__(
        self,
        *,
        max_response_bytes: int = MAX_XML_BYTES,
        connect_timeout: float = 5.0,
        max_connections: int = 16_384,
        tls: ssl.SSLContext | None = None,
        keepalive_s: float = 5.0,
    ) -> None:
        if max_response_bytes <= 0:
            raise ValueError("max_response_bytes must be positive")
        if max_connections <= 0:
            raise ValueError("max_connections must be positive")
        self.max_response_bytes = max_response_bytes
        self._connect_timeout = connect_timeout
        self._max_connections = max_connections
        self._tls = tls
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _open(self) -> aiohttp.ClientSession:
        # Built on first use: aiohttp binds its pool to the running event loop.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                ssl=self._tls if self._tls is not None else _default_tls(),
                keepalive_timeout=self._keepalive_s,
                use_dns_cache=True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                trust_env=False,
                headers={"Accept-Encoding": "identity", "User-Agent": "GridWatch-ONVIF"},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
            )
        return self._session

    async def aclose(self) -> None:
        """Close every pooled connection."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def post(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        *,
        pinned: tuple[str, int],
        deadline: float = DEFAULT_TIMEOUT,
        scheme: str | None = None,
    ) -> Answer:
        """POST `body` to `url` (which must be on the pinned host:port) and read a capped answer.

        `scheme` pins the URL scheme too (an `https` camera is never spoken to in clear).
        """
        self._check_pinned(url, pinned, scheme)
        answer, _ = await self._send(
            "POST", url, deadline, self.max_response_bytes, data=body, headers=headers
        )
        return answer

    async def get(
        self,
        url: str,
        *,
        pinned: tuple[str, int],
        deadline: float = DEFAULT_TIMEOUT,
        login: tuple[str, str] | None = None,
        max_bytes: int | None = None,
        scheme: str | None = None,
    ) -> Answer:
        """GET `url` on the pinned host:port; with a `login`, answer a Basic or Digest
        challenge once (nothing is sent before the camera asks)."""
        self._check_pinned(url, pinned, scheme)
        cap = max_bytes if max_bytes is not None else self.max_response_bytes
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer, challenge = await self._send("GET", url, deadline, cap)
        if answer.status != 401 or login is None or challenge is None:
            return answer
        authorization = self._authorization(challenge, login, url)
        if authorization is None:
            return answer
        left = deadline - (loop.time() - started)
        if left <= 0:
            raise CameraRequestError(
                ProbeFailure.TIMEOUT, f"no complete answer from {redact_uri(url)} in {deadline:g} s"
            )
        answer, _ = await self._send(
            "GET", url, left, cap, headers={"Authorization": authorization}
        )
        return answer

    @staticmethod
    def _authorization(challenge: str, login: tuple[str, str], url: str) -> str | None:
        username, password = login
        kind = challenge.strip().split(" ", 1)[0].lower()
        if kind == "basic":
            pair = f"{username}:{password}".encode()
            return "Basic " + base64.b64encode(pair).decode()
        if kind == "digest":
            parts = urlsplit(url)
            uri = parts.path or "/"
            if parts.query:
                uri += f"?{parts.query}"
            return digest_authorization(
                challenge, username, password, "GET", uri, cnonce=secrets.token_hex(8)
            )
        return None

    async def _send(
        self,
        method: str,
        url: str,
        deadline: float,
        cap: int,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[Answer, str | None]:
        """One request, its capped answer and (on a 401) the camera's challenge."""
        session = self._open()
        try:
            # The total deadline is what stops a camera that trickles bytes: a read
            # timeout only bounds the gap between two reads.
            async with asyncio.timeout(deadline):
                async with session.request(
                    method, url, data=data, headers=headers, allow_redirects=False
                ) as response:
                    try:
                        answer = await self._read_capped(response, cap)
                    except ResponseTooLarge:
                        response.close()  # the rest is never read: drop the connection
                        raise
                    challenge = None
                    if response.status == 401:
                        offered = response.headers.getall("WWW-Authenticate", [])
                        # Digest first: it never sends the password itself.
                        ranked = sorted(offered, key=lambda c: not c.lower().startswith("digest"))
                        challenge = ranked[0] if ranked else None
                    return answer, challenge
        except TimeoutError as exc:
            raise CameraRequestError(
                ProbeFailure.TIMEOUT,
                f"no complete answer from {redact_uri(url)} in {deadline:g} s (timeout)",
            ) from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            # Not a network fault: the camera is not who it should be (or its CA is
            # not trusted here), so nothing, credentials least of all, is sent.
            raise CameraRequestError(
                ProbeFailure.REFUSED,
                f"certificate of {redact_uri(url)} not trusted: {exc.certificate_error}",
            ) from exc
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise CameraRequestError(
                ProbeFailure.UNREACHABLE, f"cannot reach {redact_uri(url)}: {exc}"
            ) from exc
        except aiohttp.ClientError as exc:
            raise CameraRequestError(
                ProbeFailure.PROTOCOL, f"HTTP error from {redact_uri(url)}: {exc}"
            ) from exc

    @staticmethod
    async def _read_capped(response: aiohttp.ClientResponse, cap: int) -> Answer:
        encoding = response.headers.get("Content-Encoding", "identity").lower()
        if encoding not in ("identity", ""):
            raise ResponseTooLarge(
                f"refusing a {encoding!r}-encoded answer (decompression bomb risk)"
            )
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise ResponseTooLarge(f"answer declares {declared} bytes, cap is {cap}")
        buffer = bytearray()
        async for chunk in response.content.iter_any():
            buffer += chunk
            if len(buffer) > cap:
                raise ResponseTooLarge(f"answer exceeds the {cap} byte cap")
        return Answer(response.status, response.headers.get("Content-Type", ""), bytes(buffer))

    @staticmethod
    def _check_pinned(url: str, pinned: tuple[str, int], scheme: str | None) -> None:
        refusal = _pin_refusal(url, pinned[0], pinned[1], scheme)
        if refusal is not None:
            # Last line of defence: credentials only ever go to the configured camera.
            raise ForeignHostRefused(refusal)
