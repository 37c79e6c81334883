"""Configuration: every error with its path, unknown keys refused, env overrides files."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.cli import main
from hub.config import ConfigError, example_config, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gridwatch.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_config_means_embedded_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRIDWATCH_STORAGE__URL", raising=False)
    settings = load_settings(None)
    assert settings.http.host == "127.0.0.1" and settings.http.port == 8080
    assert settings.storage_url() == "sqlite:///data/gridwatch.sqlite3"


def test_every_error_is_listed_with_its_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "storage:\n  url: mysql://db\n  retention_days: 0\n"
        "http:\n  port: 70000\nwriter:\n  batch_max: lots\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    problems = caught.value.problems
    assert len(problems) == 4
    assert any(p.startswith("storage.url: ") and "postgresql://" in p for p in problems)
    assert any(p.startswith("storage.retention_days: ") for p in problems)
    assert any(p.startswith("http.port: ") for p in problems)
    assert any(p.startswith("writer.batch_max: ") for p in problems)


def test_unknown_keys_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "http:\n  prot: 9000\nstorge: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert sorted(caught.value.problems) == [
        "http.prot: Extra inputs are not permitted",
        "storge: Extra inputs are not permitted",
    ]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "http:\n  port: 8080\n   host: x\n")
    with pytest.raises(ConfigError, match=r"line 3"):
        load_settings(path)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "http:\n  port: 9000\n  host: 0.0.0.0\n")
    monkeypatch.setenv("GRIDWATCH_HTTP__PORT", "9100")
    monkeypatch.setenv("GRIDWATCH_STORAGE__URL", "postgresql://gw:s3cret@db:5432/gw")
    settings = load_settings(path)
    assert settings.http.port == 9100 and settings.http.host == "0.0.0.0"
    assert settings.storage_url() == "postgresql://gw:s3cret@db:5432/gw"
    assert "s3cret" not in repr(settings)


def test_example_passes_check_and_mentions_every_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = example_config()
    for section in ("http:", "storage:", "writer:", "logging:"):
        assert section in text
    path = write(tmp_path, text)
    assert main(["config", "check", str(path)]) == 0
    assert "OK" in capsys.readouterr().out


def test_check_command_exits_non_zero_with_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "storage:\n  pool_size: -1\n")
    assert main(["config", "check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "storage.pool_size: Input should be greater than or equal to 1" in err
