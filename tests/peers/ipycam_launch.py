"""Run the ipycam ONVIF simulator for tests: loopback only, no WS-Discovery.

Runs under ipycam's own venv (it needs full opencv-python), in the working
directory the caller chose (ipycam writes camera_config.json there). Prints
one JSON line `{"ready": true, ...}` on stdout once its ONVIF port listens,
then feeds a small moving test picture until SIGTERM.
"""

from __future__ import annotations

import argparse
import functools
import json
import signal
import socket
import sys
import time
from types import FrameType
from typing import Any

import numpy as np
from ipycam import CameraConfig, IPCamera  # type: ignore[import-not-found]
from ipycam import camera as camera_module

LOOPBACK = "127.0.0.1"


class _NoDiscovery:
    """Stands in for ipycam's WS-Discovery server, which binds 0.0.0.0:3702."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""


class _LoopbackServer(camera_module.ReusableThreadingTCPServer):  # type: ignore[misc]
    """ipycam's HTTP/ONVIF server, bound to 127.0.0.1 instead of every interface."""

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        super().__init__((LOOPBACK, address[1]), handler)


def _patch_ipycam() -> None:
    camera_module.WSDiscoveryServer = _NoDiscovery
    camera_module.ReusableThreadingTCPServer = _LoopbackServer
    camera_module.NativeRTSPServer = functools.partial(
        camera_module.NativeRTSPServer, host=LOOPBACK
    )


def _wait_listening(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def main() -> int:
    """Start the simulated camera and stream until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("onvif-port", "rtsp-port", "rtmp-port", "web-port", "go2rtc-port"):
        parser.add_argument(f"--{name}", type=int, required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--fps", type=int, default=10)
    args = parser.parse_args()

    _patch_ipycam()
    config = CameraConfig(
        name="GridWatch Test Camera",
        manufacturer="PythonCam",
        model="VirtualCam-1",
        local_ip=LOOPBACK,
        onvif_port=args.onvif_port,
        rtsp_port=args.rtsp_port,
        rtmp_port=args.rtmp_port,
        web_port=args.web_port,
        go2rtc_api_port=args.go2rtc_port,
        username=args.username,
        password=args.password,
        main_width=320,
        main_height=240,
        main_fps=args.fps,
        main_bitrate="500K",
        sub_width=160,
        sub_height=120,
        sub_fps=args.fps,
        sub_bitrate="200K",
        hw_accel="cpu",
        show_timestamp=False,
    )
    camera = IPCamera(config)
    stopping = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if not camera.start():
        print(json.dumps({"ready": False, "reason": "camera.start() failed"}), flush=True)
        return 1
    ready = _wait_listening(args.onvif_port, 20.0)
    print(
        json.dumps({"ready": ready, "mode": camera.streaming_mode, "onvif_port": args.onvif_port}),
        flush=True,
    )
    frame = np.zeros((config.main_height, config.main_width, 3), dtype=np.uint8)
    tick = 0
    try:
        while not stopping:
            frame[:] = (40, 90, 40)
            x = (tick * 7) % (config.main_width - 40)
            frame[100:140, x : x + 40] = (255, 255, 255)
            camera.stream(frame)
            tick += 1
            time.sleep(1.0 / args.fps)
    finally:
        camera.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
