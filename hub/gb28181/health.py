"""Health of GB/T 28181 devices and channels through the one health state machine.

A device's tracker has a heartbeat policy (keepalive interval × missed count) and
takes one conclusive failure (unregistration, lapsed registration) to go offline;
a channel's tracker has no heartbeat (channels send no keepalives) and follows
what the catalog and DeviceStatus say. Transitions of registry devices are stored
in the health history in one transaction and announced as `health.<state>` events.

The channels of a device follow it: when an NVR goes offline its registered
channels go offline ("its device is offline"), and when it comes back the
channels its catalog lists as ON come back with it — each through its own
tracker, so every change is in the history like any other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime

from camera_registry.events import DeviceEvent, RejectedMessage, Severity
from camera_registry.health import HealthPolicy, HealthTracker, Transition
from camera_registry.models import HealthState
from hub.devices.health_storage import TransitionRow, insert_transitions
from hub.devices.registry import Registry
from hub.gb28181 import storage as repo
from hub.storage import SqlStore

__all__ = ["GbHealth"]


def _on(status: str | None) -> bool:
    return status is not None and status.upper() in ("ON", "ONLINE", "OK")


_SEVERITY = {HealthState.OFFLINE: Severity.WARNING, HealthState.ONLINE: Severity.INFO}
Submit = Callable[[DeviceEvent | RejectedMessage, Callable[[], None] | None], Awaitable[None]]


class GbHealth:
    """Trackers of every GB/T 28181 device and channel this node has heard of."""

    def __init__(
        self,
        *,
        store: SqlStore,
        registry: Registry,
        submit: Submit,
        clock: Callable[[], datetime],
        source: str,
        keepalive_interval_s: float,
        keepalive_missed: int,
    ) -> None:
        self._store = store
        self._registry = registry
        self._submit = submit
        self._clock = clock
        self._source = source
        self._trackers: dict[str, HealthTracker] = {}
        # Offline evidence about a device (unregistration, lapse) is conclusive.
        self._device_policy = HealthPolicy(
            failures_to_offline=1,
            heartbeat_interval_s=keepalive_interval_s,
            missed_heartbeats_to_offline=keepalive_missed,
        )
        # Channels send no keepalives of their own: no heartbeat policy.
        self._channel_policy = HealthPolicy(failures_to_offline=1)

    def resume(self, devices: Sequence[tuple[str, datetime]]) -> None:
        """Watch devices registered before a restart: silence counts from their last keepalive.

        Their state is `unknown` until evidence arrives, as after any restart.
        """
        for device_id, last_heard in devices:
            if device_id not in self._trackers:
                self._trackers[device_id] = HealthTracker(
                    device_id, self._device_policy, last_heard
                )

    def silent(self, device_ids: Iterable[str], now: datetime) -> list[str]:
        """The devices that `check_silence` would take offline at `now`."""
        limit = self._device_policy.heartbeat_interval_s or 0.0
        limit *= self._device_policy.missed_heartbeats_to_offline
        found: list[str] = []
        for device_id in device_ids:
            tracker = self._trackers.get(device_id)
            if tracker is None or tracker.state is HealthState.OFFLINE:
                continue
            status = tracker.status()
            last = status.last_evidence_at or status.since
            if (now - last).total_seconds() >= limit:
                found.append(device_id)
        return found

    def state_of(self, device_id: str) -> HealthState | None:
        """The health of a device or channel (None: no evidence on this node)."""
        tracker = self._trackers.get(device_id)
        return tracker.state if tracker is not None else None

    async def device(self, device_id: str, state: HealthState, reason: str, now: datetime) -> None:
        """Evidence about a registered device (keepalive, message, unregistration).

        Ignored until the registry holds the device: a device registering for the
        first time is added just after its 200, and its history starts there.
        """
        if self._registry.lookup_cached(device_id) is None:
            return
        tracker = self._trackers.get(device_id)
        if tracker is None:
            tracker = self._trackers[device_id] = HealthTracker(device_id, self._device_policy, now)
        transition = tracker.observe(state, reason, now)
        if transition is not None:
            await self._record([transition])
            await self._cascade([transition])

    async def channels(self, items: Sequence[tuple[str, bool, str]], now: datetime) -> None:
        """Channel health from catalog/status: (channel id, online, reason) each."""
        transitions: list[Transition] = []
        for channel_id, online, reason in items:
            tracker = self._trackers.get(channel_id)
            if tracker is None:
                tracker = self._trackers[channel_id] = HealthTracker(
                    channel_id, self._channel_policy, now
                )
            state = HealthState.ONLINE if online else HealthState.OFFLINE
            transition = tracker.observe(state, reason, now)
            if transition is not None:
                transitions.append(transition)
        await self._record(transitions)

    async def check_silence(self, device_ids: Iterable[str], now: datetime) -> None:
        """Offline for the devices whose keepalives stopped."""
        transitions: list[Transition] = []
        for device_id in device_ids:
            tracker = self._trackers.get(device_id)
            if tracker is not None:
                transition = tracker.check_heartbeat(now)
                if transition is not None:
                    transitions.append(transition)
        await self._record(transitions)
        await self._cascade(transitions)

    async def _cascade(self, transitions: Sequence[Transition]) -> None:
        """A device's channels follow it offline, and back online as its catalog says."""
        for t in transitions:
            if t.state not in (HealthState.OFFLINE, HealthState.ONLINE):
                continue
            channels = [
                c
                for c in await repo.list_channels(self._store, t.device_id)
                if c.registered and c.channel_id != t.device_id
            ]
            if t.state is HealthState.OFFLINE:
                reason = f"its device {t.device_id} is offline ({t.reason})"
                items = [(c.channel_id, False, reason) for c in channels]
            else:
                reason = f"its device {t.device_id} is online; catalog status ON"
                items = [(c.channel_id, True, reason) for c in channels if _on(c.status)]
            await self.channels(items, t.at)

    async def _record(self, transitions: Sequence[Transition]) -> None:
        registered = [t for t in transitions if self._registry.lookup_cached(t.device_id)]
        if not registered:
            return
        async with self._store.transaction() as tx:
            await insert_transitions(
                tx,
                [
                    TransitionRow(
                        device_id=t.device_id,
                        at=t.at,
                        from_state=t.previous.value,
                        to_state=t.state.value,
                        reason=t.reason,
                        evidence={"source": self._source},
                    )
                    for t in registered
                ],
                self._clock(),
            )
        for t in registered:
            await self._submit(
                DeviceEvent(
                    time=t.at,
                    device_id=t.device_id,
                    kind=f"health.{t.state.value}",
                    severity=_SEVERITY.get(t.state, Severity.INFO),
                    source=self._source,
                    payload={"from": t.previous.value, "to": t.state.value, "reason": t.reason},
                ),
                None,
            )
