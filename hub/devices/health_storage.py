"""Device health storage: probe samples, state transitions, evidence, retention, and the
repository the patrol, the health API and the KPI report read through.

A patrol's results are written by `HealthRepository.record` in one transaction:
the samples, the transitions (history rows and the `device_state` columns the
registry list shows), the evidence snapshots and the learned baselines. Other
health sources (MQTT heartbeats, ONVIF, GB/T 28181) store their transitions with
`insert_transitions` inside their own transactions. The repository hands on to its
siblings: `patrol_storage` (runs, baselines), `kpi_storage` (state changes and
probe counts over a period) and the device storage's projections (patrol targets,
a device's current health, counts by state, jurisdictions).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from camera_registry.jurisdiction import JurisdictionNode
from hub.devices import kpi_storage, patrol_storage
from hub.devices import storage as devices_repo
from hub.devices.health_rows import (
    BaselineRow,
    EvidenceImage,
    HealthSampleRow,
    PatrolRunRow,
    ProbeCounts,
    StateChangeRow,
    StoredHealth,
    TransitionRow,
)
from hub.devices.storage import DeviceHealthRow, PatrolTarget
from hub.storage.base import (
    Json,
    Row,
    SqlStore,
    Tx,
    from_json,
    from_ts,
    to_db_time,
)

__all__ = [
    "BaselineRow",
    "EvidenceImage",
    "HealthRepository",
    "HealthSampleRow",
    "PatrolRunRow",
    "ProbeCounts",
    "StateChangeRow",
    "StoredHealth",
    "TransitionRow",
    "current_health",
    "insert_transitions",
]

_EPOCH = datetime.min.replace(tzinfo=UTC)


_SAMPLE_COLUMNS = (
    "time, device_id, ok, observed, failure, error, url, open_latency_ms, codec, width,"
    " height, fps, frames, verdicts, faults, evidence_id, patrol_id"
)


def _sample_from_row(row: Row) -> HealthSampleRow:
    return HealthSampleRow(
        time=from_ts(row[0]) or _EPOCH,
        device_id=row[1],
        ok=bool(row[2]),
        observed=row[3],
        failure=row[4],
        error=row[5],
        url=row[6],
        open_latency_ms=row[7],
        codec=row[8],
        width=row[9],
        height=row[10],
        fps=row[11],
        frames=int(row[12]),
        verdicts=list(from_json(row[13]) or []),
        faults=list(from_json(row[14]) or []),
        evidence_id=uuid.UUID(str(row[15])) if row[15] is not None else None,
        patrol_id=row[16],
    )


class HealthRepository:
    """All SQL of device health, over one store."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    # -- writing ------------------------------------------------------------

    async def record(
        self,
        *,
        samples: Sequence[HealthSampleRow] = (),
        transitions: Sequence[TransitionRow] = (),
        evidence: Sequence[EvidenceImage] = (),
        baselines: Sequence[BaselineRow] = (),
        now: datetime,
    ) -> None:
        """Store probe results, transitions, evidence and baselines in one transaction."""
        async with self.store.transaction() as tx:
            await self._insert_evidence(tx, evidence)
            await self._insert_samples(tx, samples)
            await self._insert_transitions(tx, transitions, now)
            await self._upsert_baselines(tx, baselines, now)

    async def _insert_evidence(self, tx: Tx, evidence: Sequence[EvidenceImage]) -> None:
        await tx.executemany(
            "INSERT INTO evidence_media (id, device_id, content_type, size, data, taken_at,"
            " source) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    e.id,
                    e.device_id,
                    e.content_type,
                    len(e.data),
                    e.data,
                    to_db_time(e.taken_at),
                    e.source,
                )
                for e in evidence
            ],
        )

    async def _insert_samples(self, tx: Tx, samples: Sequence[HealthSampleRow]) -> None:
        if not samples:
            return
        await tx.executemany(
            f"INSERT INTO health_samples ({_SAMPLE_COLUMNS}) VALUES"  # noqa: S608
            " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    to_db_time(s.time),
                    s.device_id,
                    s.ok,
                    s.observed,
                    s.failure,
                    s.error,
                    s.url,
                    s.open_latency_ms,
                    s.codec,
                    s.width,
                    s.height,
                    s.fps,
                    s.frames,
                    Json(s.verdicts),
                    Json(s.faults),
                    s.evidence_id,
                    s.patrol_id,
                )
                for s in samples
            ],
        )
        latest: dict[str, datetime] = {}
        for s in samples:
            if s.device_id not in latest or s.time > latest[s.device_id]:
                latest[s.device_id] = s.time
        await tx.executemany(
            "INSERT INTO device_state (device_id, health, last_probe_at, updated_at)"
            " VALUES (%s, 'unknown', %s, %s) ON CONFLICT (device_id) DO UPDATE SET"
            " last_probe_at = excluded.last_probe_at, updated_at = excluded.updated_at",
            [(device_id, to_db_time(at), to_db_time(at)) for device_id, at in latest.items()],
        )

    @staticmethod
    async def _insert_transitions(
        tx: Tx, transitions: Sequence[TransitionRow], now: datetime
    ) -> None:
        if not transitions:
            return
        await tx.executemany(
            "INSERT INTO device_health_history (device_id, at, from_state, to_state, reason,"
            " evidence) VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (
                    t.device_id,
                    to_db_time(t.at),
                    t.from_state,
                    t.to_state,
                    t.reason,
                    Json(_evidence_with_code(t)),
                )
                for t in transitions
            ],
        )
        # The newest transition per device is its current state.
        current: dict[str, TransitionRow] = {}
        for t in transitions:
            if t.device_id not in current or t.at >= current[t.device_id].at:
                current[t.device_id] = t
        await tx.executemany(
            "INSERT INTO device_state (device_id, health, health_since, health_reason,"
            " health_reason_code, health_reason_params, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (device_id) DO UPDATE SET"
            " health = excluded.health, health_since = excluded.health_since,"
            " health_reason = excluded.health_reason,"
            " health_reason_code = excluded.health_reason_code,"
            " health_reason_params = excluded.health_reason_params,"
            " updated_at = excluded.updated_at",
            [
                (
                    t.device_id,
                    t.to_state,
                    to_db_time(t.at),
                    t.reason,
                    t.reason_code,
                    Json(t.reason_params) if t.reason_code else None,
                    to_db_time(now),
                )
                for t in current.values()
            ],
        )

    async def _upsert_baselines(
        self, tx: Tx, baselines: Sequence[BaselineRow], now: datetime
    ) -> None:
        await tx.executemany(
            "INSERT INTO vqd_baselines (device_id, sharpness, samples, reference_png, updated_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (device_id) DO UPDATE SET"
            " sharpness = excluded.sharpness, samples = excluded.samples,"
            " reference_png = excluded.reference_png, updated_at = excluded.updated_at",
            [
                (b.device_id, b.sharpness, b.samples, b.reference_png, to_db_time(now))
                for b in baselines
            ],
        )

    async def reset_to_unknown(
        self, at: datetime, reason: str, *, kind: str = "camera"
    ) -> list[str]:
        """Record every `kind` device not already `unknown` as unknown from `at`.

        Used at start-up: after a restart nothing is known until new evidence
        arrives, and the KPIs must not count the hub's down time as online.
        """
        of_kind = devices_repo.devices_join("s.device_id", None, kind=kind)
        async with self.store.transaction() as tx:
            rows = await tx.fetchall(
                f"SELECT s.device_id, s.health FROM device_state s{of_kind.join}"  # noqa: S608
                f" WHERE {of_kind.where} AND s.health <> 'unknown'",
                of_kind.params,
            )
            await self._insert_transitions(
                tx,
                [
                    TransitionRow(
                        str(r[0]), at, str(r[1]), "unknown", reason, reason_code="hub.restarted"
                    )
                    for r in rows
                ],
                at,
            )
        return [str(r[0]) for r in rows]

    # -- patrol --------------------------------------------------------------

    async def patrol_targets(self) -> list[PatrolTarget]:
        """Enabled cameras with their RTSP URLs (none for a camera seen only through
        another protocol's stream), the longest unprobed first (never probed first)."""
        return await devices_repo.patrol_targets(self.store)

    async def baselines(self) -> dict[str, BaselineRow]:
        """Every camera's learned baseline."""
        return await patrol_storage.baselines(self.store)

    async def last_evidence_times(self) -> dict[str, datetime]:
        """Per device, when its newest evidence snapshot was taken."""
        return await patrol_storage.last_evidence_times(self.store)

    async def start_run(self, at: datetime, total: int, trigger: str, node: str | None) -> int:
        """Record the start of a patrol pass; returns its id."""
        return await patrol_storage.start_run(self.store, at, total, trigger, node)

    async def update_run(
        self, run_id: int, *, done: int, failed: int, degraded: int, finished_at: datetime | None
    ) -> None:
        """Record a patrol pass's progress (and its end, when `finished_at` is given)."""
        await patrol_storage.update_run(
            self.store, run_id, done=done, failed=failed, degraded=degraded, finished_at=finished_at
        )

    async def recent_runs(self, limit: int = 5) -> list[PatrolRunRow]:
        """The newest patrol passes."""
        return await patrol_storage.recent_runs(self.store, limit)

    async def delete_before(self, *, samples_before: datetime, evidence_before: datetime) -> int:
        """Delete old samples (where no retention policy does it) and old evidence."""
        async with self.store.transaction() as tx:
            removed = 0
            if self.store.backend != "timescaledb":
                removed += await tx.execute(
                    "DELETE FROM health_samples WHERE time < %s", (to_db_time(samples_before),)
                )
            removed += await tx.execute(
                "DELETE FROM evidence_media WHERE taken_at < %s", (to_db_time(evidence_before),)
            )
        return removed

    async def apply_timescale_policies(
        self, *, retention_days: int, compress_after_days: int
    ) -> None:
        """Set the sample hypertable's retention and compression ages (TimescaleDB only)."""
        if self.store.backend != "timescaledb":
            return
        async with self.store.transaction() as tx:
            await tx.fetchall("SELECT remove_retention_policy('health_samples', if_exists => true)")
            await tx.fetchall(
                "SELECT add_retention_policy('health_samples', make_interval(days => %s))",
                (retention_days,),
            )
            await tx.fetchall(
                "SELECT remove_compression_policy('health_samples', if_exists => true)"
            )
            await tx.fetchall(
                "SELECT add_compression_policy('health_samples', make_interval(days => %s))",
                (compress_after_days,),
            )

    # -- reading -------------------------------------------------------------

    async def device_health(
        self, device_id: str, scope_paths: Sequence[str] | None
    ) -> DeviceHealthRow | None:
        """A device's current health, or None when it does not exist or is out of scope."""
        return await devices_repo.device_health(self.store, device_id, scope_paths)

    async def last_sample(self, device_id: str) -> HealthSampleRow | None:
        """A device's newest probe sample."""
        async with self.store.reading() as tx:
            row = await tx.fetchone(
                f"SELECT {_SAMPLE_COLUMNS} FROM health_samples"  # noqa: S608
                " WHERE device_id = %s ORDER BY time DESC LIMIT 1",
                (device_id,),
            )
        return _sample_from_row(row) if row is not None else None

    async def samples(self, device_id: str, *, limit: int = 100) -> list[HealthSampleRow]:
        """A device's newest probe samples, newest first."""
        async with self.store.reading() as tx:
            rows = await tx.fetchall(
                f"SELECT {_SAMPLE_COLUMNS} FROM health_samples"  # noqa: S608
                " WHERE device_id = %s ORDER BY time DESC LIMIT %s",
                (device_id, limit),
            )
        return [_sample_from_row(r) for r in rows]

    async def transitions(self, device_id: str, *, limit: int = 20) -> list[TransitionRow]:
        """A device's newest state transitions, newest first."""
        async with self.store.reading() as tx:
            rows = await tx.fetchall(
                "SELECT device_id, at, from_state, to_state, reason, evidence"
                " FROM device_health_history WHERE device_id = %s"
                " ORDER BY at DESC, id DESC LIMIT %s",
                (device_id, limit),
            )
        return [
            TransitionRow(
                device_id=str(r[0]),
                at=from_ts(r[1]) or _EPOCH,
                from_state=str(r[2]),
                to_state=str(r[3]),
                reason=str(r[4]),
                evidence=(evidence := dict(from_json(r[5]) or {})),
                reason_code=evidence.get("reason_code"),
                reason_params=_params(evidence.get("reason_params")),
            )
            for r in rows
        ]

    async def summary(
        self, scope_paths: Sequence[str] | None, subtree_path: str | None, kind: str | None
    ) -> dict[str, int]:
        """Device counts by health state within the scope (and subtree, and kind)."""
        return await devices_repo.health_counts(self.store, scope_paths, subtree_path, kind)

    async def evidence(
        self, evidence_id: uuid.UUID, scope_paths: Sequence[str] | None
    ) -> EvidenceImage | None:
        """An evidence snapshot, or None when missing or its device is out of scope."""
        in_scope = devices_repo.devices_join("e.device_id", scope_paths)
        async with self.store.reading() as tx:
            row = await tx.fetchone(
                "SELECT e.id, e.device_id, e.data, e.taken_at, e.source, e.content_type"  # noqa: S608
                f" FROM evidence_media e{in_scope.join} WHERE e.id = %s AND {in_scope.where}",
                (evidence_id, *in_scope.params),
            )
        if row is None:
            return None
        return EvidenceImage(
            id=uuid.UUID(str(row[0])),
            device_id=str(row[1]),
            data=bytes(row[2]),
            taken_at=from_ts(row[3]) or _EPOCH,
            source=str(row[4]),
            content_type=str(row[5]),
        )

    # -- jurisdictions and KPIs ------------------------------------------------

    async def jurisdiction(self, code: str) -> tuple[JurisdictionNode, str] | None:
        """One jurisdiction node and its path, by code."""
        return await devices_repo.get_jurisdiction(self.store, code)

    async def jurisdiction_children(self, code: str | None) -> list[tuple[JurisdictionNode, str]]:
        """The direct children of a node (the roots when `code` is None), by code."""
        return await devices_repo.jurisdiction_children(self.store, code)

    async def jurisdictions_by_path(
        self, paths: Sequence[str]
    ) -> list[tuple[JurisdictionNode, str]]:
        """The nodes at the given materialized paths, by code."""
        return await devices_repo.jurisdictions_at_paths(self.store, paths)

    async def devices_in(
        self, scope_paths: Sequence[str] | None, subtree_path: str | None
    ) -> dict[str, str | None]:
        """Device id → jurisdiction path of every device in scope and subtree."""
        return await devices_repo.device_paths(self.store, scope_paths, subtree_path)

    async def state_changes(
        self,
        scope_paths: Sequence[str] | None,
        subtree_path: str | None,
        start: datetime,
        end: datetime,
    ) -> list[StateChangeRow]:
        """State changes in [start, end) plus each device's last change before `start`."""
        return await kpi_storage.state_changes(self.store, scope_paths, subtree_path, start, end)

    async def probe_counts(
        self,
        scope_paths: Sequence[str] | None,
        subtree_path: str | None,
        start: datetime,
        end: datetime,
    ) -> dict[str, ProbeCounts]:
        """Per device, probes in [start, end) (reporting-day aligned on TimescaleDB)."""
        return await kpi_storage.probe_counts(self.store, scope_paths, subtree_path, start, end)


async def insert_transitions(tx: Tx, transitions: Sequence[TransitionRow], now: datetime) -> None:
    """Store transitions and move `device_state` inside a caller's transaction.

    For other health sources (MQTT heartbeats, ONVIF) so that their changes
    count in the KPIs, which are computed from `device_health_history`.
    """
    await HealthRepository._insert_transitions(tx, transitions, now)


async def current_health(tx: Tx, device_ids: Sequence[str]) -> dict[str, StoredHealth]:
    """The stored health of each of `device_ids` that has a health row, inside a
    caller's transaction."""
    ids = sorted(set(device_ids))
    if not ids:
        return {}
    marks = ", ".join("%s" for _ in ids)
    rows = await tx.fetchall(
        "SELECT device_id, health, health_since, health_reason FROM device_state"  # noqa: S608 - placeholders only
        f" WHERE device_id IN ({marks})",
        ids,
    )
    return {str(r[0]): StoredHealth(str(r[0]), str(r[1]), from_ts(r[2]), r[3]) for r in rows}


def _evidence_with_code(t: TransitionRow) -> dict[str, Any]:
    if not t.reason_code:
        return t.evidence
    return {**t.evidence, "reason_code": t.reason_code, "reason_params": t.reason_params}


def _params(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}
