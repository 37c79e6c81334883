"""MQTT ingest: QoS 1 panic presses from publish to committed, beside a bare paho subscriber.

One own Mosquitto with the shipped configuration (tests/peers/mosquitto.py) serves every
run. The publisher is a separate process (so it does not share the consumer's GIL).

- throughput: the publisher sends `--messages` presses as fast as the broker takes them;
  rate = messages / (first publish → last one acknowledged after its commit). The bare
  subscriber (paho, MQTT 5, manual ack right in on_message, same receive maximum) is
  measured the same way in the same run.
- latency at 1,000 msg/s: publish → committed (the hub) or → acked (bare), from the
  publish time carried in the payload's `time` field; p50/p99/max over the presses
  sent after the first second (`WARMUP_S`): that second holds the publisher's and
  the subscriber's start-up (connections, first statements prepared, caches
  filled) and its p99 is tens of ms even for the bare subscriber. The figures with
  that second included are kept beside them (`latency_ms_with_warmup`).
- mixed: the same count of messages, one press in ten and heartbeats from 500
  registered units between (each unit's heartbeats within one 1-second interval
  are duplicates, acknowledged without a row, as the hub treats a chatty device);
  the bare subscriber takes the same mix.
- rounds: the machine is noisy (two cores shared with the broker, the publisher
  and PostgreSQL), so bare and hub runs alternate `--rounds` times. The headline
  ratio is the median of the per-round ratios (each round's hub rate over the bare
  rate measured beside it); the other figures are medians of their rounds, and
  every round's figures are kept too (`each_round`).

The hub side is a real `Hub` (SQLite, then PostgreSQL): adapter → writer (batch commit,
device state, alarm engine hook) → PUBACK; commits are seen on the hub's event bus.
Usage: python -m benchmarks.mqtt_ingest [--messages 20000] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from benchmarks.common import machine_load, scratch_database, write_result
from camera_registry.events import DeviceEvent
from hub.config import load_settings
from hub.runtime import Hub, freeze_startup_heap
from tests.integration.hub_mqtt_support import register_device
from tests.integration.mqtt_support import drop_session
from tests.peers.mosquitto import MosquittoPeer, mosquitto_peer

PREFIX = "gridwatch/v1"
BUTTONS = 78
RECEIVE_MAXIMUM = 1000
#: The mixed load: one press in every MIX_EVERY messages, heartbeats between.
MIX_EVERY = 10
HEARTBEAT_DEVICES = 500
#: Latency figures leave out presses sent in the first second (start-up).
WARMUP_S = 1.0


# --------------------------------------------------------------------------- publisher


def publish(
    host: str, port: int, count: int, rate: float, run: str, mixed: bool = False
) -> dict[str, Any]:
    """Send `count` presses (rate 0 = as fast as possible) — or, `mixed`, one press in
    every `MIX_EVERY` messages and heartbeats from `HEARTBEAT_DEVICES` units between —
    and report the first and last publish times."""
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{run}"
    )
    client.max_inflight_messages_set(RECEIVE_MAXIMUM)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    infos = []
    started = time.time()
    for i in range(count):
        if rate > 0:
            due = started + i / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
        if mixed and i % MIX_EVERY:
            # Each unit's heartbeat falls in a new 1-second interval bucket: stored, not
            # a duplicate (units cycle every HEARTBEAT_DEVICES messages).
            body = {"v": 1, "interval_s": 1, "time": datetime.now(UTC).isoformat()}
            topic = f"{PREFIX}/bench-unit-{i % HEARTBEAT_DEVICES:03d}/heartbeat"
        else:
            body = {
                "v": 1,
                "msg_id": f"{run}-{i}",
                "type": "panic.press",
                "time": datetime.now(UTC).isoformat(),
            }
            topic = f"{PREFIX}/bench-btn-{i % BUTTONS:03d}/event"
        infos.append(client.publish(topic, json.dumps(body).encode(), qos=1))
    last_sent = time.time()
    for info in infos:
        info.wait_for_publish(120)
    accepted = sum(1 for info in infos if info.is_published())
    client.disconnect()
    client.loop_stop()
    return {"started": started, "last_sent": last_sent, "accepted": accepted}


def run_publisher(
    peer: MosquittoPeer, count: int, rate: float, run: str, mixed: bool = False
) -> subprocess.Popen[str]:
    """Start the publisher process; its JSON report arrives on stdout."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.mqtt_ingest",
            "publish",
            peer.host,
            str(peer.port),
            str(count),
            str(rate),
            run,
            "mixed" if mixed else "presses",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def publisher_report(process: subprocess.Popen[str]) -> dict[str, Any]:
    """Wait for the publisher and read its report."""
    out, _ = process.communicate(timeout=600)
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return report


def _latency_ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {}
    return {
        "p50": round(statistics.median(ordered) * 1000, 2),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "max": round(ordered[-1] * 1000, 2),
        "samples": len(ordered),
    }


def _latency_figures(samples: list[tuple[float, float]], started: float) -> dict[str, Any]:
    """(sent at, latency) samples: figures after the warm-up, and with it."""
    steady = [latency for sent, latency in samples if sent >= started + WARMUP_S]
    return {
        "latency_ms": _latency_ms(steady),
        "latency_ms_with_warmup": _latency_ms([latency for _, latency in samples]),
    }


def _sent_at(payload: bytes | bytearray) -> float:
    return datetime.fromisoformat(str(json.loads(payload)["time"])).timestamp()


# --------------------------------------------------------------------------- bare paho


def bare_subscriber(
    peer: MosquittoPeer, count: int, rate: float, mixed: bool = False
) -> dict[str, Any]:
    """A bare paho MQTT 5 subscriber acking each message as it arrives."""
    run = uuid.uuid4().hex[:8]
    done = threading.Event()
    ready = threading.Event()
    received = 0
    last_at = 0.0
    latencies: list[tuple[float, float]] = []

    def on_connect(client: paho.Client, *_: Any) -> None:
        client.subscribe([(f"{PREFIX}/+/event", 1), (f"{PREFIX}/+/heartbeat", 1)])

    def on_subscribe(*_: Any) -> None:
        ready.set()

    def on_message(client: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        nonlocal received, last_at
        client.ack(message.mid, message.qos)
        now = time.time()
        if rate > 0:
            sent = _sent_at(message.payload)
            latencies.append((sent, now - sent))
        received += 1
        last_at = now
        if received >= count:
            done.set()

    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"bench-bare-{run}",
        protocol=paho.MQTTv5,
        manual_ack=True,
    )
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.ReceiveMaximum = RECEIVE_MAXIMUM
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(peer.host, peer.port, properties=properties)
    client.loop_start()
    ready.wait(10)
    publisher = run_publisher(peer, count, rate, run, mixed)
    report = publisher_report(publisher)
    done.wait(300)
    client.disconnect()
    client.loop_stop()
    elapsed = last_at - report["started"]
    return {
        "messages": received,
        "msg_per_s": round(received / elapsed),
        **(_latency_figures(latencies, report["started"]) if rate > 0 else {}),
    }


# --------------------------------------------------------------------------- the hub


async def through_hub(
    peer: MosquittoPeer,
    url: str | None,
    data_dir: Path,
    count: int,
    rate: float,
    *,
    alarm_engine: bool = True,
    mixed: bool = False,
) -> dict[str, Any]:
    """The hub's adapter + writer: publish → committed (PUBACK sent after the commit)."""
    run = uuid.uuid4().hex[:8]
    settings = load_settings(
        None,
        data_dir=data_dir,
        storage={"url": url},
        mqtt={
            "enabled": True,
            "host": peer.host,
            "port": peer.port,
            "client_id": f"bench-hub-{run}",
            "receive_maximum": RECEIVE_MAXIMUM,
        },
        logging={"level": "WARNING"},
    )
    async with Hub(settings) as hub:
        if not alarm_engine:
            # Only the MQTT health hook stays in the transaction: what the MQTT path costs.
            hub._commit_hooks[:] = [hub.mqtt.in_transaction]
        for n in range(BUTTONS):
            await register_device(hub.store, f"bench-btn-{n:03d}", "alarm_point")
        if mixed:
            for n in range(HEARTBEAT_DEVICES):
                await register_device(hub.store, f"bench-unit-{n:03d}", "alarm_point")
        await hub.mqtt.directory.refresh()
        freeze_startup_heap()  # as `gridwatch run` does once the hub is up
        adapter = hub.mqtt.adapter
        assert adapter is not None
        if not await adapter.wait_connected(10):
            raise RuntimeError("the hub did not connect to the benchmark broker")
        acked_before = adapter.metrics.acked
        latencies: list[tuple[float, float]] = []
        subscription = hub.events.subscribe(maxsize=100_000, name="bench")
        last_commit = 0.0

        presses = count if not mixed else len(range(0, count, MIX_EVERY))

        async def watch() -> None:
            nonlocal last_commit
            seen = 0
            while seen < presses:
                event: DeviceEvent = await subscription.get()
                if event.kind != "panic.press":
                    continue
                seen += 1
                last_commit = time.time()
                if rate > 0:
                    # The publisher's clock travels as the device time (same machine).
                    sent = datetime.fromisoformat(str(event.payload["device_time"])).timestamp()
                    latencies.append((sent, last_commit - sent))

        watcher = asyncio.create_task(watch())
        publisher = await asyncio.to_thread(run_publisher, peer, count, rate, run, mixed)
        report = await asyncio.to_thread(publisher_report, publisher)
        await asyncio.wait_for(watcher, 300)
        # Heartbeats are not announced on the bus: the last acknowledgement (sent after
        # its commit) ends the run when it comes after the last press.
        while adapter.metrics.acked - acked_before < count:
            await asyncio.sleep(0.005)
            last_commit = time.time()
        # The writer calls the committed-callbacks (PUBACK) before it announces on the bus.
        assert adapter.metrics.acked - acked_before >= count
        stored = await hub.store.count_events(kind="panic.press")
        batches = hub.writer.committed_batches
    # Left behind, the hub's persistent session would have every later press queued
    # for it (and saved by the broker's persistence), slowing every later run.
    drop_session(peer.host, peer.port, settings.mqtt.client_id)
    elapsed = last_commit - report["started"]
    return {
        "messages": count,
        "presses": presses,
        "stored_presses": stored,
        "msg_per_s": round(count / elapsed),
        "commits": batches,
        **(_latency_figures(latencies, report["started"]) if rate > 0 else {}),
    }


async def hub_runs(peer: MosquittoPeer, messages: int, seconds: float) -> dict[str, Any]:
    """Throughput and latency through the hub on SQLite and PostgreSQL, with and without
    the alarm engine's hook in the writer's transaction."""
    out: dict[str, Any] = {}
    for engine in (True, False):
        suffix = "" if engine else "_without_alarm_engine"
        for backend in ("sqlite", "postgresql"):
            figures = {}
            runs = [
                ("throughput", messages, 0.0, False),
                ("latency_1k", int((seconds + WARMUP_S) * 1000), 1000.0, False),
            ]
            if engine:
                runs.append(("mixed_throughput", messages, 0.0, True))
            for name, count, rate, mixed in runs:
                with tempfile.TemporaryDirectory() as tmp:
                    if backend == "sqlite":
                        figures[name] = await through_hub(
                            peer, None, Path(tmp), count, rate, alarm_engine=engine, mixed=mixed
                        )
                        continue
                    with scratch_database() as url:
                        figures[name] = await through_hub(
                            peer, url, Path(tmp), count, rate, alarm_engine=engine, mixed=mixed
                        )
            out[backend + suffix] = figures
    return out


def main() -> None:
    """Run the benchmark, print the figures and write benchmarks/results/mqtt_ingest.json."""
    if len(sys.argv) > 1 and sys.argv[1] == "publish":
        host, port, count, rate, run, shape = sys.argv[2:8]
        report = publish(host, int(port), int(count), float(rate), run, shape == "mixed")
        print(json.dumps(report))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    load = machine_load()
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, mosquitto_peer(Path(tmp)) as peer:
        for _ in range(args.rounds):
            bare = {
                "throughput": bare_subscriber(peer, args.messages, 0),
                "latency_1k": bare_subscriber(peer, int((args.seconds + WARMUP_S) * 1000), 1000),
                "mixed_throughput": bare_subscriber(peer, args.messages, 0, mixed=True),
            }
            hub = asyncio.run(hub_runs(peer, args.messages, args.seconds))
            rounds.append({"bare_paho": bare, **{f"hub_{k}": v for k, v in hub.items()}})
    figures: dict[str, Any] = {
        "messages": args.messages,
        "rounds": args.rounds,
        "warmup_s": WARMUP_S,
        **_medians(rounds),
        "each_round": rounds,
    }
    figures["goal"] = ">= 80% of the bare subscriber's rate; p99 <= 50 ms at 1,000 msg/s"
    path = write_result("mqtt_ingest", figures, load_at_start=load)
    print(json.dumps({k: v for k, v in figures.items() if k != "each_round"}, indent=2))
    print(f"written to {path}", file=sys.stderr)


def _medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per configuration, the median over the rounds of every figure. The hub's rate
    against the bare subscriber's is paired round by round (both measured back to
    back): the headline is the median of those per-round ratios; the ratio of the
    median rates is kept beside it."""
    out: dict[str, Any] = {}
    for name in rounds[0]:
        out[name] = {run: _median_tree([r[name][run] for r in rounds]) for run in rounds[0][name]}
    for name, merged in out.items():
        if name == "bare_paho":
            continue
        for run, label in (("throughput", ""), ("mixed_throughput", "mixed_")):
            if run not in merged:
                continue
            each = [
                round(r[name][run]["msg_per_s"] / r["bare_paho"][run]["msg_per_s"], 3)
                for r in rounds
            ]
            bare = out["bare_paho"][run]["msg_per_s"]
            merged[f"{label}ratio_to_bare"] = round(statistics.median(each), 3)
            merged[f"{label}ratio_to_bare_each_round"] = each
            merged[f"{label}ratio_of_median_rates"] = round(merged[run]["msg_per_s"] / bare, 3)
    return out


def _median_tree(values: list[Any]) -> Any:
    """The median of numbers, key by key through nested dicts."""
    if isinstance(values[0], dict):
        return {key: _median_tree([v[key] for v in values]) for key in values[0]}
    return round(statistics.median(values), 2)


if __name__ == "__main__":
    main()
