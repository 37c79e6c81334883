"""Shared pieces of the alarm tests: registered devices, a settable clock, a webhook receiver."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from hub.storage import SqlStore

START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
TOWN = "/150102/150102001/"
OTHER_TOWN = "/150102/150102002/"
SECRET_KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(SECRET_KEY).decode()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, at: datetime = START) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.at += timedelta(seconds=seconds)


async def add_device(
    store: SqlStore,
    device_id: str,
    *,
    kind: str = "camera",
    path: str = TOWN,
    name: str | None = None,
    linked_cameras: list[str] | None = None,
    snapshot_url: str | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
) -> None:
    """Register a device the way the registry does (columns it has, attributes otherwise)."""
    attributes: dict[str, Any] = {
        "jurisdiction_path": path,
        "linked_cameras": linked_cameras or [],
    }
    if snapshot_url:
        attributes["snapshot_url"] = snapshot_url
    if latitude is not None:
        attributes["latitude"] = latitude
        attributes["longitude"] = longitude
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO devices (id, name, kind, jurisdiction, attributes, enabled,"
            " created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                device_id,
                name or device_id,
                kind,
                path.strip("/").split("/")[-1],
                attributes,
                True,
                START,
                START,
            ),
        )


def verify_signature(headers: dict[str, str], body: bytes, key: bytes = SECRET_KEY) -> bool:
    """Standard Webhooks check written from the specification, not with the hub's code."""
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [part.split(",", 1)[1] for part in headers["webhook-signature"].split()]
    return any(hmac.compare_digest(expected, sig) for sig in offered)


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 whose behaviour the test scripts per request."""

    port: int = 0
    #: Answers to give, in order ("ok", "500", "410", "slow"); then "ok" for ever.
    script: list[str] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    bad_signatures: int = 0
    slow_seconds: float = 3.0

    async def handle(self, request: web.Request) -> web.Response:
        """Record the delivery; answer as scripted."""
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.received.append((headers, body))
        mode = self.script.pop(0) if self.script else "ok"
        if mode == "slow":
            await asyncio.sleep(self.slow_seconds)
            return web.Response(status=200)
        if mode != "ok":
            return web.Response(status=int(mode))
        if not verify_signature(headers, body):
            self.bad_signatures += 1
            return web.Response(status=401)
        # One incident per alarm revision: a repeat of a key is acknowledged, not re-applied.
        self.accepted.setdefault(
            headers["webhook-id"], json.loads(body) if body[:1] == b"{" else {}
        )
        return web.Response(status=204)


@asynccontextmanager
async def running_receiver(receiver: Receiver, port: int) -> AsyncIterator[Receiver]:
    """Serve `receiver` on 127.0.0.1:`port` until the block ends."""
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    receiver.port = port
    try:
        yield receiver
    finally:
        await runner.cleanup()
