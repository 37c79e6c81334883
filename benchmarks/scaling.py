"""Scaling: how many hub nodes the district needs, from the per-unit costs measured.

Puts together what the other benchmarks measured per unit of work — CPU per ONVIF
event pull, per patrol probe, per stored event, per MQTT message — with the
district's work per second (6,314 cameras today, 10,000 planned; 78 panic
buttons and 18 broadcast units over MQTT), and says how many cores, and so how
many nodes of `--node-cores` cores each at `--usable` of their capacity, that
takes. Every input names the result file and the date it was measured; a cost
nobody measured is reported as missing, never guessed: the node count is then a
lower bound and says so. Cameras are patrolled on the largest resolution the
patrol benchmark measured (a camera without a sub-stream); the count for a
district whose cameras all have sub-streams is beside it.

Assumptions that are not measurements are arguments with defaults and are written
into the result: ONVIF events per camera per minute (motion and tamper), the
patrol cycle (every camera probed once in 10 minutes), heartbeat interval 20 s.
Usage: python -m benchmarks.scaling [--cameras 6314 10000] [--node-cores 2]
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from benchmarks.common import RESULTS, machine_load, write_result

MQTT_DEVICES = 78 + 18


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _measured(data: dict[str, Any] | None) -> str:
    return str(data.get("measured_at", "?")) if data else "not measured"


def unit_costs() -> dict[str, Any]:
    """CPU seconds per unit of work, each with its source and date (None when missing)."""
    costs: dict[str, Any] = {}
    onvif = _load("onvif_channels")
    rows = (onvif or {}).get("figures", {}).get("comparison") or []
    largest = max(rows, key=lambda r: r["channels"], default=None)
    costs["onvif_pull"] = {
        "cpu_s": largest["hub_cpu_per_pull_ms"] / 1000 if largest else None,
        "pulls_per_camera_per_s": (
            largest["rhythm_pulls_per_s"] / largest["channels"] if largest else None
        ),
        "source": f"onvif_channels.json at {largest['channels']:,} channels" if largest else "",
        "measured_at": _measured(onvif),
    }
    patrol = _load("patrol")
    resolutions = (patrol or {}).get("resolutions") or {}
    # Where the hub's probes did not all complete, the bare probe's cost stands in
    # (the least a complete probe costs), and the count becomes a lower bound.
    by_resolution = {
        resolution: (r.get("scheduler") or {}).get("cpu_s_per_probe")
        if r.get("hub_over_bare_cpu_per_probe") is not None
        else (r.get("bare_pyav_probe") or {}).get("cpu_s_per_probe")
        for resolution, r in resolutions.items()
    }
    from_bare = [res for res, r in resolutions.items() if r.get("incomplete")]
    by_pixels = sorted(by_resolution, key=lambda r: math.prod(int(v) for v in r.split("x")))
    costs["patrol_probe"] = {
        # Cameras without a sub-stream are patrolled on their main stream: the largest.
        "cpu_s": by_resolution[by_pixels[-1]] if by_pixels else None,
        "resolution": by_pixels[-1] if by_pixels else None,
        "cpu_s_by_resolution": by_resolution,
        "bare_probe_cost_stands_in_at": from_bare,
        "source": "patrol.json, hub PatrolService, patrol process CPU only",
        "measured_at": _measured(patrol),
    }
    costs["patrol_probe_sub_stream"] = {
        "cpu_s": by_resolution[by_pixels[0]] if by_pixels else None,
        "resolution": by_pixels[0] if by_pixels else None,
        "source": "patrol.json, the smallest resolution measured (a sub-stream's size)",
        "measured_at": _measured(patrol),
    }
    ingest = _load("ingest")
    at_10m = ((ingest or {}).get("figures", {}).get("postgresql") or {}).get("10,000,000 rows")
    writer_rates = (at_10m or {}).get("writer_events_per_s") or []
    costs["stored_event"] = {
        # Wall time per event with PostgreSQL on the same cores: an upper bound of CPU.
        "cpu_s": 1 / sorted(writer_rates)[len(writer_rates) // 2] if writer_rates else None,
        "source": "ingest.json, writer at 10M rows (median round; hub + PostgreSQL, wall time)",
        "measured_at": _measured(ingest),
    }
    mqtt = _load("mqtt_ingest")
    rate = ((mqtt or {}).get("figures", {}).get("hub_postgresql") or {}).get("throughput") or {}
    costs["mqtt_message"] = {
        "cpu_s": 1 / rate["msg_per_s"] if rate.get("msg_per_s") else None,
        "source": "mqtt_ingest.json, presses/s through the hub on PostgreSQL (wall time)",
        "measured_at": _measured(mqtt),
    }
    return costs


def plan(cameras: int, costs: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Cores per kind of work for `cameras` cameras, and the nodes they need."""
    work = {
        "onvif_pull": cameras * (costs["onvif_pull"]["pulls_per_camera_per_s"] or 0.0),
        "patrol_probe": cameras / args.patrol_cycle_s,
        "stored_event": cameras * args.events_per_camera_per_min / 60
        + MQTT_DEVICES / args.heartbeat_s,
        "mqtt_message": MQTT_DEVICES / args.heartbeat_s,
    }
    cores: dict[str, float | None] = {}
    missing = []
    if costs["patrol_probe"].get("bare_probe_cost_stands_in_at"):
        missing.append("patrol_probe (the hub's probes at that resolution did not complete)")
    for name, per_s in work.items():
        cpu = costs[name]["cpu_s"]
        cores[name] = round(per_s * cpu, 3) if cpu is not None else None
        if cpu is None and name not in missing:
            missing.append(name)
    total = sum(c for c in cores.values() if c is not None)
    nodes = max(1, math.ceil(total / (args.node_cores * args.usable)))
    sub_cpu = costs["patrol_probe_sub_stream"]["cpu_s"]
    with_sub = total - (cores["patrol_probe"] or 0.0) + work["patrol_probe"] * (sub_cpu or 0.0)
    return {
        "cameras": cameras,
        "work_per_s": {k: round(v, 2) for k, v in work.items()},
        "cores": cores,
        "cores_total": round(total, 3),
        "nodes": nodes,
        "patrolled_on": costs["patrol_probe"]["resolution"],
        "nodes_if_every_camera_has_a_sub_stream": max(
            1, math.ceil(with_sub / (args.node_cores * args.usable))
        ),
        "sub_stream_resolution": costs["patrol_probe_sub_stream"]["resolution"],
        "nodes_is_a_lower_bound": bool(missing),
        **({"missing": f"no measurement of: {', '.join(missing)}"} if missing else {}),
    }


def main() -> None:
    """Write benchmarks/results/scaling.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cameras", type=int, nargs="+", default=[6_314, 10_000])
    parser.add_argument("--node-cores", type=int, default=2)
    parser.add_argument("--usable", type=float, default=0.7, help="share of a node's cores")
    parser.add_argument("--events-per-camera-per-min", type=float, default=1.0)
    parser.add_argument("--patrol-cycle-s", type=float, default=600.0)
    parser.add_argument("--heartbeat-s", type=float, default=20.0)
    args = parser.parse_args()
    load = machine_load()
    costs = unit_costs()
    figures: dict[str, Any] = {
        "assumptions": {
            "node_cores": args.node_cores,
            "usable_share_of_cores": args.usable,
            "onvif_events_per_camera_per_min": args.events_per_camera_per_min,
            "patrol_cycle_s": args.patrol_cycle_s,
            "mqtt_devices": MQTT_DEVICES,
            "heartbeat_s": args.heartbeat_s,
        },
        "unit_costs": costs,
        "plans": [plan(n, costs, args) for n in args.cameras],
    }
    for item in figures["plans"]:
        print(f"{item['cameras']:,} cameras: {item['cores_total']} cores → {item['nodes']} node(s)")
    print(f"wrote {write_result('scaling', figures, load_at_start=load)}")


if __name__ == "__main__":
    main()
