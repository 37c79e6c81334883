"""Schema 1: devices, events, alarms, outbox, users, audit log."""

from hub.storage.migration import Migration

__all__ = ["MIGRATION"]

MIGRATION = Migration(
    version=1,
    name="foundation",
    statements=[
        """CREATE TABLE devices (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL DEFAULT '',
            kind TEXT NOT NULL DEFAULT 'camera',
            jurisdiction TEXT,
            attributes {JSON} NOT NULL DEFAULT '{{}}',
            enabled {BOOL} NOT NULL DEFAULT TRUE,
            created_at {TS} NOT NULL,
            updated_at {TS} NOT NULL
        )""",
        """CREATE TABLE device_state (
            device_id TEXT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
            health TEXT NOT NULL DEFAULT 'unknown',
            health_since {TS},
            health_reason TEXT,
            last_event_at {TS},
            last_seen_at {TS},
            updated_at {TS} NOT NULL
        )""",
        """CREATE TABLE events (
            time {TS} NOT NULL,
            event_id {UUID} NOT NULL,
            device_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            severity TEXT NOT NULL,
            source TEXT NOT NULL,
            dedup_key TEXT,
            payload {JSON} NOT NULL
        )""",
        "CREATE INDEX events_device_time ON events (device_id, time DESC)",
        "CREATE INDEX events_time ON events (time DESC)",
        # Deduplication lives beside the events: a hypertable cannot carry a
        # unique index that leaves out its time column.
        """CREATE TABLE event_keys (
            dedup_key TEXT PRIMARY KEY,
            time {TS} NOT NULL,
            event_id {UUID} NOT NULL
        )""",
        "CREATE INDEX event_keys_time ON event_keys (time)",
        """CREATE TABLE rejected_messages (
            id {UUID} PRIMARY KEY,
            time {TS} NOT NULL,
            source TEXT NOT NULL,
            origin TEXT NOT NULL,
            device_id TEXT,
            reason TEXT NOT NULL,
            payload {BLOB} NOT NULL
        )""",
        "CREATE INDEX rejected_messages_time ON rejected_messages (time DESC)",
        """CREATE TABLE alarms (
            id TEXT PRIMARY KEY,
            type TEXT NOT NULL,
            priority SMALLINT NOT NULL,
            state TEXT NOT NULL,
            category TEXT NOT NULL,
            device_id TEXT,
            jurisdiction TEXT,
            title TEXT NOT NULL,
            sop TEXT NOT NULL DEFAULT '',
            dedup_key TEXT,
            opened_at {TS} NOT NULL,
            last_seen_at {TS} NOT NULL,
            updated_at {TS} NOT NULL,
            count INTEGER NOT NULL DEFAULT 1,
            assignee TEXT,
            department TEXT,
            ack_due {TS},
            resolve_due {TS},
            escalation_level INTEGER NOT NULL DEFAULT 0,
            revision INTEGER NOT NULL DEFAULT 1,
            is_drill {BOOL} NOT NULL DEFAULT FALSE,
            closed_reason TEXT,
            details {JSON} NOT NULL DEFAULT '{{}}'
        )""",
        "CREATE INDEX alarms_state_priority ON alarms (state, priority, opened_at)",
        "CREATE INDEX alarms_updated ON alarms (updated_at)",
        "CREATE INDEX alarms_dedup ON alarms (dedup_key)",
        """CREATE TABLE alarm_history (
            id {ID},
            alarm_id TEXT NOT NULL REFERENCES alarms (id) ON DELETE CASCADE,
            at {TS} NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            from_state TEXT,
            to_state TEXT,
            note TEXT,
            details {JSON} NOT NULL DEFAULT '{{}}'
        )""",
        "CREATE INDEX alarm_history_alarm ON alarm_history (alarm_id, id)",
        """CREATE TABLE outbox (
            id {ID},
            alarm_id TEXT NOT NULL,
            revision INTEGER NOT NULL,
            sink TEXT NOT NULL,
            idempotency_key TEXT NOT NULL UNIQUE,
            payload {JSON} NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at {TS} NOT NULL,
            last_error TEXT,
            created_at {TS} NOT NULL,
            delivered_at {TS},
            claimed_by TEXT,
            claimed_until {TS}
        )""",
        "CREATE INDEX outbox_due ON outbox (state, next_attempt_at)",
        "CREATE INDEX outbox_alarm ON outbox (alarm_id)",
        """CREATE TABLE users (
            id TEXT PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL,
            jurisdictions {JSON} NOT NULL DEFAULT '[]',
            disabled {BOOL} NOT NULL DEFAULT FALSE,
            failed_logins INTEGER NOT NULL DEFAULT 0,
            locked_until {TS},
            created_at {TS} NOT NULL,
            updated_at {TS} NOT NULL
        )""",
        """CREATE TABLE audit_log (
            id {ID},
            at {TS} NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT,
            remote_addr TEXT,
            details {JSON} NOT NULL DEFAULT '{{}}'
        )""",
        "CREATE INDEX audit_log_at ON audit_log (at)",
    ],
    timescale=[
        "SELECT create_hypertable('events', 'time', chunk_time_interval => INTERVAL '1 day')",
        """ALTER TABLE events SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'device_id',
            timescaledb.compress_orderby = 'time DESC'
        )""",
    ],
)
