"""Does one hub hold the whole district? `gridwatch demo --full` against the default demo.

Starts `gridwatch demo` twice as a user would, in separate processes on this machine:
the default demo (300 cameras, the bare baseline of the same run) and `--full` (the
real 九原区: 6,314 cameras, 78 panic buttons, 18 broadcast units, 624 grids, 1,758
micro-grids), both with the demo's Mosquitto when installed and the scenario off. For
each it records

- start: seconds from launching the command until the console URL is printed (the
  HTTP server accepts requests), and the demo's own breakdown (district built, hub
  started, district loaded into the registry);
- memory: resident set size (VmRSS) and peak (VmHWM) of the hub process when serving
  and after the latency run (the broker is a separate process, not counted);
- console API latency: ``GET /api/devices?limit=100`` as the district operator, 500
  sequential requests, p50/p99/max — what a duty officer's device list costs with
  the whole district loaded;
- the machine's load average before and after.

Writes benchmarks/results/demo_full.json. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "demo_full.json"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.peers import free_port  # noqa: E402 - after the path set-up above

_SAMPLES = 500


def _memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of `pid` in KiB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class _Lines:
    """The demo's stdout lines, read on a thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line)

    def find(self, text: str) -> str | None:
        return next((line for line in list(self.lines) if text in line), None)


def run_demo(full: bool, timeout_s: float) -> dict[str, Any]:
    """Start one demo, measure it, stop it; the figures."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="gridwatch-demo-bench-") as data_dir:
        command = [sys.executable, "-m", "hub.cli", "demo", "--data-dir", data_dir]
        command += ["--port", str(port), "--quiet-district"] + (["--full"] if full else [])
        load_before = os.getloadavg()
        launched = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
        )
        lines = _Lines(process)
        try:
            while lines.find("console:") is None:
                if process.poll() is not None or time.perf_counter() - launched > timeout_s:
                    raise RuntimeError("the demo did not start: " + "".join(lines.lines))
                time.sleep(0.05)
            start_s = time.perf_counter() - launched
            serving = _memory_kib(process.pid)
            banner = lines.find("started in") or ""
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=30) as client:
                login = client.post(
                    "/api/auth/login",
                    json={"username": "district.op", "password": "Jiuyuan-150207!"},
                )
                login.raise_for_status()
                counts = client.get("/api/jurisdictions/150207/counts").json()
                total = counts.get("total")
                samples: list[float] = []
                for _ in range(_SAMPLES):
                    began = time.perf_counter()
                    response = client.get("/api/devices", params={"limit": 100})
                    samples.append(time.perf_counter() - began)
                    response.raise_for_status()
            after = _memory_kib(process.pid)
            stopping = time.perf_counter()
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)
            stop_s = time.perf_counter() - stopping
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        return {
            "command": " ".join(["gridwatch", *command[3:]]),
            "devices_total": total,
            "banner": banner.strip(),
            "start_s": round(start_s, 2),
            "stop_s": round(stop_s, 2),
            "rss_serving_mib": round(serving["VmRSS"] / 1024, 1),
            "rss_after_latency_mib": round(after["VmRSS"] / 1024, 1),
            "rss_peak_mib": round(after["VmHWM"] / 1024, 1),
            "device_list_latency_ms": {
                "samples": len(samples),
                "p50": round(_percentile(samples, 0.50) * 1000, 2),
                "p99": round(_percentile(samples, 0.99) * 1000, 2),
                "max": round(max(samples) * 1000, 2),
            },
            "load_before": [round(v, 2) for v in load_before],
            "load_after": [round(v, 2) for v in os.getloadavg()],
        }


def main(argv: list[str] | None = None) -> int:
    """Run both demos and write benchmarks/results/demo_full.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to start each")
    args = parser.parse_args(argv)
    baseline = run_demo(full=False, timeout_s=args.timeout)
    print("baseline (default demo):", json.dumps(baseline, ensure_ascii=False), flush=True)
    full = run_demo(full=True, timeout_s=args.timeout)
    print("full district:", json.dumps(full, ensure_ascii=False), flush=True)
    result = {
        "benchmark": "demo_full",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "baseline": baseline,
        "full": full,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
