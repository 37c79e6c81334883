"""Schema 3: what the alarm engine and the outbox dispatcher need beyond the foundation.

- alarms: the jurisdiction path (for scoping), the rule that opened it, and at
  most one *active* alarm per dedup key (a partial unique index, so two hub
  nodes racing on the same condition cannot open two alarms);
- alarm_history: the alarm revision each entry produced;
- alarm_changes: an append-only change log whose sequence is the cursor of
  the pull API and the live stream;
- outbox: the receipt a sink gave for a delivered row;
- alarm_media: snapshots bound to an alarm;
- sink_status: sinks disabled at run time (e.g. after HTTP 410 Gone).
"""

from hub.storage.migration import Migration

__all__ = ["MIGRATION"]

MIGRATION = Migration(
    version=3,
    name="alarms",
    statements=[
        "ALTER TABLE alarms ADD COLUMN jurisdiction_path TEXT",
        "ALTER TABLE alarms ADD COLUMN rule TEXT",
        "CREATE INDEX alarms_jurisdiction_path ON alarms (jurisdiction_path)",
        "CREATE INDEX alarms_device ON alarms (device_id, state)",
        "CREATE INDEX alarms_opened ON alarms (opened_at)",
        """CREATE UNIQUE INDEX alarms_one_active_per_key ON alarms (dedup_key)
            WHERE state IN ('new', 'acknowledged', 'dispatched')""",
        "CREATE INDEX alarms_ack_due ON alarms (ack_due) WHERE state = 'new'",
        """CREATE INDEX alarms_resolve_due ON alarms (resolve_due)
            WHERE state IN ('new', 'acknowledged', 'dispatched')""",
        "ALTER TABLE alarm_history ADD COLUMN revision INTEGER NOT NULL DEFAULT 1",
        """CREATE TABLE alarm_changes (
            seq {ID},
            alarm_id TEXT NOT NULL REFERENCES alarms (id) ON DELETE CASCADE,
            revision INTEGER NOT NULL,
            action TEXT NOT NULL,
            at {TS} NOT NULL,
            jurisdiction_path TEXT,
            category TEXT NOT NULL,
            payload {JSON} NOT NULL
        )""",
        "CREATE INDEX alarm_changes_alarm ON alarm_changes (alarm_id, seq)",
        "ALTER TABLE outbox ADD COLUMN receipt TEXT",
        "CREATE INDEX outbox_claimed ON outbox (state, claimed_until)",
        """CREATE TABLE alarm_media (
            id {UUID} PRIMARY KEY,
            alarm_id TEXT NOT NULL REFERENCES alarms (id) ON DELETE CASCADE,
            device_id TEXT NOT NULL,
            content_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            data {BLOB} NOT NULL,
            taken_at {TS} NOT NULL,
            source TEXT NOT NULL
        )""",
        "CREATE INDEX alarm_media_alarm ON alarm_media (alarm_id, taken_at)",
        """CREATE TABLE sink_status (
            name TEXT PRIMARY KEY,
            disabled {BOOL} NOT NULL DEFAULT FALSE,
            reason TEXT,
            updated_at {TS} NOT NULL
        )""",
    ],
)
