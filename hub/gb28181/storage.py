"""GB/T 28181 storage: device rows, arming, alarms seen, catalog channels.

Registrations and subscriptions (what every node must agree on) are written by
`hub.gb28181.session_storage`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hub.storage.base import SqlStore, Tx, from_json, from_ts, to_db_time

__all__ = [
    "ChannelRow",
    "GbDeviceRow",
    "accept_pending",
    "delete_pending",
    "list_channels",
    "list_devices",
    "load_device",
    "record_alarm_time",
    "record_armed",
    "record_attempt",
    "record_catalog",
    "record_channel_status",
    "record_device_info",
    "record_keepalive",
]

_COLUMNS = (
    "device_id, pending, transport, host, port, user_agent, version, first_seen_at,"
    " last_attempt_at, attempts, registered_at, expires_at, last_keepalive_at, armed,"
    " armed_at, arm_error, last_alarm_at, catalog_at, channel_count, info, contact, node_id,"
    " catalog_subscribed_until, alarm_subscribed_until"
)


@dataclass(frozen=True, slots=True)
class GbDeviceRow:
    """What the hub knows of a GB/T 28181 device's signalling."""

    device_id: str
    pending: bool
    transport: str | None
    host: str | None
    port: int | None
    user_agent: str | None
    version: str | None
    first_seen_at: datetime
    last_attempt_at: datetime | None
    attempts: int
    registered_at: datetime | None
    expires_at: datetime | None
    last_keepalive_at: datetime | None
    armed: bool
    armed_at: datetime | None
    arm_error: str | None
    last_alarm_at: datetime | None
    catalog_at: datetime | None
    channel_count: int
    info: dict[str, Any] = field(default_factory=dict)
    contact: str | None = None
    node_id: str | None = None
    catalog_subscribed_until: datetime | None = None
    alarm_subscribed_until: datetime | None = None

    def registered(self, now: datetime) -> bool:
        """Registered at `now` (through any node)."""
        return not self.pending and self.expires_at is not None and self.expires_at > now


def _device(row: Sequence[Any]) -> GbDeviceRow:
    first_seen = from_ts(row[7])
    assert first_seen is not None  # noqa: S101 - NOT NULL column
    info = from_json(row[19])
    return GbDeviceRow(
        device_id=str(row[0]),
        pending=bool(row[1]),
        transport=row[2],
        host=row[3],
        port=int(row[4]) if row[4] is not None else None,
        user_agent=row[5],
        version=row[6],
        first_seen_at=first_seen,
        last_attempt_at=from_ts(row[8]),
        attempts=int(row[9]),
        registered_at=from_ts(row[10]),
        expires_at=from_ts(row[11]),
        last_keepalive_at=from_ts(row[12]),
        armed=bool(row[13]),
        armed_at=from_ts(row[14]),
        arm_error=row[15],
        last_alarm_at=from_ts(row[16]),
        catalog_at=from_ts(row[17]),
        channel_count=int(row[18]),
        info=info if isinstance(info, dict) else {},
        contact=row[20],
        node_id=row[21],
        catalog_subscribed_until=from_ts(row[22]),
        alarm_subscribed_until=from_ts(row[23]),
    )


async def _ensure(tx: Tx, device_id: str, now: datetime) -> None:
    await tx.execute(
        "INSERT INTO gb28181_devices (device_id, first_seen_at) VALUES (%s, %s)"
        " ON CONFLICT (device_id) DO NOTHING",
        (device_id, to_db_time(now)),
    )


async def load_device(store: SqlStore, device_id: str) -> GbDeviceRow | None:
    """One device's row, or None."""
    async with store.reading() as tx:
        row = await tx.fetchone(
            f"SELECT {_COLUMNS} FROM gb28181_devices WHERE device_id = %s",  # noqa: S608
            (device_id,),
        )
    return _device(row) if row is not None else None


async def list_devices(
    store: SqlStore, *, pending: bool | None = None, limit: int = 1000
) -> list[GbDeviceRow]:
    """Devices (registered or pending), newest attempt first."""
    where, params = ("", []) if pending is None else ("WHERE pending = %s", [pending])
    async with store.reading() as tx:
        rows = await tx.fetchall(
            f"SELECT {_COLUMNS} FROM gb28181_devices {where}"  # noqa: S608
            " ORDER BY device_id LIMIT %s",
            [*params, limit],
        )
    return [_device(r) for r in rows]


async def record_attempt(
    store: SqlStore, device_id: str, *, host: str, port: int, transport: str, now: datetime
) -> None:
    """A device with an unknown id tried to register: list it for a maintainer."""
    async with store.transaction() as tx:
        await _ensure(tx, device_id, now)
        await tx.execute(
            "UPDATE gb28181_devices SET pending = %s, host = %s, port = %s, transport = %s,"
            " last_attempt_at = %s, attempts = attempts + 1"
            " WHERE device_id = %s AND registered_at IS NULL",
            (True, host, port, transport, to_db_time(now), device_id),
        )


async def accept_pending(store: SqlStore, device_id: str) -> None:
    """A maintainer accepted the device: it is no longer pending."""
    async with store.transaction() as tx:
        await tx.execute(
            "UPDATE gb28181_devices SET pending = %s WHERE device_id = %s", (False, device_id)
        )


async def delete_pending(store: SqlStore, device_id: str) -> bool:
    """Forget a pending device (refused by a maintainer)."""
    async with store.transaction() as tx:
        count = await tx.execute(
            "DELETE FROM gb28181_devices WHERE device_id = %s AND pending = %s",
            (device_id, True),
        )
    return count > 0


async def record_keepalive(store: SqlStore, seen: Sequence[tuple[str, datetime]]) -> None:
    """The latest keepalive of each device (written in batches, not per message)."""
    if not seen:
        return
    async with store.transaction() as tx:
        await tx.executemany(
            "UPDATE gb28181_devices SET last_keepalive_at = %s WHERE device_id = %s",
            [(to_db_time(at), device_id) for device_id, at in seen],
        )


async def record_armed(
    store: SqlStore, device_id: str, *, armed: bool, error: str | None, now: datetime
) -> None:
    """Whether arming (SetGuard / alarm subscription) worked, and why not."""
    async with store.transaction() as tx:
        await tx.execute(
            "UPDATE gb28181_devices SET armed = %s, armed_at = %s, arm_error = %s"
            " WHERE device_id = %s",
            (armed, to_db_time(now) if armed else None, error, device_id),
        )


async def record_alarm_time(tx: Tx, device_id: str, at: datetime) -> None:
    """The device's last alarm (inside the alarm's own transaction)."""
    await tx.execute(
        "UPDATE gb28181_devices SET last_alarm_at = %s WHERE device_id = %s"
        " AND (last_alarm_at IS NULL OR last_alarm_at < %s)",
        (to_db_time(at), device_id, to_db_time(at)),
    )


@dataclass(frozen=True, slots=True)
class ChannelRow:
    """One catalog entry of a device."""

    device_id: str
    channel_id: str
    parent_id: str | None
    name: str | None
    status: str | None
    ptz_type: int | None
    civil_code: str | None
    registered: bool
    info: dict[str, Any]
    updated_at: datetime


async def record_catalog(
    store: SqlStore,
    device_id: str,
    channels: Sequence[ChannelRow],
    *,
    complete: bool,
    now: datetime,
) -> None:
    """Store a device's catalog entries; a `complete` catalog replaces the old one."""
    async with store.transaction() as tx:
        await _ensure(tx, device_id, now)
        if complete:
            await tx.execute("DELETE FROM gb28181_channels WHERE device_id = %s", (device_id,))
        else:
            for channel in channels:
                await tx.execute(
                    "DELETE FROM gb28181_channels WHERE device_id = %s AND channel_id = %s",
                    (device_id, channel.channel_id),
                )
        await tx.executemany(
            "INSERT INTO gb28181_channels (device_id, channel_id, parent_id, name, status,"
            " ptz_type, civil_code, registered, info, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    c.device_id,
                    c.channel_id,
                    c.parent_id,
                    c.name,
                    c.status,
                    c.ptz_type,
                    c.civil_code,
                    c.registered,
                    c.info,
                    to_db_time(c.updated_at),
                )
                for c in channels
            ],
        )
        row = await tx.fetchone(
            "SELECT COUNT(*) FROM gb28181_channels WHERE device_id = %s", (device_id,)
        )
        count = int(row[0]) if row is not None else 0
        await tx.execute(
            "UPDATE gb28181_devices SET catalog_at = %s, channel_count = %s WHERE device_id = %s",
            (to_db_time(now), count, device_id),
        )


async def record_channel_status(
    store: SqlStore, device_id: str, statuses: Sequence[tuple[str, str]], now: datetime
) -> None:
    """Channels' status as a catalog notification (ON/OFF/VLOST/DEFECT) changed it."""
    async with store.transaction() as tx:
        await tx.executemany(
            "UPDATE gb28181_channels SET status = %s, updated_at = %s"
            " WHERE device_id = %s AND channel_id = %s",
            [(status, to_db_time(now), device_id, channel) for channel, status in statuses],
        )


async def record_device_info(store: SqlStore, device_id: str, info: dict[str, Any]) -> None:
    """What a device said it is (DeviceInfo), kept with its signalling state."""
    async with store.transaction() as tx:
        await tx.execute(
            "UPDATE gb28181_devices SET info = %s WHERE device_id = %s", (info, device_id)
        )


async def remove_channels(store: SqlStore, device_id: str, channel_ids: Sequence[str]) -> None:
    """Drop catalog entries a device reported deleted."""
    async with store.transaction() as tx:
        for channel_id in channel_ids:
            await tx.execute(
                "DELETE FROM gb28181_channels WHERE device_id = %s AND channel_id = %s",
                (device_id, channel_id),
            )


async def list_channels(store: SqlStore, device_id: str) -> list[ChannelRow]:
    """A device's catalog entries, by channel id."""
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT device_id, channel_id, parent_id, name, status, ptz_type, civil_code,"
            " registered, info, updated_at FROM gb28181_channels WHERE device_id = %s"
            " ORDER BY channel_id",
            (device_id,),
        )
    out: list[ChannelRow] = []
    for r in rows:
        updated = from_ts(r[9])
        assert updated is not None  # noqa: S101 - NOT NULL column
        info = from_json(r[8])
        out.append(
            ChannelRow(
                device_id=str(r[0]),
                channel_id=str(r[1]),
                parent_id=r[2],
                name=r[3],
                status=r[4],
                ptz_type=int(r[5]) if r[5] is not None else None,
                civil_code=r[6],
                registered=bool(r[7]),
                info=info if isinstance(info, dict) else {},
                updated_at=updated,
            )
        )
    return out


async def channel_owner(store: SqlStore, channel_id: str) -> str | None:
    """The device whose catalog holds `channel_id` (for live video), or None."""
    async with store.reading() as tx:
        row = await tx.fetchone(
            "SELECT device_id FROM gb28181_channels WHERE channel_id = %s LIMIT 1",
            (channel_id,),
        )
    return str(row[0]) if row is not None else None


async def channel_owners(store: SqlStore, channel_ids: Sequence[str]) -> dict[str, str]:
    """The device whose catalog holds each of `channel_ids` (those found)."""
    owners: dict[str, str] = {}
    ids = list(dict.fromkeys(channel_ids))
    async with store.reading() as tx:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join(["%s"] * len(chunk))
            rows = await tx.fetchall(
                "SELECT channel_id, device_id FROM gb28181_channels"  # noqa: S608 - placeholders only
                f" WHERE channel_id IN ({marks})",
                tuple(chunk),
            )
            owners.update({str(row[0]): str(row[1]) for row in rows})
    return owners
