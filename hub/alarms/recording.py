"""Recording an alarm revision: history, change log, outbox rows; announcing after commit.

Shared by the batch evaluation (`hub.alarms.engine`), operator actions
(`hub.alarms.actions`) and the SLA loop (`hub.alarms.sla_loop`): each alarm
revision gets one history entry, one change-log row and, when it notifies, one
outbox row per sink that takes it, all in the caller's transaction. Only
after the commit are the changes published on the bus and the dispatcher woken.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from adapters.sinks.cap import AlarmTexts, CapOptions, CapResource, encode_alert
from alarms.models import Alarm, AlarmAction, HistoryEntry, Location
from alarms.outbox import OutboxRecord, alarm_payload, new_outbox_record
from hub.alarms import batch_storage
from hub.alarms.config import SinkSettings
from hub.alarms.storage import AlarmChange, jurisdiction_names
from hub.alarms.text_storage import opening_texts_in
from hub.bus import EventBus
from hub.storage.base import Tx
from hub.storage.dialect import Dialect

__all__ = ["Recorder", "location_from"]

log = logging.getLogger(__name__)


def location_from(details: Any) -> Location | None:
    """The location stored in an alarm's details (None when absent or invalid)."""
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


async def _texts_of(tx: Tx, alarm: Alarm, entry: HistoryEntry) -> AlarmTexts:
    """The alarm's title and SOP per language: from the opening entry, else as stored."""
    texts = entry.details.get("texts") if entry.action is AlarmAction.OPEN else None
    if isinstance(texts, dict):
        return texts
    return await opening_texts_in(tx, alarm.id)


class Recorder:
    """Writes alarm revisions' rows in a transaction and announces them after commit."""

    def __init__(
        self, dialect: Dialect, sinks: Sequence[SinkSettings], bus: EventBus[AlarmChange]
    ) -> None:
        self._dialect = dialect
        self._sinks = [sink for sink in sinks if sink.enabled]
        self.bus = bus
        self._wake: list[Callable[[], None]] = []
        #: Jurisdiction code -> name (None: not in the tree when last looked up).
        self._place_names: dict[str, str | None] = {}

    def on_outbox(self, wake: Callable[[], None]) -> None:
        """Call `wake` after every commit that queued outbox rows (the dispatcher's wake)."""
        self._wake.append(wake)

    def announce(self, changes: Sequence[AlarmChange], queued: bool) -> None:
        """Publish committed changes; wake the dispatcher when rows were queued."""
        self.bus.publish_all(changes)
        if queued:
            for wake in self._wake:
                wake()

    def sinks_for(self, alarm: Alarm, entry: HistoryEntry, supervisor: bool) -> list[SinkSettings]:
        """The enabled sinks that take this revision (drill, category, priority filters)."""
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

    async def record(
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
        await batch_storage.append_history_many(tx, self._dialect, [entry])
        await self.learn_places(tx, [jurisdiction_path])
        payload = alarm_payload(
            alarm,
            entry,
            location,
            address=self.address(jurisdiction_path, location),
            evidence=evidence,
        )
        (change,) = await batch_storage.append_changes(
            tx, self._dialect, [(alarm, entry, jurisdiction_path, payload)]
        )
        if not notify:
            return change, False
        records = await self.outbox_records(tx, alarm, entry, payload, location, now, supervisor)
        await batch_storage.insert_outbox(tx, self._dialect, records, now)
        return change, bool(records)

    async def outbox_records(
        self,
        tx: Tx,
        alarm: Alarm,
        entry: HistoryEntry,
        payload: dict[str, Any],
        location: Location | None,
        now: datetime,
        supervisor: bool = False,
    ) -> list[OutboxRecord]:
        """One delivery of this alarm revision per sink that takes it (not yet stored)."""
        records = []
        texts: AlarmTexts | None = None
        resources = _cap_resources(payload.get("evidence") or ())
        for sink in self.sinks_for(alarm, entry, supervisor):
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

    async def learn_places(self, tx: Tx, paths: Sequence[str | None]) -> None:
        """Read the names of jurisdiction codes in `paths` not looked up yet (one query)."""
        missing = {
            code
            for path in paths
            if path
            for code in path.strip("/").split("/")
            if code and code not in self._place_names
        }
        if missing:
            names = await jurisdiction_names(tx, sorted(missing))
            for code in missing:
                self._place_names[code] = names.get(code)

    def address(self, path: str | None, location: Location | None) -> dict[str, Any] | None:
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
