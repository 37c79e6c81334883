"""Response bodies of the cluster routes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["ClusterOut", "NodeOut"]


class NodeOut(BaseModel):
    """One hub node."""

    node_id: str
    address: str
    version: str
    state: Literal["alive", "dead", "stopped"] = Field(
        description="alive: heartbeat within cluster.node_timeout_s; dead: silent longer "
        "(its work has moved); stopped: left cleanly."
    )
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_s: float
    jobs: list[str] = Field(description="Singleton jobs this node runs.")
    this_node: bool = Field(description="True for the node that answered.")


class ClusterOut(BaseModel):
    """The cluster as the answering node sees it."""

    mode: Literal["single", "cluster"] = Field(
        description="single: SQLite, one node runs everything; cluster: PostgreSQL membership."
    )
    node_id: str
    node_timeout_s: float
    nodes: list[NodeOut]
