"""Credential keys: file handling, rotation (service and CLI), and the device CLI."""

from __future__ import annotations

import base64
import json
import logging
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from camera_registry.jurisdiction import JurisdictionLevel, JurisdictionNode
from camera_registry.models import Credentials, DeviceIn, DeviceKind
from hub.cli import main
from hub.cli.keys import rotate
from hub.crypto import CredentialCipher, CredentialError, Keyring, generate_key, load_keyring
from hub.devices.registry import Actor, Registry
from tests.conftest import build_store

ACTOR = Actor("system:test-rotation")
FIXTURES = Path(__file__).parent.parent / "fixtures" / "registry"


def test_key_file_is_created_private_and_env_wins(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "credentials.key"
    ring = load_keyring(path, environ={})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keyring(path, environ={}).active_id == ring.active_id
    other = generate_key()
    env_ring = load_keyring(
        path, environ={"GRIDWATCH_CREDENTIALS_KEY": base64.b64encode(other).decode()}
    )
    assert env_ring.active_id != ring.active_id and env_ring.path is None
    with pytest.raises(CredentialError):
        load_keyring(path, environ={"GRIDWATCH_CREDENTIALS_KEY": "c2hvcnQ="})


def test_a_ciphertext_names_its_key_and_is_bound_to_its_device() -> None:
    old, new = generate_key(), generate_key()
    cipher = CredentialCipher(Keyring([old]))
    login = Credentials(username="admin", password=SecretStr("Rot8-Me!"))
    blob = cipher.seal("cam-1", login)
    assert b"Rot8-Me!" not in blob
    rotated = CredentialCipher(Keyring([new, old]))
    assert rotated.open("cam-1", blob).password.get_secret_value() == "Rot8-Me!"
    resealed = rotated.reseal("cam-1", blob)
    assert resealed is not None and rotated.reseal("cam-1", resealed) is None
    with pytest.raises(CredentialError):
        CredentialCipher(Keyring([new])).open("cam-1", blob)
    with pytest.raises(CredentialError):
        rotated.open("cam-2", resealed)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_rotation_reencrypts_and_old_ciphertexts_open_meanwhile(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = build_store(backend, request, tmp_path)
    keyring = load_keyring(tmp_path / "keys" / "credentials.key", environ={})
    old_id = keyring.active_id
    async with store:
        registry = Registry(store, CredentialCipher(keyring))
        await registry.start()
        await registry.upsert_jurisdictions(
            [JurisdictionNode(code="150102", name="新城区", level=JurisdictionLevel.DISTRICT)],
            actor=ACTOR,
        )
        devices = [
            DeviceIn(
                id=f"cam-{n}",
                name=f"路口{n}",
                kind=DeviceKind.CAMERA,
                jurisdiction="150102",
                credentials=Credentials(username="admin", password=SecretStr(f"Pw-{n}-rot")),
            )
            for n in range(1, 8)
        ]
        counts, problems = await registry.bulk_upsert(devices, actor=ACTOR, scope=None)
        assert counts.created == 7 and not problems
        before = await _blobs(store)

        # Midway: a second process (here, another keyring on the same file)
        # put a new key first; both keys open credentials.
        other = load_keyring(keyring.path or Path(), environ={})
        other.replace([generate_key(), *other.keys])
        assert (await registry.credentials_for("cam-3")) is not None
        assert keyring.active_id != old_id  # the file change was noticed
        assert await registry.stale_credentials() == 7

        changed = await rotate(registry, keyring)
        assert changed == 7
        after = await _blobs(store)
        assert all(after[k] != before[k] for k in before)
        assert all(Keyring.blob_key_id(b) == keyring.active_id for b in after.values())
        assert keyring.key_ids == [keyring.active_id]  # the old key is gone
        for n in range(1, 8):
            login = await registry.credentials_for(f"cam-{n}")
            assert login is not None and login.password.get_secret_value() == f"Pw-{n}-rot"
    assert "Pw-3-rot" not in caplog.text


async def _blobs(store: object) -> dict[str, bytes]:
    async with store.reading() as tx:  # type: ignore[attr-defined]
        rows = await tx.fetchall("SELECT id, credentials FROM devices ORDER BY id")
    return {r[0]: bytes(r[1]) for r in rows}


def test_cli_import_list_show_export_and_keys_rotate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text(f"data_dir: {tmp_path.as_posix()}\n", encoding="utf-8")
    tree = tmp_path / "tree.csv"
    tree.write_text(
        "编码,名称,级别,上级编码\n150102,新城区,区,\n150102001,海拉尔东路街道,街道,150102\n"
        "150102002,锡林南路街道,街道,150102\n150102001001,东风社区,社区,150102001\n",
        encoding="utf-8",
    )
    assert main(["--config", str(config), "jurisdictions", "import", str(tree)]) == 0
    fixture = str(FIXTURES / "devices_zh_errors.csv")
    assert main(["--config", str(config), "devices", "import", fixture, "--dry-run"]) == 1
    out = capsys.readouterr()
    assert "row 8 [所属辖区] '150199999': unknown jurisdiction code" in out.err
    assert "Hk@2024pass" not in out.err + out.out
    assert main(["--config", str(config), "devices", "import", fixture]) == 1
    assert "nothing written" in capsys.readouterr().out
    assert main(["--config", str(config), "devices", "import", fixture, "--partial"]) == 0
    assert "created 3" in capsys.readouterr().out
    assert main(["--config", str(config), "devices", "import", fixture, "--partial"]) == 0
    assert "updated 0, unchanged 3" in capsys.readouterr().out

    assert main(["--config", str(config), "devices", "list", "--jurisdiction", "150102001001"]) == 0
    assert capsys.readouterr().out.startswith("15010200001340000001\talarm_point")
    assert main(["--config", str(config), "devices", "show", "15010200001320000001"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["has_credentials"] is True and "Hk@2024pass" not in json.dumps(shown)
    output = tmp_path / "out.xlsx"
    args = ["devices", "export", "--format", "xlsx", "--output", str(output), "--kind", "camera"]
    assert main(["--config", str(config), *args]) == 0
    assert output.read_bytes().startswith(b"PK")

    key_file = tmp_path / "keys" / "credentials.key"
    before = key_file.read_text()
    assert main(["--config", str(config), "keys", "rotate"]) == 0
    assert "1 credential(s) re-encrypted" in capsys.readouterr().out
    assert key_file.read_text() != before and len(key_file.read_text().split()) == 1
    assert main(["--config", str(config), "devices", "import", fixture, "--partial"]) == 0
    assert "unchanged 3" in capsys.readouterr().out  # the password still opens and matches
