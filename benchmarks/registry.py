"""Device registry at city scale on PostgreSQL: 100,000 devices in a realistic tree.

Tree: 1 district, 8 towns, 32 communities, 600 grids, 1,800 micro-grids.
Devices: 100,000 spread over the micro-grids (90 % cameras, 6 % alarm points,
3 % broadcast units, 1 % NVRs), one in five with an encrypted login.

Reports
- import rows/s: one CSV of all devices through `Registry.import_file` (parse,
  validate, seal credentials, one all-or-nothing transaction with audit rows);
- p50/p99 of a filtered page of 100 through the HTTP API over a real socket
  (uvicorn as `gridwatch serve` runs it, an httpx client with keep-alive),
  authenticated with a district-scoped operator's API key on every request:
  town or grid subtree + kind, sorted by name, first page and the following
  cursor page, or a text search;
- p50/p99 of a subtree count (`/api/jurisdictions/{code}/counts`) for towns
  and the district;
- the hub process's peak RSS (includes the generated CSV and the client);
- the machine's load at start and end (other work on the machine shows up in
  the p99 figures; compare runs at similar load).

The hub runs with its background services as configured by default (stream
patrol, ONVIF event channels, housekeeping): the generated cameras are
unreachable addresses, so the patrol's probes fail, as they would for a district
whose cameras are offline; what they cost is in the figures.

Goal: page p99 <= 50 ms, RSS <= 1 GiB. Run: `.venv/bin/python -m benchmarks.registry`.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import os
import random
import resource
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from benchmarks.common import machine_load, scratch_database, write_result
from camera_registry.jurisdiction import JurisdictionLevel, JurisdictionNode
from hub.config import load_settings
from hub.devices.registry import Actor
from hub.runtime import Hub, freeze_startup_heap

DEVICES = 100_000
TOWNS = 8
COMMUNITIES_PER_TOWN = 4
GRIDS = 600
MICRO_PER_GRID = 3
PAGE_REQUESTS = 300
COUNT_REQUESTS = 60


def build_tree() -> tuple[list[JurisdictionNode], list[str], list[str], list[str]]:
    """The nodes, and the town, grid and micro-grid codes."""
    nodes = [JurisdictionNode(code="150102", name="新城区", level=JurisdictionLevel.DISTRICT)]
    towns, grids, micros = [], [], []
    communities = []
    for t in range(1, TOWNS + 1):
        town = f"150102{t:03d}"
        towns.append(town)
        nodes.append(
            JurisdictionNode(code=town, name=f"第{t}街道", level="town", parent_code="150102")
        )
        for c in range(1, COMMUNITIES_PER_TOWN + 1):
            community = f"{town}{c:03d}"
            communities.append(community)
            nodes.append(
                JurisdictionNode(
                    code=community, name=f"第{t}-{c}社区", level="village", parent_code=town
                )
            )
    for g in range(GRIDS):
        community = communities[g % len(communities)]
        grid = f"{community}{g // len(communities) + 1:03d}"
        grids.append(grid)
        nodes.append(
            JurisdictionNode(code=grid, name=f"网格{g + 1}", level="grid", parent_code=community)
        )
        for m in range(1, MICRO_PER_GRID + 1):
            micro = f"{grid}{m:03d}"
            micros.append(micro)
            nodes.append(
                JurisdictionNode(
                    code=micro, name=f"微网格{g + 1}-{m}", level="micro_grid", parent_code=grid
                )
            )
    return nodes, towns, grids, micros


def build_csv(micros: list[str], rng: random.Random) -> bytes:
    """All devices as an English-header import sheet."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "id",
            "name",
            "kind",
            "project",
            "jurisdiction",
            "longitude",
            "latitude",
            "address",
            "vendor",
            "rtsp_urls",
            "username",
            "password",
            "tags",
        ]
    )
    streets = ["新华大街", "中山路", "锡林南路", "海拉尔东路", "呼伦南路", "大学西街"]
    for n in range(DEVICES):
        roll = n % 100
        kind, type_code = ("camera", 132)
        if roll >= 90:
            kind, type_code = ("alarm_point", 134)
        if roll >= 96:
            kind, type_code = ("broadcast_unit", 137)
        if roll >= 99:
            kind, type_code = ("nvr", 118)
        device_id = f"15010200{0:02d}{type_code}0{n + 1:06d}"
        street = streets[n % len(streets)]
        login = ("admin", f"Pw{rng.randrange(10**8):08d}") if n % 5 == 0 else ("", "")
        writer.writerow(
            [
                device_id,
                f"{street}{n % 997}号{kind[:3]}{n}",
                kind,
                ["sharp_eyes", "cloud_eye", "school_alarm", "broadcast"][n % 4],
                micros[n % len(micros)],
                f"{111.6 + rng.random() * 0.2:.6f}",
                f"{40.75 + rng.random() * 0.15:.6f}",
                f"{street}{n % 997}号",
                "海康威视" if n % 2 else "大华",
                f"rtsp://10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}/Streaming/Channels/101"
                if kind == "camera"
                else "",
                login[0],
                login[1],
                "路口" if n % 7 == 0 else "",
            ]
        )
    return out.getvalue().encode("utf-8")


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile (nearest rank), in the values' unit."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def run() -> dict[str, Any]:
    """Load, measure, and return the figures."""
    rng = random.Random(20261120)
    nodes, towns, grids, micros = build_tree()
    data = build_csv(micros, rng)
    figures: dict[str, Any] = {
        "devices": DEVICES,
        "jurisdiction_nodes": len(nodes),
        "towns": len(towns),
        "grids": len(grids),
        "micro_grids": len(micros),
        "csv_bytes": len(data),
        "http": "uvicorn on 127.0.0.1 (real socket), API key per request",
    }
    with scratch_database() as dsn, tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        settings = load_settings(
            None,
            data_dir=Path(tmp),
            storage={"url": dsn, "pool_size": 8},
            http={"port": port},
        )
        load = machine_load()
        async with Hub(settings) as hub:
            actor = Actor("system:bench-registry")
            await hub.registry.upsert_jurisdictions(nodes, actor=actor)
            started = time.perf_counter()
            outcome = await hub.registry.import_file(data, actor=actor, scope=None)
            elapsed = time.perf_counter() - started
            assert outcome.written and not outcome.errors, outcome.errors[:5]
            figures["import_seconds"] = round(elapsed, 2)
            figures["import_rows_per_s"] = round(DEVICES / elapsed)
            async with hub.store.transaction() as tx:
                await tx.execute("ANALYZE devices")
                await tx.execute("ANALYZE device_state")

            started = time.perf_counter()
            again = await hub.registry.import_file(data, actor=actor, scope=None)
            figures["reimport_unchanged"] = again.counts.unchanged
            figures["reimport_seconds"] = round(time.perf_counter() - started, 2)

            key = await hub.auth.create_api_key(
                "bench registry", "operator", ["/150102/"], actor="system:bench"
            )
            freeze_startup_heap()  # as `gridwatch serve` does once the hub is up
            server = uvicorn.Server(
                uvicorn.Config(
                    hub.app(),
                    host="127.0.0.1",
                    port=port,
                    log_level="warning",
                    access_log=False,
                    lifespan="off",
                )
            )
            serving = asyncio.create_task(server.serve())
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
                await asyncio.sleep(0.05)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {key.token}"},
            ) as client:
                page_ms: list[float] = []
                by_shape: dict[str, list[float]] = {"town": [], "grid": [], "text": []}
                for i in range(PAGE_REQUESTS):
                    shape = i % 3
                    if shape == 0:
                        params: dict[str, Any] = {
                            "jurisdiction": rng.choice(towns),
                            "kind": "camera",
                            "sort": "name",
                        }
                    elif shape == 1:
                        params = {"jurisdiction": rng.choice(grids), "sort": "updated_at"}
                    else:
                        params = {"q": f"{rng.randrange(997)}号", "kind": "camera"}
                    params["limit"] = 100
                    t0 = time.perf_counter()
                    r = await client.get("/api/devices", params=params)
                    page_ms.append((time.perf_counter() - t0) * 1000)
                    by_shape[("town", "grid", "text")[shape]].append(page_ms[-1])
                    assert r.status_code == 200, r.text
                    body = r.json()
                    assert len(body["items"]) > 0
                    if body["next_cursor"]:
                        t0 = time.perf_counter()
                        r = await client.get(
                            "/api/devices", params={**params, "cursor": body["next_cursor"]}
                        )
                        page_ms.append((time.perf_counter() - t0) * 1000)
                        assert r.status_code == 200
                count_ms: list[float] = []
                for i in range(COUNT_REQUESTS):
                    code = "150102" if i % 8 == 0 else rng.choice(towns)
                    t0 = time.perf_counter()
                    r = await client.get(f"/api/jurisdictions/{code}/counts")
                    count_ms.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200 and r.json()["total"] > 0
            server.should_exit = True
            await serving
    figures["page_requests"] = len(page_ms)
    figures["page_ms_p50"] = round(statistics.median(page_ms), 2)
    figures["page_ms_p99"] = round(percentile(page_ms, 99), 2)
    for label, values in by_shape.items():
        figures[f"first_page_{label}_ms_p50"] = round(statistics.median(values), 2)
        figures[f"first_page_{label}_ms_p99"] = round(percentile(values, 99), 2)
    figures["subtree_count_ms_p50"] = round(statistics.median(count_ms), 2)
    figures["subtree_count_ms_p99"] = round(percentile(count_ms, 99), 2)
    figures["load_at_start"] = load
    figures["load_at_end"] = machine_load()
    figures["background_services"] = "as configured by default (patrol, ONVIF channels on)"
    figures["rss_peak_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    figures["goal_page_p99_ms"] = 50
    figures["goal_rss_mib"] = 1024
    return figures | verdict(figures)


def verdict(figures: dict[str, Any]) -> dict[str, Any]:
    """Whether the goals are met, and by how much and why not when they are missed."""
    p99, goal = figures["page_ms_p99"], figures["goal_page_p99_ms"]
    out: dict[str, Any] = {
        "page_goal_met": p99 <= goal,
        "rss_goal_met": figures["rss_peak_mib"] <= figures["goal_rss_mib"],
    }
    if p99 > goal:
        start, end = figures["load_at_start"]["load1"], figures["load_at_end"]["load1"]
        out["page_p99_missed_by_ms"] = round(p99 - goal, 2)
        out["why_the_goal_is_missed"] = (
            f"p99 {p99} ms against {goal} ms while the median page took "
            f"{figures['page_ms_p50']} ms: the tail, not the query plan, misses. The "
            f"machine's 1-minute load was {start} at the start and {end} at the end on "
            f"{os.cpu_count()} cores, and the hub's background services (the patrol "
            "probing unreachable cameras, ONVIF channels) share its event loop with the "
            "requests, so a request waits for a core and for its turn on the loop."
        )
    return out


def main() -> None:
    """Run the benchmark and write benchmarks/results/registry.json."""
    logging.basicConfig(level=logging.WARNING)
    figures = asyncio.run(run())
    path = write_result("registry", figures)
    for key, value in figures.items():
        logging.getLogger("benchmarks.registry").warning("%s: %s", key, value)
    logging.getLogger("benchmarks.registry").warning("wrote %s", path)


if __name__ == "__main__":
    main()
