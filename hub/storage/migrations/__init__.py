"""Every schema migration, in order. Append new ones; never edit one that has shipped."""

from hub.storage.migration import Migration
from hub.storage.migrations import (
    m0001_foundation,
    m0002_registry,
    m0003_alarms,
    m0004_broadcast,
    m0005_health,
    m0006_onvif,
    m0007_auth,
    m0008_health_reasons,
    m0009_alarm_deadlines,
    m0010_gb28181,
    m0011_evidence,
    m0012_departments,
    m0014_boundaries,
    m0016_gb28181_sessions,
    m0017_cluster_nodes,
    m0018_cluster_streams,
    m0019_ingest_tuning,
)

__all__ = ["MIGRATIONS", "latest_version"]

MIGRATIONS: tuple[Migration, ...] = (
    m0001_foundation.MIGRATION,
    m0002_registry.MIGRATION,
    m0003_alarms.MIGRATION,
    m0004_broadcast.MIGRATION,
    m0005_health.MIGRATION,
    m0006_onvif.MIGRATION,
    m0007_auth.MIGRATION,
    m0008_health_reasons.MIGRATION,
    m0009_alarm_deadlines.MIGRATION,
    m0010_gb28181.MIGRATION,
    m0011_evidence.MIGRATION,
    m0012_departments.MIGRATION,
    m0014_boundaries.MIGRATION,
    m0016_gb28181_sessions.MIGRATION,
    m0017_cluster_nodes.MIGRATION,
    m0018_cluster_streams.MIGRATION,
    m0019_ingest_tuning.MIGRATION,
)


def latest_version() -> int:
    """The schema version this code writes and understands (numbers are per feature, so the
    highest, not the last listed)."""
    return max(migration.version for migration in MIGRATIONS)
