"""Every schema migration, in order. Append new ones; never edit one that has shipped."""

from hub.storage.migration import Migration
from hub.storage.migrations import m0001_foundation, m0002_registry

__all__ = ["MIGRATIONS", "latest_version"]

MIGRATIONS: tuple[Migration, ...] = (m0001_foundation.MIGRATION, m0002_registry.MIGRATION)


def latest_version() -> int:
    """The schema version this code writes and understands."""
    return MIGRATIONS[-1].version
