"""Schema 14: jurisdiction boundaries (GeoJSON geometry per node) for the console's map."""

from hub.storage.migration import Migration

__all__ = ["MIGRATION"]

MIGRATION = Migration(
    version=14,
    name="jurisdiction_boundaries",
    statements=[
        """CREATE TABLE jurisdiction_boundaries (
            code TEXT PRIMARY KEY REFERENCES jurisdictions (code) ON DELETE CASCADE,
            geometry {JSON} NOT NULL,
            updated_at {TS} NOT NULL
        )""",
    ],
)
