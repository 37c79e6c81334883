"""The shared record of MQTT heartbeats (`mqtt_liveness`, schema 18), for hub nodes that
share the broker's messages.

With shared subscriptions a device's heartbeats are spread over the nodes, so no node's
memory knows when the device was last heard. Every node writes what its committed
batches prove (in the batch's transaction); the node that owns a device reads which
devices are past their `deadline`. A device's row has `deadline` NULL while it is not
watched: it said it is offline, or it was declared offline and not heard since.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from hub.storage.base import SqlStore, Tx, from_ts, to_db_time

__all__ = [
    "Heard",
    "Silent",
    "confirm_offline",
    "overdue",
    "record_heard",
    "seed",
    "stop_watching",
]


@dataclass(frozen=True, slots=True)
class Heard:
    """Evidence that a device was alive at `at` (with the interval a heartbeat announced)."""

    device_id: str
    at: datetime
    interval_s: float | None


@dataclass(frozen=True, slots=True)
class Silent:
    """A device past its deadline."""

    device_id: str
    last_heard: datetime
    interval_s: float


async def record_heard(tx: Tx, heard: Sequence[Heard], silence_factor: float) -> None:
    """Move each device's last-heard time forward (never back) and its deadline with it.

    Evidence without an interval watches only devices that announced one before
    (as a single node's memory does); the deadline is `silence_factor` intervals on.
    """
    if not heard:
        return
    without = sorted({h.device_id for h in heard if h.interval_s is None})
    known: dict[str, float] = {}
    if without:
        rows = await tx.fetchall(
            "SELECT device_id, interval_s FROM mqtt_liveness"  # noqa: S608 - placeholders only
            f" WHERE device_id IN ({', '.join('%s' for _ in without)})",
            without,
        )
        known = {str(row[0]): float(row[1]) for row in rows if row[1] is not None}
    newest: dict[str, tuple[datetime, float]] = {}
    for item in heard:
        interval = item.interval_s if item.interval_s is not None else known.get(item.device_id)
        if interval is None:
            continue
        current = newest.get(item.device_id)
        if current is None or item.at >= current[0]:
            newest[item.device_id] = (item.at, interval)
    await tx.executemany(
        "INSERT INTO mqtt_liveness (device_id, last_heard, interval_s, deadline)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (device_id) DO UPDATE SET"
        " last_heard = excluded.last_heard, interval_s = excluded.interval_s,"
        " deadline = excluded.deadline WHERE excluded.last_heard >= mqtt_liveness.last_heard",
        [
            (
                device_id,
                to_db_time(at),
                interval,
                to_db_time(at + timedelta(seconds=interval * silence_factor)),
            )
            for device_id, (at, interval) in sorted(newest.items())
        ],
    )


async def stop_watching(tx: Tx, device_id: str, at: datetime) -> None:
    """The device said it is offline at `at`: no deadline until it is heard again."""
    await tx.execute(
        "UPDATE mqtt_liveness SET deadline = NULL WHERE device_id = %s AND last_heard <= %s",
        (device_id, to_db_time(at)),
    )


async def confirm_offline(tx: Tx, device_id: str, last_heard: datetime) -> bool:
    """Settle a missed-heartbeat verdict made from `last_heard`: True (and the device no
    longer watched) when it was not heard since and not already declared offline.

    The row lock orders this with a heartbeat another node is committing: whichever
    commits first, a heartbeat newer than the verdict's `last_heard` wins.
    """
    changed = await tx.execute(
        "UPDATE mqtt_liveness SET deadline = NULL"
        " WHERE device_id = %s AND last_heard <= %s AND deadline IS NOT NULL",
        (device_id, to_db_time(last_heard)),
    )
    return changed > 0


async def overdue(store: SqlStore, now: datetime, *, limit: int = 1000) -> list[Silent]:
    """Devices past their deadline, most overdue first."""
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT device_id, last_heard, interval_s FROM mqtt_liveness"
            " WHERE deadline < %s ORDER BY deadline LIMIT %s",
            (to_db_time(now), limit),
        )
    found = []
    for row in rows:
        heard = from_ts(row[1])
        if heard is not None and row[2] is not None:
            found.append(Silent(str(row[0]), heard, float(row[2])))
    return found


async def seed(store: SqlStore, heard: Sequence[Silent], silence_factor: float) -> None:
    """Start watching devices heard before this record existed (rows already there win)."""
    if not heard:
        return
    async with store.transaction() as tx:
        await tx.executemany(
            "INSERT INTO mqtt_liveness (device_id, last_heard, interval_s, deadline)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (device_id) DO NOTHING",
            [
                (
                    s.device_id,
                    to_db_time(s.last_heard),
                    s.interval_s,
                    to_db_time(s.last_heard + timedelta(seconds=s.interval_s * silence_factor)),
                )
                for s in heard
            ],
        )
