# SQL here is assembled only from this package's constants, whitelisted sort
# expressions and "%s" placeholder lists; every value is a bound parameter.
# ruff: noqa: S608
"""The jurisdiction tree as stored: nodes with their materialized paths, moves of subtrees."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from camera_registry.jurisdiction import (
    JurisdictionLevel,
    JurisdictionNode,
)
from hub.devices.storage.rows import _scope_sql, _subtree_sql
from hub.storage.base import SqlStore, Tx

__all__ = [
    "all_jurisdictions",
    "get_jurisdiction",
    "jurisdiction_children",
    "jurisdiction_paths",
    "jurisdictions_at_paths",
    "list_jurisdictions",
    "move_subtree",
    "upsert_jurisdiction_rows",
]


def _node_from_row(row: Sequence[Any]) -> tuple[JurisdictionNode, str]:
    node = JurisdictionNode(
        code=row[0], name=row[1], level=JurisdictionLevel(row[2]), parent_code=row[3]
    )
    return node, row[4]


async def all_jurisdictions(
    store: SqlStore | None = None, tx: Tx | None = None
) -> list[tuple[JurisdictionNode, str]]:
    """Every node with its path, in path order."""
    sql = "SELECT code, name, level, parent_code, path FROM jurisdictions ORDER BY path"
    if tx is not None:
        rows = await tx.fetchall(sql)
    elif store is not None:
        async with store.reading() as reader:
            rows = await reader.fetchall(sql)
    else:
        raise TypeError("pass a store or a transaction")
    return [_node_from_row(r) for r in rows]


async def get_jurisdiction(store: SqlStore, code: str) -> tuple[JurisdictionNode, str] | None:
    """One node with its path, by code."""
    async with store.reading() as tx:
        row = await tx.fetchone(
            "SELECT code, name, level, parent_code, path FROM jurisdictions WHERE code = %s",
            [code],
        )
    return _node_from_row(row) if row else None


async def jurisdiction_children(
    store: SqlStore, code: str | None
) -> list[tuple[JurisdictionNode, str]]:
    """The direct children of a node (the roots when `code` is None) with their paths, by code."""
    async with store.reading() as tx:
        if code is None:
            rows = await tx.fetchall(
                "SELECT code, name, level, parent_code, path FROM jurisdictions"
                " WHERE parent_code IS NULL ORDER BY code"
            )
        else:
            rows = await tx.fetchall(
                "SELECT code, name, level, parent_code, path FROM jurisdictions"
                " WHERE parent_code = %s ORDER BY code",
                [code],
            )
    return [_node_from_row(r) for r in rows]


async def jurisdictions_at_paths(
    store: SqlStore, paths: Sequence[str]
) -> list[tuple[JurisdictionNode, str]]:
    """The nodes at the given materialized paths with their paths, by code."""
    if not paths:
        return []
    marks = ", ".join("%s" for _ in paths)
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT code, name, level, parent_code, path FROM jurisdictions"
            f" WHERE path IN ({marks}) ORDER BY code",
            list(paths),
        )
    return [_node_from_row(r) for r in rows]


async def list_jurisdictions(
    store: SqlStore, *, under: str | None, scope: Sequence[str] | None
) -> list[tuple[JurisdictionNode, str]]:
    """Nodes within `scope` (and under the path `under`, if given), in path order."""
    where, params = [], []
    sql, values = _scope_sql(store, scope, "path")
    where.append(sql)
    params.extend(values)
    if under is not None:
        sql, values = _subtree_sql(store, "path", under)
        where.append(sql)
        params.extend(values)
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT code, name, level, parent_code, path FROM jurisdictions"
            f" WHERE {' AND '.join(where)} ORDER BY path",
            params,
        )
    return [_node_from_row(r) for r in rows]


async def jurisdiction_paths(store: SqlStore) -> dict[str, str]:
    """Every node's path by code."""
    async with store.reading() as tx:
        rows = await tx.fetchall("SELECT code, path FROM jurisdictions")
    return {r[0]: r[1] for r in rows}


async def upsert_jurisdiction_rows(
    tx: Tx, rows: Iterable[tuple[JurisdictionNode, str]], existing: Mapping[str, str]
) -> tuple[int, int]:
    """Insert new nodes and update changed ones (parents first); return (created, updated)."""
    ordered = sorted(rows, key=lambda item: item[1].count("/"))
    inserts = [n for n in ordered if n[0].code not in existing]
    updates = [n for n in ordered if n[0].code in existing]
    # A node can move under a node created in the same batch: insert first,
    # with the new paths, then rewrite the changed ones.
    if updates:
        # Moved subtrees are rewritten by `move_subtree`; park their paths to
        # keep the UNIQUE constraint happy while siblings swap places.
        await tx.executemany(
            "UPDATE jurisdictions SET path = %s WHERE code = %s",
            [["#" + node.code, node.code] for node, path in updates if existing[node.code] != path],
        )
    if inserts:
        await tx.executemany(
            "INSERT INTO jurisdictions (code, name, level, parent_code, path)"
            " VALUES (%s, %s, %s, %s, %s)",
            [[n.code, n.name, n.level.value, n.parent_code, p] for n, p in inserts],
        )
    if updates:
        await tx.executemany(
            "UPDATE jurisdictions SET name = %s, level = %s, parent_code = %s, path = %s"
            " WHERE code = %s",
            [[n.name, n.level.value, n.parent_code, p, n.code] for n, p in updates],
        )
    return len(inserts), len(updates)


async def move_subtree(tx: Tx, store: SqlStore, old_path: str, new_path: str) -> None:
    """Rewrite devices' paths after a node moved from `old_path` to `new_path`."""
    cond, params = _subtree_sql(store, "jurisdiction_path", old_path)
    await tx.execute(
        f"UPDATE devices SET jurisdiction_path = %s || substr(jurisdiction_path, %s) WHERE {cond}",
        [new_path, len(old_path) + 1, *params],
    )
