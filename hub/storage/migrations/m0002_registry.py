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

Subtree counts: `device_counts` holds signed deltas (jurisdiction path, kind,
health, n) written by triggers on `devices` and `device_state`, so a count is a
sum over a few thousand rows instead of a join over every device, and every
writer (registry, health patrol, MQTT health) is covered without knowing about
it. Deltas are only ever inserted (no hot counter row to lock, so concurrent
writers neither wait on nor deadlock over counters); `compact_counts` folds
them periodically. A device without a `device_state` row counts as `unknown`.
On PostgreSQL a path/kind change locks the device's state row so that a
concurrent health change is counted under the right path.

Text search: on PostgreSQL, where `pg_trgm` can be created, a trigram GIN index
over name, address and id answers `ILIKE '%text%'`; without it the same query
scans (correct, slower).
"""

from hub.storage.migration import Migration, OptionalStep

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
        # The listing sorts by COALESCE(project, ''): the index must match it.
        "CREATE INDEX devices_project ON devices (COALESCE(project, ''), id)",
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
        """CREATE TABLE device_counts (
            jurisdiction_path TEXT,
            kind TEXT NOT NULL,
            health TEXT NOT NULL,
            n INTEGER NOT NULL
        )""",
        "CREATE INDEX device_counts_path ON device_counts (jurisdiction_path)",
        # Devices that exist before this migration (foundation rows).
        """INSERT INTO device_counts (jurisdiction_path, kind, health, n)
            SELECT d.jurisdiction_path, d.kind, COALESCE(s.health, 'unknown'), COUNT(*)
            FROM devices d LEFT JOIN device_state s ON s.device_id = d.id
            GROUP BY d.jurisdiction_path, d.kind, COALESCE(s.health, 'unknown')""",
    ],
    postgresql=[
        """CREATE INDEX devices_jurisdiction_path_pattern
            ON devices (jurisdiction_path text_pattern_ops)""",
        "CREATE INDEX jurisdictions_path_pattern ON jurisdictions (path text_pattern_ops)",
        """CREATE INDEX device_counts_path_pattern
            ON device_counts (jurisdiction_path text_pattern_ops)""",
        # New devices have no state row yet (it references them): all `unknown`.
        # One statement-level trigger per INSERT keeps bulk imports cheap.
        """CREATE OR REPLACE FUNCTION device_counts_devices_inserted() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO device_counts (jurisdiction_path, kind, health, n)
                    SELECT jurisdiction_path, kind, 'unknown', COUNT(*)
                    FROM new_devices GROUP BY jurisdiction_path, kind;
                RETURN NULL;
            END $$""",
        """CREATE TRIGGER device_counts_devices_insert AFTER INSERT ON devices
            REFERENCING NEW TABLE AS new_devices
            FOR EACH STATEMENT EXECUTE FUNCTION device_counts_devices_inserted()""",
        # Deletes count BEFORE the row goes: the cascade removes its state after.
        """CREATE OR REPLACE FUNCTION device_counts_devices_changed() RETURNS trigger
            LANGUAGE plpgsql AS $$
            DECLARE
                state_health TEXT;
            BEGIN
                SELECT health INTO state_health FROM device_state
                    WHERE device_id = OLD.id FOR NO KEY UPDATE;
                state_health := COALESCE(state_health, 'unknown');
                INSERT INTO device_counts (jurisdiction_path, kind, health, n)
                    VALUES (OLD.jurisdiction_path, OLD.kind, state_health, -1);
                IF TG_OP = 'UPDATE' THEN
                    INSERT INTO device_counts (jurisdiction_path, kind, health, n)
                        VALUES (NEW.jurisdiction_path, NEW.kind, state_health, 1);
                    RETURN NEW;
                END IF;
                RETURN OLD;
            END $$""",
        """CREATE TRIGGER device_counts_devices_delete BEFORE DELETE ON devices
            FOR EACH ROW EXECUTE FUNCTION device_counts_devices_changed()""",
        """CREATE TRIGGER device_counts_devices_update AFTER UPDATE ON devices
            FOR EACH ROW WHEN (OLD.jurisdiction_path IS DISTINCT FROM NEW.jurisdiction_path
                OR OLD.kind IS DISTINCT FROM NEW.kind)
            EXECUTE FUNCTION device_counts_devices_changed()""",
        """CREATE OR REPLACE FUNCTION device_counts_state_changed() RETURNS trigger
            LANGUAGE plpgsql AS $$
            DECLARE
                old_health TEXT := 'unknown';
                new_health TEXT := 'unknown';
                state_device TEXT;
                device_path TEXT;
                device_kind TEXT;
            BEGIN
                IF TG_OP <> 'INSERT' THEN
                    old_health := OLD.health;
                    state_device := OLD.device_id;
                END IF;
                IF TG_OP <> 'DELETE' THEN
                    new_health := NEW.health;
                    state_device := NEW.device_id;
                END IF;
                SELECT jurisdiction_path, kind INTO device_path, device_kind
                    FROM devices WHERE id = state_device;
                -- Gone with its device: the device's own delete counted it.
                IF FOUND THEN
                    INSERT INTO device_counts (jurisdiction_path, kind, health, n) VALUES
                        (device_path, device_kind, old_health, -1),
                        (device_path, device_kind, new_health, 1);
                END IF;
                RETURN NULL;
            END $$""",
        """CREATE TRIGGER device_counts_state_insert AFTER INSERT ON device_state
            FOR EACH ROW WHEN (NEW.health <> 'unknown')
            EXECUTE FUNCTION device_counts_state_changed()""",
        """CREATE TRIGGER device_counts_state_update AFTER UPDATE ON device_state
            FOR EACH ROW WHEN (OLD.health IS DISTINCT FROM NEW.health)
            EXECUTE FUNCTION device_counts_state_changed()""",
        """CREATE TRIGGER device_counts_state_delete AFTER DELETE ON device_state
            FOR EACH ROW WHEN (OLD.health <> 'unknown')
            EXECUTE FUNCTION device_counts_state_changed()""",
    ],
    sqlite=[
        """CREATE TRIGGER device_counts_devices_insert AFTER INSERT ON devices
            BEGIN
                INSERT INTO device_counts (jurisdiction_path, kind, health, n)
                    VALUES (NEW.jurisdiction_path, NEW.kind, 'unknown', 1);
            END""",
        """CREATE TRIGGER device_counts_devices_delete BEFORE DELETE ON devices
            BEGIN
                INSERT INTO device_counts (jurisdiction_path, kind, health, n)
                    VALUES (OLD.jurisdiction_path, OLD.kind, COALESCE(
                        (SELECT health FROM device_state WHERE device_id = OLD.id), 'unknown'), -1);
            END""",
        """CREATE TRIGGER device_counts_devices_update AFTER UPDATE OF jurisdiction_path, kind
            ON devices
            WHEN OLD.jurisdiction_path IS NOT NEW.jurisdiction_path OR OLD.kind IS NOT NEW.kind
            BEGIN
                INSERT INTO device_counts (jurisdiction_path, kind, health, n)
                    SELECT OLD.jurisdiction_path, OLD.kind, h.health, -1 FROM (SELECT COALESCE(
                        (SELECT health FROM device_state WHERE device_id = OLD.id), 'unknown')
                        AS health) h
                    UNION ALL
                    SELECT NEW.jurisdiction_path, NEW.kind, h.health, 1 FROM (SELECT COALESCE(
                        (SELECT health FROM device_state WHERE device_id = NEW.id), 'unknown')
                        AS health) h;
            END""",
        """CREATE TRIGGER device_counts_state_insert AFTER INSERT ON device_state
            WHEN NEW.health <> 'unknown'
            BEGIN
                INSERT INTO device_counts (jurisdiction_path, kind, health, n)
                    SELECT jurisdiction_path, kind, 'unknown', -1 FROM devices
                        WHERE id = NEW.device_id
                    UNION ALL
                    SELECT jurisdiction_path, kind, NEW.health, 1 FROM devices
                        WHERE id = NEW.device_id;
            END""",
        """CREATE TRIGGER device_counts_state_update AFTER UPDATE OF health ON device_state
            WHEN OLD.health IS NOT NEW.health
            BEGIN
                INSERT INTO device_counts (jurisdiction_path, kind, health, n)
                    SELECT jurisdiction_path, kind, OLD.health, -1 FROM devices
                        WHERE id = NEW.device_id
                    UNION ALL
                    SELECT jurisdiction_path, kind, NEW.health, 1 FROM devices
                        WHERE id = NEW.device_id;
            END""",
        """CREATE TRIGGER device_counts_state_delete AFTER DELETE ON device_state
            WHEN OLD.health <> 'unknown'
            BEGIN
                INSERT INTO device_counts (jurisdiction_path, kind, health, n)
                    SELECT jurisdiction_path, kind, OLD.health, -1 FROM devices
                        WHERE id = OLD.device_id
                    UNION ALL
                    SELECT jurisdiction_path, kind, 'unknown', 1 FROM devices
                        WHERE id = OLD.device_id;
            END""",
    ],
    optional_postgresql=[
        OptionalStep(
            purpose="the trigram index for device text search",
            extension="pg_trgm",
            statements=[
                "CREATE EXTENSION IF NOT EXISTS pg_trgm",
                # Must match `DEVICE_TEXT` in hub.devices.storage exactly.
                """CREATE INDEX devices_text_trgm ON devices USING gin (
                    (name || ' ' || COALESCE(address, '') || ' ' || id) gin_trgm_ops)""",
            ],
        )
    ],
)
