"""Schema 5: stream health samples, health state history, VQD baselines, evidence, patrols.

- health_samples: one row per probe of a camera (what the probe and the
  video-quality diagnosis found). On TimescaleDB a compressed hypertable with a
  daily continuous aggregate per device (`health_samples_daily`: probes, probes
  that got pictures, probes whose picture had no fault), bucketed by the
  reporting day in Asia/Shanghai.
- device_health_history: every health state transition with its reason. The
  online and intact rates are computed from this table, time-weighted, the same
  way on every backend: a daily aggregate over state *changes* cannot say how
  long each state lasted inside the day, so it is not used for the rates.
- vqd_baselines: what each camera's picture usually looks like (sharpness,
  scene reference thumbnail as PNG).
- evidence_media: JPEG snapshots kept as evidence of a fault or a transition.
  Separate from `alarm_media` (bound to an alarm): evidence exists before and
  without any alarm, and alarms link to it by id through event payloads.
- patrol_runs: progress of each patrol pass.
"""

from hub.storage.migration import Migration

__all__ = ["MIGRATION"]

MIGRATION = Migration(
    version=5,
    name="health",
    statements=[
        # When the patrol last probed the device: "most overdue first" reads it.
        "ALTER TABLE device_state ADD COLUMN last_probe_at {TS}",
        "CREATE INDEX device_state_last_probe ON device_state (last_probe_at)",
        """CREATE TABLE health_samples (
            time {TS} NOT NULL,
            device_id TEXT NOT NULL,
            ok {BOOL} NOT NULL,
            observed TEXT NOT NULL,
            failure TEXT,
            error TEXT,
            url TEXT,
            open_latency_ms {FLOAT},
            codec TEXT,
            width INTEGER,
            height INTEGER,
            fps {FLOAT},
            frames INTEGER NOT NULL DEFAULT 0,
            verdicts {JSON} NOT NULL DEFAULT '[]',
            faults {JSON} NOT NULL DEFAULT '[]',
            evidence_id {UUID},
            patrol_id BIGINT
        )""",
        "CREATE INDEX health_samples_device_time ON health_samples (device_id, time DESC)",
        "CREATE INDEX health_samples_time ON health_samples (time DESC)",
        """CREATE TABLE device_health_history (
            id {ID},
            device_id TEXT NOT NULL,
            at {TS} NOT NULL,
            from_state TEXT NOT NULL,
            to_state TEXT NOT NULL,
            reason TEXT NOT NULL,
            evidence {JSON} NOT NULL DEFAULT '{{}}'
        )""",
        "CREATE INDEX device_health_history_device ON device_health_history (device_id, at, id)",
        "CREATE INDEX device_health_history_at ON device_health_history (at)",
        """CREATE TABLE vqd_baselines (
            device_id TEXT PRIMARY KEY,
            sharpness {FLOAT},
            samples INTEGER NOT NULL DEFAULT 0,
            reference_png {BLOB},
            updated_at {TS} NOT NULL
        )""",
        """CREATE TABLE evidence_media (
            id {UUID} PRIMARY KEY,
            device_id TEXT NOT NULL,
            content_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            data {BLOB} NOT NULL,
            taken_at {TS} NOT NULL,
            source TEXT NOT NULL
        )""",
        "CREATE INDEX evidence_media_device ON evidence_media (device_id, taken_at DESC)",
        "CREATE INDEX evidence_media_taken ON evidence_media (taken_at)",
        """CREATE TABLE patrol_runs (
            id {ID},
            started_at {TS} NOT NULL,
            finished_at {TS},
            total INTEGER NOT NULL DEFAULT 0,
            done INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            degraded INTEGER NOT NULL DEFAULT 0,
            trigger TEXT NOT NULL DEFAULT 'schedule',
            node TEXT
        )""",
        "CREATE INDEX patrol_runs_started ON patrol_runs (started_at DESC)",
    ],
    timescale=[
        """SELECT create_hypertable('health_samples', 'time',
            chunk_time_interval => INTERVAL '1 day')""",
        """ALTER TABLE health_samples SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'device_id',
            timescaledb.compress_orderby = 'time DESC'
        )""",
        # Real-time aggregation (materialized_only = false): the buckets not yet
        # materialized are computed from the raw rows, so reports are never stale.
        """CREATE MATERIALIZED VIEW health_samples_daily
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT device_id,
                   time_bucket(INTERVAL '1 day', time, 'Asia/Shanghai') AS day,
                   count(*) AS probes,
                   sum(CASE WHEN ok THEN 1 ELSE 0 END) AS ok_probes,
                   sum(CASE WHEN observed = 'online' THEN 1 ELSE 0 END) AS clean_probes
            FROM health_samples
            GROUP BY device_id, day
            WITH NO DATA""",
        """SELECT add_continuous_aggregate_policy('health_samples_daily',
            start_offset => INTERVAL '3 days',
            end_offset => INTERVAL '1 hour',
            schedule_interval => INTERVAL '1 hour')""",
    ],
)
