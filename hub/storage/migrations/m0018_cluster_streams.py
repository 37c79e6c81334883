"""Schema 18: what several hub nodes need to share the console streams and MQTT liveness.

- alarm_changes_notify (PostgreSQL): a statement trigger that sends
  `NOTIFY gridwatch_alarm_changes, '<highest seq inserted>'` in the very transaction
  that appends change-log rows, whichever code appends them. The notification is
  delivered only once that transaction commits, so a node that receives it reads
  the rows by its `seq` cursor and finds them there. SQLite has one node: no trigger.
- mqtt_liveness: when each heartbeat-sending MQTT device was last heard, the interval
  it announced, and by when it must be heard again (`deadline`; NULL once it was
  declared offline or said so itself). Any node may store a device's heartbeat
  (shared subscriptions spread them), so the silence is judged from this table,
  not from one node's memory.
"""

from hub.storage.migration import Migration

__all__ = ["MIGRATION"]

MIGRATION = Migration(
    version=18,
    name="cluster_streams",
    statements=[
        """CREATE TABLE mqtt_liveness (
            device_id TEXT PRIMARY KEY,
            last_heard {TS} NOT NULL,
            interval_s {FLOAT},
            deadline {TS}
        )""",
        "CREATE INDEX mqtt_liveness_deadline ON mqtt_liveness (deadline)",
    ],
    postgresql=[
        """CREATE OR REPLACE FUNCTION gridwatch_alarm_changes_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify(
                'gridwatch_alarm_changes',
                (SELECT COALESCE(max(seq), 0)::text FROM inserted_changes)
            );
            RETURN NULL;
        END
        $$""",
        """CREATE TRIGGER alarm_changes_notify AFTER INSERT ON alarm_changes
        REFERENCING NEW TABLE AS inserted_changes
        FOR EACH STATEMENT EXECUTE FUNCTION gridwatch_alarm_changes_notify()""",
    ],
)
