"""An own Mosquitto broker for tests that restart it or need its configuration.

The broker runs the product's ``docker/mosquitto.conf`` with only the machine-specific
lines replaced (listener on a free 127.0.0.1 port, anonymous access, persistence and log
in the test's directory), so a test exercises the queue limits the product ships.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.peers import free_port, peer_missing, port_open

__all__ = ["SHIPPED_CONF", "MosquittoPeer", "broker_conf", "mosquitto_peer"]

SHIPPED_CONF = Path(__file__).resolve().parents[2] / "docker" / "mosquitto.conf"

# Lines that describe the deployment, not the broker's behaviour.
_SITE_OPTIONS = ("listener", "persistence_location", "allow_anonymous", "password_file", "log_dest")
_QUEUE_OPTIONS = ("max_queued_messages", "max_queued_bytes", "max_inflight_messages")


def broker_conf(
    directory: Path, port: int, *, persistence: bool, shipped_limits: bool, extra_conf: str
) -> str:
    """The shipped configuration adapted to a test broker on `port` keeping data in `directory`."""
    dropped = _SITE_OPTIONS + (() if shipped_limits else _QUEUE_OPTIONS) + ("persistence",)
    lines = [
        line
        for line in SHIPPED_CONF.read_text(encoding="utf-8").splitlines()
        if line.split(" ", 1)[0] not in dropped
    ]
    if os.geteuid() == 0:
        lines.append("user root")  # else Mosquitto drops to 'mosquitto', who cannot write here
    lines += [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        f"persistence {'true' if persistence else 'false'}",
        f"persistence_location {directory}/",
        f"log_dest file {directory}/mosquitto.log",
        extra_conf,
    ]
    return "\n".join(lines) + "\n"


@dataclass
class MosquittoPeer:
    """A running (or stopped) own broker; `stop()`/`start()` keep port and data."""

    host: str
    port: int
    conf_path: Path
    directory: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until it accepts connections."""
        if self._process is not None and self._process.poll() is None:
            return
        self._process = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not port_open(self.host, self.port, timeout=0.2):
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = self.directory / "mosquitto.log"
                text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
                self.stop()
                raise RuntimeError(f"mosquitto did not start: {text[-2000:]}")
            time.sleep(0.05)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the broker: SIGTERM (saves persistence) or, with `kill`, SIGKILL."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._process is not None and self._process.poll() is None


@contextmanager
def mosquitto_peer(
    tmp_dir: Path,
    *,
    persistence: bool = True,
    extra_conf: str = "",
    shipped_limits: bool = True,
) -> Iterator[MosquittoPeer]:
    """Run an own Mosquitto with the shipped config (or its defaults for the queue limits)."""
    if shutil.which("mosquitto") is None:
        peer_missing("mosquitto", "the mosquitto binary is not installed")
    directory = Path(tmp_dir) / f"mosquitto-{free_port()}"
    directory.mkdir(parents=True)
    port = free_port()
    conf_path = directory / "mosquitto.conf"
    conf_path.write_text(
        broker_conf(
            directory,
            port,
            persistence=persistence,
            shipped_limits=shipped_limits,
            extra_conf=extra_conf,
        ),
        encoding="utf-8",
    )
    peer = MosquittoPeer("127.0.0.1", port, conf_path, directory)
    try:
        peer.start()
    except RuntimeError as exc:
        peer_missing("mosquitto", str(exc))
    try:
        yield peer
    finally:
        peer.stop()
