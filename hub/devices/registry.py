"""The device registry service: devices and jurisdictions with scope, audit and encryption.

Routes, the CLI and other services call this, never `hub.devices.storage`
directly for the registry's own reads and writes (its types are in
`registry_types`, tree files are read by `jurisdiction_files`; both are re-exported
here). Its concerns live beside it: `registry_plan` (which devices a write creates,
changes or refuses), `registry_tree` (tree changes), `registry_cache` (the lookup
cache and change listeners), `registry_counts` (folding the count deltas). It

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
from collections.abc import Callable, Sequence

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
from camera_registry.jurisdiction import JurisdictionNode
from camera_registry.logins import LoginBudget
from camera_registry.models import Credentials, DeviceIn
from camera_registry.urls import with_credentials
from hub.auth.audit_storage import record as audit_record
from hub.clock import utcnow
from hub.crypto import CredentialCipher
from hub.devices import storage as repo
from hub.devices.jurisdiction_files import parse_jurisdictions
from hub.devices.registry_cache import ChangeListeners, RegistryCache
from hub.devices.registry_counts import FOLD_AFTER_DELTAS, CountFolder
from hub.devices.registry_plan import Plan, apply_plan, in_scope, plan_changes, resolve_path
from hub.devices.registry_tree import upsert_tree
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

_EXPORT_PAGE = 1000


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
        self._cache = RegistryCache()
        self._listeners = ChangeListeners()
        self._counts = CountFolder(store)
        self._write_lock = asyncio.Lock()
        self._jpaths: dict[str, str] | None = None

    # -- lifecycle and cache ------------------------------------------------

    async def start(self, *, fold_counts: bool = True) -> None:
        """Load the lookup cache and start folding count deltas in the background (unless
        a cluster runs `run_count_folding` on one node)."""
        await self.refresh()
        if fold_counts:
            self._counts.start()

    async def stop(self) -> None:
        """Stop the background folding."""
        await self._counts.stop()

    async def fold_counts(self, *, force: bool = False) -> int:
        """Fold the subtree count deltas when enough have piled up (or `force`)."""
        return await self._counts.fold(force=force)

    async def run_count_folding(self) -> None:
        """Fold jurisdiction count deltas when enough piled up, until cancelled."""
        await self._counts.run()

    async def refresh(self) -> None:
        """Reload the lookup cache from storage (changes made by other hub nodes)."""
        rows = await repo.cached_rows(self.store)
        self._jpaths = None
        self._cache.replace(CachedDevice(*r) for r in rows)
        self._listeners.notify(DeviceChange("refreshed", ()))

    def lookup_cached(self, device_id: str) -> CachedDevice | None:
        """The cached device with this registry id (no I/O; safe from any thread)."""
        return self._cache.lookup(device_id)

    def lookup_mqtt(self, mqtt_device_id: str) -> CachedDevice | None:
        """The cached device with this MQTT device id (no I/O; safe from any thread)."""
        return self._cache.lookup_mqtt(mqtt_device_id)

    def on_change(self, listener: Callable[[DeviceChange], None]) -> Callable[[], None]:
        """Call `listener` after every committed change; returns an unsubscribe function."""
        return self._listeners.add(listener)

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

    async def _plan(
        self,
        tx: Tx,
        devices: Sequence[tuple[DeviceIn, str | None]],
        scope: Sequence[str] | None,
        *,
        clear_credentials: bool = False,
    ) -> tuple[Plan, dict[str, str]]:
        return await plan_changes(
            tx, self.store, self.cipher, devices, scope, clear_credentials=clear_credentials
        )

    def _after_commit(self, plan: Plan) -> None:
        self._cache.put(plan.written)
        if plan.inserts:
            self._listeners.notify(
                DeviceChange("created", tuple(r.device.id for r in plan.inserts))
            )
        if plan.updates:
            self._listeners.notify(
                DeviceChange("updated", tuple(r.device.id for r in plan.updates))
            )

    async def create(
        self, device: DeviceIn, *, actor: Actor, scope: Sequence[str] | None
    ) -> repo.StoredDevice:
        """Create a device; RegistryConflict if the id exists."""
        path = resolve_path(device, await self._paths(), scope)
        async with self._write_lock, self.store.transaction() as tx:
            if await repo.device_exists(tx, device.id):
                raise RegistryConflict(f"device {device.id} already exists")
            plan, problems = await self._plan(tx, [(device, path)], scope)
            if problems:
                raise RegistryConflict(problems[device.id])
            await apply_plan(tx, self.store, plan, actor, utcnow())
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
        path = resolve_path(device, await self._paths(), scope)
        async with self._write_lock, self.store.transaction() as tx:
            plan, problems = await self._plan(
                tx, [(device, path)], scope, clear_credentials=clear_credentials
            )
            if problems:
                raise RegistryConflict(problems[device.id])
            await apply_plan(tx, self.store, plan, actor, utcnow())
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
            self._cache.drop(device_id)
            self._listeners.notify(DeviceChange("deleted", (device_id,)))
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
                resolved.append((device, resolve_path(device, paths, scope)))
            except (UnknownJurisdiction, OutOfScope) as exc:
                problems[device.id] = str(exc)
        async with self._write_lock, self.store.transaction() as tx:
            plan, more = await self._plan(tx, resolved, scope)
            problems.update(more)
            counts = UpsertCounts(len(plan.inserts), len(plan.updates), plan.unchanged)
            if problems or dry_run:
                return counts, problems
            await apply_plan(tx, self.store, plan, actor, utcnow())
        self._after_commit(plan)
        await self._counts.after_write(len(plan.written))
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
            if not in_scope(path, scope):
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
            await apply_plan(tx, self.store, plan, actor, utcnow())
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
        await self._counts.after_write(len(plan.written))
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
        if found is None or not in_scope(found[1], scope):
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
            change = await upsert_tree(tx, self.store, nodes)
            await audit_record(
                tx,
                actor.name,
                "jurisdiction.upsert",
                None,
                actor.remote_addr,
                {
                    "created": change.created,
                    "updated": change.updated,
                    "codes": [n.code for n in nodes][:50],
                },
            )
        self._jpaths = None
        if change.moved:
            await self.refresh()
            await self._counts.after_write(FOLD_AFTER_DELTAS)
        return change.created, change.updated

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
