"""The device registry service: devices and jurisdictions with scope, audit and encryption.

Routes, the CLI and other services call this, never `hub.devices.storage`
directly (its types are in `registry_types`, tree files are read by
`jurisdiction_files`; both are re-exported here). It

- checks jurisdiction codes and scope before anything is written;
- seals credentials with the hub's `CredentialCipher` (and decrypts them only for
  server-side users: `credentials_for`, `rtsp_urls_with_credentials`);
- writes an audit row for every device change in the same transaction;
- keeps an in-memory lookup (`lookup_cached`, `lookup_mqtt`) for hot paths such
  as MQTT ingest, refreshed on every change made here and by `refresh()` for
  changes made by another hub node, and tells listeners (`on_change`);
- folds the subtree count deltas (`compact_counts`) after large writes and in a
  background loop while started, so counts stay a small sum.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from camera_registry.gb28181 import GbId, next_free_id
from camera_registry.geo import GeoPoint, bounding_box, nearest
from camera_registry.importer import (
    MAX_IMPORT_BYTES,
    ImportReport,
    Lang,
    RowError,
    export_csv,
    export_xlsx,
    import_devices,
)
from camera_registry.jurisdiction import (
    JurisdictionNode,
    JurisdictionTreeError,
    TreeProblem,
    build_tree,
    is_within,
)
from camera_registry.logins import LoginBudget
from camera_registry.models import Credentials, DeviceIn
from camera_registry.urls import with_credentials
from hub.auth.audit_storage import record as audit_record
from hub.clock import utcnow
from hub.crypto import CredentialCipher, CredentialError
from hub.devices import storage as repo
from hub.devices.jurisdiction_files import parse_jurisdictions
from hub.devices.registry_types import (
    Actor,
    CachedDevice,
    DeviceChange,
    ImportOutcome,
    OutOfScope,
    RegistryConflict,
    UnknownJurisdiction,
    UpsertCounts,
)
from hub.storage import SqlStore, Tx

__all__ = [
    "Actor",
    "CachedDevice",
    "DeviceChange",
    "ImportOutcome",
    "OutOfScope",
    "Registry",
    "RegistryConflict",
    "UnknownJurisdiction",
    "UpsertCounts",
    "parse_jurisdictions",
]

log = logging.getLogger(__name__)

_EXPORT_PAGE = 1000
# Count deltas: fold when this many have piled up since the last fold; look every
# this many seconds (health changes add deltas without passing through here).
_FOLD_AFTER_DELTAS = 5000
_FOLD_CHECK_S = 30.0


@dataclass(frozen=True, slots=True)
class _Plan:
    inserts: list[repo.DeviceRow]
    updates: list[repo.DeviceRow]
    unchanged: int


class Registry:
    """Devices and jurisdictions: the one way the hub reads and changes the registry."""

    def __init__(
        self,
        store: SqlStore,
        cipher: CredentialCipher,
        *,
        linkage_radius_m: float = 300.0,
        linkage_limit: int = 5,
    ) -> None:
        self.store = store
        self.cipher = cipher
        #: Every camera's login-failure budget, shared by ONVIF, RTSP probes and snapshots.
        self.logins = LoginBudget()
        self.linkage_radius_m = linkage_radius_m
        self.linkage_limit = linkage_limit
        self._by_id: dict[str, CachedDevice] = {}
        self._by_mqtt: dict[str, CachedDevice] = {}
        self._cache_lock = threading.Lock()
        self._listeners: list[Callable[[DeviceChange], None]] = []
        self._write_lock = asyncio.Lock()
        self._jpaths: dict[str, str] | None = None
        self._folded_rows = 0
        self._fold_task: asyncio.Task[None] | None = None

    # -- lifecycle and cache ------------------------------------------------

    async def start(self, *, fold_counts: bool = True) -> None:
        """Load the lookup cache and start folding count deltas in the background (unless
        a cluster runs `run_count_folding` on one node)."""
        await self.refresh()
        if fold_counts and self._fold_task is None:
            self._fold_task = asyncio.create_task(self.run_count_folding(), name="registry-counts")

    async def stop(self) -> None:
        """Stop the background folding."""
        task, self._fold_task = self._fold_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def fold_counts(self, *, force: bool = False) -> int:
        """Fold the subtree count deltas when enough have piled up (or `force`)."""
        if not force and await repo.count_deltas(self.store) < (
            self._folded_rows + _FOLD_AFTER_DELTAS
        ):
            return 0
        folded = await repo.compact_counts(self.store)
        self._folded_rows = await repo.count_deltas(self.store)
        return folded

    async def run_count_folding(self) -> None:
        """Fold jurisdiction count deltas when enough piled up, until cancelled."""
        while True:
            await asyncio.sleep(_FOLD_CHECK_S)
            try:
                await self.fold_counts()
            except Exception:
                log.exception("folding device count deltas failed; will retry")

    async def _fold_after(self, written: int) -> None:
        # After a large write, right away: its deltas would slow every count read,
        # and the planner would go on planning for the registry's old size.
        if written < _FOLD_AFTER_DELTAS:
            return
        try:
            await self.fold_counts(force=True)
            await repo.refresh_statistics(self.store)
        except Exception:
            log.exception("folding device count deltas failed; the background loop will retry")

    async def refresh(self) -> None:
        """Reload the lookup cache from storage (changes made by other hub nodes)."""
        rows = await repo.cached_rows(self.store)
        self._jpaths = None
        by_id = {r[0]: CachedDevice(*r) for r in rows}
        by_mqtt = {c.mqtt_device_id: c for c in by_id.values() if c.mqtt_device_id}
        with self._cache_lock:
            self._by_id, self._by_mqtt = by_id, by_mqtt
        self._notify(DeviceChange("refreshed", ()))

    def lookup_cached(self, device_id: str) -> CachedDevice | None:
        """The cached device with this registry id (no I/O; safe from any thread)."""
        return self._by_id.get(device_id)

    def lookup_mqtt(self, mqtt_device_id: str) -> CachedDevice | None:
        """The cached device with this MQTT device id (no I/O; safe from any thread)."""
        return self._by_mqtt.get(mqtt_device_id)

    def on_change(self, listener: Callable[[DeviceChange], None]) -> Callable[[], None]:
        """Call `listener` after every committed change; returns an unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _notify(self, change: DeviceChange) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("device change listener failed")

    def _cache_put(self, rows: Iterable[repo.DeviceRow]) -> None:
        with self._cache_lock:
            for row in rows:
                d = row.device
                old = self._by_id.get(d.id)
                if old is not None and old.mqtt_device_id:
                    self._by_mqtt.pop(old.mqtt_device_id, None)
                entry = CachedDevice(
                    d.id, d.kind.value, d.mqtt_device_id, row.jurisdiction_path, d.enabled
                )
                self._by_id[d.id] = entry
                if d.mqtt_device_id:
                    self._by_mqtt[d.mqtt_device_id] = entry

    def _cache_drop(self, device_id: str) -> None:
        with self._cache_lock:
            old = self._by_id.pop(device_id, None)
            if old is not None and old.mqtt_device_id:
                self._by_mqtt.pop(old.mqtt_device_id, None)

    # -- reads --------------------------------------------------------------

    async def get(self, device_id: str, *, scope: Sequence[str] | None) -> repo.StoredDevice | None:
        """A device within `scope`, or None (missing and out of scope look the same)."""
        return await repo.get_device(self.store, device_id, scope=scope)

    async def list_devices(
        self,
        flt: repo.DeviceFilter,
        *,
        scope: Sequence[str] | None,
        sort: str = "id",
        descending: bool = False,
        limit: int = 100,
        cursor: str | None = None,
    ) -> repo.DevicePage:
        """One page of devices; raises `repo.CursorError` for a foreign cursor."""
        return await repo.list_devices(
            self.store,
            flt,
            scope=scope,
            sort=sort,
            descending=descending,
            limit=limit,
            cursor=cursor,
        )

    async def iter_all(
        self, flt: repo.DeviceFilter, *, scope: Sequence[str] | None
    ) -> list[repo.StoredDevice]:
        """Every matching device (for export), fetched page by page."""
        found: list[repo.StoredDevice] = []
        cursor: str | None = None
        while True:
            page = await self.list_devices(flt, scope=scope, limit=_EXPORT_PAGE, cursor=cursor)
            found.extend(page.items)
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor

    async def export(
        self, flt: repo.DeviceFilter, *, scope: Sequence[str] | None, fmt: str, lang: Lang
    ) -> bytes:
        """The matching devices as a CSV or XLSX sheet in the import format."""
        devices = [item.device for item in await self.iter_all(flt, scope=scope)]
        writer = export_xlsx if fmt == "xlsx" else export_csv
        return await asyncio.to_thread(writer, devices, lang)

    async def counts(self, path: str | None, *, scope: Sequence[str] | None) -> repo.SubtreeCounts:
        """Device counts under a jurisdiction path (None: the caller's whole scope)."""
        return await repo.count_subtree(self.store, path, scope=scope)

    async def nearby_cameras(
        self,
        device_id: str,
        *,
        scope: Sequence[str] | None,
        radius_m: float | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, str, float]] | None:
        """(id, name, metres) of the nearest enabled cameras; None if no such device.

        Raises ValueError when the device has no position.
        """
        found = await self.get(device_id, scope=scope)
        if found is None:
            return None
        device = found.device
        if device.latitude is None or device.longitude is None:
            raise ValueError("the device has no position")
        radius = self.linkage_radius_m if radius_m is None else radius_m
        center = GeoPoint(device.latitude, device.longitude)
        box = bounding_box(center, radius)
        candidates = await repo.located_cameras(
            self.store,
            (box.min_latitude, box.min_longitude, box.max_latitude, box.max_longitude),
            scope=scope,
            exclude=device_id,
        )
        ranked = nearest(
            center,
            (((cid, name), GeoPoint(lat, lon)) for cid, name, lat, lon in candidates),
            radius,
            self.linkage_limit if limit is None else limit,
        )
        return [(hit.item[0], hit.item[1], hit.distance_m) for hit in ranked]

    async def next_gb_id(
        self, jurisdiction: str, type_code: int, *, industry: str = "00", network: int = 0
    ) -> GbId:
        """The lowest free GB/T 28181 id for a jurisdiction (its 8-digit center) and type."""
        center = (jurisdiction + "00")[:8]
        first = GbId.compose(center, industry, type_code, network, 1)
        taken = await repo.gb_ids_with_prefix(self.store, first.prefix)
        return next_free_id(center, industry, type_code, network, taken)

    # -- credentials (server side only) ---------------------------------------

    async def credentials_for(self, device_id: str) -> Credentials | None:
        """The decrypted login of a device, for adapters (ONVIF, RTSP). Never return it."""
        blob = await repo.device_credentials(self.store, device_id)
        if blob is None:
            return None
        return await asyncio.to_thread(self.cipher.open, device_id, blob)

    async def rtsp_urls_with_credentials(self, device_id: str) -> list[str]:
        """The device's RTSP URLs with its login inserted, for opening streams server-side."""
        found = await repo.get_device(self.store, device_id, scope=None)
        if found is None:
            return []
        credentials = await self.credentials_for(device_id)
        if credentials is None:
            return list(found.device.rtsp_urls)
        password = credentials.password.get_secret_value()
        return [
            with_credentials(url, credentials.username, password) for url in found.device.rtsp_urls
        ]

    # -- writes ---------------------------------------------------------------

    async def _paths(self) -> dict[str, str]:
        paths = self._jpaths
        if paths is None:
            paths = self._jpaths = await repo.jurisdiction_paths(self.store)
        return paths

    async def path_of(self, code: str) -> str | None:
        """The materialized path of a jurisdiction code (cached), or None if unknown."""
        path = (await self._paths()).get(code)
        if path is None:
            # Another hub node may have added it.
            self._jpaths = None
            path = (await self._paths()).get(code)
        return path

    def _resolve(
        self, device: DeviceIn, paths: Mapping[str, str], scope: Sequence[str] | None
    ) -> str | None:
        path = None
        if device.jurisdiction is not None:
            path = paths.get(device.jurisdiction)
            if path is None:
                raise UnknownJurisdiction(f"unknown jurisdiction code {device.jurisdiction}")
        if not _in_scope(path, scope):
            raise OutOfScope("the device's jurisdiction is outside your scope")
        return path

    async def _plan(
        self,
        tx: Tx,
        devices: Sequence[tuple[DeviceIn, str | None]],
        scope: Sequence[str] | None,
        *,
        clear_credentials: bool = False,
    ) -> tuple[_Plan, dict[str, str]]:
        """Split devices into inserts / updates / unchanged; problems by device id."""
        problems: dict[str, str] = {}
        existing = await repo.existing_for_compare(tx, self.store, [d.id for d, _ in devices])
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
                sealed = (
                    self.cipher.seal(device.id, device.credentials) if device.credentials else None
                )
                inserts.append(repo.DeviceRow(device, path, sealed))
                continue
            old_values, old_blob, old_path = old
            if not _in_scope(old_path, scope):
                problems[device.id] = "the id is in use outside your jurisdiction"
                continue
            same_fields = old_values == repo.compare_values(device, path)
            sealed = None
            same_credentials = True
            if clear_credentials:
                same_credentials = old_blob is None
            elif device.credentials is not None:
                same_credentials = old_blob is not None and self._same_login(
                    device.id, old_blob, device.credentials
                )
                if not same_credentials:
                    sealed = self.cipher.seal(device.id, device.credentials)
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
        return _Plan(inserts, updates, unchanged), problems

    def _same_login(self, device_id: str, blob: bytes, credentials: Credentials) -> bool:
        try:
            stored = self.cipher.open(device_id, blob)
        except CredentialError:
            return False
        return (
            stored.username == credentials.username
            and stored.password.get_secret_value() == credentials.password.get_secret_value()
        )

    async def _apply(self, tx: Tx, plan: _Plan, actor: Actor, now: datetime) -> None:
        await repo.insert_devices(tx, plan.inserts, now, dialect=self.store.dialect)
        await repo.update_devices(tx, plan.updates, now)
        # One row per device (who changed which device stays one indexed question);
        # details never carry credentials.
        await repo.audit_device_changes(
            tx,
            self.store,
            [(action, r.device.id, _audit_details(r)) for action, r in _changes(plan)],
            actor=actor.name,
            remote_addr=actor.remote_addr,
            now=now,
        )

    def _after_commit(self, plan: _Plan) -> None:
        self._cache_put([*plan.inserts, *plan.updates])
        if plan.inserts:
            self._notify(DeviceChange("created", tuple(r.device.id for r in plan.inserts)))
        if plan.updates:
            self._notify(DeviceChange("updated", tuple(r.device.id for r in plan.updates)))

    async def create(
        self, device: DeviceIn, *, actor: Actor, scope: Sequence[str] | None
    ) -> repo.StoredDevice:
        """Create a device; RegistryConflict if the id exists."""
        path = self._resolve(device, await self._paths(), scope)
        async with self._write_lock, self.store.transaction() as tx:
            if await repo.device_exists(tx, device.id):
                raise RegistryConflict(f"device {device.id} already exists")
            plan, problems = await self._plan(tx, [(device, path)], scope)
            if problems:
                raise RegistryConflict(problems[device.id])
            await self._apply(tx, plan, actor, utcnow())
        self._after_commit(plan)
        return await self._must_get(device.id)

    async def update(
        self,
        device: DeviceIn,
        *,
        actor: Actor,
        scope: Sequence[str] | None,
        clear_credentials: bool = False,
    ) -> repo.StoredDevice | None:
        """Replace a device's fields (credentials kept unless given or cleared); None if absent."""
        if await self.get(device.id, scope=scope) is None:
            return None
        path = self._resolve(device, await self._paths(), scope)
        async with self._write_lock, self.store.transaction() as tx:
            plan, problems = await self._plan(
                tx, [(device, path)], scope, clear_credentials=clear_credentials
            )
            if problems:
                raise RegistryConflict(problems[device.id])
            await self._apply(tx, plan, actor, utcnow())
        self._after_commit(plan)
        return await self._must_get(device.id)

    async def _must_get(self, device_id: str) -> repo.StoredDevice:
        found = await repo.get_device(self.store, device_id, scope=None)
        if found is None:
            raise LookupError(f"device {device_id} vanished")
        return found

    async def delete(self, device_id: str, *, actor: Actor, scope: Sequence[str] | None) -> bool:
        """Delete a device within scope; False if there is none."""
        async with self._write_lock, self.store.transaction() as tx:
            gone = await repo.delete_device(tx, self.store, device_id, scope)
            if gone:
                await audit_record(
                    tx, actor.name, "device.delete", device_id, actor.remote_addr, {}
                )
        if gone:
            self._cache_drop(device_id)
            self._notify(DeviceChange("deleted", (device_id,)))
        return gone

    async def bulk_upsert(
        self,
        devices: Sequence[DeviceIn],
        *,
        actor: Actor,
        scope: Sequence[str] | None,
        dry_run: bool = False,
    ) -> tuple[UpsertCounts, dict[str, str]]:
        """Create or update many devices by id, all or nothing; unchanged rows are skipped.

        Returns the counts and, by device id, why rows were refused (nothing is
        written when any was).
        """
        paths = await self._paths()
        problems: dict[str, str] = {}
        resolved: list[tuple[DeviceIn, str | None]] = []
        seen: set[str] = set()
        for device in devices:
            if device.id in seen:
                problems[device.id] = "the id appears more than once"
                continue
            seen.add(device.id)
            try:
                resolved.append((device, self._resolve(device, paths, scope)))
            except (UnknownJurisdiction, OutOfScope) as exc:
                problems[device.id] = str(exc)
        async with self._write_lock, self.store.transaction() as tx:
            plan, more = await self._plan(tx, resolved, scope)
            problems.update(more)
            counts = UpsertCounts(len(plan.inserts), len(plan.updates), plan.unchanged)
            if problems or dry_run:
                return counts, problems
            await self._apply(tx, plan, actor, utcnow())
        self._after_commit(plan)
        await self._fold_after(len(plan.inserts) + len(plan.updates))
        return counts, problems

    async def import_file(
        self,
        data: bytes,
        *,
        actor: Actor,
        scope: Sequence[str] | None,
        dry_run: bool = False,
        partial: bool = False,
        progress: Callable[[int], None] | None = None,
        max_bytes: int = MAX_IMPORT_BYTES,
    ) -> ImportOutcome:
        """Import a CSV/XLSX sheet: every bad row reported; all-or-nothing unless `partial`."""
        paths = await self._paths()
        report: ImportReport = await asyncio.to_thread(
            import_devices,
            data,
            known_jurisdictions=paths.keys(),
            max_bytes=max_bytes,
            progress=progress,
        )
        outcome = ImportOutcome(
            errors=list(report.errors),
            rows=len(report.rows) + len(report.bad_rows),
            format=report.format,
            encoding=report.encoding,
        )
        resolved: list[tuple[int, DeviceIn, str | None]] = []
        for row, device in report.rows:
            path = paths.get(device.jurisdiction) if device.jurisdiction else None
            if not _in_scope(path, scope):
                outcome.errors.append(
                    RowError(row, "jurisdiction", device.jurisdiction, "outside your jurisdiction")
                )
                continue
            resolved.append((row, device, path))
        row_of = {device.id: row for row, device, _ in resolved}
        async with self._write_lock, self.store.transaction() as tx:
            plan, problems = await self._plan(tx, [(d, p) for _, d, p in resolved], scope)
            for device_id, reason in problems.items():
                outcome.errors.append(RowError(row_of[device_id], "id", device_id, reason))
            outcome.errors.sort(key=lambda e: e.row)
            outcome.counts = UpsertCounts(len(plan.inserts), len(plan.updates), plan.unchanged)
            if dry_run or (outcome.errors and not partial):
                return outcome
            await self._apply(tx, plan, actor, utcnow())
            await audit_record(
                tx,
                actor.name,
                "device.import",
                None,
                actor.remote_addr,
                {
                    "created": len(plan.inserts),
                    "updated": len(plan.updates),
                    "unchanged": plan.unchanged,
                    "errors": len(outcome.errors),
                    "partial": partial,
                },
            )
        outcome.written = True
        self._after_commit(plan)
        await self._fold_after(len(plan.inserts) + len(plan.updates))
        return outcome

    # -- jurisdictions ----------------------------------------------------------

    async def jurisdictions(
        self, *, under: str | None = None, scope: Sequence[str] | None
    ) -> list[tuple[JurisdictionNode, str]]:
        """Nodes (with paths) within scope, optionally under one node's path."""
        return await repo.list_jurisdictions(self.store, under=under, scope=scope)

    async def jurisdiction(
        self, code: str, *, scope: Sequence[str] | None
    ) -> tuple[JurisdictionNode, str] | None:
        """One node within scope."""
        found = await repo.get_jurisdiction(self.store, code)
        if found is None or not _in_scope(found[1], scope):
            return None
        return found

    async def upsert_jurisdictions(
        self, nodes: Sequence[JurisdictionNode], *, actor: Actor
    ) -> tuple[int, int]:
        """Create or change nodes (admin); the whole tree is re-checked first.

        Raises JurisdictionTreeError listing every problem. Devices under a
        moved node follow it. Returns (created, updated).
        """
        async with self._write_lock, self.store.transaction() as tx:
            current = await repo.all_jurisdictions(tx=tx)
            old_nodes = {node.code: node for node, _ in current}
            old_paths = {node.code: path for node, path in current}
            codes = [n.code for n in nodes]
            duplicates = (
                sorted({c for c in codes if codes.count(c) > 1})
                if len(set(codes)) != len(codes)
                else []
            )
            if duplicates:
                raise JurisdictionTreeError(
                    TreeProblem(code, "code appears more than once") for code in duplicates
                )
            merged = {**old_nodes, **{n.code: n for n in nodes}}
            paths = build_tree(merged.values())
            changed = [
                (node, paths[node.code])
                for node in merged.values()
                if old_nodes.get(node.code) != node or paths[node.code] != old_paths[node.code]
            ]
            created, updated = await repo.upsert_jurisdiction_rows(tx, changed, old_paths)
            moved = [
                (old_paths[node.code], path)
                for node, path in changed
                if node.code in old_paths and old_paths[node.code] != path
            ]
            # Deepest first is not needed: each device is rewritten from its own node's move.
            for old, new in sorted(moved, key=lambda m: -m[0].count("/")):
                await repo.move_subtree(tx, self.store, old, new)
            await audit_record(
                tx,
                actor.name,
                "jurisdiction.upsert",
                None,
                actor.remote_addr,
                {"created": created, "updated": updated, "codes": [n.code for n in nodes][:50]},
            )
        self._jpaths = None
        if moved:
            await self.refresh()
            await self._fold_after(_FOLD_AFTER_DELTAS)
        return created, updated

    # -- keys -----------------------------------------------------------------

    async def reencrypt_all(self, *, batch: int = 500) -> int:
        """Re-encrypt every stored credential with the active key; return how many changed."""
        changed = 0
        after = ""
        while True:
            rows = await repo.credential_blobs(self.store, after=after, limit=batch)
            if not rows:
                return changed
            sealed = []
            for device_id, blob in rows:
                new = self.cipher.reseal(device_id, blob)
                if new is not None:
                    sealed.append((device_id, blob, new))
            if sealed:
                async with self.store.transaction() as tx:
                    changed += await repo.update_credentials(tx, sealed)
            after = rows[-1][0]

    async def stale_credentials(self) -> int:
        """How many stored credentials do not use the active key."""
        active = self.cipher.keyring.active_id
        stale = 0
        after = ""
        while True:
            rows = await repo.credential_blobs(self.store, after=after, limit=2000)
            if not rows:
                return stale
            stale += sum(1 for _, blob in rows if self.cipher.keyring.blob_key_id(blob) != active)
            after = rows[-1][0]


def _in_scope(path: str | None, scope: Sequence[str] | None) -> bool:
    if scope is None or "/" in scope:
        return True
    if path is None:
        return False
    return any(is_within(path, allowed) for allowed in scope)


def _changes(plan: _Plan) -> Iterable[tuple[str, repo.DeviceRow]]:
    for row in plan.inserts:
        yield "device.create", row
    for row in plan.updates:
        yield "device.update", row


def _audit_details(row: repo.DeviceRow) -> dict[str, Any]:
    return {"credentials_changed": row.credentials is not None or row.clear_credentials}
