"""Several hub nodes over one PostgreSQL: membership, work assignment, singleton jobs.

`Cluster` is this node's view (see `hub.cluster.service`); the ownership rule is
rendezvous hashing over the live nodes (`hub.cluster.ring`); docs/cluster.md says
why and what each guarantee rests on.
"""

from hub.cluster.config import ClusterSettings
from hub.cluster.service import Cluster, NodeState, NodeStatus

__all__ = ["Cluster", "ClusterSettings", "NodeState", "NodeStatus"]
