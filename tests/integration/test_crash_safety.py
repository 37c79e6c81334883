"""SIGKILL mid-stream: every event whose committed callback fired is stored exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

COUNT = 3000
ROOT = Path(__file__).resolve().parents[2]


def _spawn(url: str, acked: Path) -> subprocess.Popen[bytes]:
    with (acked.parent / "child.log").open("ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.crash_child",
                "--url",
                url,
                "--acked",
                str(acked),
                "--count",
                str(COUNT),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )


def _acked(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split()]


def _stored_keys(url: str) -> list[str]:
    if url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return [r[0] for r in conn.execute("SELECT dedup_key FROM events")]
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT dedup_key FROM events")]


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'crash.sqlite3'}"
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


def test_sigkill_loses_no_committed_event_and_replay_stores_each_once(
    url: str, tmp_path: Path
) -> None:
    acked_file = tmp_path / "acked.txt"
    child = _spawn(url, acked_file)
    deadline = time.monotonic() + 60
    while len(_acked(acked_file)) < COUNT // 4:
        assert child.poll() is None, (tmp_path / "child.log").read_text()
        assert time.monotonic() < deadline, "the producer made no progress"
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()

    acked = _acked(acked_file)
    assert 0 < len(acked) < COUNT, "the kill must land mid-stream"
    stored = _stored_keys(url)
    assert len(stored) == len(set(stored)), "an event was stored twice"
    missing = {f"crash-{n}" for n in acked} - set(stored)
    assert not missing, f"{len(missing)} acknowledged events were lost"

    # Restart: the source redelivers everything (as a broker does for unacked
    # messages); dedup keys make the replay store each event exactly once.
    acked_file.unlink()
    replay = _spawn(url, acked_file)
    assert replay.wait(timeout=120) == 0
    final = _stored_keys(url)
    assert sorted(final) == sorted(f"crash-{n}" for n in range(COUNT))
    assert len(_acked(acked_file)) == COUNT
