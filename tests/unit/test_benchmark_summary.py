"""The benchmark summary says which figures this run measured and which benchmarks could not run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import run_all


def _result(directory: Path, measured_at: str) -> None:
    body = {
        "benchmark": "registry",
        "measured_at": measured_at,
        "figures": {"devices": 100_000, "page_ms_p99": 37.6, "goal_page_p99_ms": 50},
    }
    (directory / "registry.json").write_text(json.dumps(body), encoding="utf-8")


def test_rows_this_run_did_not_measure_are_marked_stale_with_their_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_all, "RESULTS", tmp_path)
    _result(tmp_path, "2026-11-27T18:48:00+00:00")
    text = run_all.summary({"registry": "failed (1)"})
    row = next(line for line in text.splitlines() if "device list page p99" in line)
    assert "2026-11-27 18:48 (stale: this run failed (1))" in row
    assert "(stale: not rerun" in run_all.summary(None)
    assert "2026-11-27 18:48 (this run)" in run_all.summary({"registry": "ok"})
    assert "| ingest | – | unmeasured |" in text


def test_a_benchmark_that_cannot_run_is_listed_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_all, "RESULTS", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # no mosquitto on this PATH
    reason = run_all.cannot_run("mqtt_ingest")
    assert reason == "the mosquitto broker is not installed"
    _result(tmp_path, "2026-11-27T18:48:00+00:00")
    text = run_all.summary({"mqtt_ingest": f"cannot run here: {reason}"})
    assert "- `mqtt_ingest`: the mosquitto broker is not installed" in text
