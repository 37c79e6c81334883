"""Schema 4: broadcast commands sent to MQTT broadcast units, and how each ended."""

from hub.storage.migration import Migration

__all__ = ["MIGRATION"]

MIGRATION = Migration(
    version=4,
    name="broadcast",
    statements=[
        # One row per unit and command. `outcome` is 'pending' until the unit acked, failed
        # or timed out; `jurisdiction_path` is the unit's at request time, for scoping reads.
        """CREATE TABLE broadcast_commands (
            id TEXT PRIMARY KEY,
            correlation_id TEXT,
            unit_id TEXT NOT NULL,
            target_zone TEXT,
            jurisdiction_path TEXT,
            command {JSON} NOT NULL,
            requested_by TEXT NOT NULL,
            requested_at {TS} NOT NULL,
            outcome TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            sent_at {TS},
            finished_at {TS},
            reason TEXT
        )""",
        "CREATE INDEX broadcast_commands_unit ON broadcast_commands (unit_id, requested_at)",
        "CREATE INDEX broadcast_commands_outcome ON broadcast_commands (outcome, requested_at)",
    ],
)
