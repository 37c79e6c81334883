"""Run every benchmark and write `benchmarks/results/SUMMARY.md`.

Each benchmark runs as its own process (`python -m benchmarks.<name>`), in the
order below, and writes `benchmarks/results/<name>.json`. A benchmark whose peers
are missing here (`REQUIREMENTS`: PostgreSQL, Mosquitto, the RTSP server, the
test-support package) is not started: the summary lists it with the reason, and
its older figures, if any, are marked stale with their date. A benchmark that
fails is reported as failed; the others still run. The
summary puts each GridWatch figure next to the raw limit measured in the same run
and the performance goal it is held to.

Usage: python -m benchmarks.run_all [--quick] [--only NAME ...] [--summary-only]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from benchmarks.common import PG_ADMIN, RESULTS

__all__ = ["BENCHMARKS", "main", "summary"]

Row = tuple[str, str, str, str]  # figure, GridWatch, raw limit, goal

#: name → (arguments, quick arguments).
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "ingest": (
        [],
        ["--sizes", "100000", "--rounds", "3", "--round-events", "20000", "--timescale-rows", "0"],
    ),
    "mqtt_ingest": ([], ["--messages", "5000", "--seconds", "3"]),
    "alarm_latency": (["--postgres"], ["--presses", "100", "--consoles", "1"]),
    "registry": ([], []),
    "patrol": ([], ["--cameras", "32", "--skip-process-pool"]),
    "onvif_channels": ([], ["--channels", "100", "1000", "--window", "20"]),
    "prebuffer": ([], ["--cameras", "20", "--alarms", "5", "--rounds", "2", "--window", "10"]),
    "cluster": ([], ["--paced", "600", "--burst", "1000"]),
    "cluster_console": ([], ["--samples", "500", "--rate", "20"]),
    "gb28181": (
        [],
        ["--devices", "20", "--channels", "600", "--steady", "20", "--alarms", "200"],
    ),
    # Last: it puts together the per-unit costs the others measured.
    "scaling": ([], []),
}


def _postgresql() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at 127.0.0.1:5432 is not reachable ({type(exc).__name__})"


def _mosquitto() -> str | None:
    return None if shutil.which("mosquitto") else "the mosquitto broker is not installed"


def _test_support() -> str | None:
    # The benchmarks start their peers with the test suite's helpers (tests/peers).
    if importlib.util.find_spec("tests.peers") is None:
        return "the test-support package (tests/peers) is not here: run from a source checkout"
    return None


def _rtsp_server() -> str | None:
    missing = _test_support()
    if missing is not None:
        return missing
    from tests.peers.rtsp import gstreamer_available

    return gstreamer_available()


def _gstreamer() -> str | None:
    # The simulated GB/T 28181 device streams through gst-launch-1.0.
    return None if shutil.which("gst-launch-1.0") else "gst-launch-1.0 is not installed"


def _pyav() -> str | None:
    return None if importlib.util.find_spec("av") else "PyAV is not installed"


#: What each benchmark needs beyond the hub itself; each check says why it is missing.
REQUIREMENTS: dict[str, tuple[Callable[[], str | None], ...]] = {
    "ingest": (_postgresql,),
    "mqtt_ingest": (_test_support, _mosquitto, _postgresql),
    "alarm_latency": (_mosquitto, _postgresql),
    "registry": (_postgresql,),
    "patrol": (_pyav, _rtsp_server),
    "onvif_channels": (),
    "cluster": (_test_support, _postgresql),
    "cluster_console": (_test_support, _postgresql),
    "scaling": (),
    "gb28181": (_gstreamer,),
}


def cannot_run(name: str) -> str | None:
    """Why benchmark `name` cannot run on this machine, or None when it can."""
    for check in REQUIREMENTS.get(name, ()):
        reason = check()
        if reason is not None:
            return reason
    return None


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        value = f"{value:,.2f}".rstrip("0").rstrip(".")
    elif isinstance(value, int):
        value = f"{value:,}"
    return f"{value}{unit}"


def _ingest(data: dict[str, Any]) -> list[Row]:
    f = data.get("figures", {})
    goal = str(f.get("goal", ""))
    variants = [(f"postgresql, {size}", r) for size, r in (f.get("postgresql") or {}).items()]
    if isinstance(f.get("timescaledb_pglite"), dict) and "rounds" in f["timescaledb_pglite"]:
        pglite = f["timescaledb_pglite"]
        variants.append((f"TimescaleDB on PGlite, {_fmt(pglite.get('grown_rows'))} rows", pglite))
    rows = []
    for label, r in variants:
        writer = r.get("writer_events_per_s") or []
        bare = r.get("bare_copy_rows_per_s") or []
        claim = r.get("bare_copy_and_key_claim_rows_per_s") or []
        state = r.get("bare_copy_key_claim_and_device_state_rows_per_s") or []
        rows.append(
            (
                f"writer events/s ({label}, registered devices, dedup keys; median of rounds)",
                f"{_fmt(_median(writer))} ({_fmt(r.get('median_ratio_to_bare_copy'))} of COPY, "
                f"{_fmt(r.get('median_ratio_to_bare_copy_and_key_claim'))} of COPY + key claim)",
                f"{_fmt(_median(bare))} (bare COPY); {_fmt(_median(claim))} (bare COPY + claim)"
                + (f"; {_fmt(_median(state))} (+ device state)" if state else ""),
                goal,
            )
        )
    return rows


def _median(values: list[float]) -> int | None:
    return round(statistics.median(values)) if values else None


def _mqtt_ingest(data: dict[str, Any]) -> list[Row]:
    f = data.get("figures", {})
    goal = str(f.get("goal", ""))
    bare_p99 = _get(f, "bare_paho", "latency_1k", "latency_ms", "p99")
    rows = []
    for variant in ("hub_sqlite", "hub_postgresql"):
        backend = variant.removeprefix("hub_")
        for run, label, ratio in (
            ("throughput", "presses", "ratio_to_bare"),
            ("mixed_throughput", "presses + heartbeats", "mixed_ratio_to_bare"),
        ):
            if _get(f, variant, run) is None:
                continue
            # Older result files hold the ratio of median rates under the same name.
            paired = _get(f, variant, f"{ratio.removesuffix('ratio_to_bare')}ratio_of_median_rates")
            how = "median of per-round ratios" if paired is not None else "ratio of median rates"
            rows.append(
                (
                    f"MQTT {label}/s ({backend})",
                    f"{_fmt(_get(f, variant, run, 'msg_per_s'))} "
                    f"({_fmt(_get(f, variant, ratio))} of bare, {how})",
                    f"{_fmt(_get(f, 'bare_paho', run, 'msg_per_s'))} (bare paho)",
                    goal,
                )
            )
        rows.append(
            (
                f"publish → committed p99 at 1k msg/s ({backend})",
                _fmt(_get(f, variant, "latency_1k", "latency_ms", "p99"), " ms"),
                f"{_fmt(bare_p99, ' ms')} (bare paho ack)",
                goal,
            )
        )
    return rows


def _alarm_latency(data: dict[str, Any]) -> list[Row]:
    rows = []
    for variant, result in data.get("figures", {}).items():
        ws = result.get("publish_to_console_websocket", {})
        raw = result.get("raw_broker_round_trip", {})
        load = _fmt(result.get("background_msg_per_s_sent"), " msg/s")
        rows.append(
            (
                f"press → console WebSocket p50/p99/max ({variant}, {load} background, "
                f"{_fmt(ws.get('samples'))} samples)",
                f"{_fmt(ws.get('p50_ms'))}/{_fmt(ws.get('p99_ms'))}/{_fmt(ws.get('max_ms'))} ms"
                f", lost {result.get('lost')}",
                f"{_fmt(raw.get('p50_ms'))}/{_fmt(raw.get('p99_ms'))}/{_fmt(raw.get('max_ms'))} ms"
                " (broker round trip, same run and load)",
                str(result.get("goal", "")),
            )
        )
    return rows


def _registry(data: dict[str, Any]) -> list[Row]:
    f = data.get("figures", {})
    return [
        (
            f"device list page p99 at {_fmt(f.get('devices'))} devices",
            _fmt(f.get("page_ms_p99"), " ms"),
            "–",
            f"≤ {_fmt(f.get('goal_page_p99_ms'))} ms",
        ),
        (
            "registry import rows/s",
            _fmt(f.get("import_rows_per_s")),
            "–",
            "–",
        ),
        (
            "peak RSS during the run",
            _fmt(f.get("rss_peak_mib"), " MiB"),
            "–",
            f"≤ {_fmt(f.get('goal_rss_mib'))} MiB",
        ),
    ]


def _patrol(data: dict[str, Any]) -> list[Row]:
    needed = data.get("cameras_per_s_needed_for_10000_in_10_min")
    rows: list[Row] = []
    for resolution, r in (data.get("resolutions") or {}).items():
        hub = r.get("scheduler") or (r.get("patrol") or [{}])[0]
        bare = r.get("bare_pyav_probe") or {}
        nodes = _get(r, "district", "10000_cameras", "nodes_of_2_cores_at_70_percent")
        nodes_text = f"{_fmt(nodes)} nodes"
        if r.get("incomplete"):
            nodes_text = f"≥ {_fmt(nodes)} nodes; {r['incomplete'].split(' (')[0]}"
        rows.append(
            (
                f"patrol cameras/s at {resolution} (hub PatrolService; CPU ms per probe; "
                f"2-core nodes for 10,000 cameras)",
                f"{_fmt(hub.get('cameras_per_s'))} ({_fmt(_ms(hub.get('cpu_s_per_probe')))} ms; "
                f"{nodes_text})",
                f"{_fmt(bare.get('cameras_per_s'))} ({_fmt(_ms(bare.get('cpu_s_per_probe')))} "
                f"ms) (bare PyAV probe, same shape, {_fmt(bare.get('at_a_time'))} at a time)",
                f"≥ {_fmt(needed)} (10,000 cameras in 10 min)",
            )
        )
    if not rows:  # a result file from before the per-resolution runs
        limit = _get(data, "decode_limit", "decode_bound_cameras_per_s_all_cores")
        rows.append(
            (
                "patrol cameras/s (hub PatrolService)",
                _fmt(_get(data, "scheduler", "cameras_per_s")),
                f"{_fmt(limit)} (decode bound, all cores)",
                f"≥ {_fmt(needed)} (10,000 cameras in 10 min)",
            )
        )
    rows.append(
        (
            "VQD ms per frame (8 frames at 320 px)",
            _fmt(_get(data, "vqd_ms_per_frame", "diagnose_8_frames_at_320px_per_frame"), " ms"),
            _fmt(_get(data, "bare_opencv_ms", "laplacian_16s_meanStdDev"), " ms (bare Laplacian)"),
            "–",
        )
    )
    return rows


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _onvif_channels(data: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for item in _get(data, "figures", "comparison") or []:
        rows.append(
            (
                f"ONVIF channels: CPU ms per pull at {item['channels']:,} channels",
                f"{_fmt(item.get('hub_cpu_per_pull_ms'), ' ms')} "
                f"({_fmt(item.get('hub_rss_mib'), ' MiB')})",
                f"{_fmt(item.get('bare_cpu_per_pull_ms'), ' ms')} (bare aiohttp long-poll)",
                "≤ 2× bare; 6,314 channels ≤ 1 core, ≤ 600 MiB",
            )
        )
    return rows


def _prebuffer(data: dict[str, Any]) -> list[Row]:
    f = data.get("figures", {})
    cameras = f.get("cameras")
    buffering = _get(f, "hub", "buffering") or {}
    windows = buffering.get("paired_windows") or [{}]
    bare = statistics.mean(w.get("bare_pulls_cores", 0.0) for w in windows)
    latency = _get(f, "hub", "alarms", "press_to_complete_s") or {}
    goal_s = _get(f, "targets", "press_to_complete_max_s")
    ten = (_get(f, "hub", "alarms", "rounds") or [{}])[0]
    verdict = str(_get(f, "verdict", "buffering_cpu") or "")
    over = _fmt(buffering.get("buffering_over_bare_cores_mean"), " cores")
    return [
        (
            f"pre-alarm buffering of {_fmt(cameras)} cameras: CPU over a bare demux",
            verdict if verdict.startswith("not measured") else over,
            f"{_fmt(round(bare, 3), ' cores')} (bare PyAV demux, same windows)",
            "≤ 0.2 core",
        ),
        (
            "pre-alarm ring per camera (35 s of pictures, at "
            f"{_fmt(_get(f, 'hub', 'memory', 'bitrate_mbit_per_s_mean'), ' Mbit/s')} arrived)",
            _fmt(_get(f, "hub", "memory", "ring_mib_per_camera_max"), " MiB"),
            f"RSS +{_fmt(_get(f, 'hub', 'memory', 'rss_growth_mib_per_camera'), ' MiB')}",
            "≤ 12 MiB",
        ),
        *(
            (
                f"press → clip complete, {what}, p50 / p99 / max (n = {_fmt(figure.get('n'))})",
                f"{_fmt(figure.get('p50'))} / {_fmt(figure.get('p99'))} / "
                f"{_fmt(figure.get('max'), ' s')}",
                f"post-roll {_fmt(_get(f, 'hub', 'alarms', 'postroll_s'), ' s')}",
                f"≤ {_fmt(goal_s, ' s')}",
            )
            for what, figure in (
                ("ten alarms at once", _get(f, "hub", "alarms", "press_to_complete_s_ten_at_once")),
                (
                    "every school at once (35 alarms)",
                    _get(f, "hub", "alarms", "press_to_complete_s_all_schools_at_once"),
                ),
                ("all rounds", latency),
            )
            if figure
        ),
        (
            "simultaneous alarms with complete clips",
            f"{_fmt(ten.get('clips_complete'))} of {_fmt(ten.get('clips'))} clips "
            f"({_fmt(ten.get('alarms_opened'))} alarms)",
            "–",
            "≥ 10 alarms",
        ),
    ]


def _gb28181(data: dict[str, Any]) -> list[Row]:
    f = data.get("figures", {})
    hub, bare = f.get("hub", {}), f.get("bare_udp_responder", {})
    goals = f.get("goals", {})
    invite = hub.get("invite_to_first_frame", {})
    devices = _get(f, "load", "devices")
    return [
        (
            f"GB/T 28181: {_fmt(hub.get('registered'))} of {_fmt(devices)} devices registered "
            f"({_fmt(_get(f, 'load', 'channels'))} channels)",
            _fmt(hub.get("register_all_s"), " s"),
            _fmt(bare.get("register_all_s"), " s (bare UDP responder)"),
            f"≤ {_fmt(goals.get('register_s'))} s",
        ),
        (
            "GB/T 28181: steady CPU / RSS growth at 60 s keepalives",
            f"{_fmt(hub.get('steady_cpu_cores'))} cores / {_fmt(hub.get('rss_growth_mib'))} MiB",
            f"{_fmt(bare.get('steady_cpu_cores'))} cores (bare UDP responder)",
            f"≤ {_fmt(goals.get('cpu_cores'))} cores, ≤ {_fmt(goals.get('rss_growth_mib'))} MiB",
        ),
        (
            "GB/T 28181: alarm MESSAGE → 200 after commit p99 "
            f"({_fmt(_get(hub, 'alarm_ack', 'samples'))} samples)",
            _fmt(_get(hub, "alarm_ack", "p99_ms"), " ms"),
            _fmt(_get(bare, "alarm_ack", "p99_ms"), " ms (bare UDP responder)"),
            f"≤ {_fmt(goals.get('alarm_p99_ms'))} ms",
        ),
        (
            "GB/T 28181: INVITE → first decoded picture p50/max "
            f"({_fmt(_get(invite, 'frame', 'samples'))} rounds)",
            f"{_fmt(_get(invite, 'frame', 'p50_ms'))}/{_fmt(_get(invite, 'frame', 'max_ms'))} ms",
            f"{_fmt(_get(invite, 'bare_first_frame', 'p50_ms'))}/"
            f"{_fmt(_get(invite, 'bare_first_frame', 'max_ms'))} ms (GStreamer's pipe decoded, "
            "paired rounds)",
            f"≤ {_fmt(goals.get('invite_to_first_frame_ms'))} ms",
        ),
    ]


def _scaling(data: dict[str, Any]) -> list[Row]:
    f = data.get("figures", {})
    node = _get(f, "assumptions", "node_cores")
    rows: list[Row] = []
    for item in f.get("plans") or []:
        bound = " (lower bound)" if item.get("nodes_is_a_lower_bound") else ""
        rows.append(
            (
                f"nodes of {node} cores for {item['cameras']:,} cameras{bound}",
                f"{item['nodes']} ({_fmt(item.get('cores_total'))} cores); "
                f"{_fmt(item.get('nodes_if_every_camera_has_a_sub_stream'))} with sub-streams",
                "– (per-unit costs from the other result files, dated inside)",
                "–",
            )
        )
    return rows


def _cluster(data: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for item in _get(data, "figures", "by_nodes") or []:
        rows.append(
            (
                f"alarm ingest, {item['nodes']} hub node(s) on one PostgreSQL (median of "
                f"{item['rounds']}): burst presses/s; paced p99; CPU per press",
                f"{_fmt(item.get('burst_presses_per_s'))}/s "
                f"({_fmt(item.get('burst_vs_one_node'))}× one node; "
                f"{_fmt(item.get('burst_by_button_vs_one_node'))}× by button); "
                f"p99 {_fmt(item.get('paced_p99_ms'), ' ms')}; "
                f"{_fmt(item.get('cpu_ms_per_press'), ' ms')} "
                f"({_fmt(item.get('cpu_per_press_vs_one_node'))}× one node)",
                "every press once, one alarm per button: "
                + ("correct" if item.get("all_correct") else "WRONG"),
                "correct; no speed-up expected on 2 cores",
            )
        )
    city = _get(data, "figures", "city") or {}
    if "nodes_needed_with_one_lost" in city:
        rows.append(
            (
                f"nodes for {city['devices']:,} devices (one node lost)",
                f"{city['nodes_needed_with_one_lost']} two-core nodes "
                f"({city['nodes_needed_with_one_lost_patrol_every_1800s']} with a 30-min patrol)",
                "model from per-device costs of onvif_channels, gb28181, patrol, registry",
                f"≤ {_get(city, 'node_budget', 'cores')} cores per node",
            )
        )
    return rows


def _cluster_console(data: dict[str, Any]) -> list[Row]:
    figures = data.get("figures") or {}
    seen = figures.get("commit_on_b_to_console_on_a") or {}
    bare = figures.get("bare_notify_round_trip") or {}
    if not seen:
        return []
    missed = figures.get("missed_by_ms")
    return [
        (
            f"commit on node B → console WebSocket on node A p50/p99/max "
            f"({figures.get('samples')} samples at {figures.get('rate_per_s')}/s)",
            f"{seen.get('p50_ms')}/{seen.get('p99_ms')}/{seen.get('max_ms')} ms, "
            f"lost {figures.get('lost')}" + (f" (p99 missed by {missed} ms)" if missed else ""),
            f"{bare.get('p50_ms')}/{bare.get('p99_ms')}/{bare.get('max_ms')} ms "
            "(bare NOTIFY round trip, same run)",
            "p99 ≤ 100 ms, nothing lost or twice",
        )
    ]


SUMMARIES: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "ingest": _ingest,
    "mqtt_ingest": _mqtt_ingest,
    "alarm_latency": _alarm_latency,
    "registry": _registry,
    "patrol": _patrol,
    "onvif_channels": _onvif_channels,
    "prebuffer": _prebuffer,
    "cluster": _cluster,
    "cluster_console": _cluster_console,
    "gb28181": _gb28181,
    "scaling": _scaling,
}


_CANNOT = "cannot run here: "


def _when(measured: str, outcome: str | None) -> str:
    """The measured column: the date, and whether this run measured it."""
    if outcome == "ok":
        return f"{measured} (this run)"
    if outcome is None:
        return f"{measured} (stale: not rerun when this summary was written)"
    return f"{measured} (stale: this run {outcome})"


def summary(outcomes: dict[str, str] | None = None) -> str:
    """The Markdown summary of every result file (and this run's outcomes)."""
    outcomes = outcomes or {}
    lines = [
        "# Benchmark summary",
        "",
        f"Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m benchmarks.run_all`. "
        "Each GridWatch figure stands next to the raw limit measured in the same run; "
        "a row this run did not measure says so beside its date.",
        "",
    ]
    cannot = {
        name: o.removeprefix(_CANNOT) for name, o in outcomes.items() if o.startswith(_CANNOT)
    }
    if cannot:
        lines += ["Cannot run on this machine:", ""]
        lines += [f"- `{name}`: {reason}" for name, reason in cannot.items()]
        lines.append("")
    lines += [
        "| benchmark | figure | GridWatch | raw limit | goal | measured |",
        "|---|---|---|---|---|---|",
    ]
    for name, extract in SUMMARIES.items():
        path = RESULTS / f"{name}.json"
        outcome = outcomes.get(name)
        if not path.exists():
            lines.append(f"| {name} | – | unmeasured | – | – | {outcome or 'no result'} |")
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        measured = _when(str(data.get("measured_at", "?"))[:16].replace("T", " "), outcome)
        for figure, ours, raw, goal in extract(data):
            lines.append(f"| {name} | {figure} | {ours} | {raw} | {goal} | {measured} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, then write SUMMARY.md; exit 1 when any failed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (minutes, not tens)")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), default=None)
    parser.add_argument(
        "--summary-only", action="store_true", help="rewrite SUMMARY.md from the result files"
    )
    args = parser.parse_args(argv)
    outcomes: dict[str, str] = {}
    if not args.summary_only:
        for name, (full, quick) in BENCHMARKS.items():
            if args.only and name not in args.only:
                continue
            reason = cannot_run(name)
            if reason is not None:
                outcomes[name] = _CANNOT + reason
                sys.stderr.write(f"== {name}: {outcomes[name]}\n")
                continue
            command = [sys.executable, "-m", f"benchmarks.{name}", *(quick if args.quick else full)]
            sys.stderr.write(f"== {' '.join(command[1:])}\n")
            started = time.monotonic()
            completed = subprocess.run(command, check=False)
            took = time.monotonic() - started
            outcomes[name] = (
                "ok" if completed.returncode == 0 else f"failed ({completed.returncode})"
            )
            sys.stderr.write(f"== {name}: {outcomes[name]} in {took:.0f} s\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = summary(outcomes)
    (RESULTS / "SUMMARY.md").write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    failed = [v for v in outcomes.values() if v != "ok" and not v.startswith(_CANNOT)]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
