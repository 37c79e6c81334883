"""Changing the jurisdiction tree: the whole tree re-checked, changed nodes written,
and the devices under a moved node moved with it, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from camera_registry.jurisdiction import (
    JurisdictionNode,
    JurisdictionTreeError,
    TreeProblem,
    build_tree,
)
from hub.devices import storage as repo
from hub.storage import SqlStore, Tx

__all__ = ["TreeChange", "upsert_tree"]


@dataclass(frozen=True, slots=True)
class TreeChange:
    """What an upsert of nodes did: nodes created and updated, subtrees moved (old, new)."""

    created: int
    updated: int
    moved: tuple[tuple[str, str], ...]


def _duplicates(nodes: Sequence[JurisdictionNode]) -> list[str]:
    codes = [n.code for n in nodes]
    if len(set(codes)) == len(codes):
        return []
    return sorted({c for c in codes if codes.count(c) > 1})


async def upsert_tree(tx: Tx, store: SqlStore, nodes: Sequence[JurisdictionNode]) -> TreeChange:
    """Create or change `nodes` within the stored tree.

    Raises JurisdictionTreeError listing every problem of the resulting tree (nothing
    is written then). Devices under a moved node follow it.
    """
    current = await repo.all_jurisdictions(tx=tx)
    old_nodes = {node.code: node for node, _ in current}
    old_paths = {node.code: path for node, path in current}
    duplicates = _duplicates(nodes)
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
        await repo.move_subtree(tx, store, old, new)
    return TreeChange(created, updated, tuple(moved))
