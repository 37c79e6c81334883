"""Several hub nodes: alarm ingest with 1, 2 and 3 nodes, and what a city costs per node.

Part 1 (measured). For each node count, a fresh PostgreSQL database and that many hub
processes (full `Hub`, cluster membership on, a webhook sink queued but disabled, as in
`alarm_ingest`). Presses of `--buttons` panic buttons are dealt round-robin to the
nodes, as an MQTT 5 shared subscription deals them, and each node also receives 2 % of
another node's presses again (the redelivery a broker makes after a node dies). Two
phases per run:
- paced: `--rate` presses/s in total for `--paced` presses: latency submit → committed
  callback (p50/p99 over every press of every node) and CPU per press (all nodes' process
  time over the presses);
- burst: `--burst` presses as fast as the writers take them: aggregate presses/s;
- burst by button: as many presses again, but each button's presses all to one node,
  so no two nodes update the same open alarm at once: beside the burst, it shows what
  nodes waiting on each other's alarm rows costs.
Afterwards the database must hold every press once, one open alarm per button whose
trigger count is the button's presses, and no more. On a 2-core machine shared with
PostgreSQL, more nodes cannot be faster: the figures say what a node costs and that
the result stays right, not a speed-up.

Part 2 (model). The cost per node of 100,000 devices, from per-device costs measured by
the other benchmarks (their result files, dated in this one) and from this run: the
assignment (rendezvous hashing over the live nodes, timed here for 100,000 devices) and
the heartbeat. It says how many 2-core nodes a city needs with one node lost.

Usage: python -m benchmarks.cluster [--nodes 1 2 3] [--paced 1500] [--rate 250]
       [--burst 3000] [--buttons 78] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.common import RESULTS, machine_load, scratch_database, write_result
from benchmarks.scaling import unit_costs
from camera_registry.events import DeviceEvent, Severity
from hub.alarms.outbox_storage import set_sink_disabled
from hub.cluster.ring import Handover
from hub.config import load_settings
from hub.runtime import Hub
from hub.storage import open_store
from tests.integration.hub_mqtt_support import register_device

_NOWHERE = "http://127.0.0.1:9/hook"
KEY = "whsec_" + base64.b64encode(bytes(32)).decode()
REDELIVERED = 0.02
PHASES = ("paced", "burst", "burst_by_button")


def press(run: str, n: int, buttons: int) -> DeviceEvent:
    """Press `n` of the run, as the MQTT adapter makes it (its dedup key names the message)."""
    device = f"bench-btn-{n % buttons:03d}"
    now = datetime.now(UTC)
    return DeviceEvent(
        time=now,
        device_id=device,
        kind="panic.press",
        severity=Severity.CRITICAL,
        source="mqtt",
        payload={"msg_id": f"{run}-{n}", "device_time": now.isoformat()},
        dedup_key=f"mqtt:{device}:{run}-{n}",
    )


def share(total: int, index: int, nodes: int) -> list[int]:
    """The press numbers node `index` receives: its round-robin share, and 2 % of the next
    node's share again (redelivered)."""
    own = list(range(index, total, nodes))
    if nodes == 1:
        return own
    other = list(range((index + 1) % nodes, total, nodes))
    return own + other[: int(len(other) * REDELIVERED)]


# -- one node (a child process) ---------------------------------------------------------


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _feed(hub: Hub, events: list[DeviceEvent], rate: float | None) -> dict[str, Any]:
    """Submit `events` (at `rate` per second, or as fast as taken); latencies and CPU."""
    done = asyncio.Event()
    latencies: list[float] = []
    remaining = len(events)

    def committed(sent: float) -> Any:
        def callback() -> None:
            nonlocal remaining
            latencies.append(time.perf_counter() - sent)
            remaining -= 1
            if remaining == 0:
                done.set()

        return callback

    cpu0, wall0, start = _cpu_s(), time.time(), time.perf_counter()
    for n, event in enumerate(events):
        if rate is not None:
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await hub.writer.submit(event, committed(time.perf_counter()))
    if events:
        await asyncio.wait_for(done.wait(), 600)
    return {
        "presses": len(events),
        "started": wall0,
        "ended": time.time(),
        "cpu_s": _cpu_s() - cpu0,
        "latencies_ms": [round(v * 1000, 3) for v in latencies],
    }


async def node_main(args: argparse.Namespace) -> None:
    """Run one node: start, say READY, wait for GO on stdin, feed, print the figures."""
    settings = load_settings(
        None,
        data_dir=Path(args.data_dir),
        node_id=args.node,
        storage={"url": args.url},
        logging={"level": "WARNING"},
        patrol={"enabled": False},
        alarms={
            "sinks": [{"name": "center", "type": "webhook", "url": _NOWHERE, "secrets": [KEY]}]
        },
    )
    async with Hub(settings) as hub:
        await set_sink_disabled(hub.store, "center", True, "benchmark", datetime.now(UTC))
        phases: list[tuple[str, list[DeviceEvent], float | None]] = [
            (
                "paced",
                [press(args.run, n, args.buttons) for n in share(args.paced, args.index, args.of)],
                args.rate / args.of,
            ),
            (
                "burst",
                [
                    press(args.run + "b", n, args.buttons)
                    for n in share(args.burst, args.index, args.of)
                ],
                None,
            ),
            (
                "burst_by_button",
                [
                    press(args.run + "d", n, args.buttons)
                    for n in range(args.burst)
                    if (n % args.buttons) % args.of == args.index
                ],
                None,
            ),
        ]
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        seen: dict[str, Any] = {}
        # The parent starts each phase on every node at once (a line on stdin each).
        for name, events, rate in phases:
            await asyncio.to_thread(sys.stdin.readline)
            if not seen:
                seen = {"live_nodes": sorted(hub.cluster.live_nodes), "jobs": hub.cluster.jobs}
            result = await _feed(hub, events, rate)
            sys.stdout.write(json.dumps({"phase": name, **result}) + "\n")
            sys.stdout.flush()
        sys.stdout.write(json.dumps(seen) + "\n")
        sys.stdout.flush()
        # Stay a member until every node is done, so no node's work moves mid-run.
        await asyncio.to_thread(sys.stdin.readline)


# -- the parent -------------------------------------------------------------------------


async def _register(url: str, buttons: int) -> None:
    store = open_store(url, pool_size=2)
    await store.open()
    try:
        for n in range(buttons):
            await register_device(store, f"bench-btn-{n:03d}", "alarm_point")
    finally:
        await store.close()


def _check(url: str, presses: int, buttons: int) -> dict[str, Any]:
    """What the database holds after a run, and whether it is right."""
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT count(*) FROM events WHERE kind = 'panic.press'").fetchone()
        alarms = conn.execute(
            "SELECT count(*), coalesce(sum(count), 0), count(DISTINCT device_id) FROM alarms"
        ).fetchone()
        outbox = conn.execute("SELECT count(*) FROM outbox").fetchone()
    assert stored is not None and alarms is not None and outbox is not None
    result = {
        "presses_sent": presses,
        "presses_stored": int(stored[0]),
        "alarms": int(alarms[0]),
        "alarm_triggers": int(alarms[1]),
        "alarm_devices": int(alarms[2]),
        "outbox_rows": int(outbox[0]),
    }
    result["correct"] = (
        result["presses_stored"] == presses
        and result["alarms"] == buttons
        and result["alarm_devices"] == buttons
        and result["alarm_triggers"] == presses
    )
    return result


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def run_nodes(nodes: int, args: argparse.Namespace) -> dict[str, Any]:
    """One measurement with `nodes` hub processes on a fresh database."""
    run = uuid.uuid4().hex[:8]
    with scratch_database() as url, tempfile.TemporaryDirectory() as tmp:
        # The schema exists before the nodes start (as after the first node's start).
        asyncio.run(_register_after_migrating(url, args.buttons))
        children = []
        for index in range(nodes):
            command = [
                sys.executable,
                "-m",
                "benchmarks.cluster",
                "--child",
                f"--url={url}",
                f"--node=bench-node-{index + 1}",
                f"--data-dir={Path(tmp) / str(index)}",
                f"--run={run}",
                f"--index={index}",
                f"--of={nodes}",
                f"--paced={args.paced}",
                f"--rate={args.rate}",
                f"--burst={args.burst}",
                f"--buttons={args.buttons}",
            ]
            children.append(
                subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            )
        try:
            for child in children:
                assert child.stdout is not None
                # The first start may print the first admin's password notice first.
                line = child.stdout.readline()
                while line and line.strip() != "READY":
                    line = child.stdout.readline()
                if not line:
                    raise RuntimeError(f"a node did not start ({child.poll()})")
            # The membership settles (every node sees the others) before the presses.
            time.sleep(4.0)
            results: list[dict[str, Any]] = [{} for _ in children]
            for _phase in PHASES:
                for child in children:
                    assert child.stdin is not None
                    child.stdin.write("GO\n")
                    child.stdin.flush()
                for n, child in enumerate(children):
                    assert child.stdout is not None
                    line = json.loads(child.stdout.readline())
                    results[n][line.pop("phase")] = line
            for n, child in enumerate(children):
                assert child.stdout is not None and child.stdin is not None
                results[n].update(json.loads(child.stdout.readline()))
            for child in children:
                assert child.stdin is not None
                child.stdin.write("STOP\n")
                child.stdin.flush()
            for child in children:
                child.wait(timeout=120)
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait(timeout=10)
        sent = args.paced + 2 * args.burst
        check = _check(url, sent, args.buttons)
    return _summarise(nodes, results, check)


async def _register_after_migrating(url: str, buttons: int) -> None:
    store = open_store(url, pool_size=2)
    await store.open()
    await store.close()
    await _register(url, buttons)


def _burst(results: list[dict[str, Any]], phase: str) -> dict[str, Any]:
    presses = sum(r[phase]["presses"] for r in results)
    wall = max(r[phase]["ended"] for r in results) - min(r[phase]["started"] for r in results)
    return {
        "presses_submitted": presses,
        "presses_per_s": round(presses / wall),
        "cpu_ms_per_press_all_nodes": round(
            1000 * sum(r[phase]["cpu_s"] for r in results) / presses, 3
        ),
    }


def _summarise(nodes: int, results: list[dict[str, Any]], check: dict[str, Any]) -> dict[str, Any]:
    paced_lat = [v for r in results for v in r["paced"]["latencies_ms"]]
    paced_presses = sum(r["paced"]["presses"] for r in results)
    jobs = [job for r in results for job in r["jobs"]]
    return {
        "nodes": nodes,
        "paced": {
            "presses_submitted": paced_presses,
            "latency_p50_ms": round(statistics.median(paced_lat), 2),
            "latency_p99_ms": round(_percentile(paced_lat, 0.99), 2),
            "samples": len(paced_lat),
            "cpu_ms_per_press_all_nodes": round(
                1000 * sum(r["paced"]["cpu_s"] for r in results) / paced_presses, 3
            ),
        },
        "burst": _burst(results, "burst"),
        "burst_by_button": _burst(results, "burst_by_button"),
        "every_node_saw": [len(r["live_nodes"]) for r in results],
        "singleton_jobs_running": sorted(jobs),
        "singleton_jobs_once": len(jobs) == len(set(jobs)),
        "database": check,
    }


def _median(runs: list[dict[str, Any]], *path: str) -> float | None:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            values.append(float(value))
    return round(statistics.median(values), 2) if values else None


def _by_nodes(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per node count: medians over the rounds, ratios paired within each round."""
    rows = []
    for nodes in sorted({r["nodes"] for r in runs}):
        mine = [r for r in runs if r["nodes"] == nodes]
        rows.append(
            {
                "nodes": nodes,
                "rounds": len(mine),
                "all_correct": all(r["database"]["correct"] for r in mine),
                "singleton_jobs_once": all(r["singleton_jobs_once"] for r in mine),
                "paced_p50_ms": _median(mine, "paced", "latency_p50_ms"),
                "paced_p99_ms": _median(mine, "paced", "latency_p99_ms"),
                "paced_samples_per_round": mine[0]["paced"]["samples"],
                "cpu_ms_per_press": _median(mine, "paced", "cpu_ms_per_press_all_nodes"),
                "cpu_per_press_vs_one_node": _median(mine, "cpu_per_press_vs_one_node"),
                "burst_presses_per_s": _median(mine, "burst", "presses_per_s"),
                "burst_vs_one_node": _median(mine, "burst_rate_vs_one_node"),
                "burst_by_button_presses_per_s": _median(mine, "burst_by_button", "presses_per_s"),
                "burst_by_button_vs_one_node": _median(mine, "burst_by_button_rate_vs_one_node"),
            }
        )
    return rows


def _reading(row: dict[str, Any]) -> str:
    """What one node count says beside the single node, in a sentence of facts."""
    verdict = (
        "every press stored once, one alarm per button, each singleton job on one node"
        if row["all_correct"] and row["singleton_jobs_once"]
        else "NOT CORRECT (see ingest[].database)"
    )
    return (
        f"{row['nodes']} nodes: {verdict}; burst {row['burst_vs_one_node']}× one node with "
        f"presses dealt round-robin, {row['burst_by_button_vs_one_node']}× with each button on "
        f"one node; CPU per paced press {row['cpu_per_press_vs_one_node']}× (medians of ratios "
        "paired within a round). The processes share 2 cores with PostgreSQL and the other "
        "work on the machine (see the load): a node count costs throughput here, it cannot add "
        "any."
    )


# -- the city model -----------------------------------------------------------------------


def measure_assignment(devices: int, nodes: int) -> dict[str, Any]:
    """Time `is_mine` for every device (first call, then cached) and its memory."""
    from datetime import timedelta

    ids = [f"dev-{n:06d}" for n in range(devices)]
    names = [f"node-{n}" for n in range(nodes)]
    handover = Handover(names[0], timedelta(0))
    handover.see(set(names), datetime.now(UTC))
    tracemalloc.start()
    started = time.perf_counter()
    mine = sum(1 for device in ids if handover.is_mine(device))
    first = time.perf_counter() - started
    memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    started = time.perf_counter()
    sum(1 for device in ids if handover.is_mine(device))
    cached = time.perf_counter() - started
    return {
        "devices": devices,
        "nodes": nodes,
        "this_node_share": mine,
        "first_pass_us_per_device": round(first / devices * 1e6, 2),
        "cached_us_per_device": round(cached / devices * 1e6, 3),
        "cache_mib": round(memory / 2**20, 1),
    }


def _result(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def city_model(devices: int, assignment: dict[str, Any]) -> dict[str, Any]:
    """Cores and memory per node for `devices`, from the other benchmarks' per-device costs."""
    onvif, gb, patrol, registry = (
        _result("onvif_channels"),
        _result("gb28181"),
        _result("patrol"),
        _result("registry"),
    )
    if onvif is None or gb is None or patrol is None or registry is None:
        return {"missing": "run onvif_channels, gb28181, patrol and registry first"}
    largest = onvif["figures"]["comparison"][-1]
    smallest = onvif["figures"]["comparison"][0]
    pull_s = onvif["figures"]["pull_timeout_s"]
    # The same per-unit costs the district scaling benchmark uses, where it has them.
    units = unit_costs()
    probe_cpu_s = units["patrol_probe_sub_stream"]["cpu_s"]
    probe_source = f"scaling.unit_costs: patrol at {units['patrol_probe_sub_stream']['resolution']}"
    if probe_cpu_s is None:
        probe_cpu_s = patrol["scheduler"]["cpu_s_per_probe"]
        probe_source = "patrol.json scheduler (one resolution)"
    hub_gb = gb["figures"]["hub"]
    gb_load = gb["figures"]["load"]
    reg = registry["figures"]
    # A city's mix, after the reference district: most cameras over GB/T 28181 through
    # platforms/NVRs (about 32 channels per registered device), a quarter over ONVIF, and
    # a few per cent MQTT buttons and speakers.
    mix = {"gb28181_channels": 0.72, "onvif_cameras": 0.25, "mqtt_devices": 0.03}
    counts = {kind: round(devices * part) for kind, part in mix.items()}
    cameras = counts["gb28181_channels"] + counts["onvif_cameras"]
    per_channel_gb_cores = hub_gb["steady_cpu_cores"] / gb_load["channels"]
    onvif_pull = units["onvif_pull"]
    per_channel_onvif_cores = onvif_pull["cpu_s"] * onvif_pull["pulls_per_camera_per_s"]
    per_camera_patrol_cores = probe_cpu_s / 600.0
    onvif_mib = (largest["hub_rss_mib"] - smallest["hub_rss_mib"]) / (
        largest["channels"] - smallest["channels"]
    )
    gb_mib = hub_gb["rss_growth_mib"] / gb_load["channels"]
    registry_mib = reg["rss_peak_mib"] / reg["devices"]
    cores = {
        "patrol (probe + VQD every 600 s)": cameras * per_camera_patrol_cores,
        "ONVIF event pulls": counts["onvif_cameras"] * per_channel_onvif_cores,
        "GB/T 28181 keepalives and health": counts["gb28181_channels"] * per_channel_gb_cores,
        "assignment (cached is_mine, one look per device per second)": devices
        * assignment["cached_us_per_device"]
        / 1e6,
    }
    memory = {
        "registry cache (peak of a 100,000-device import, per device)": devices * registry_mib,
        "ONVIF channels": counts["onvif_cameras"] * onvif_mib,
        "GB/T 28181 channels": counts["gb28181_channels"] * gb_mib,
        "assignment cache": assignment["cache_mib"] * devices / assignment["devices"],
    }
    total_cores = sum(cores.values())
    # Every node holds the whole registry cache; the rest splits over the nodes.
    split_mib = sum(v for k, v in memory.items() if not k.startswith("registry"))
    whole_mib = memory["registry cache (peak of a 100,000-device import, per device)"]
    budget_cores, budget_mib, base_mib = 1.2, 3072.0, 210.0
    per_node = []
    for nodes in range(1, 11):
        node_cores = total_cores / nodes
        node_mib = base_mib + whole_mib + split_mib / nodes
        survivors = max(1, nodes - 1)
        per_node.append(
            {
                "nodes": nodes,
                "cores_per_node": round(node_cores, 2),
                "rss_mib_per_node": round(node_mib),
                "cores_per_node_one_lost": round(total_cores / survivors, 2),
                "fits_with_one_lost": total_cores / survivors <= budget_cores
                and base_mib + whole_mib + split_mib / survivors <= budget_mib,
            }
        )
    needed = next((row["nodes"] for row in per_node if row["fits_with_one_lost"]), None)
    # The patrol dominates; a site that probes each camera every 30 min instead of 10:
    slow_patrol = total_cores - cores["patrol (probe + VQD every 600 s)"] * 2 / 3
    needed_slow = next(
        (n for n in range(1, 21) if slow_patrol / max(1, n - 1) <= budget_cores), None
    )
    return {
        "devices": devices,
        "mix": mix,
        "counts": counts,
        "per_device_costs": {
            "patrol_cores_per_camera": per_camera_patrol_cores,
            "onvif_cores_per_channel": per_channel_onvif_cores,
            "onvif_pull_timeout_s": pull_s,
            "gb_cores_per_channel": per_channel_gb_cores,
            "onvif_mib_per_channel": round(onvif_mib, 4),
            "gb_mib_per_channel": round(gb_mib, 4),
            "registry_mib_per_device": round(registry_mib, 5),
            "patrol_probe_cpu_s": probe_cpu_s,
            "patrol_probe_source": probe_source,
        },
        "sources": {
            name: data["measured_at"]
            for name, data in (
                ("onvif_channels", onvif),
                ("gb28181", gb),
                ("patrol", patrol),
                ("registry", registry),
            )
        },
        "cores_total": {k: round(v, 3) for k, v in cores.items()},
        "rss_mib_total": {k: round(v) for k, v in memory.items()},
        "node_budget": {
            "cores": budget_cores,
            "rss_mib": budget_mib,
            "why": "a 2-core node kept below 60 % for alarm storms, the console and PostgreSQL "
            "clients; RSS within a 4 GiB machine",
        },
        "per_node": per_node,
        "nodes_needed_with_one_lost": needed,
        "nodes_needed_with_one_lost_patrol_every_1800s": needed_slow,
        "not_modelled": [
            "live view and evidence buffers (per watched or linked camera, not per device)",
            "alarm ingest bursts (part 1 gives their cost per press)",
            "PostgreSQL/TimescaleDB's own machine",
        ],
    }


def main() -> None:
    """Measure, model, print and write benchmarks/results/cluster.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--paced", type=int, default=1_500)
    parser.add_argument("--rate", type=float, default=250.0)
    parser.add_argument("--burst", type=int, default=3_000)
    parser.add_argument("--buttons", type=int, default=78)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--city", type=int, default=100_000)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("url", "node", "data-dir", "run"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--of", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(node_main(args))
        return
    load_start = machine_load()
    runs: list[dict[str, Any]] = []
    for round_no in range(args.rounds):
        # Alternate the order, so a load that changes over the run favours no node count.
        order = args.nodes if round_no % 2 == 0 else list(reversed(args.nodes))
        this_round = [{"round": round_no, **run_nodes(n, args)} for n in order]
        base = next((r for r in this_round if r["nodes"] == 1), None)
        for r in this_round if base is not None else []:
            assert base is not None
            r["cpu_per_press_vs_one_node"] = round(
                r["paced"]["cpu_ms_per_press_all_nodes"]
                / base["paced"]["cpu_ms_per_press_all_nodes"],
                2,
            )
            for phase in ("burst", "burst_by_button"):
                r[f"{phase}_rate_vs_one_node"] = round(
                    r[phase]["presses_per_s"] / base[phase]["presses_per_s"], 2
                )
        runs += this_round
    assignment = measure_assignment(args.city, 3)
    by_nodes = _by_nodes(runs)
    figures: dict[str, Any] = {
        "method": __doc__.split("\n\n")[1] if __doc__ else "",
        "cpu_count": len(os.sched_getaffinity(0)),
        "by_nodes": by_nodes,
        "reading": [_reading(row) for row in by_nodes if row["nodes"] != 1],
        "ingest": runs,
        "all_correct": all(row["all_correct"] and row["singleton_jobs_once"] for row in by_nodes),
        "assignment": assignment,
        "city": city_model(args.city, assignment),
        "load_end": machine_load(),
    }
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    if not args.no_write:
        path = write_result("cluster", figures, load_at_start=load_start)
        print(f"written to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
