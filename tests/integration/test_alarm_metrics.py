"""Alarm and outbox metrics at /metrics: backlog and dead rows per sink, deliveries by
outcome, alarms opened by priority, escalations."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from hub.config import load_settings
from hub.runtime import Hub
from tests.helpers import act_as, make_event
from tests.integration.alarm_support import SECRET, add_device
from tests.integration.outbox_receiver import KeyedReceiver, serve_receiver
from tests.peers import free_port

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(wanted)}\}} (\S+)$", metrics, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.fixture(params=BACKENDS)
async def setup(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Hub, httpx.AsyncClient, int, KeyedReceiver]]:
    url = request.getfixturevalue("pg_dsn") if request.param == "postgres" else None
    up, down = free_port(), free_port()
    receiver = KeyedReceiver(delay_s=0.0)
    sink = {"type": "webhook", "secrets": [SECRET], "timeout_s": 1.0}
    alarms = {
        "sinks": [
            {"name": "center", "url": receiver.url(up), **sink},
            {"name": "gone", "url": f"http://127.0.0.1:{down}/hook", "max_attempts": 2, **sink},
        ],
        "delivery": {"poll_interval_s": 0.05, "lease_s": 5.0, "backoff_base_s": 0.05},
    }
    settings = load_settings(None, data_dir=tmp_path, storage={"url": url}, alarms=alarms)
    async with Hub(settings) as hub:
        transport = httpx.ASGITransport(app=hub.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            act_as(transport.app, role="admin", subject="user:admin")
            yield hub, client, up, receiver


async def test_outbox_and_alarm_metrics(
    setup: tuple[Hub, httpx.AsyncClient, int, KeyedReceiver],
) -> None:
    hub, client, port, receiver = setup
    async with serve_receiver(receiver, port):
        for n in range(2):
            await add_device(hub.store, f"btn-{n}", kind="panic")
            await hub.writer.submit(make_event(n, device_id=f"btn-{n}", kind="panic.press"))
        await add_device(hub.store, "cam-1")
        await hub.writer.submit(
            make_event(5, device_id="cam-1", kind="onvif.intrusion", payload={"state": True})
        )
        async with asyncio.timeout(20):
            while True:
                metrics = (await client.get("/metrics")).text
                if sample(metrics, "gridwatch_outbox_dead", sink="gone") == 3 and not sample(
                    metrics, "gridwatch_outbox_pending", sink="center"
                ):
                    break
                await asyncio.sleep(0.1)

    assert sample(metrics, "gridwatch_alarms_opened_total", priority="1", drill="false") == 2
    assert sample(metrics, "gridwatch_alarms_opened_total", priority="2", drill="false") == 1
    assert sample(metrics, "gridwatch_outbox_pending", sink="gone") == 0
    assert sample(metrics, "gridwatch_outbox_dead", sink="center") == 0
    delivered = sample(
        metrics, "gridwatch_outbox_deliveries_total", sink="center", outcome="delivered"
    )
    assert delivered == 3
    # Two attempts each on the unreachable receiver: one failure, then dead.
    assert sample(metrics, "gridwatch_outbox_deliveries_total", sink="gone", outcome="failed") == 3
    assert sample(metrics, "gridwatch_outbox_deliveries_total", sink="gone", outcome="dead") == 3

    # Unacknowledged past the P1 deadline: escalated, and counted.
    escalated = await hub.alarms.escalate_due(hub.alarms.now() + timedelta(minutes=5))
    assert escalated >= 2
    metrics = (await client.get("/metrics")).text
    total = sum(
        float(value)
        for value in re.findall(
            r"^gridwatch_alarm_escalations_total\{[^}]*\} (\S+)$", metrics, re.M
        )
    )
    assert total == escalated
    assert sample(metrics, "gridwatch_alarm_escalations_total", priority="1", level="1") == 2
