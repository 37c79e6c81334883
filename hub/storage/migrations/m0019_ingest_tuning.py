"""Schema 19: cheaper bulk ingest on PostgreSQL (storage parameters and one index kind).

- `device_state` leaves half of each page free, so that moving a device's
  last-seen time (every batch, for every device in it) is a heap-only update:
  no new entries in its three indexes. Pages written before this step fill up
  the same way as rows are updated.
- `event_keys.time` is only read by retention (`DELETE … WHERE time < cutoff`),
  and keys arrive in time order: a BRIN index serves that delete at a fraction
  of a B-tree's cost per claimed key.
"""

from hub.storage.migration import Migration

__all__ = ["MIGRATION"]

MIGRATION = Migration(
    version=19,
    name="ingest_tuning",
    statements=[],
    postgresql=[
        "ALTER TABLE device_state SET (fillfactor = 50)",
        "DROP INDEX event_keys_time",
        "CREATE INDEX event_keys_time ON event_keys USING brin (time)",
    ],
)
