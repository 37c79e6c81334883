"""HTTP delivery: signed JSON webhooks (Standard Webhooks headers) and CAP XML posts.

A 2xx answer is a delivery; 410 Gone means the endpoint was retired (the sink is
disabled until an operator re-enables it); anything else, a timeout or a refused
connection is a failure the dispatcher retries with backoff. Timeouts are
bounded; redirects are not followed (a receiver must be configured by its URL).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

import httpx

from adapters.clock import utcnow
from adapters.sinks.errors import DeliveryFailed
from adapters.sinks.signing import headers_for

__all__ = ["WebhookSink"]

log = logging.getLogger(__name__)


class WebhookSink:
    """POSTs each message to one URL, signed with every configured secret."""

    def __init__(
        self,
        name: str,
        url: str,
        secrets: Sequence[str],
        *,
        timeout_s: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.name = name
        self._url = url
        self._secrets = list(secrets)
        self._timeout = httpx.Timeout(timeout_s)
        self._clock = clock
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Open the connection pool."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)

    async def close(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def deliver(self, message_id: str, body: bytes, content_type: str) -> str:
        """POST `body`; return a receipt ("HTTP 200") or raise DeliveryFailed."""
        await self.start()
        assert self._client is not None  # noqa: S101 - opened just above
        headers = {"content-type": content_type, "user-agent": "GridWatch"}
        if self._secrets:
            headers.update(headers_for(message_id, self._clock(), body, self._secrets))
        else:
            headers["webhook-id"] = message_id
        try:
            response = await self._client.post(self._url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise DeliveryFailed(f"timed out after {self._timeout.read}s") from exc
        except httpx.HTTPError as exc:
            # The exception text may carry the URL; the type says enough.
            raise DeliveryFailed(f"HTTP request failed: {type(exc).__name__}") from exc
        if 200 <= response.status_code < 300:
            return f"HTTP {response.status_code}"
        if response.status_code == 410:
            raise DeliveryFailed("410 Gone: the receiver retired this endpoint", gone=True)
        raise DeliveryFailed(f"HTTP {response.status_code}")
