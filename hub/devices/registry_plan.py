"""Planning a registry write: which devices are new, changed or unchanged, which are
refused and why, and applying the plan with its audit rows in the caller's transaction.

A device's jurisdiction code is resolved to its path and checked against the caller's
scope first (`resolve_path`); `plan_changes` then compares every device with its stored
row (fields and login), refuses ids in use outside the caller's scope and MQTT ids
taken by another device, and seals new logins. Nothing is written until `apply_plan`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from camera_registry.jurisdiction import is_within
from camera_registry.models import Credentials, DeviceIn
from hub.crypto import CredentialCipher, CredentialError
from hub.devices import storage as repo
from hub.devices.registry_types import Actor, OutOfScope, UnknownJurisdiction
from hub.storage import SqlStore, Tx

__all__ = ["Plan", "apply_plan", "in_scope", "plan_changes", "resolve_path"]


@dataclass(frozen=True, slots=True)
class Plan:
    """The rows a write inserts and updates, and how many devices it leaves as they are."""

    inserts: list[repo.DeviceRow]
    updates: list[repo.DeviceRow]
    unchanged: int

    @property
    def written(self) -> list[repo.DeviceRow]:
        """Every row the plan writes."""
        return [*self.inserts, *self.updates]


def in_scope(path: str | None, scope: Sequence[str] | None) -> bool:
    """True when a jurisdiction path lies within the caller's scope (None: everything)."""
    if scope is None or "/" in scope:
        return True
    if path is None:
        return False
    return any(is_within(path, allowed) for allowed in scope)


def resolve_path(
    device: DeviceIn, paths: Mapping[str, str], scope: Sequence[str] | None
) -> str | None:
    """The device's jurisdiction path; UnknownJurisdiction or OutOfScope when it has none
    the caller may use."""
    path = None
    if device.jurisdiction is not None:
        path = paths.get(device.jurisdiction)
        if path is None:
            raise UnknownJurisdiction(f"unknown jurisdiction code {device.jurisdiction}")
    if not in_scope(path, scope):
        raise OutOfScope("the device's jurisdiction is outside your scope")
    return path


def _same_login(
    cipher: CredentialCipher, device_id: str, blob: bytes, credentials: Credentials
) -> bool:
    try:
        stored = cipher.open(device_id, blob)
    except CredentialError:
        return False
    return (
        stored.username == credentials.username
        and stored.password.get_secret_value() == credentials.password.get_secret_value()
    )


async def plan_changes(
    tx: Tx,
    store: SqlStore,
    cipher: CredentialCipher,
    devices: Sequence[tuple[DeviceIn, str | None]],
    scope: Sequence[str] | None,
    *,
    clear_credentials: bool = False,
) -> tuple[Plan, dict[str, str]]:
    """Split devices into inserts / updates / unchanged; problems by device id."""
    problems: dict[str, str] = {}
    existing = await repo.existing_for_compare(tx, store, [d.id for d, _ in devices])
    mqtt_ids = [d.mqtt_device_id for d, _ in devices if d.mqtt_device_id]
    taken = await repo.taken_mqtt_ids(tx, mqtt_ids) if mqtt_ids else {}
    inserts: list[repo.DeviceRow] = []
    updates: list[repo.DeviceRow] = []
    unchanged = 0
    for device, path in devices:
        owner = taken.get(device.mqtt_device_id or "")
        if owner is not None and owner != device.id:
            problems[device.id] = f"MQTT device id already used by {owner}"
            continue
        old = existing.get(device.id)
        if old is None:
            sealed = cipher.seal(device.id, device.credentials) if device.credentials else None
            inserts.append(repo.DeviceRow(device, path, sealed))
            continue
        old_values, old_blob, old_path = old
        if not in_scope(old_path, scope):
            problems[device.id] = "the id is in use outside your jurisdiction"
            continue
        same_fields = old_values == repo.compare_values(device, path)
        sealed = None
        same_credentials = True
        if clear_credentials:
            same_credentials = old_blob is None
        elif device.credentials is not None:
            same_credentials = old_blob is not None and _same_login(
                cipher, device.id, old_blob, device.credentials
            )
            if not same_credentials:
                sealed = cipher.seal(device.id, device.credentials)
        if same_fields and same_credentials:
            unchanged += 1
            continue
        updates.append(
            repo.DeviceRow(
                device,
                path,
                sealed,
                clear_credentials=clear_credentials and old_blob is not None,
            )
        )
    return Plan(inserts, updates, unchanged), problems


async def apply_plan(tx: Tx, store: SqlStore, plan: Plan, actor: Actor, now: datetime) -> None:
    """Write the plan's rows and one audit row per device in the caller's transaction."""
    await repo.insert_devices(tx, plan.inserts, now, dialect=store.dialect)
    await repo.update_devices(tx, plan.updates, now)
    # One row per device (who changed which device stays one indexed question);
    # details never carry credentials.
    await repo.audit_device_changes(
        tx,
        store,
        [(action, r.device.id, _audit_details(r)) for action, r in _changes(plan)],
        actor=actor.name,
        remote_addr=actor.remote_addr,
        now=now,
    )


def _changes(plan: Plan) -> Iterable[tuple[str, repo.DeviceRow]]:
    for row in plan.inserts:
        yield "device.create", row
    for row in plan.updates:
        yield "device.update", row


def _audit_details(row: repo.DeviceRow) -> dict[str, Any]:
    return {"credentials_changed": row.credentials is not None or row.clear_credentials}
