"""Start the GStreamer RTSP test server (rtsp_server.py) for a test or a benchmark."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.peers import free_port, peer_missing

__all__ = ["MOUNTS", "RtspPeer", "gstreamer_available", "rtsp_peer", "start_rtsp_server"]

#: Debian's interpreter: the only one with the `gi` bindings (python3-gi).
SYSTEM_PYTHON = Path("/usr/bin/python3")
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
MOUNTS = (
    "ball",
    "blur",
    "frozen",
    "stalled",
    "black",
    "blue",
    "snow",
    "solid",
    "grey",
    "sound",
    "g711",
)
_READY_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class RtspPeer:
    """A running RTSP test server: `url("ball")` is rtsp://127.0.0.1:<port>/ball."""

    base_url: str
    port: int
    pid: int

    def url(self, mount: str) -> str:
        """The stream URL of one mount point."""
        return f"{self.base_url}/{mount.lstrip('/')}"


def gstreamer_available() -> str | None:
    """None when the server can start here, else the reason it cannot."""
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} not found"
    probe = subprocess.run(
        [
            str(SYSTEM_PYTHON),
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); "
            "from gi.repository import GstRtspServer",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        return "python3-gi / gir1.2-gst-rtsp-server-1.0 missing: " + probe.stderr.strip()[-200:]
    return None


@contextlib.contextmanager
def start_rtsp_server(
    log_dir: Path,
    *,
    width: int = 640,
    height: int = 360,
    fps: int = 15,
    auth: str = "",
    kbps: int | None = None,
) -> Iterator[RtspPeer]:
    """Run the server on a free port until the block ends; raises RuntimeError if it fails."""
    port = free_port()
    log_path = log_dir / f"rtsp_server_{port}.log"
    with log_path.open("w+") as log:
        process = subprocess.Popen(
            [
                str(SYSTEM_PYTHON),
                str(SERVER_SCRIPT),
                f"--port={port}",
                f"--width={width}",
                f"--height={height}",
                f"--fps={fps}",
                *([f"--auth={auth}"] if auth else []),
                *([f"--kbps={kbps}"] if kbps else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + _READY_TIMEOUT_S
            while True:
                log.seek(0)
                output = log.read()
                if "READY " in output:
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"RTSP server did not start: {output.strip()[-500:]}")
                time.sleep(0.05)
            yield RtspPeer(base_url=f"rtsp://127.0.0.1:{port}", port=port, pid=process.pid)
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait(timeout=5)


@contextlib.contextmanager
def rtsp_peer(
    tmp_dir: Path, *, width: int = 640, height: int = 360, auth: str = ""
) -> Iterator[RtspPeer]:
    """The RTSP peer for a test: skips (or fails in CI) when GStreamer is missing.

    With `auth` (user:password) every mount demands RTSP Digest authentication.
    """
    reason = gstreamer_available()
    if reason is not None:
        peer_missing("rtsp", reason)
    with contextlib.ExitStack() as stack:
        try:
            peer = stack.enter_context(
                start_rtsp_server(tmp_dir, width=width, height=height, auth=auth)
            )
        except RuntimeError as exc:
            peer_missing("rtsp", str(exc))
        yield peer
