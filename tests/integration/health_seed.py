"""Seeding a jurisdiction tree and cameras straight into storage for health tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from hub.storage import Json, SqlStore

DISTRICT = ("150102", "新城区", "district", None, "/150102/")
TOWN_A = ("150102001", "海拉尔东路街道", "town", "150102", "/150102/150102001/")
TOWN_B = ("150102002", "锡林路街道", "town", "150102", "/150102/150102002/")
TREE = (DISTRICT, TOWN_A, TOWN_B)
SEEDED_AT = datetime(2024, 10, 1, tzinfo=UTC)


async def seed_tree(
    store: SqlStore, nodes: Sequence[tuple[str, str, str, str | None, str]] = TREE
) -> None:
    """Create jurisdiction nodes (code, name, level, parent, path)."""
    async with store.transaction() as tx:
        await tx.executemany(
            "INSERT INTO jurisdictions (code, name, level, parent_code, path)"
            " VALUES (%s, %s, %s, %s, %s)",
            [list(node) for node in nodes],
        )


async def seed_camera(
    store: SqlStore,
    device_id: str,
    *,
    urls: Sequence[str] = (),
    jurisdiction: tuple[str, str, str, str | None, str] = TOWN_A,
    kind: str = "camera",
    enabled: bool = True,
) -> None:
    """Create one device with its device_state row."""
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO devices (id, name, kind, jurisdiction, jurisdiction_path, rtsp_urls,"
            " enabled, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                device_id,
                f"camera {device_id}",
                kind,
                jurisdiction[0],
                jurisdiction[4],
                Json(list(urls)),
                enabled,
                SEEDED_AT,
                SEEDED_AT,
            ),
        )
        await tx.execute(
            "INSERT INTO device_state (device_id, health, updated_at) VALUES (%s, 'unknown', %s)",
            (device_id, SEEDED_AT),
        )


async def set_urls(store: SqlStore, device_id: str, urls: Sequence[str]) -> None:
    """Point a camera at other streams (as a registry edit would)."""
    async with store.transaction() as tx:
        await tx.execute(
            "UPDATE devices SET rtsp_urls = %s WHERE id = %s", (Json(list(urls)), device_id)
        )
