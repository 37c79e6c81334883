"""Schema 10: GB/T 28181 devices (registration, keepalive, arming) and their channels.

- gb28181_devices: one row per device that registered or tried to: whether a
  maintainer must accept it (`pending`), where it is reachable (transport, host,
  port), until when its registration holds, its last keepalive, the edition it
  speaks (X-GB-Ver), whether alarms are armed and since when, when the last
  alarm came, and when the catalog was last read. Passwords are not here: a
  device's own password is its registry credentials (encrypted).
- gb28181_channels: every catalog entry of a device (channels, alarm inputs,
  directory nodes), with its parent, status and PTZ type.
"""

from hub.storage.migration import Migration

__all__ = ["MIGRATION"]

MIGRATION = Migration(
    version=10,
    name="gb28181",
    statements=[
        """CREATE TABLE gb28181_devices (
            device_id TEXT PRIMARY KEY,
            pending {BOOL} NOT NULL DEFAULT FALSE,
            transport TEXT,
            host TEXT,
            port INTEGER,
            user_agent TEXT,
            version TEXT,
            first_seen_at {TS} NOT NULL,
            last_attempt_at {TS},
            attempts INTEGER NOT NULL DEFAULT 0,
            registered_at {TS},
            expires_at {TS},
            last_keepalive_at {TS},
            armed {BOOL} NOT NULL DEFAULT FALSE,
            armed_at {TS},
            arm_error TEXT,
            last_alarm_at {TS},
            catalog_at {TS},
            channel_count INTEGER NOT NULL DEFAULT 0,
            info {JSON} NOT NULL DEFAULT '{{}}'
        )""",
        "CREATE INDEX gb28181_devices_pending ON gb28181_devices (pending, last_attempt_at)",
        """CREATE TABLE gb28181_channels (
            device_id TEXT NOT NULL,
            channel_id TEXT NOT NULL,
            parent_id TEXT,
            name TEXT,
            status TEXT,
            ptz_type INTEGER,
            civil_code TEXT,
            registered {BOOL} NOT NULL DEFAULT FALSE,
            info {JSON} NOT NULL DEFAULT '{{}}',
            updated_at {TS} NOT NULL,
            PRIMARY KEY (device_id, channel_id)
        )""",
        "CREATE INDEX gb28181_channels_channel ON gb28181_channels (channel_id)",
    ],
)
