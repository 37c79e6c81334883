"""The ipycam ONVIF simulator as a test peer.

ipycam lives in its own venv (it installs full opencv-python, which clashes
with the project's opencv-python-headless): `$GRIDWATCH_IPYCAM_VENV`, or
`.peers/ipycam-venv` at the repository root. Create it with

    python3 -m venv .peers/ipycam-venv && .peers/ipycam-venv/bin/pip install ipycam

and install Debian's `ffmpeg` (ipycam encodes its RTSP stream with it).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.peers import free_port, peer_missing, port_open

__all__ = ["IpycamInfo", "ipycam_peer", "ipycam_python"]

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = Path(__file__).resolve().parent / "ipycam_launch.py"
START_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class IpycamInfo:
    """Where the running simulator listens and how to log in."""

    host: str
    onvif_port: int
    rtsp_port: int
    username: str
    password: str


def ipycam_python() -> Path:
    """The Python interpreter of the ipycam venv (it may not exist)."""
    venv = os.environ.get("GRIDWATCH_IPYCAM_VENV") or str(REPO / ".peers" / "ipycam-venv")
    return Path(venv) / "bin" / "python"


def _distinct_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _log_tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-2000:]
    except OSError:
        return "<no log>"


@contextmanager
def ipycam_peer(tmp_dir: Path) -> Iterator[IpycamInfo]:
    """Start ipycam on 127.0.0.1 (ports chosen here, discovery off) and stop it after."""
    python = ipycam_python()
    if not python.exists():
        peer_missing(
            "ipycam",
            f"no ipycam venv at {python.parent.parent} (python3 -m venv <dir> && "
            "<dir>/bin/pip install ipycam; or set GRIDWATCH_IPYCAM_VENV)",
        )
    if shutil.which("ffmpeg") is None:
        peer_missing("ipycam", "ffmpeg is not installed (apt-get install -y ffmpeg)")
    onvif_port, rtsp_port, rtmp_port, web_port, go2rtc_port = _distinct_ports(5)
    info = IpycamInfo(
        host="127.0.0.1",
        onvif_port=onvif_port,
        rtsp_port=rtsp_port,
        username="operator",
        password=secrets.token_urlsafe(12),
    )
    workdir = tmp_dir / "ipycam"
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "ipycam.log"
    command = [
        str(python),
        str(LAUNCHER),
        f"--onvif-port={onvif_port}",
        f"--rtsp-port={rtsp_port}",
        f"--rtmp-port={rtmp_port}",
        f"--web-port={web_port}",
        f"--go2rtc-port={go2rtc_port}",
        f"--username={info.username}",
        f"--password={info.password}",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=workdir, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the launcher prints one line when ready (or failed)
        status = json.loads(line) if line.strip() else {"ready": False}
        deadline = time.monotonic() + START_TIMEOUT
        while status.get("ready") and not port_open(info.host, rtsp_port):
            if time.monotonic() > deadline or process.poll() is not None:
                break
            time.sleep(0.2)
        if not status.get("ready") or not port_open(info.host, rtsp_port):
            peer_missing("ipycam", f"did not start ({status}); log tail:\n{_log_tail(log_path)}")
        yield info
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
        print(f"ipycam log: {log_path}", file=sys.stderr)
