"""sipp (Debian `sip-tester`) as an independent GB/T 28181 peer, driven by scenario files."""

from __future__ import annotations

import asyncio
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from tests.peers import peer_missing

__all__ = ["SCENARIOS", "SippRun", "free_udp_port", "run_sipp"]

SCENARIOS = Path(__file__).resolve().parent / "sipp"


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port on `host` that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class SippRun:
    """How a sipp run ended."""

    returncode: int
    output: str


async def run_sipp(
    scenario: str,
    server: tuple[str, int],
    *,
    user: str,
    password: str,
    variables: dict[str, str],
    local_host: str = "127.0.0.1",
    calls: int = 1,
    rate: int = 10,
    wait_s: float = 120.0,
    workdir: Path,
) -> SippRun:
    """Run one scenario file against `server` until its `calls` are done (sipp writes
    its files into `workdir`)."""
    binary = shutil.which("sipp")
    if binary is None:
        peer_missing("sipp", "the sipp binary is not installed (Debian package sip-tester)")
    args = [
        binary,
        f"{server[0]}:{server[1]}",
        "-sf",
        str(SCENARIOS / scenario),
        "-i",
        local_host,
        "-p",
        str(free_udp_port(local_host)),
        "-s",
        user,
        "-au",
        user,
        "-ap",
        password,
        "-m",
        str(calls),
        "-r",
        str(rate),
        "-nostdin",
        "-timeout",
        f"{int(wait_s)}s",
    ]
    for name, value in variables.items():
        args += ["-set", name, value]
    process = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=str(workdir),
    )
    output, _ = await process.communicate()
    return SippRun(process.returncode or 0, output.decode("utf-8", "replace"))
