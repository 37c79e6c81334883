"""Schema 11: evidence clips — pre-alarm video cut around an alarm, one per linked camera.

The MP4 files live in the data directory (`evidence/`); a row says which alarm
and camera a clip belongs to, its jurisdiction (for scoped reads), where the
press falls in it, its size and digests, and when it expires (its own
retention, independent of event retention).
"""

from hub.storage.migration import Migration

__all__ = ["MIGRATION"]

MIGRATION = Migration(
    version=11,
    name="evidence",
    statements=[
        """CREATE TABLE alarm_clips (
            id TEXT PRIMARY KEY,
            alarm_id TEXT NOT NULL,
            camera_id TEXT NOT NULL,
            jurisdiction_path TEXT,
            state TEXT NOT NULL,
            press_at {TS} NOT NULL,
            start_at {TS},
            end_at {TS},
            seconds_before {FLOAT},
            duration_s {FLOAT},
            content_type TEXT NOT NULL DEFAULT 'video/mp4',
            size BIGINT,
            sha256 TEXT,
            sha1 TEXT,
            file_name TEXT,
            tracks TEXT,
            reason TEXT,
            created_at {TS} NOT NULL,
            completed_at {TS},
            expires_at {TS} NOT NULL
        )""",
        "CREATE UNIQUE INDEX alarm_clips_alarm_camera ON alarm_clips (alarm_id, camera_id)",
        "CREATE INDEX alarm_clips_expires ON alarm_clips (expires_at)",
    ],
)
