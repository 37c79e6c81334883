"""`gridwatch run` on embedded defaults serves HTTP and shuts down cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.peers import free_port


def test_run_serves_then_drains_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "GRIDWATCH_HTTP__PORT": str(port), "GRIDWATCH_DATA_DIR": "data"}
    env.pop("GRIDWATCH_STORAGE__URL", None)
    log_path = tmp_path / "hub.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "run"], cwd=tmp_path, env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "hub did not start"
                time.sleep(0.1)
        assert response.status_code == 200
        assert (tmp_path / "data" / "gridwatch.sqlite3").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log_path.read_text()
    assert "received SIGTERM" in text and "hub stopped" in text


def test_version_and_migrate(tmp_path: Path) -> None:
    env = {**os.environ, "GRIDWATCH_DATA_DIR": str(tmp_path)}
    env.pop("GRIDWATCH_STORAGE__URL", None)
    out = subprocess.run(
        [sys.executable, "-m", "hub.cli", "version"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert out.stdout.startswith("gridwatch ")
    migrated = subprocess.run(
        [sys.executable, "-m", "hub.cli", "migrate"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert "schema version" in migrated.stdout and "sqlite" in migrated.stdout
