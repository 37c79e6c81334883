"""The cluster's nodes, for administrators: who is alive, since when, running what."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from hub.api.deps import get_cluster
from hub.auth.guards import Principal, Role, require
from hub.cluster.schemas import ClusterOut, NodeOut
from hub.cluster.service import Cluster

__all__ = ["router"]

router = APIRouter(tags=["cluster"])

Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
ClusterDep = Annotated[Cluster, Depends(get_cluster)]


@router.get("/api/cluster/nodes", response_model=ClusterOut)
async def list_nodes(_: Admin, cluster: ClusterDep) -> ClusterOut:
    """Every node that has joined, alive, dead (silent past the timeout) or stopped."""
    nodes = await cluster.nodes()
    return ClusterOut(
        mode="cluster" if cluster.multi_node else "single",
        node_id=cluster.node_id,
        node_timeout_s=cluster.settings.node_timeout_s,
        nodes=[
            NodeOut(
                node_id=n.node_id,
                address=n.address,
                version=n.version,
                state=n.state,
                started_at=n.started_at,
                heartbeat_at=n.heartbeat_at,
                heartbeat_age_s=round(n.heartbeat_age_s, 3),
                jobs=list(n.jobs),
                this_node=n.this_node,
            )
            for n in nodes
        ],
    )
