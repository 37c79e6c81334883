"""/api/jurisdictions: the jurisdiction tree, subtree device counts, node upkeep (admin).

Readers see the nodes inside their scope; nodes outside it answer 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from camera_registry.jurisdiction import JurisdictionNode, JurisdictionTreeError
from hub.api.deps import get_registry
from hub.api.problems import Problem
from hub.auth.guards import Principal, Role, client_addr, not_found, require
from hub.devices.boundaries import boundaries_in_scope
from hub.devices.registry import Actor, Registry
from hub.devices.schemas import JurisdictionOut, JurisdictionTreeOut, SubtreeCountsOut

__all__ = ["router"]

router = APIRouter(prefix="/api/jurisdictions", tags=["jurisdictions"])

Reader = Annotated[Principal, Depends(require(Role.OPERATOR, Role.MAINTENANCE, Role.DISPATCHER))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
RegistryDep = Annotated[Registry, Depends(get_registry)]


def _out(node: JurisdictionNode, path: str) -> JurisdictionOut:
    return JurisdictionOut(**node.model_dump(), path=path)


def _tree(nodes: list[tuple[JurisdictionNode, str]]) -> list[JurisdictionTreeOut]:
    built: dict[str, JurisdictionTreeOut] = {}
    roots: list[JurisdictionTreeOut] = []
    for node, path in nodes:  # path order: parents come first
        item = JurisdictionTreeOut(
            code=node.code,
            name=node.name,
            level=node.level,
            parent_code=node.parent_code,
            path=path,
        )
        built[node.code] = item
        parent = built.get(node.parent_code) if node.parent_code else None
        if parent is None:
            roots.append(item)
        else:
            parent.children.append(item)
    return roots


async def _node(
    registry: Registry, code: str, principal: Principal
) -> tuple[JurisdictionNode, str]:
    found = await registry.jurisdiction(code.upper(), scope=principal.scope_paths)
    if found is None:
        raise not_found("jurisdiction")
    return found


def _tree_problem(exc: JurisdictionTreeError) -> Problem:
    return Problem(
        422,
        "Invalid jurisdiction tree",
        str(exc),
        errors=[{"field": f"body.{p.code}", "message": p.reason} for p in exc.problems],
    )


@router.get("", response_model=list[JurisdictionOut])
async def list_nodes(
    principal: Reader,
    registry: RegistryDep,
    under: Annotated[str | None, Query(max_length=32, description="a node code")] = None,
) -> list[JurisdictionOut]:
    """Nodes in the caller's scope (under one node, if given), parents before children."""
    path = None
    if under is not None:
        path = (await _node(registry, under, principal))[1]
    nodes = await registry.jurisdictions(under=path, scope=principal.scope_paths)
    return [_out(n, p) for n, p in nodes]


@router.get("/tree", response_model=list[JurisdictionTreeOut])
async def tree(
    principal: Reader,
    registry: RegistryDep,
    under: Annotated[str | None, Query(max_length=32, description="a node code")] = None,
) -> list[JurisdictionTreeOut]:
    """The tree (or one node's subtree) as nested nodes."""
    path = None
    if under is not None:
        path = (await _node(registry, under, principal))[1]
    return _tree(await registry.jurisdictions(under=path, scope=principal.scope_paths))


@router.get("/counts", response_model=SubtreeCountsOut)
async def scope_counts(principal: Reader, registry: RegistryDep) -> SubtreeCountsOut:
    """Device counts over the caller's whole scope."""
    return SubtreeCountsOut.of(None, await registry.counts(None, scope=principal.scope_paths))


@router.get("/boundaries")
async def boundaries(principal: Reader, registry: RegistryDep) -> dict[str, Any]:
    """The outlines of the nodes in the caller's scope, as a GeoJSON FeatureCollection
    (`properties`: code, name, level, parent_code), from `gridwatch jurisdictions import`."""
    return await boundaries_in_scope(registry, principal.scope_paths)


@router.get("/{code}", response_model=JurisdictionOut)
async def get_node(code: str, principal: Reader, registry: RegistryDep) -> JurisdictionOut:
    """One node."""
    node, path = await _node(registry, code, principal)
    return _out(node, path)


@router.get("/{code}/counts", response_model=SubtreeCountsOut)
async def node_counts(code: str, principal: Reader, registry: RegistryDep) -> SubtreeCountsOut:
    """Devices under a node: total, by kind, by health, by child node."""
    _, path = await _node(registry, code, principal)
    return SubtreeCountsOut.of(path, await registry.counts(path, scope=principal.scope_paths))


@router.post("", response_model=list[JurisdictionOut], status_code=201)
async def upsert_nodes(
    request: Request,
    body: list[JurisdictionNode],
    principal: Admin,
    registry: RegistryDep,
) -> list[JurisdictionOut]:
    """Create or change nodes (a whole tree may be loaded at once); admin only."""
    try:
        await registry.upsert_jurisdictions(
            body, actor=Actor(principal.actor, client_addr(request))
        )
    except JurisdictionTreeError as exc:
        raise _tree_problem(exc) from exc
    codes = {n.code for n in body}
    nodes = await registry.jurisdictions(scope=None)
    return [_out(n, p) for n, p in nodes if n.code in codes]


@router.put("/{code}", response_model=JurisdictionOut)
async def put_node(
    request: Request,
    code: str,
    body: JurisdictionNode,
    principal: Admin,
    registry: RegistryDep,
) -> JurisdictionOut:
    """Create or change one node (moving it moves its subtree and devices); admin only."""
    if body.code != code.upper():
        raise Problem(
            422,
            "Invalid request",
            "1 field(s) are invalid",
            errors=[{"field": "body.code", "message": "must equal the code in the path"}],
        )
    try:
        await registry.upsert_jurisdictions(
            [body], actor=Actor(principal.actor, client_addr(request))
        )
    except JurisdictionTreeError as exc:
        raise _tree_problem(exc) from exc
    node, path = await _node(registry, body.code, principal)
    return _out(node, path)
