"""Schema 2: the device registry (device fields, jurisdiction tree, credentials).

- devices: descriptive and protocol fields, encrypted credentials (never
  returned by any query meant for display), and the materialized path of the
  device's jurisdiction node so "everything under this node" is one indexed
  range query;
- jurisdictions: the tree (district → town → village → grid → micro-grid),
  each node with its own materialized path;
- indexes for the list filters and for every whitelisted sort key (each with
  `id` as tie-breaker, which is what the cursor pages on).

Subtree queries: on SQLite `path GLOB '/a/b/*'` uses the plain index; on
PostgreSQL `path LIKE '/a/b/%'` needs the `text_pattern_ops` index unless the
database collation is "C" (it usually is not), so PostgreSQL gets one extra.
"""

from hub.storage.migration import Migration

__all__ = ["MIGRATION"]

MIGRATION = Migration(
    version=2,
    name="registry",
    statements=[
        "ALTER TABLE devices ADD COLUMN project TEXT",
        "ALTER TABLE devices ADD COLUMN latitude {FLOAT}",
        "ALTER TABLE devices ADD COLUMN longitude {FLOAT}",
        "ALTER TABLE devices ADD COLUMN address TEXT",
        "ALTER TABLE devices ADD COLUMN vendor TEXT",
        "ALTER TABLE devices ADD COLUMN model TEXT",
        "ALTER TABLE devices ADD COLUMN firmware TEXT",
        "ALTER TABLE devices ADD COLUMN serial TEXT",
        "ALTER TABLE devices ADD COLUMN onvif_url TEXT",
        "ALTER TABLE devices ADD COLUMN rtsp_urls {JSON} NOT NULL DEFAULT '[]'",
        "ALTER TABLE devices ADD COLUMN snapshot_url TEXT",
        "ALTER TABLE devices ADD COLUMN mqtt_device_id TEXT",
        # AES-GCM ciphertext with its key id; see hub.secrets.
        "ALTER TABLE devices ADD COLUMN credentials {BLOB}",
        "ALTER TABLE devices ADD COLUMN tags {JSON} NOT NULL DEFAULT '[]'",
        "ALTER TABLE devices ADD COLUMN linked_cameras {JSON} NOT NULL DEFAULT '[]'",
        "ALTER TABLE devices ADD COLUMN jurisdiction_path TEXT",
        """CREATE UNIQUE INDEX devices_mqtt_device_id ON devices (mqtt_device_id)
            WHERE mqtt_device_id IS NOT NULL""",
        "CREATE INDEX devices_jurisdiction_path ON devices (jurisdiction_path, id)",
        "CREATE INDEX devices_kind ON devices (kind, id)",
        "CREATE INDEX devices_project ON devices (project, id)",
        "CREATE INDEX devices_name ON devices (name, id)",
        "CREATE INDEX devices_updated ON devices (updated_at, id)",
        # Bounding-box pre-filter of the nearest-camera search.
        "CREATE INDEX devices_location ON devices (latitude, longitude)",
        "CREATE INDEX device_state_health ON device_state (health, device_id)",
        """CREATE TABLE jurisdictions (
            code TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            level TEXT NOT NULL,
            parent_code TEXT REFERENCES jurisdictions (code),
            path TEXT NOT NULL UNIQUE
        )""",
        "CREATE INDEX jurisdictions_parent ON jurisdictions (parent_code)",
    ],
    postgresql=[
        """CREATE INDEX devices_jurisdiction_path_pattern
            ON devices (jurisdiction_path text_pattern_ops)""",
        "CREATE INDEX jurisdictions_path_pattern ON jurisdictions (path text_pattern_ops)",
    ],
)
