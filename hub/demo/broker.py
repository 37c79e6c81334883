"""The demo's own Mosquitto broker, on a free 127.0.0.1 port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["DemoBroker", "free_port", "port_open"]


class DemoBroker:
    """A Mosquitto broker of the demo's own on a free 127.0.0.1 port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        """The mosquitto binary, if installed (Debian puts it in /usr/sbin)."""
        return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")

    def start(self, timeout_s: float = 10.0) -> int:
        """Start the broker; return its port."""
        binary = self.available()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        port = free_port()
        conf = self.directory / "mosquitto.conf"
        lines = [
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            f"log_dest file {self.directory / 'mosquitto.log'}",
            # The demo's devices and hub are few; the shipped limits are in docker/.
            "max_queued_messages 10000",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto', who cannot write here
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self._process = subprocess.Popen(  # noqa: S603 - fixed binary and our own config
            [binary, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops the broker itself
        )
        deadline = time.monotonic() + timeout_s
        while not port_open(port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not start (see {self.directory})")
            time.sleep(0.05)
        self.port = port
        return port

    def stop(self) -> None:
        """Stop the broker and wait for it."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
