"""`gridwatch keys rotate`: a new credential key, every stored credential re-encrypted.

Steps, each safe to interrupt and re-run: the new key goes first in the key file
with the old keys kept after it (a running hub re-reads the file and accepts
both); every credential is re-encrypted; when a pass finds no credential under
an old key, the old keys are removed from the file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from hub.cli import settings_from
from hub.crypto import KEY_ENV_VAR, CredentialCipher, Keyring, generate_key, load_keyring
from hub.devices.registry import Registry
from hub.storage import open_store

__all__ = ["register", "rotate"]


async def rotate(registry: Registry, keyring: Keyring, *, passes: int = 5) -> int:
    """Rotate to a new key and re-encrypt everything; return how many credentials changed."""
    keyring.replace([generate_key(), *keyring.keys])
    changed = 0
    for _ in range(passes):
        changed += await registry.reencrypt_all()
        # A hub that wrote with the old key before it noticed the new file
        # leaves stragglers; go round again until there are none.
        if await registry.stale_credentials() == 0:
            keyring.replace(keyring.keys[:1])
            return changed
    raise RuntimeError("credentials under old keys remain; old keys kept, run rotate again")


def _cmd_rotate(args: argparse.Namespace) -> int:
    if os.environ.get(KEY_ENV_VAR):
        print(
            f"the key comes from {KEY_ENV_VAR}; rotate by moving to a key file "
            "(security.credentials_key_file)",
            file=sys.stderr,
        )
        return 2
    settings = settings_from(args)

    async def run() -> int:
        keyring = load_keyring(settings.credentials_key_path())
        store = open_store(
            settings.storage_url(),
            pool_size=2,
            retention_days=settings.storage.retention_days,
            compress_after_days=settings.storage.compress_after_days,
        )
        async with store:
            registry = Registry(store, CredentialCipher(keyring))
            changed = await rotate(registry, keyring)
        print(f"new key {keyring.active_id.hex()}; {changed} credential(s) re-encrypted")
        return 0

    return asyncio.run(run())


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `keys` command group."""
    keys = subparsers.add_parser("keys", help="credential encryption keys")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    actions.add_parser(
        "rotate", help="new key; re-encrypt every stored credential; drop the old key"
    ).set_defaults(func=_cmd_rotate)
