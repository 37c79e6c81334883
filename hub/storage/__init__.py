"""Storage: one interface (`SqlStore`), SQLite and PostgreSQL/TimescaleDB backends."""

from __future__ import annotations

from pathlib import Path

from hub.storage.base import (
    Backend,
    IngestResult,
    Json,
    SchemaTooNew,
    SqlStore,
    StorageError,
    StoredRejection,
    Tx,
)
from hub.storage.postgres import PostgresStore
from hub.storage.sqlite import SQLiteStore

__all__ = [
    "Backend",
    "IngestResult",
    "Json",
    "PostgresStore",
    "SQLiteStore",
    "SchemaTooNew",
    "SqlStore",
    "StorageError",
    "StoredRejection",
    "Tx",
    "open_store",
]


def open_store(
    url: str,
    *,
    pool_size: int = 8,
    retention_days: int = 180,
    compress_after_days: int = 7,
) -> SqlStore:
    """Build (not yet open) the store a URL names: sqlite:///path or postgresql://…"""
    if url.startswith("sqlite:///"):
        # As in SQLAlchemy: sqlite:///relative/file, sqlite:////absolute/file.
        return SQLiteStore(Path(url.removeprefix("sqlite:///")), retention_days=retention_days)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(
            url,
            pool_size=pool_size,
            retention_days=retention_days,
            compress_after_days=compress_after_days,
        )
    raise StorageError("storage URL must start with sqlite:/// or postgresql://")
