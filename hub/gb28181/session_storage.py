"""GB/T 28181 registrations and subscriptions in the database, shared by every hub node.

A registration is a device row whose `expires_at` lies ahead: any node reads
who is registered, where (contact, transport, host, port), through which node,
and until when its catalog and alarm subscriptions hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.storage.base import SqlStore, from_ts, to_db_time

__all__ = [
    "SUBSCRIPTION_COLUMNS",
    "SessionRow",
    "count_registered",
    "keepalives_of",
    "load_session",
    "record_registration",
    "record_subscription",
    "record_unregistration",
    "registered_sessions",
]

#: The column that holds each subscription's end, by SIP event package.
SUBSCRIPTION_COLUMNS = {"Catalog": "catalog_subscribed_until", "presence": "alarm_subscribed_until"}

_COLUMNS = (
    "device_id, transport, host, port, contact, version, registered_at, expires_at,"
    " node_id, armed, last_keepalive_at, catalog_subscribed_until, alarm_subscribed_until"
)


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A device's registration as stored."""

    device_id: str
    transport: str
    host: str
    port: int
    contact: str | None
    version: str | None
    registered_at: datetime
    expires_at: datetime
    node_id: str | None
    armed: bool
    last_keepalive_at: datetime | None
    catalog_subscribed_until: datetime | None
    alarm_subscribed_until: datetime | None


def _session(row: Sequence[Any]) -> SessionRow | None:
    registered_at, expires_at = from_ts(row[6]), from_ts(row[7])
    if row[1] is None or row[2] is None or row[3] is None:
        return None
    if registered_at is None or expires_at is None:
        return None
    return SessionRow(
        device_id=str(row[0]),
        transport=str(row[1]),
        host=str(row[2]),
        port=int(row[3]),
        contact=row[4],
        version=row[5],
        registered_at=registered_at,
        expires_at=expires_at,
        node_id=row[8],
        armed=bool(row[9]),
        last_keepalive_at=from_ts(row[10]),
        catalog_subscribed_until=from_ts(row[11]),
        alarm_subscribed_until=from_ts(row[12]),
    )


async def registered_sessions(store: SqlStore, now: datetime) -> list[SessionRow]:
    """Every registration that has not run out at `now`."""
    async with store.reading() as tx:
        rows = await tx.fetchall(
            f"SELECT {_COLUMNS} FROM gb28181_devices"  # noqa: S608
            " WHERE expires_at > %s AND pending = %s ORDER BY device_id",
            (to_db_time(now), False),
        )
    return [s for s in (_session(r) for r in rows) if s is not None]


async def load_session(store: SqlStore, device_id: str, now: datetime) -> SessionRow | None:
    """One device's registration if it holds at `now`."""
    async with store.reading() as tx:
        row = await tx.fetchone(
            f"SELECT {_COLUMNS} FROM gb28181_devices"  # noqa: S608
            " WHERE device_id = %s AND expires_at > %s AND pending = %s",
            (device_id, to_db_time(now), False),
        )
    return _session(row) if row is not None else None


async def count_registered(store: SqlStore, now: datetime) -> int:
    """How many devices are registered at `now` (through any node)."""
    async with store.reading() as tx:
        row = await tx.fetchone(
            "SELECT COUNT(*) FROM gb28181_devices WHERE expires_at > %s AND pending = %s",
            (to_db_time(now), False),
        )
    return int(row[0]) if row is not None else 0


async def keepalives_of(store: SqlStore, device_ids: Sequence[str]) -> dict[str, datetime]:
    """The last keepalive any node stored for each of `device_ids`."""
    found: dict[str, datetime] = {}
    for start in range(0, len(device_ids), 500):
        chunk = list(device_ids[start : start + 500])
        marks = ", ".join(["%s"] * len(chunk))
        async with store.reading() as tx:
            rows = await tx.fetchall(
                "SELECT device_id, last_keepalive_at FROM gb28181_devices"  # noqa: S608
                f" WHERE device_id IN ({marks}) AND last_keepalive_at IS NOT NULL",
                chunk,
            )
        for device_id, at in rows:
            stamp = from_ts(at)
            if stamp is not None:
                found[str(device_id)] = stamp
    return found


async def record_registration(
    store: SqlStore,
    device_id: str,
    *,
    transport: str,
    host: str,
    port: int,
    contact: str | None,
    user_agent: str | None,
    version: str | None,
    expires_at: datetime,
    node_id: str,
    now: datetime,
) -> None:
    """A device registered (or re-registered) through `node_id`: where it is and until when.

    Arming and subscriptions start afresh: a re-registered device lost them.
    """
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO gb28181_devices (device_id, first_seen_at) VALUES (%s, %s)"
            " ON CONFLICT (device_id) DO NOTHING",
            (device_id, to_db_time(now)),
        )
        await tx.execute(
            "UPDATE gb28181_devices SET pending = %s, transport = %s, host = %s, port = %s,"
            " contact = %s, user_agent = %s, version = %s, registered_at = %s, expires_at = %s,"
            " node_id = %s, last_attempt_at = %s, armed = %s, arm_error = NULL,"
            " catalog_subscribed_until = NULL, alarm_subscribed_until = NULL"
            " WHERE device_id = %s",
            (
                False,
                transport,
                host,
                port,
                contact,
                user_agent,
                version,
                to_db_time(now),
                to_db_time(expires_at),
                node_id,
                to_db_time(now),
                False,
                device_id,
            ),
        )


async def record_unregistration(store: SqlStore, device_id: str, now: datetime) -> None:
    """The device unregistered (Expires: 0) or its registration ran out."""
    async with store.transaction() as tx:
        await tx.execute(
            "UPDATE gb28181_devices SET expires_at = %s, armed = %s,"
            " catalog_subscribed_until = NULL, alarm_subscribed_until = NULL"
            " WHERE device_id = %s",
            (to_db_time(now), False, device_id),
        )


async def record_subscription(
    store: SqlStore, device_id: str, event: str, until: datetime | None
) -> None:
    """Until when the device's `event` subscription (Catalog or presence) holds; None: none."""
    column = SUBSCRIPTION_COLUMNS[event]
    async with store.transaction() as tx:
        await tx.execute(
            f"UPDATE gb28181_devices SET {column} = %s WHERE device_id = %s",  # noqa: S608
            (to_db_time(until) if until is not None else None, device_id),
        )
