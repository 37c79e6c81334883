"""Prometheus metrics of one hub, on its own registry (so tests can build many hubs)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    """Every metric the hub exports at /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_stored = Counter(
            "gridwatch_events_stored", "Events committed to storage", ["source"], registry=r
        )
        self.events_duplicate = Counter(
            "gridwatch_events_duplicate", "Events dropped as duplicates by dedup key", registry=r
        )
        self.messages_rejected = Counter(
            "gridwatch_messages_rejected",
            "Input stored as rejected, by source",
            ["source"],
            registry=r,
        )
        self.writer_queue = Gauge(
            "gridwatch_writer_queue_depth", "Events waiting for the writer", registry=r
        )
        self.writer_batch = Histogram(
            "gridwatch_writer_batch_size",
            "Events per committed batch",
            buckets=(1, 5, 10, 50, 100, 500, 1000, 5000),
            registry=r,
        )
        self.writer_commit_seconds = Histogram(
            "gridwatch_writer_commit_seconds",
            "Time to commit one batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
            registry=r,
        )
        self.writer_failures = Counter(
            "gridwatch_writer_commit_failures",
            "Batches that failed to commit and were retried",
            registry=r,
        )
        self.patrol_probes = Counter(
            "gridwatch_patrol_probes",
            "Camera probes by what they observed (online, degraded, offline)",
            ["observed"],
            registry=r,
        )
        self.patrol_probe_seconds = Histogram(
            "gridwatch_patrol_probe_seconds",
            "Time of one camera probe (open and decode)",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.patrol_cameras_per_second = Gauge(
            "gridwatch_patrol_cameras_per_second",
            "Cameras probed per second in the last patrol pass",
            registry=r,
        )

        # ONVIF event channels. Aggregates only, no per-camera label: with thousands
        # of cameras a device_id label would mean thousands of series per metric.
        # Per-camera detail is in GET /api/devices/{id}/onvif.
        self.onvif_channels = Gauge(
            "gridwatch_onvif_channels",
            "ONVIF event channels by state (starting, subscribed, backoff, stopped)",
            ["state"],
            registry=r,
        )
        self.onvif_channels_stale = Gauge(
            "gridwatch_onvif_channels_stale",
            "ONVIF event channels without a successful pull within onvif.stale_after_s",
            registry=r,
        )
        self.onvif_oldest_pull_age = Gauge(
            "gridwatch_onvif_oldest_pull_age_seconds",
            "Seconds since the least recent successful pull of any ONVIF event channel",
            registry=r,
        )
        self.onvif_pulls = Counter(
            "gridwatch_onvif_pulls", "Successful ONVIF PullMessages calls", registry=r
        )
        self.onvif_renew_failures = Counter(
            "gridwatch_onvif_renew_failures", "ONVIF subscription renewals that failed", registry=r
        )
        self.onvif_resubscriptions = Counter(
            "gridwatch_onvif_resubscriptions",
            "ONVIF subscriptions created again after a failure",
            registry=r,
        )
        self.onvif_messages = Counter(
            "gridwatch_onvif_messages",
            "ONVIF notifications received, by known topic",
            ["topic"],
            registry=r,
        )
        self.onvif_unknown_topic_messages = Counter(
            "gridwatch_onvif_unknown_topic_messages",
            "ONVIF notifications on topics no parser knows (counted per camera in the API)",
            registry=r,
        )
        self.onvif_malformed_messages = Counter(
            "gridwatch_onvif_malformed_messages",
            "ONVIF notifications refused as malformed",
            registry=r,
        )
        self.onvif_probes = Counter(
            "gridwatch_onvif_probes",
            "ONVIF probes by outcome (ok, auth, unreachable, timeout, protocol, refused)",
            ["outcome"],
            registry=r,
        )

        # Alarms and their delivery. The outbox gauges describe the shared outbox
        # table (every node reports the same backlog), refreshed by the dispatcher.
        self.alarms_opened = Counter(
            "gridwatch_alarms_opened",
            "Alarms opened, by priority (1 highest) and whether they are drills",
            ["priority", "drill"],
            registry=r,
        )
        self.alarm_escalations = Counter(
            "gridwatch_alarm_escalations",
            "SLA escalations, by the alarm's priority and the level reached",
            ["priority", "level"],
            registry=r,
        )
        self.outbox_pending = Gauge(
            "gridwatch_outbox_pending",
            "Outbox rows waiting for delivery (pending or being delivered), by sink",
            ["sink"],
            registry=r,
        )
        self.outbox_dead = Gauge(
            "gridwatch_outbox_dead",
            "Outbox rows dead-lettered after the attempt limit, by sink",
            ["sink"],
            registry=r,
        )
        self.outbox_deliveries = Counter(
            "gridwatch_outbox_deliveries",
            "Delivery attempts by sink and outcome (delivered, failed, dead, gone, expired)",
            ["sink", "outcome"],
            registry=r,
        )
        self._before_render: list[Callable[[], None]] = []

    def before_render(self, refresh: Callable[[], None]) -> None:
        """Run `refresh` before every exposition (metrics derived from live state)."""
        self._before_render.append(refresh)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        for refresh in self._before_render:
            refresh()
        return generate_latest(self.registry)
