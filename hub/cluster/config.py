"""Configuration of the node membership, singleton jobs and work assignment."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ClusterSettings"]


class ClusterSettings(BaseModel):
    """Several hub nodes over one PostgreSQL: heartbeats, singleton jobs, work split.

    On SQLite the hub is one node: every job and every device is its own.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    heartbeat_s: float = Field(
        3.0, ge=0.2, le=60, description="How often this node writes its heartbeat row."
    )
    node_timeout_s: float = Field(
        15.0,
        ge=1,
        le=600,
        description="A node whose heartbeat is older than this is dead: its work moves.",
    )
    handover_s: float = Field(
        10.0,
        ge=0,
        le=600,
        description=(
            "When a node joins, how long it waits before taking the devices that move "
            "to it from live nodes (they release them at their next heartbeat); must "
            "exceed a heartbeat and the longest probe in flight."
        ),
    )
    address: str | None = Field(
        None,
        max_length=300,
        description="Where this node's API is reached (shown in the node list); "
        "empty = http://<http.host>:<http.port>.",
    )

    @model_validator(mode="after")
    def _timeout_spans_heartbeats(self) -> Self:
        if self.node_timeout_s < 2 * self.heartbeat_s:
            raise ValueError("node_timeout_s must be at least two heartbeats (2 × heartbeat_s)")
        if self.handover_s < self.heartbeat_s and self.handover_s != 0:
            raise ValueError("handover_s must be at least one heartbeat (or 0: hand over at once)")
        return self
