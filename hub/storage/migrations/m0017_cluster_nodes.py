"""Schema 17: the hub nodes of a cluster and their heartbeats."""

from hub.storage.migration import Migration

__all__ = ["MIGRATION"]

MIGRATION = Migration(
    version=17,
    name="cluster_nodes",
    statements=[
        """CREATE TABLE cluster_nodes (
            node_id TEXT PRIMARY KEY,
            address TEXT NOT NULL,
            version TEXT NOT NULL,
            jobs {JSON} NOT NULL,
            started_at {TS} NOT NULL,
            heartbeat_at {TS} NOT NULL,
            stopped_at {TS}
        )""",
    ],
)
