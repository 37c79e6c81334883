"""Starting and finding the real peers the integration tests run against.

Locally a missing peer skips its tests with a reason; with
GRIDWATCH_REQUIRE_PEERS=1 (CI) a missing peer fails them instead.
"""

from __future__ import annotations

import os
import socket
from typing import NoReturn

import pytest

__all__ = ["free_port", "peer_missing", "peers_required", "port_open"]


def peers_required() -> bool:
    """True when a missing peer must fail the test rather than skip it."""
    return os.environ.get("GRIDWATCH_REQUIRE_PEERS", "") not in ("", "0", "false")


def peer_missing(peer: str, reason: str) -> NoReturn:
    """Skip (locally) or fail (CI) because `peer` is not available."""
    message = f"peer {peer} unavailable: {reason}"
    if peers_required():
        pytest.fail(message + " (GRIDWATCH_REQUIRE_PEERS=1)")
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
