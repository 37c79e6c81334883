"""Jurisdiction boundaries: importing outlines (GeoJSON) and serving those in a caller's scope."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from camera_registry.boundaries import Boundary, BoundaryError, feature_collection
from hub.auth.audit_storage import record as audit_record
from hub.devices import boundary_storage
from hub.devices.registry import Actor, Registry

__all__ = ["boundaries_in_scope", "import_boundaries"]


async def import_boundaries(
    registry: Registry, boundaries: Sequence[Boundary], *, actor: Actor
) -> tuple[int, int]:
    """Store the outlines (creating or changing the nodes features describe first).

    Every code must name a node (existing or described in the file); otherwise nothing is
    stored and BoundaryError lists the unknown codes. Returns (nodes written, boundaries).
    """
    nodes = [b.node for b in boundaries if b.node is not None]
    codes = [b.code for b in boundaries]
    async with registry.store.reading() as tx:
        known = await boundary_storage.existing_codes(tx, codes)
    unknown = sorted(set(codes) - known - {n.code for n in nodes})
    if unknown:
        shown = ", ".join(unknown[:20]) + (" …" if len(unknown) > 20 else "")
        raise BoundaryError(
            f"no jurisdiction node for {len(unknown)} code(s): {shown}; import the tree first "
            "or give name and level in the features' properties"
        )
    written = 0
    if nodes:
        created, updated = await registry.upsert_jurisdictions(nodes, actor=actor)
        written = created + updated
    now = datetime.now(UTC)
    async with registry.store.transaction() as tx:
        await boundary_storage.upsert(tx, {b.code: b.geometry for b in boundaries}, now)
        await audit_record(
            tx,
            actor.name,
            "jurisdiction.boundaries",
            None,
            actor.remote_addr,
            {"boundaries": len(boundaries), "codes": codes[:50]},
        )
    return written, len(boundaries)


async def boundaries_in_scope(registry: Registry, scope: Sequence[str] | None) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of the boundaries the caller may see."""
    return feature_collection(await boundary_storage.in_scope(registry.store, scope))
