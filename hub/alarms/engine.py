"""The alarm engine: events become alarms in the writer's transaction; people act on them.

* **Events.** `in_transaction` runs inside the event writer's batch transaction:
  it reads the registry facts of the batch's devices and their open alarms
  (one trip to the database), runs `alarms.rules.evaluate` on the events in
  order in memory, and writes alarms, history, change-log rows and outbox rows
  in that same transaction (one more trip: each table in a multi-row
  statement, sent together as one PostgreSQL pipeline or one hop to SQLite's
  writer thread). Repeats of one alarm
  within one batch make one revision: one UPDATE with the final count and
  last-seen time, one history entry saying how many presses it stands for and
  listing every one of them (event id, time, kind), one change-log row and one
  outbox row per sink. History stays append-only and accounts for every press;
  a press storm queues one delivery per alarm per batch (a few ms), not one per
  press, and a P1 alarm is announced right after its batch commits. If evaluating one
  event raises (a rule or payload the domain refuses), that event is stored as
  a rejected message with the reason and the batch goes on; a storage error
  fails the whole batch, which the writer retries (it is transient by nature).
  The changes are announced (bus, dispatcher, linkage) only from
  `after_commit`, which the writer calls once with the committed attempt's
  result, so a retried batch never announces twice.
* **Operator actions and the API's reads** are `hub.alarms.actions`, the SLA
  loop is `hub.alarms.sla_loop`, snapshot linkage `hub.alarms.linkage`; all
  record revisions through `hub.alarms.recording`. The engine wires them up
  (`actions`, `sla`, `linkage`) and keeps short delegating methods.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapters.onvif.http import CameraHttp
from alarms.models import Alarm, AlarmAction, HistoryEntry, Location
from alarms.outbox import OutboxRecord, alarm_payload, new_outbox_record
from alarms.rules import (
    AlarmRule,
    CloseAlarm,
    DeviceContext,
    LinkagePlan,
    OpenAlarm,
    UpdateAlarm,
    dedup_key_for,
    evaluate,
    match_rule,
    repeat,
)
from camera_registry.events import DeviceEvent, RejectedMessage
from camera_registry.logins import LoginBudget
from hub.alarms import storage as alarm_storage
from hub.alarms.actions import AlarmActions, AlarmNotFound, CloseGuard
from hub.alarms.batch_storage import write_batch
from hub.alarms.config import AlarmSettings
from hub.alarms.dispatcher import BROADCAST_SINK
from hub.alarms.linkage import (
    CredentialResolver,
    FrameGrabber,
    SnapshotFetcher,
    SnapshotLinkage,
    grab_frame,
)
from hub.alarms.recording import Recorder, location_from
from hub.alarms.sla_loop import SlaLoop
from hub.alarms.storage import AlarmChange, AlarmDevice, StoredAlarm
from hub.bus import EventBus
from hub.clock import Clock, utcnow
from hub.devices import storage as devices_repo
from hub.metrics import Metrics
from hub.storage.base import IngestResult, SqlStore, Tx

__all__ = [
    "AlarmChange",
    "AlarmEngine",
    "AlarmNotFound",
    "CloseGuard",
    "CredentialResolver",
    "FrameGrabber",
    "SnapshotFetcher",
    "grab_frame",
]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Batch:
    """What one batch transaction changed; announced only after it commits."""

    changes: list[AlarmChange] = field(default_factory=list)
    openings: list[tuple[uuid.UUID, LinkagePlan]] = field(default_factory=list)
    devices: dict[str, AlarmDevice] = field(default_factory=dict)
    queued: bool = False


@dataclass(slots=True)
class _Revision:
    """One alarm revision a batch writes: a history entry, a change, outbox rows."""

    alarm: Alarm
    entry: HistoryEntry
    path: str | None
    location: Location | None
    notify: bool
    #: The repeat entries this revision stands for (repeat revisions only).
    repeats: list[HistoryEntry] = field(default_factory=list)


@dataclass(slots=True)
class _Tracked:
    """An alarm a batch touches: as read (or as opened) and as it is now."""

    stored: StoredAlarm
    #: The revision it was read at; None when the batch opened it.
    read_revision: int | None
    alarm: Alarm
    location: Location | None
    #: The batch's repeat revision of this alarm that further repeats join, if any.
    repeat: _Revision | None = None


def _repeat_entry(revision: _Revision) -> HistoryEntry:
    """The history entry of a repeat revision: the press itself, or all of them at once.

    Repeats of one alarm within one batch are one revision. Its entry keeps
    the last press's details, the number of presses (`repeats`), the first
    press's time, and every press (event id, time, kind) under `events`, so
    the history still accounts for each press.
    """
    first, last = revision.repeats[0], revision.repeats[-1]
    details: dict[str, Any] = {**last.details, "repeats": len(revision.repeats)}
    if len(revision.repeats) > 1:
        details["first_event_time"] = first.details.get("event_time")
        details["events"] = [
            {
                "event_id": entry.details.get("event_id"),
                "event_time": entry.details.get("event_time"),
                "event_kind": entry.details.get("event_kind"),
            }
            for entry in revision.repeats
        ]
    return HistoryEntry(
        alarm_id=revision.alarm.id,
        at=last.at,
        actor=last.actor,
        action=AlarmAction.REPEAT,
        from_state=first.from_state,
        to_state=revision.alarm.state,
        details=details,
        revision=revision.alarm.revision,
    )


def _announced(entry: HistoryEntry) -> HistoryEntry:
    """The entry as changes and deliveries carry it: without the per-press list."""
    if "events" not in entry.details:
        return entry
    details = {key: value for key, value in entry.details.items() if key != "events"}
    return dataclasses.replace(entry, details=details)


def _location(device: AlarmDevice | None) -> Location | None:
    if device is None or device.latitude is None or device.longitude is None:
        return None
    try:
        return Location(device.latitude, device.longitude, description=device.address)
    except ValueError:
        log.warning("device %s has an invalid position; sent without one", device.device_id)
        return None


def _context(device: AlarmDevice) -> DeviceContext | None:
    try:
        return DeviceContext(
            device_id=device.device_id,
            kind=device.kind,
            project=device.project,
            jurisdiction=device.jurisdiction,
            name=device.name,
            linked_cameras=device.linked_cameras,
            linked_speakers=device.linked_speakers,
            location=_location(device),
        )
    except ValueError:
        log.warning("device %s has invalid registry links; evaluated without them", device)
        return None


def _contexts(devices: dict[str, AlarmDevice]) -> dict[str, DeviceContext | None]:
    return {device_id: _context(device) for device_id, device in devices.items()}


class AlarmEngine:
    """The alarm feature assembled: batch evaluation here, with the operator actions
    (`actions`), the SLA loop (`sla`) and snapshot linkage (`linkage`) it wires up."""

    def __init__(
        self,
        store: SqlStore,
        settings: AlarmSettings,
        *,
        bus: EventBus[AlarmChange] | None = None,
        clock: Clock = utcnow,
        snapshot_fetcher: SnapshotFetcher | None = None,
        credentials: CredentialResolver | None = None,
        metrics: Metrics | None = None,
        fast_repeats: bool = True,
    ) -> None:
        self.store = store
        self._device_columns: frozenset[str] | None = None
        self.settings = settings
        self.bus: EventBus[AlarmChange] = bus or EventBus("alarm-changes")
        self._clock = clock
        self._rules = settings.rule_set()
        # Keys naming the device are found with the device's alarms; any other key
        # (one alarm for a whole school, say) is looked up by the key itself.
        self._keys_per_device = all(
            "{device_id}" in rule.dedup_key for rule in self._rules.rules if rule.enabled
        )
        self._sla = settings.sla_policy()
        # Off only to check that both ways decide the same (tests).
        self._fast_repeats = fast_repeats
        #: Presses recorded by `_joined_repeat` so far.
        self.short_repeats = 0
        self._metrics = metrics
        self.recorder = Recorder(store.dialect, settings.sinks, self.bus)
        #: Operator actions and the alarm API's reads (what the routes call).
        self.actions = AlarmActions(store, self.recorder, self._sla, clock=clock)
        #: Escalation of alarms whose stored deadline passed.
        self.sla = SlaLoop(
            store,
            self.recorder,
            self._sla,
            every_s=settings.escalation_check_s,
            clock=clock,
            metrics=metrics,
        )
        #: Snapshots of linked cameras when an alarm opens.
        self.linkage = SnapshotLinkage(
            store,
            settings.linkage,
            clock=clock,
            snapshot_fetcher=snapshot_fetcher,
            credentials=credentials,
        )

    # -- wiring -------------------------------------------------------------

    def now(self) -> datetime:
        """The engine's clock (injected in tests)."""
        return self._clock()

    def use_camera_http(self, http: CameraHttp) -> None:
        """Fetch snapshot URLs through `http` (the site's TLS settings); closed at stop."""
        self.linkage.http = http

    def use_credentials(self, resolver: CredentialResolver) -> None:
        """Open stored camera logins with `resolver` (the registry's cipher) for snapshots."""
        self.linkage.credentials = resolver

    def use_login_budget(self, logins: LoginBudget) -> None:
        """Count refused snapshot logins in `logins`, the budget the patrol and ONVIF share."""
        self.linkage.logins = logins

    def use_frame_grabber(self, grab: FrameGrabber) -> None:
        """Take linked cameras' one-frame snapshots with `grab` (the demo's simulated cameras)."""
        self.linkage.frame_grabber = grab

    @property
    def frame_grabber(self) -> FrameGrabber:
        """How linked cameras' one-frame snapshots are taken."""
        return self.linkage.frame_grabber

    def add_close_guard(self, guard: CloseGuard) -> None:
        """Ask `guard` inside the transaction before an operator action on an alarm; it
        raises InvalidTransition to refuse (department tasks not yet accepted)."""
        self.actions.add_close_guard(guard)

    def on_outbox(self, wake: Callable[[], None]) -> None:
        """Call `wake` after every commit that queued outbox rows (the dispatcher's wake)."""
        self.recorder.on_outbox(wake)

    async def start(self) -> None:
        """Start the SLA loop."""
        await self.sla.start()

    async def stop(self) -> None:
        """Stop the SLA loop and wait for running linkage."""
        await self.sla.stop()
        await self.linkage.stop()

    async def act(
        self,
        alarm_id: uuid.UUID,
        action: AlarmAction | str,
        actor: str,
        *,
        visible: Callable[[StoredAlarm], bool],
        note: str | None = None,
        assignee: str | None = None,
        department: str | None = None,
        remote_addr: str | None = None,
    ) -> StoredAlarm:
        """Apply an operator action (see `AlarmActions.act`)."""
        return await self.actions.act(
            alarm_id,
            action,
            actor,
            visible=visible,
            note=note,
            assignee=assignee,
            department=department,
            remote_addr=remote_addr,
        )

    async def add_evidence(
        self, alarm_id: uuid.UUID, evidence: Sequence[Mapping[str, Any]], note: str
    ) -> AlarmChange | None:
        """Announce evidence that became available (see `AlarmActions.add_evidence`)."""
        return await self.actions.add_evidence(alarm_id, evidence, note)

    async def escalate_due(self, now: datetime | None = None) -> int:
        """Escalate every alarm whose stored deadline has passed (see `SlaLoop`)."""
        return await self.sla.escalate_due(now)

    async def wait_for_linkage(self) -> None:
        """Wait for snapshot work started so far (tests, shutdown)."""
        await self.linkage.wait_for_linkage()

    # -- events ---------------------------------------------------------------

    async def in_transaction(self, tx: Tx, events: list[DeviceEvent]) -> _Batch:
        """The writer's hook: evaluate the stored events in order, write their alarm changes.

        Batch-oriented: one trip to the database reads the devices' registry
        facts and the open alarms of the devices (and of the events' dedup keys
        when a rule's key groups several devices); the rules run in memory in
        event order; then one more trip writes each touched alarm once (its
        final state) and each revision's history entry, change-log row and
        outbox rows, in multi-row statements. Repeats of one alarm in
        one batch are one revision (see `_repeat_entry`), so a press storm
        queues one delivery per alarm per batch, not one per press; P1 alarms
        are announced right after the commit like everything else.
        """
        batch = _Batch()
        if not events:
            return batch
        device_ids = {event.device_id for event in events}
        dialect = self.store.dialect
        if self._device_columns is None:
            # The registry's migration adds device columns; read only those present.
            self._device_columns = await devices_repo.device_columns(tx, dialect)
        present = self._device_columns
        if self._keys_per_device:
            # Keys name the device: its alarms are found with it, in the same trip.
            batch.devices, read = await alarm_storage.batch_context(
                tx, dialect, device_ids, present
            )
            contexts = _contexts(batch.devices)
        else:
            # A key may group several devices: the keys (from the registry facts) first.
            batch.devices = await devices_repo.alarm_devices(tx, dialect, device_ids, present)
            contexts = _contexts(batch.devices)
            keys = self._keys_of(events, contexts)
            read = await alarm_storage.open_alarms(tx, dialect, device_ids, keys)
        read_by_id = {stored.alarm.id: stored for stored in read.values()}
        current = {key: stored.alarm for key, stored in read.items()}
        tracked: dict[uuid.UUID, _Tracked] = {}
        revisions: list[_Revision] = []
        broadcasts: list[OutboxRecord] = []
        now = self._clock()
        matches: dict[tuple[str, str, bool], tuple[AlarmRule, str] | None] = {}
        for event in events:
            if self._fast_repeats and self._joined_repeat(
                event, contexts, matches, current, tracked, now
            ):
                continue
            device = batch.devices.get(event.device_id)
            try:
                decisions = evaluate(
                    event,
                    contexts.get(event.device_id),
                    current,
                    self._rules,
                    now,
                    sla=self._sla,
                )
            except Exception as exc:
                log.exception("alarm rules failed on event %s", event.event_id)
                await self._reject(tx, event, exc, now)
                continue
            for decision in decisions:
                if isinstance(decision, OpenAlarm):
                    self._opened(decision, device, tracked, revisions, broadcasts, batch, now)
                else:
                    self._changed(decision, device, tracked, read_by_id, revisions)
                current[decision.alarm.dedup_key] = tracked[decision.alarm.id].alarm
        await self._write(tx, tracked, revisions, broadcasts, batch, now)
        return batch

    def _joined_repeat(
        self,
        event: DeviceEvent,
        contexts: dict[str, DeviceContext | None],
        matches: dict[tuple[str, str, bool], tuple[AlarmRule, str] | None],
        current: dict[str, Alarm],
        tracked: dict[uuid.UUID, _Tracked],
        now: datetime,
    ) -> bool:
        """Record `event` as one more press of an alarm this batch already repeats,
        if it is one; False (nothing done) for anything else.

        In a press storm most events of a batch are such repeats. Where the rules
        say which rule and key an event gets from its device alone (see
        `RuleSet.same_match_per_device`), the batch matches once per device, kind
        and drill flag, and a further press goes straight to `alarms.rules.repeat`
        — the decision `evaluate` makes for it — joining the batch's revision
        without the rest of the rules pass. Anything else takes the full pass.
        """
        if not self._rules.same_match_per_device(event.kind):
            return False
        memo = (event.device_id, event.kind, event.payload.get("drill") is True)
        if memo in matches:
            matched = matches[memo]
        else:
            try:
                matched = match_rule(event, contexts.get(event.device_id), self._rules)
            except Exception:
                matched = None  # the full pass meets it again and rejects the event
            matches[memo] = matched
        if matched is None:
            return False
        rule, key = matched
        alarm = current.get(key)
        track = None if alarm is None else tracked.get(alarm.id)
        if alarm is None or track is None or track.repeat is None or not alarm.is_active:
            return False
        joined = track.repeat
        try:
            decision = repeat(alarm, event, rule, now, revision=joined.alarm.revision)
        except Exception:
            return False  # the full pass decides, or rejects the event
        joined.alarm = decision.alarm
        joined.repeats.append(decision.history)
        joined.notify = joined.notify or decision.notify
        track.alarm = decision.alarm
        current[key] = decision.alarm
        self.short_repeats += 1
        return True

    def _keys_of(
        self, events: Sequence[DeviceEvent], contexts: dict[str, DeviceContext | None]
    ) -> set[str]:
        """The dedup keys the rules give `events` (a key may group several devices)."""
        keys: set[str] = set()
        for event in events:
            try:
                key = dedup_key_for(event, contexts.get(event.device_id), self._rules)
            except Exception:  # noqa: S112 - evaluate() meets it again and rejects the event
                continue
            if key is not None:
                keys.add(key)
        return keys

    def _opened(
        self,
        decision: OpenAlarm,
        device: AlarmDevice | None,
        tracked: dict[uuid.UUID, _Tracked],
        revisions: list[_Revision],
        broadcasts: list[OutboxRecord],
        batch: _Batch,
        now: datetime,
    ) -> None:
        alarm = decision.alarm
        location = _location(device)
        plan = decision.linkage
        details: dict[str, Any] = {
            "linkage": {
                "snapshot_cameras": list(plan.snapshot_cameras),
                "broadcast_speakers": list(plan.broadcast_speakers),
            },
        }
        if location is not None:
            details["location"] = {
                "latitude": location.latitude,
                "longitude": location.longitude,
                "radius_m": location.radius_m,
                "description": location.description,
            }
        path = device.jurisdiction_path if device else None
        stored = StoredAlarm(alarm, path, decision.rule, details, now)
        tracked[alarm.id] = _Tracked(stored, None, alarm, location)
        revisions.append(_Revision(alarm, decision.history, path, location, decision.notify))
        batch.openings.append((alarm.id, plan))
        if plan.broadcast_speakers and plan.broadcast_message:
            request = {
                "alarm_id": str(alarm.id),
                "speakers": list(plan.broadcast_speakers),
                "message": plan.broadcast_message,
                "volume": plan.broadcast_volume,
                "priority": alarm.priority.level,
                "is_drill": alarm.is_drill,
            }
            broadcasts.append(new_outbox_record(alarm, BROADCAST_SINK, request, now))

    @staticmethod
    def _changed(
        decision: UpdateAlarm | CloseAlarm,
        device: AlarmDevice | None,
        tracked: dict[uuid.UUID, _Tracked],
        read_by_id: dict[uuid.UUID, StoredAlarm],
        revisions: list[_Revision],
    ) -> None:
        alarm = decision.alarm
        track = tracked.get(alarm.id)
        if track is None:
            previous = read_by_id[alarm.id]
            location = location_from(previous.details) or _location(device)
            track = _Tracked(previous, previous.alarm.revision, previous.alarm, location)
            tracked[alarm.id] = track
        is_repeat = decision.history.action is AlarmAction.REPEAT
        if is_repeat and track.repeat is not None:
            # Joins the batch's repeat revision of this alarm: same revision number.
            joined = track.repeat
            alarm = alarm.evolve(revision=joined.alarm.revision)
            joined.alarm = alarm
            joined.repeats.append(decision.history)
            joined.notify = joined.notify or decision.notify
        else:
            revision = _Revision(
                alarm,
                decision.history,
                track.stored.jurisdiction_path,
                track.location,
                decision.notify,
                repeats=[decision.history] if is_repeat else [],
            )
            revisions.append(revision)
            track.repeat = revision if is_repeat else None
        track.alarm = alarm

    async def _write(
        self,
        tx: Tx,
        tracked: dict[uuid.UUID, _Tracked],
        revisions: list[_Revision],
        broadcasts: list[OutboxRecord],
        batch: _Batch,
        now: datetime,
    ) -> None:
        """Write what the batch decided: each alarm once, then every revision's rows."""
        if not revisions:
            return
        for revision in revisions:
            if revision.repeats:
                revision.entry = _repeat_entry(revision)
        changes = []
        records = list(broadcasts)
        await self.recorder.learn_places(tx, [revision.path for revision in revisions])
        for revision in revisions:
            entry = _announced(revision.entry)
            payload = alarm_payload(
                revision.alarm,
                entry,
                revision.location,
                address=self.recorder.address(revision.path, revision.location),
            )
            changes.append((revision.alarm, entry, revision.path, payload))
            if revision.notify:
                records += await self.recorder.outbox_records(
                    tx, revision.alarm, entry, payload, revision.location, now
                )
        batch.changes = await write_batch(
            tx,
            self.store.dialect,
            updates=[
                (t.alarm, t.read_revision) for t in tracked.values() if t.read_revision is not None
            ],
            inserts=[
                StoredAlarm(
                    t.alarm, t.stored.jurisdiction_path, t.stored.rule, t.stored.details, now
                )
                for t in tracked.values()
                if t.read_revision is None
            ],
            history=[revision.entry for revision in revisions],
            changes=changes,
            outbox=records,
            now=now,
        )
        batch.queued = bool(records)

    async def _reject(self, tx: Tx, event: DeviceEvent, exc: Exception, now: datetime) -> None:
        body = {
            "event_id": str(event.event_id),
            "time": event.time.isoformat(),
            "device_id": event.device_id,
            "kind": event.kind,
            "payload": dict(event.payload),
        }
        await alarm_storage.insert_rejected(
            tx,
            RejectedMessage(
                time=now,
                source="alarm-engine",
                origin=f"event {event.event_id} ({event.kind})",
                reason=f"alarm rules failed: {type(exc).__name__}: {exc}"[:1000],
                payload=json.dumps(body, default=str).encode()[:65536],
                device_id=event.device_id,
            ),
        )

    def after_commit(self, outcome: object) -> None:
        """After the batch committed: announce its changes, start linkage.

        `outcome` is what `in_transaction` returned for the committed attempt
        (anything else is ignored), so a retried batch is announced once.
        """
        batch = outcome.hook_result if isinstance(outcome, IngestResult) else outcome
        if not isinstance(batch, _Batch):
            return
        self.recorder.announce(batch.changes, batch.queued)
        if self._metrics is not None:
            for change in batch.changes:
                if change.action == AlarmAction.OPEN.value:
                    alarm = change.payload.get("alarm") or {}
                    self._metrics.alarms_opened.labels(
                        priority=str(alarm.get("priority", "")),
                        drill=str(bool(alarm.get("is_drill"))).lower(),
                    ).inc()
        for alarm_id, plan in batch.openings:
            self.linkage.snapshots(alarm_id, plan.snapshot_cameras)
