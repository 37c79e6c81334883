"""Device credentials encrypted at rest: AES-256-GCM with a key id in every ciphertext.

**Keys** never live in the database. They come from

- the environment variable ``GRIDWATCH_CREDENTIALS_KEY`` (base64 of 32 bytes), or
- a key file (``security.credentials_key_file``, default
  ``<data_dir>/keys/credentials.key``), created with mode 0600 on first start.

A key file holds one base64 key per line; the first line is the *active* key
(used to encrypt), later lines are older keys that still decrypt. A key's id is
the first four bytes of its SHA-256, so the file needs no names.

**Ciphertext** layout: ``b"GW1" | key id (4) | nonce (12) | AES-GCM(ciphertext+tag)``.
The device id is the associated data, so a ciphertext copied onto another
device's row does not decrypt.

**Rotation** (`gridwatch keys rotate`): a new key is put first in the file with
the old ones kept after it; every stored credential is re-encrypted with the new
key; only when no row uses an old key any more are the old keys dropped. A
running hub re-reads the file when it changes, so both keys are accepted while
the rotation runs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from camera_registry.models import Credentials

__all__ = [
    "KEY_ENV_VAR",
    "CredentialCipher",
    "CredentialError",
    "Keyring",
    "generate_key",
    "key_id",
    "load_keyring",
    "write_key_file",
]

log = logging.getLogger(__name__)

#: Environment variable holding the active key (base64, 32 bytes).
KEY_ENV_VAR = "GRIDWATCH_CREDENTIALS_KEY"
_MAGIC = b"GW1"
_KEY_ID_LEN = 4
_NONCE_LEN = 12
_KEY_LEN = 32


class CredentialError(Exception):
    """A key is missing or malformed, or a ciphertext does not decrypt."""


def generate_key() -> bytes:
    """A fresh random 256-bit key."""
    return secrets.token_bytes(_KEY_LEN)


def key_id(key: bytes) -> bytes:
    """The 4-byte id of a key (start of its SHA-256)."""
    return hashlib.sha256(key).digest()[:_KEY_ID_LEN]


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CredentialError(f"{where}: not base64") from exc
    if len(key) != _KEY_LEN:
        raise CredentialError(f"{where}: a key must be {_KEY_LEN} bytes, got {len(key)}")
    return key


def _parse_key_file(text: str, path: Path) -> list[bytes]:
    keys = [
        _decode_key(line, f"{path}:{number}")
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not keys:
        raise CredentialError(f"{path}: holds no key")
    return keys


def write_key_file(path: Path, keys: Sequence[bytes]) -> None:
    """Atomically write `keys` (active first) to `path` with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = "".join(base64.b64encode(k).decode("ascii") + "\n" for k in keys)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


class Keyring:
    """The active key and the older keys that still decrypt, by key id.

    A keyring read from a file notices when the file changes (rotation by
    another process) and re-reads it before the next use.
    """

    def __init__(self, keys: Sequence[bytes], *, path: Path | None = None) -> None:
        if not keys:
            raise CredentialError("a keyring needs at least one key")
        self._lock = threading.Lock()
        self._path = path
        self._stamp = self._file_stamp()
        self._set(keys)

    def _set(self, keys: Sequence[bytes]) -> None:
        self._keys = list(keys)
        self._by_id: dict[bytes, AESGCM] = {}
        for key in self._keys:
            self._by_id.setdefault(key_id(key), AESGCM(key))

    def _file_stamp(self) -> tuple[int, int] | None:
        if self._path is None:
            return None
        try:
            stat = self._path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_ino)

    @property
    def path(self) -> Path | None:
        """The key file this keyring was read from (None for the environment)."""
        return self._path

    @property
    def active_id(self) -> bytes:
        """Id of the key new ciphertexts use."""
        self.refresh()
        return key_id(self._keys[0])

    @property
    def key_ids(self) -> list[bytes]:
        """Ids of every key, active first."""
        self.refresh()
        return [key_id(k) for k in self._keys]

    @property
    def keys(self) -> list[bytes]:
        """The keys, active first (for rotation only)."""
        self.refresh()
        return list(self._keys)

    def refresh(self) -> None:
        """Re-read the key file if it changed since it was read."""
        stamp = self._file_stamp()
        if self._path is None or stamp is None or stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            keys = _parse_key_file(self._path.read_text(encoding="ascii"), self._path)
            self._set(keys)
            self._stamp = stamp
            log.info("credential keys reloaded from %s (%d key(s))", self._path, len(keys))

    def replace(self, keys: Sequence[bytes]) -> None:
        """Use `keys` (active first) from now on; the file, if any, is rewritten."""
        with self._lock:
            if self._path is not None:
                write_key_file(self._path, keys)
                self._stamp = self._file_stamp()
            self._set(keys)

    def encrypt(self, plaintext: bytes, associated: bytes) -> bytes:
        """Encrypt with the active key."""
        self.refresh()
        key = self._keys[0]
        nonce = secrets.token_bytes(_NONCE_LEN)
        sealed = self._by_id[key_id(key)].encrypt(nonce, plaintext, associated)
        return _MAGIC + key_id(key) + nonce + sealed

    def decrypt(self, blob: bytes, associated: bytes) -> bytes:
        """Decrypt a ciphertext made with any key of the ring."""
        self.refresh()
        header = len(_MAGIC) + _KEY_ID_LEN + _NONCE_LEN
        if len(blob) <= header or not blob.startswith(_MAGIC):
            raise CredentialError("not a GridWatch credential ciphertext")
        kid = blob[len(_MAGIC) : len(_MAGIC) + _KEY_ID_LEN]
        cipher = self._by_id.get(kid)
        if cipher is None:
            raise CredentialError(f"encrypted with unknown key {kid.hex()}")
        nonce = blob[len(_MAGIC) + _KEY_ID_LEN : header]
        try:
            return cipher.decrypt(nonce, blob[header:], associated)
        except InvalidTag as exc:
            raise CredentialError("credential ciphertext failed authentication") from exc

    @staticmethod
    def blob_key_id(blob: bytes) -> bytes | None:
        """The key id a ciphertext names, without decrypting it."""
        if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + _KEY_ID_LEN:
            return None
        return blob[len(_MAGIC) : len(_MAGIC) + _KEY_ID_LEN]


def load_keyring(
    key_file: Path, *, environ: Mapping[str, str] | None = None, create: bool = True
) -> Keyring:
    """The keyring from the environment, else from `key_file` (created when missing)."""
    env = os.environ if environ is None else environ
    from_env = env.get(KEY_ENV_VAR)
    if from_env:
        return Keyring([_decode_key(from_env, KEY_ENV_VAR)])
    if not key_file.exists():
        if not create:
            raise CredentialError(f"{key_file}: no credential key file")
        write_key_file(key_file, [generate_key()])
        log.warning("created a new credential key at %s; back it up with the database", key_file)
    mode = key_file.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("credential key file %s is readable by others (mode %o)", key_file, mode)
    keys = _parse_key_file(key_file.read_text(encoding="ascii"), key_file)
    return Keyring(keys, path=key_file)


@dataclass(frozen=True)
class CredentialCipher:
    """Credentials ⇄ ciphertext, bound to the device id they belong to."""

    keyring: Keyring

    def seal(self, device_id: str, credentials: Credentials) -> bytes:
        """Encrypt `credentials` for `device_id`."""
        plaintext = json.dumps(
            {"u": credentials.username, "p": credentials.password.get_secret_value()},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")
        return self.keyring.encrypt(plaintext, device_id.encode("utf-8"))

    def open(self, device_id: str, blob: bytes) -> Credentials:
        """Decrypt the credentials stored for `device_id`."""
        plaintext = self.keyring.decrypt(bytes(blob), device_id.encode("utf-8"))
        data = json.loads(plaintext.decode("utf-8"))
        return Credentials(username=data["u"], password=SecretStr(data["p"]))

    def reseal(self, device_id: str, blob: bytes) -> bytes | None:
        """The ciphertext re-encrypted with the active key; None if it already uses it."""
        if Keyring.blob_key_id(bytes(blob)) == self.keyring.active_id:
            return None
        plaintext = self.keyring.decrypt(bytes(blob), device_id.encode("utf-8"))
        return self.keyring.encrypt(plaintext, device_id.encode("utf-8"))
