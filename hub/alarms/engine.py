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
* **Operator actions** go through `alarms.workflow.apply` in one transaction
  with history, change log, outbox and an audit-log row; announced after commit.
* **SLA.** A loop compares stored deadlines with the clock (`escalate_due`),
  so escalations happen on time across restarts.
* **Linkage.** Snapshots of linked cameras are fetched after commit and stored
  as alarm media: the camera's snapshot URL (through the hardened camera HTTP
  client: only to the URL's own host and port, answering a Basic or Digest
  challenge with the stored login), else one decoded frame of its RTSP stream.
  A broadcast is queued as an outbox row for the `broadcast` sink, which the
  broadcast feature registers with the dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from adapters.onvif.http import CameraHttp, CameraRequestError, ResponseTooLarge
from adapters.onvif.security import ForeignHostRefused
from adapters.rtsp import StreamProbe, probe_stream
from adapters.sinks.cap import AlarmTexts, CapOptions, CapResource, encode_alert
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
from alarms.sla import check_escalation, escalate
from alarms.workflow import apply
from camera_registry.events import DeviceEvent, RejectedMessage
from camera_registry.urls import redact_url, with_credentials
from hub.alarms.config import AlarmSettings, SinkSettings
from hub.alarms.dispatcher import BROADCAST_SINK
from hub.alarms.storage import AlarmChange, AlarmRepository, DeviceInfo, StoredAlarm
from hub.alarms.text_storage import opening_texts_in
from hub.bus import EventBus
from hub.clock import utcnow
from hub.metrics import Metrics
from hub.storage.base import IngestResult, SqlStore, Tx

__all__ = [
    "AlarmChange",
    "AlarmEngine",
    "AlarmNotFound",
    "CloseGuard",
    "CredentialResolver",
    "SnapshotFetcher",
]

log = logging.getLogger(__name__)

#: (device) -> (content type, bytes) or None; replaces the built-in HTTP/RTSP fetch.
SnapshotFetcher = Callable[[DeviceInfo], Awaitable[tuple[str, bytes] | None]]
#: (device id, sealed credentials) -> (username, password); the registry's cipher opens them.
CredentialResolver = Callable[[str, bytes], tuple[str, str] | None]
#: (transaction, the alarm as stored, the action asked) -> None, or InvalidTransition.
CloseGuard = Callable[[Tx, StoredAlarm, AlarmAction], Awaitable[None]]
#: RTSP frame grabs at once per engine (each decodes in a worker thread).
_RTSP_GRABS = 2


class AlarmNotFound(LookupError):
    """No such alarm, or none the caller may see (both answer 404)."""


def _origin(url: str) -> tuple[str, int]:
    """The host and port a snapshot URL names: the request may go there and nowhere else."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


@dataclass(slots=True)
class _Batch:
    """What one batch transaction changed; announced only after it commits."""

    changes: list[AlarmChange] = field(default_factory=list)
    openings: list[tuple[uuid.UUID, LinkagePlan]] = field(default_factory=list)
    devices: dict[str, DeviceInfo] = field(default_factory=dict)
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


def _location(device: DeviceInfo | None) -> Location | None:
    if device is None or device.latitude is None or device.longitude is None:
        return None
    try:
        return Location(device.latitude, device.longitude, description=device.address)
    except ValueError:
        log.warning("device %s has an invalid position; sent without one", device.device_id)
        return None


def _location_from(details: Any) -> Location | None:
    raw = details.get("location") if isinstance(details, dict) else None
    if not isinstance(raw, dict):
        return None
    try:
        return Location(
            float(raw["latitude"]),
            float(raw["longitude"]),
            float(raw.get("radius_m", 50.0)),
            raw.get("description"),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _cap_resources(evidence: Any) -> tuple[CapResource, ...]:
    """CAP `<resource>`s of a revision's evidence entries (malformed ones are skipped)."""
    resources = []
    for item in evidence:
        try:
            resources.append(
                CapResource(
                    description=str(item.get("description") or "evidence"),
                    mime_type=str(item["type"]),
                    size=None if item.get("size") is None else int(item["size"]),
                    uri=item.get("url"),
                    digest=item.get("sha1"),
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            log.warning("evidence entry without a usable type or digest left out of CAP")
    return tuple(resources)


def _context(device: DeviceInfo) -> DeviceContext | None:
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


def _contexts(devices: dict[str, DeviceInfo]) -> dict[str, DeviceContext | None]:
    return {device_id: _context(device) for device_id, device in devices.items()}


#: Decodes one frame of an RTSP URL within a timeout (the snapshot's probe).
FrameGrabber = Callable[[str, float], Awaitable[StreamProbe]]


async def grab_frame(url: str, timeout_s: float) -> StreamProbe:
    """One decoded frame of `url`, in a worker thread (the default `FrameGrabber`)."""
    return await asyncio.to_thread(probe_stream, url, frames=1, timeout_s=timeout_s)


async def _texts_of(tx: Tx, alarm: Alarm, entry: HistoryEntry) -> AlarmTexts:
    """The alarm's title and SOP per language: from the opening entry, else as stored."""
    texts = entry.details.get("texts") if entry.action is AlarmAction.OPEN else None
    if isinstance(texts, dict):
        return texts
    return await opening_texts_in(tx, alarm.id)


class AlarmEngine:
    """Turns events into alarms, applies operator actions and SLA escalation."""

    def __init__(
        self,
        store: SqlStore,
        settings: AlarmSettings,
        *,
        bus: EventBus[AlarmChange] | None = None,
        clock: Callable[[], datetime] = utcnow,
        snapshot_fetcher: SnapshotFetcher | None = None,
        credentials: CredentialResolver | None = None,
        metrics: Metrics | None = None,
        fast_repeats: bool = True,
    ) -> None:
        self.store = store
        self.repo = AlarmRepository(store)
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
        self._sinks = [sink for sink in settings.sinks if sink.enabled]
        self._wake: list[Callable[[], None]] = []
        self._custom_snapshot = snapshot_fetcher
        self._credentials = credentials
        self._metrics = metrics
        self._rtsp_slots = asyncio.Semaphore(_RTSP_GRABS)
        self.frame_grabber: FrameGrabber = grab_frame
        self._linkage_tasks: set[asyncio.Task[None]] = set()
        self._sla_task: asyncio.Task[None] | None = None
        self._http: CameraHttp | None = None
        self._close_guards: list[CloseGuard] = []
        #: Jurisdiction code -> name (None: not in the tree when last looked up).
        self._place_names: dict[str, str | None] = {}

    # -- wiring -------------------------------------------------------------

    def now(self) -> datetime:
        """The engine's clock (injected in tests)."""
        return self._clock()

    def use_camera_http(self, http: CameraHttp) -> None:
        """Fetch snapshot URLs through `http` (the site's TLS settings); closed at stop."""
        self._http = http

    def use_credentials(self, resolver: CredentialResolver) -> None:
        """Open stored camera logins with `resolver` (the registry's cipher) for snapshots."""
        self._credentials = resolver

    def use_frame_grabber(self, grab: FrameGrabber) -> None:
        """Take linked cameras' one-frame snapshots with `grab` (the demo's simulated cameras)."""
        self.frame_grabber = grab

    def add_close_guard(self, guard: CloseGuard) -> None:
        """Ask `guard` inside the transaction before an operator action on an alarm; it
        raises InvalidTransition to refuse (department tasks not yet accepted)."""
        self._close_guards.append(guard)

    def on_outbox(self, wake: Callable[[], None]) -> None:
        """Call `wake` after every commit that queued outbox rows (the dispatcher's wake)."""
        self._wake.append(wake)

    async def start(self) -> None:
        """Start the SLA loop."""
        if self._sla_task is None:
            self._sla_task = asyncio.create_task(self._sla_loop(), name="alarm-sla")

    async def stop(self) -> None:
        """Stop the SLA loop and wait for running linkage."""
        if self._sla_task is not None:
            self._sla_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sla_task
            self._sla_task = None
        if self._linkage_tasks:
            await asyncio.gather(*self._linkage_tasks, return_exceptions=True)
        if self._http is not None:
            client, self._http = self._http, None
            await client.aclose()

    # -- recording ------------------------------------------------------------

    def _sinks_for(self, alarm: Alarm, entry: HistoryEntry, supervisor: bool) -> list[SinkSettings]:
        chosen = []
        for sink in self._sinks:
            if alarm.is_drill and not sink.drill:
                continue
            if sink.categories and alarm.category not in sink.categories:
                continue
            if alarm.priority.level > sink.max_priority:
                continue
            if sink.escalations_only and not (entry.action is AlarmAction.ESCALATE and supervisor):
                continue
            chosen.append(sink)
        return chosen

    async def _record(
        self,
        tx: Tx,
        alarm: Alarm,
        entry: HistoryEntry,
        *,
        jurisdiction_path: str | None,
        location: Location | None,
        notify: bool,
        now: datetime,
        supervisor: bool = False,
        evidence: Sequence[Mapping[str, Any]] = (),
    ) -> tuple[AlarmChange, bool]:
        """History, change log and (when notifying) outbox rows for one alarm revision."""
        await self.repo.append_history(tx, entry)
        await self._learn_places(tx, [jurisdiction_path])
        payload = alarm_payload(
            alarm,
            entry,
            location,
            address=self._address(jurisdiction_path, location),
            evidence=evidence,
        )
        change = await self.repo.append_change(tx, alarm, entry, jurisdiction_path, payload)
        if not notify:
            return change, False
        records = await self._outbox_records(tx, alarm, entry, payload, location, now, supervisor)
        await self.repo.insert_outbox(tx, records, now)
        return change, bool(records)

    async def _outbox_records(
        self,
        tx: Tx,
        alarm: Alarm,
        entry: HistoryEntry,
        payload: dict[str, Any],
        location: Location | None,
        now: datetime,
        supervisor: bool = False,
    ) -> list[OutboxRecord]:
        """One delivery of this alarm revision per sink that takes it."""
        records = []
        texts: AlarmTexts | None = None
        resources = _cap_resources(payload.get("evidence") or ())
        for sink in self._sinks_for(alarm, entry, supervisor):
            body = dict(payload)
            if sink.type == "cap":
                if texts is None:
                    texts = await _texts_of(tx, alarm, entry)
                options = CapOptions(sender=sink.cap_sender, languages=tuple(sink.cap_languages))
                body["cap_xml"] = encode_alert(
                    alarm, entry, options, location=location, texts=texts, resources=resources
                ).decode()
            records.append(new_outbox_record(alarm, sink.name, body, now))
        return records

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
        if self._keys_per_device:
            # Keys name the device: its alarms are found with it, in the same trip.
            batch.devices, read = await self.repo.batch_context(tx, device_ids)
            contexts = _contexts(batch.devices)
        else:
            # A key may group several devices: the keys (from the registry facts) first.
            batch.devices = await self.repo.devices(tx, device_ids)
            contexts = _contexts(batch.devices)
            read = await self.repo.open_alarms(tx, device_ids, self._keys_of(events, contexts))
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
        device: DeviceInfo | None,
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
        device: DeviceInfo | None,
        tracked: dict[uuid.UUID, _Tracked],
        read_by_id: dict[uuid.UUID, StoredAlarm],
        revisions: list[_Revision],
    ) -> None:
        alarm = decision.alarm
        track = tracked.get(alarm.id)
        if track is None:
            previous = read_by_id[alarm.id]
            location = _location_from(previous.details) or _location(device)
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
        await self._learn_places(tx, [revision.path for revision in revisions])
        for revision in revisions:
            entry = _announced(revision.entry)
            payload = alarm_payload(
                revision.alarm,
                entry,
                revision.location,
                address=self._address(revision.path, revision.location),
            )
            changes.append((revision.alarm, entry, revision.path, payload))
            if revision.notify:
                records += await self._outbox_records(
                    tx, revision.alarm, entry, payload, revision.location, now
                )
        batch.changes = await self.repo.write_batch(
            tx,
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
        await self.repo.insert_rejected(
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
        self._announce(batch.changes, batch.queued)
        if self._metrics is not None:
            for change in batch.changes:
                if change.action == AlarmAction.OPEN.value:
                    alarm = change.payload.get("alarm") or {}
                    self._metrics.alarms_opened.labels(
                        priority=str(alarm.get("priority", "")),
                        drill=str(bool(alarm.get("is_drill"))).lower(),
                    ).inc()
        for alarm_id, plan in batch.openings:
            if plan.snapshot_cameras and self.settings.linkage.snapshots:
                self._spawn(self._take_snapshots(alarm_id, plan.snapshot_cameras))

    def _announce(self, changes: Sequence[AlarmChange], queued: bool) -> None:
        self.bus.publish_all(changes)
        if queued:
            for wake in self._wake:
                wake()

    # -- operator actions -------------------------------------------------------

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
        """Apply an operator action; raises AlarmNotFound, InvalidTransition or ValueError."""
        action = AlarmAction(action)
        if action in (
            AlarmAction.OPEN,
            AlarmAction.ESCALATE,
            AlarmAction.AUTO_CLOSE,
            AlarmAction.REPEAT,
        ):
            raise ValueError(f"{action.value} is not an operator action")
        now = self._clock()
        async with self.store.transaction() as tx:
            stored = await self.repo.get(tx, alarm_id, for_update=True)
            if stored is None or not visible(stored):
                raise AlarmNotFound(str(alarm_id))
            for guard in self._close_guards:
                await guard(tx, stored, action)
            resolve_due = None
            if action is AlarmAction.REOPEN:
                resolve_due = now + self._sla.target(stored.alarm.priority).resolve
            updated, entry = apply(
                stored.alarm,
                action,
                actor,
                now,
                note=note,
                assignee=assignee,
                department=department,
                resolve_due=resolve_due,
            )
            await self.repo.update(tx, updated, previous_revision=stored.alarm.revision, now=now)
            change, queued = await self._record(
                tx,
                updated,
                entry,
                jurisdiction_path=stored.jurisdiction_path,
                location=_location_from(stored.details),
                notify=True,
                now=now,
            )
            await self.repo.audit(
                tx,
                at=now,
                actor=actor,
                action=f"alarm.{action.value}",
                target=str(alarm_id),
                remote_addr=remote_addr,
                details={
                    "from_state": entry.from_state.value if entry.from_state else None,
                    "to_state": entry.to_state.value,
                    "revision": updated.revision,
                    "note": note,
                    "assignee": assignee,
                    "department": department,
                },
            )
        self._announce([change], queued)
        return StoredAlarm(updated, stored.jurisdiction_path, stored.rule, stored.details, now)

    async def add_evidence(
        self, alarm_id: uuid.UUID, evidence: Sequence[Mapping[str, Any]], note: str
    ) -> AlarmChange | None:
        """A revision announcing evidence that became available (e.g. clips of the linked
        cameras): history, change log and outbox like any revision, state unchanged.
        None when the alarm does not exist."""
        now = self._clock()
        async with self.store.transaction() as tx:
            stored = await self.repo.get(tx, alarm_id, for_update=True)
            if stored is None:
                return None
            updated, entry = apply(
                stored.alarm,
                AlarmAction.NOTE,
                "system:evidence",
                now,
                note=note,
                details={"evidence": [dict(item) for item in evidence]},
            )
            await self.repo.update(tx, updated, previous_revision=stored.alarm.revision, now=now)
            change, queued = await self._record(
                tx,
                updated,
                entry,
                jurisdiction_path=stored.jurisdiction_path,
                location=_location_from(stored.details),
                notify=True,
                now=now,
                evidence=evidence,
            )
        self._announce([change], queued)
        return change

    async def _learn_places(self, tx: Tx, paths: Sequence[str | None]) -> None:
        """Read the names of jurisdiction codes in `paths` not looked up yet (one query)."""
        missing = {
            code
            for path in paths
            if path
            for code in path.strip("/").split("/")
            if code and code not in self._place_names
        }
        if missing:
            names = await self.repo.jurisdiction_names(tx, sorted(missing))
            for code in missing:
                self._place_names[code] = names.get(code)

    def _address(self, path: str | None, location: Location | None) -> dict[str, Any] | None:
        """Where the alarm is, in words: jurisdiction names top-down and the street address."""
        codes = [code for code in (path or "").strip("/").split("/") if code]
        described = location.description if location else None
        if not codes and not described:
            return None
        return {
            "jurisdiction_path": path,
            "jurisdiction_names": [self._place_names.get(code) or code for code in codes],
            "device_address": described,
        }

    # -- SLA ----------------------------------------------------------------

    async def escalate_due(self, now: datetime | None = None) -> int:
        """Escalate every alarm whose stored deadline has passed; return how many."""
        now = now or self._clock()
        policy = self._sla
        escalated = 0
        for alarm_id in await self.repo.due_for_escalation(
            now, max_level=policy.escalation.max_level
        ):
            async with self.store.transaction() as tx:
                stored = await self.repo.get(tx, alarm_id, for_update=True)
                if stored is None:
                    continue
                due = check_escalation(stored.alarm, now, policy)
                if due is None:
                    continue
                updated, entry = escalate(stored.alarm, due)
                await self.repo.update(
                    tx, updated, previous_revision=stored.alarm.revision, now=now
                )
                change, queued = await self._record(
                    tx,
                    updated,
                    entry,
                    jurisdiction_path=stored.jurisdiction_path,
                    location=_location_from(stored.details),
                    notify=due.renotify,
                    now=now,
                    supervisor=due.supervisor,
                )
            self._announce([change], queued)
            escalated += 1
            if self._metrics is not None:
                self._metrics.alarm_escalations.labels(
                    priority=str(updated.priority.level), level=str(updated.escalation_level)
                ).inc()
            log.warning(
                "alarm %s escalated to level %d (%s overdue)",
                alarm_id,
                updated.escalation_level,
                due.overdue_by,
            )
        return escalated

    async def _sla_loop(self) -> None:
        while True:
            try:
                await self.escalate_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("SLA check failed; will retry")
            await asyncio.sleep(self.settings.escalation_check_s)

    # -- linkage ----------------------------------------------------------------

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.create_task(run(), name="alarm-linkage")
        self._linkage_tasks.add(task)
        task.add_done_callback(self._linkage_tasks.discard)

    async def _take_snapshots(self, alarm_id: uuid.UUID, cameras: Sequence[str]) -> None:
        try:
            async with self.store.reading() as tx:
                devices = await self.repo.devices(tx, cameras)
        except Exception:
            log.exception("cannot read linked cameras of alarm %s", alarm_id)
            return
        for camera in cameras:
            device = devices.get(camera)
            if device is None:
                log.info("linked camera %s of alarm %s is not registered", camera, alarm_id)
                continue
            try:
                shot = await self._snapshot(device)
                if shot is None:
                    log.warning("no snapshot of %s for alarm %s", camera, alarm_id)
                    continue
                content_type, data, source = shot
                await self.repo.add_media(
                    alarm_id, camera, content_type, data, self._clock(), source
                )
            except Exception:
                log.exception("snapshot of %s for alarm %s failed", camera, alarm_id)

    async def _snapshot(self, device: DeviceInfo) -> tuple[str, bytes, str] | None:
        """(content type, bytes, source): the snapshot URL first, else one RTSP frame."""
        if self._custom_snapshot is not None:
            shot = await self._custom_snapshot(device)
            return None if shot is None else (*shot, "snapshot")
        if device.snapshot_url:
            fetched = await self._http_snapshot(device)
            if fetched is not None:
                return (*fetched, "snapshot")
        if device.rtsp_urls:
            frame = await self._rtsp_snapshot(device)
            if frame is not None:
                return "image/jpeg", frame, "rtsp-frame"
        return None

    def _login(self, device: DeviceInfo) -> tuple[str, str] | None:
        if device.credentials is None or self._credentials is None:
            return None
        return self._credentials(device.device_id, device.credentials)

    async def _rtsp_snapshot(self, device: DeviceInfo) -> bytes | None:
        """One decoded frame of the camera's main stream as JPEG (in a worker thread)."""
        url = device.rtsp_urls[0]
        login = self._login(device)
        if login is not None:
            url = with_credentials(url, *login)
        linkage = self.settings.linkage
        async with self._rtsp_slots:
            probe = await self.frame_grabber(url, linkage.snapshot_timeout_s)
        if not probe.ok or probe.snapshot_jpeg is None:
            log.warning(
                "RTSP frame of %s (%s) failed: %s",
                device.device_id,
                redact_url(url),
                probe.failure,
            )
            return None
        if len(probe.snapshot_jpeg) > linkage.snapshot_max_bytes:
            log.warning("RTSP frame of %s is too large", device.device_id)
            return None
        return probe.snapshot_jpeg

    async def _http_snapshot(self, device: DeviceInfo) -> tuple[str, bytes] | None:
        """GET the device's snapshot URL (size-capped, time-bounded)."""
        if not device.snapshot_url:
            return None
        linkage = self.settings.linkage
        if self._http is None:
            self._http = CameraHttp(max_connections=64)
        url = device.snapshot_url
        try:
            answer = await self._http.get(
                url,
                pinned=_origin(url),
                deadline=linkage.snapshot_timeout_s,
                login=self._login(device),
                max_bytes=linkage.snapshot_max_bytes,
            )
        except ResponseTooLarge:
            log.warning("snapshot of %s is too large", device.device_id)
            return None
        except (CameraRequestError, ForeignHostRefused) as exc:
            log.warning("snapshot of %s failed: %s", device.device_id, exc)
            return None
        if answer.status != 200:
            log.warning("snapshot of %s: HTTP %d", device.device_id, answer.status)
            return None
        content_type = (answer.content_type or "image/jpeg").split(";")[0].strip()
        if not content_type.startswith("image/"):
            log.warning("snapshot of %s is not an image", device.device_id)
            return None
        return content_type, answer.body

    async def wait_for_linkage(self) -> None:
        """Wait for snapshot work started so far (tests, shutdown)."""
        while self._linkage_tasks:
            await asyncio.gather(*list(self._linkage_tasks), return_exceptions=True)
