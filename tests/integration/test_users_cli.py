"""`gridwatch users` and `gridwatch apikeys` against a real SQLite data directory."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hub.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_users_and_keys_from_the_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRIDWATCH_DATA_DIR", str(tmp_path))
    code, out, _ = run(
        capsys, "users", "add", "alice", "--role", "operator", "--jurisdiction", "150102001"
    )
    assert code == 0 and "one-time password" in out
    monkeypatch.setattr("sys.stdin", io.StringIO("weakpassword\n"))
    code, _, err = run(capsys, "users", "passwd", "alice", "--password-stdin")
    assert code == 1 and "three of" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("Str0ng-Passw0rd!x\n"))
    code, out, _ = run(capsys, "users", "passwd", "alice", "--password-stdin")
    assert code == 0
    assert run(capsys, "users", "disable", "alice")[0] == 0
    code, out, _ = run(capsys, "users", "list")
    assert out.splitlines() == ["alice\toperator\t150102001\tdisabled"]
    code, out, _ = run(
        capsys, "apikeys", "add", "police dispatch", "--role", "dispatcher", "--jurisdiction", "/"
    )
    token = out.splitlines()[-1].removeprefix("Authorization: Bearer ")
    key_id = token.split("_")[1]
    assert code == 0 and token.startswith(f"gw_{key_id}_")
    assert run(capsys, "apikeys", "revoke", key_id)[0] == 0
    code, out, _ = run(capsys, "apikeys", "list")
    assert "revoked" in out and token not in out
