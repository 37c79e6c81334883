"""Cameras that lie, stall or flood fail cleanly while an honest camera keeps working."""

from __future__ import annotations

import asyncio
import logging
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from adapters.onvif.client import CameraHttp, ProbeError, probe
from adapters.onvif.models import ProbeFailure, ProbeResult
from adapters.onvif.security import PinPolicy
from tests.integration.onvif_fake_camera import (
    FakeCamera,
    Handler,
    fake_camera,
    honest_camera_handler,
    respond,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "onvif"
GIB = 1024**3


def document(name: str) -> Handler:
    body = (FIXTURES / name).read_bytes()

    async def handle(path: str, request: bytes, writer: asyncio.StreamWriter) -> None:
        await respond(writer, body)

    return handle


class Flood:
    """Streams up to 1 GiB with no Content-Length, counting what actually left."""

    def __init__(self) -> None:
        self.sent = 0

    async def __call__(self, path: str, request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\n")
        writer.write(b"Connection: close\r\n\r\n<env:Envelope>")
        chunk = b"<x>" + b"A" * (256 * 1024 - 7) + b"</x>"
        while self.sent < GIB:
            writer.write(chunk)
            await writer.drain()
            self.sent += len(chunk)


async def trickle(path: str, request: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\n")
    writer.write(b"Content-Length: 100000\r\n\r\n")
    await writer.drain()
    for _ in range(600):
        writer.write(b" ")
        await writer.drain()
        await asyncio.sleep(1.0)


def honest() -> Handler:
    """An honest camera that advertises its LAN address (as real ones do)."""
    return honest_camera_handler(
        "http://192.168.1.64/onvif/Media",
        "rtsp://admin:admin@192.168.1.64:554/Streaming/Channels/101",
        "http://192.168.1.64/onvif-http/snapshot?user=admin&password=admin",
    )


async def run_beside_honest_camera(
    hostile: Handler, attempt: Callable[[FakeCamera], Awaitable[object]]
) -> tuple[BaseException | object, ProbeResult, float]:
    """Run `attempt` against the hostile camera while probing an honest one."""
    async with fake_camera(hostile) as bad, fake_camera(honest()) as good:

        async def honest_probe() -> tuple[ProbeResult, float]:
            started = time.monotonic()
            result = await probe(good.host, good.port, "admin", "admin", timeout=5)
            return result, time.monotonic() - started

        outcome, (result, elapsed) = await _gather(attempt(bad), honest_probe())
        return outcome, result, elapsed


async def _gather(
    first: Awaitable[object], second: Awaitable[tuple[ProbeResult, float]]
) -> tuple[BaseException | object, tuple[ProbeResult, float]]:
    async def capture() -> BaseException | object:
        try:
            return await first
        except ProbeError as exc:
            return exc

    return await asyncio.gather(capture(), second)


def assert_honest(result: ProbeResult, elapsed: float) -> None:
    assert result.device.model == "Gate-1"
    (profile,) = result.profiles
    # Advertised LAN addresses were pinned to the configured host, credentials stripped.
    assert profile.stream_uri == "rtsp://127.0.0.1/Streaming/Channels/101"
    assert profile.snapshot_uri == "http://127.0.0.1/onvif-http/snapshot"
    assert elapsed < 4.0


@pytest.mark.parametrize("name", ["billion_laughs.xml", "external_entity.xml"])
async def test_entity_attacks_fail_cleanly(name: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="adapters.onvif"):
        outcome, result, elapsed = await run_beside_honest_camera(
            document(name), lambda bad: probe(bad.host, bad.port, "admin", "pw", timeout=5)
        )
    assert isinstance(outcome, ProbeError) and outcome.failure is ProbeFailure.PROTOCOL
    assert "document type declarations" in str(outcome)
    assert any("document type declarations" in r.getMessage() for r in caplog.records)
    assert_honest(result, elapsed)


async def test_a_gigabyte_answer_is_cut_at_the_cap_with_bounded_memory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flood = Flood()
    tracemalloc.start()
    try:
        with caplog.at_level(logging.WARNING, logger="adapters.onvif"):
            outcome, result, elapsed = await run_beside_honest_camera(
                flood, lambda bad: probe(bad.host, bad.port, "admin", "pw", timeout=8)
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(outcome, ProbeError) and outcome.failure is ProbeFailure.PROTOCOL
    assert "cap" in str(outcome)
    assert flood.sent < 64 * 1024**2  # the client stopped reading long before 1 GiB
    assert peak < 64 * 1024**2
    assert any("byte cap" in r.getMessage() for r in caplog.records)
    assert_honest(result, elapsed)


async def test_a_camera_trickling_one_byte_per_second_times_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="adapters.onvif"):
        outcome, result, elapsed = await run_beside_honest_camera(
            trickle, lambda bad: probe(bad.host, bad.port, "admin", "pw", timeout=2)
        )
    assert isinstance(outcome, ProbeError) and outcome.failure is ProbeFailure.TIMEOUT
    assert time.monotonic() - started < 6
    assert any("timeout" in r.getMessage() for r in caplog.records)
    assert_honest(result, elapsed)


def postgres_xaddr() -> Handler:
    return honest_camera_handler(
        "http://127.0.0.1:5432/onvif/Media",
        "rtsp://127.0.0.1:5432/live",
        "http://127.0.0.1:5432/snapshot.jpg",
    )


async def test_an_advertised_xaddr_on_another_port_is_pinned_to_the_camera() -> None:
    async def attempt(bad: FakeCamera) -> object:
        return await probe(bad.host, bad.port, "admin", "pw", timeout=5)

    outcome, result, elapsed = await run_beside_honest_camera(postgres_xaddr(), attempt)
    assert isinstance(outcome, ProbeResult)
    media = outcome.services["http://www.onvif.org/ver10/media/wsdl"]
    assert media.endswith("/onvif/Media") and ":5432" not in media
    assert outcome.profiles[0].token == "main"
    assert_honest(result, elapsed)


async def test_an_advertised_xaddr_on_another_port_is_refused_by_policy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="adapters.onvif"):
        async with fake_camera(postgres_xaddr()) as bad:
            with pytest.raises(ProbeError) as refused:
                await probe(bad.host, bad.port, "admin", "pw", timeout=5, policy=PinPolicy.REFUSE)
    assert refused.value.failure is ProbeFailure.REFUSED
    assert "127.0.0.1:5432" in str(refused.value)
    assert any("5432" in r.getMessage() for r in caplog.records)
    # Nothing but the configured camera was ever asked for anything.
    assert all(path.startswith("/onvif/") for path, _ in bad.requests)


async def test_requests_never_leave_the_configured_host() -> None:
    async with CameraHttp() as http:
        with pytest.raises(Exception, match="refusing to send"):
            await http.post(
                "http://127.0.0.1:5432/onvif/device_service",
                b"<x/>",
                {},
                pinned=("127.0.0.1", 8080),
            )
