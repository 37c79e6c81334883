"""`gridwatch demo` as a newcomer runs it: 九原区 in the console, presses become alarms in
their jurisdiction with the linked cameras' snapshots, a quiet terminal, clean Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.peers import free_port, peer_missing

pytestmark = [pytest.mark.slow, pytest.mark.mqtt]

ROOT = Path(__file__).resolve().parents[2]


def _wait_for_health_events(database: Path, timeout: float) -> None:
    """Until the demo's first patrol pass has stored a health event (read beside it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
                found = db.execute(
                    "SELECT COUNT(*) FROM events WHERE kind LIKE 'health.%'"
                ).fetchone()
            if found and found[0] > 0:
                return
        except sqlite3.OperationalError:
            pass  # not created yet, or busy
        assert time.monotonic() < deadline, "the demo's patrol stored no health event"
        time.sleep(0.5)


def _children(pid: int) -> set[int]:
    """Every descendant process of `pid` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces; the ppid follows its closing parenthesis.
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class _Output:
    """Collects a process's stdout lines on a thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line)

    def close(self, process: subprocess.Popen[str]) -> None:
        self._thread.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not printed within {timeout} s: {''.join(self.lines)}")


@pytest.mark.parametrize("broker", ["mosquitto", "none"])
def test_demo_runs_a_district_and_stops_cleanly(tmp_path: Path, broker: str) -> None:
    if broker == "mosquitto" and shutil.which("mosquitto") is None:
        peer_missing("mosquitto", "the mosquitto binary is not installed")
    port = free_port()
    data_dir = tmp_path / "demo-data"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hub.cli",
            "demo",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--broker",
            broker,
            "--first-press",
            "2",
            "--press-every",
            "4",
            "6",
            "--patrol-interval",
            "10",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output = _Output(process)
    try:
        console = output.wait_for("console:", timeout=60).split("console:", 1)[1].strip()
        assert console == f"http://127.0.0.1:{port}/"
        assert httpx.get(console, timeout=5).status_code == 200
        assert httpx.get(f"{console}healthz", timeout=5).status_code == 200
        output.wait_for("demo.admin", timeout=5)
        gb_line = output.wait_for("GB/T 28181:", timeout=5)
        assert "3 NVRs with 12 雪亮工程 channels registered" in gb_line, gb_line
        assert "simulated 九原区 (包头市, 150207)" in "".join(output.lines)
        output.wait_for("PRESS", timeout=30)
        # The scenario tells what the operators now see: the press's alarm opened.
        assert "P1" in output.wait_for("ALARM  ", timeout=30)
        _wait_for_health_events(data_dir / "gridwatch.sqlite3", timeout=60)
        children = _children(process.pid)
        if broker == "mosquitto":
            assert children, "the demo's broker runs as a child process"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        output.close(process)
    assert not [pid for pid in children if _alive(pid)], "child processes left behind"
    printed = "".join(output.lines)
    assert "demo stopped" in printed
    # The terminal tells the story; the hub's INFO lines go to the data directory's log.
    assert " INFO " not in printed
    hub_log = (data_dir / "gridwatch.log").read_text(encoding="utf-8")
    assert "hub started" in hub_log and "RTSP frame" not in hub_log

    with sqlite3.connect(data_dir / "gridwatch.sqlite3") as db:
        kinds = dict(db.execute("SELECT kind, COUNT(*) FROM devices GROUP BY kind").fetchall())
        presses = db.execute("SELECT COUNT(*) FROM events WHERE kind = 'panic.press'").fetchone()
        alarms = db.execute(
            "SELECT COUNT(*) FROM alarms WHERE rule = 'panic_press' AND NOT is_drill"
        ).fetchone()
        health = db.execute("SELECT COUNT(*) FROM events WHERE kind LIKE 'health.%'").fetchone()
        panic = db.execute(
            "SELECT a.jurisdiction_path, COUNT(m.id) FROM alarms a"
            " LEFT JOIN alarm_media m ON m.alarm_id = a.id"
            " WHERE a.rule = 'panic_press' GROUP BY a.id"
        ).fetchall()
        towns = dict(db.execute("SELECT code, name FROM jurisdictions WHERE level = 'town'"))
        nvrs = db.execute(
            "SELECT device_id, armed, channel_count, transport FROM gb28181_devices"
            " WHERE registered_at IS NOT NULL AND expires_at > registered_at ORDER BY device_id"
        ).fetchall()
        gb_channels = db.execute(
            "SELECT c.channel_id, d.kind, d.project FROM gb28181_channels c"
            " JOIN devices d ON d.id = c.channel_id WHERE c.registered"
        ).fetchall()
    assert kinds == {"camera": 300, "alarm_point": 78, "broadcast_unit": 18, "nvr": 3}
    # A few Sharp Eyes cameras joined over GB/T 28181: three NVRs registered over SIP,
    # armed, each with its four cameras as catalog channels.
    assert len(nvrs) == 3, nvrs
    assert all(armed and count == 4 and transport == "UDP" for _, armed, count, transport in nvrs)
    assert len(gb_channels) == 12
    assert {(kind, project) for _, kind, project in gb_channels} == {("camera", "sharp_eyes")}
    assert towns["150207001000"] == "沙河街道" and len(towns) == 8
    assert presses[0] >= 1
    assert alarms[0] >= 1
    for path, snapshots in panic:
        # Whatever carried the press (broker or not), the alarm sits in its school's
        # micro-grid and has the gate cameras' pictures.
        assert path is not None and path.startswith("/150207/")
        assert len(path.strip("/").split("/")) == 5
        assert snapshots >= 1
    assert health[0] > 0  # the patrol probed the simulated cameras
