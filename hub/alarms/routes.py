"""Alarms: list, detail, operator actions, media, pull API, live stream (SSE and WebSocket).

Who may do what: operators act; operators and dispatchers read, pull and
stream; maintenance staff read maintenance alarms only; admins do everything.
Every alarm outside the caller's jurisdiction scope answers 404. Invalid
transitions answer 409 with the workflow's message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from alarms.models import AlarmCategory
from alarms.workflow import InvalidTransition, allowed_actions
from hub.alarms.actions import AlarmActions, AlarmNotFound
from hub.alarms.dispatcher import Dispatcher
from hub.alarms.schemas import (
    ActionIn,
    AlarmDetailOut,
    AlarmOut,
    AlarmPage,
    ChangeOut,
    ChangesPage,
    DeliveryOut,
    HistoryOut,
    MediaOut,
    SinkStatusOut,
)
from hub.alarms.storage import AlarmChange, AlarmFilter, InvalidCursor, StaleAlarm, StoredAlarm
from hub.alarms.text_storage import AlarmTexts
from hub.api.deps import get_alarm_actions, get_alarm_changes, get_dispatcher, get_settings
from hub.api.problems import Problem
from hub.auth.guards import Principal, Role, not_found, require
from hub.bus import EventBus, SubscriptionOverflow
from hub.config import Settings

__all__ = ["OperatorAction", "router"]

router = APIRouter(prefix="/api/alarms", tags=["alarms"])

Reader = Annotated[Principal, Depends(require(Role.OPERATOR, Role.DISPATCHER, Role.MAINTENANCE))]
Actor = Annotated[Principal, Depends(require(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(require())]
Alarms = Annotated[AlarmActions, Depends(get_alarm_actions)]
Changes = Annotated[EventBus[AlarmChange], Depends(get_alarm_changes)]
_KEEPALIVE_S = 15.0


class OperatorAction(StrEnum):
    """Actions an operator can take on an alarm."""

    ACKNOWLEDGE = "acknowledge"
    ASSIGN = "assign"
    DISPATCH = "dispatch"
    RESOLVE = "resolve"
    CLOSE = "close"
    FALSE_ALARM = "false_alarm"
    REOPEN = "reopen"
    NOTE = "note"


def _categories(principal: Principal) -> tuple[str, ...]:
    # Maintenance staff handle device faults, not security incidents.
    return (AlarmCategory.MAINTENANCE.value,) if principal.role is Role.MAINTENANCE else ()


def _visible(principal: Principal, stored: StoredAlarm) -> bool:
    categories = _categories(principal)
    if categories and stored.alarm.category.value not in categories:
        return False
    return principal.can_see(stored.jurisdiction_path)


def _change_visible(principal: Principal, change: AlarmChange) -> bool:
    categories = _categories(principal)
    if categories and change.category not in categories:
        return False
    return principal.can_see(change.jurisdiction_path)


def _out(stored: StoredAlarm, texts: AlarmTexts | None = None) -> AlarmOut:
    operator_actions = {action.value for action in OperatorAction}
    allowed: list[str] = sorted(
        str(a.value) for a in allowed_actions(stored.alarm) if a.value in operator_actions
    )
    return AlarmOut.of(stored, allowed, texts)


async def _outs(alarms: AlarmActions, found: list[StoredAlarm]) -> list[AlarmOut]:
    """Alarms as the API shows them, each with the texts it was opened with."""
    texts = await alarms.texts([s.alarm.id for s in found])
    return [_out(s, texts.get(s.alarm.id)) for s in found]


@router.get("", response_model=AlarmPage)
async def list_alarms(
    principal: Reader,
    alarms: Alarms,
    state: Annotated[list[str] | None, Query(description="new, acknowledged, …")] = None,
    priority: Annotated[list[int] | None, Query(ge=1, le=4)] = None,
    type: Annotated[list[str] | None, Query(description="Alarm types.")] = None,
    category: Annotated[list[AlarmCategory] | None, Query()] = None,
    device_id: Annotated[str | None, Query(max_length=128)] = None,
    jurisdiction: Annotated[
        str | None, Query(max_length=512, pattern=r"^/.*/$", description="Subtree path.")
    ] = None,
    opened_from: Annotated[datetime | None, Query()] = None,
    opened_until: Annotated[datetime | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text in title or device.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AlarmPage:
    """Alarms in the caller's scope, newest first, filtered; page with `next_cursor`."""
    for value in (opened_from, opened_until):
        if value is not None and value.tzinfo is None:
            raise Problem(422, "Invalid request", "times need a UTC offset (…Z or +08:00)")
    wanted = [c.value for c in category or []]
    forced = _categories(principal)
    if forced:
        wanted = [c for c in wanted if c in forced] if wanted else list(forced)
        if not wanted:
            return AlarmPage(items=[], next_cursor=None)
    query = AlarmFilter(
        states=state or (),
        priorities=priority or (),
        types=type or (),
        categories=wanted,
        device_id=device_id,
        jurisdiction_path=jurisdiction,
        opened_from=opened_from,
        opened_until=opened_until,
        text=q,
    )
    try:
        page, next_cursor = await alarms.page(
            query, scope_paths=principal.scope_paths, limit=limit, cursor=cursor
        )
    except InvalidCursor as exc:
        raise Problem(422, "Invalid request", str(exc)) from exc
    return AlarmPage(items=await _outs(alarms, page), next_cursor=next_cursor)


@router.get("/changes", response_model=ChangesPage)
async def pull_changes(
    principal: Annotated[Principal, Depends(require(Role.DISPATCHER, Role.OPERATOR))],
    alarms: Alarms,
    since: Annotated[int, Query(ge=0, description="Last `seq` seen; 0 from the start.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ChangesPage:
    """Committed alarm changes after `since`, in a stable order (the pull API)."""
    changes = await alarms.changes(
        since, limit=limit, scope_paths=principal.scope_paths, categories=_categories(principal)
    )
    next_since = changes[-1].seq if changes else since
    return ChangesPage(items=[ChangeOut.of(c) for c in changes], next_since=next_since)


@router.get("/sinks", response_model=list[SinkStatusOut])
async def sink_status(
    principal: Annotated[Principal, Depends(require(Role.OPERATOR))],
    alarms: Alarms,
    settings: Annotated[Settings, Depends(get_settings)],
) -> list[SinkStatusOut]:
    """Each configured sink: disabled (e.g. after 410 Gone) and its outbox backlog."""
    types = {sink.name: sink.type for sink in settings.alarms.sinks}
    states = await alarms.sink_states(sorted(types))
    return [SinkStatusOut.of(state, types[state.name]) for state in states]


@router.post("/sinks/{name}/enable", response_model=SinkStatusOut)
async def enable_sink(
    name: str,
    principal: Admin,
    alarms: Alarms,
    settings: Annotated[Settings, Depends(get_settings)],
    dispatcher: Annotated[Dispatcher | None, Depends(get_dispatcher)],
    requeue_dead: Annotated[bool, Query(description="Also retry its dead rows.")] = False,
) -> SinkStatusOut:
    """Re-enable a sink an endpoint disabled; its waiting rows are delivered."""
    types = {sink.name: sink.type for sink in settings.alarms.sinks}
    if name not in types:
        raise not_found("sink")
    state = await alarms.enable_sink(
        name, principal.actor, principal.remote_addr, requeue_dead=requeue_dead
    )
    if dispatcher is not None:
        dispatcher.wake()
    return SinkStatusOut.of(state, types[name])


class _EncodedChanges:
    """Each change's WebSocket message, encoded once for every console that sees it.

    A change reaches every console stream as one and the same object, and its message
    does not depend on who receives it; encoded per console, one change with 100
    consoles open cost 100 model dumps and JSON encodings on the event loop that
    also commits the next presses. Keyed by `seq` (one change per seq); the newest
    `size` are kept.
    """

    def __init__(self, size: int = 4096) -> None:
        self._texts: OrderedDict[int, str] = OrderedDict()
        self._size = size

    def text(self, change: AlarmChange) -> str:
        """The message as `WebSocket.send_json` would encode it."""
        text = self._texts.get(change.seq)
        if text is None:
            message = {"type": "change", **ChangeOut.of(change).model_dump(mode="json")}
            text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
            self._texts[change.seq] = text
            if len(self._texts) > self._size:
                self._texts.popitem(last=False)
        return text


#: One cache per change bus (one per hub): sequence numbers restart in another database.
_ENCODED: weakref.WeakKeyDictionary[EventBus[AlarmChange], _EncodedChanges] = (
    weakref.WeakKeyDictionary()
)


def _sse(change: AlarmChange) -> bytes:
    data = ChangeOut.of(change).model_dump_json()
    return f"id: {change.seq}\nevent: alarm\ndata: {data}\n\n".encode()


async def _replay_then_live(
    alarms: AlarmActions, bus: EventBus[AlarmChange], principal: Principal, since: int | None
) -> AsyncIterator[tuple[str, Any]]:
    """("hello", cursor), then every visible change after it, then ("resync", None) if cut off.

    Subscribing before reading the backlog, and skipping live changes already
    sent, means no change is lost or repeated between the two.
    """
    subscription = bus.subscribe(maxsize=1000, name=f"stream:{principal.subject}")
    try:
        last = await alarms.last_change_seq() if since is None else since
        yield "hello", last
        while True:
            backlog = await alarms.changes(
                last,
                limit=500,
                scope_paths=principal.scope_paths,
                categories=_categories(principal),
            )
            for change in backlog:
                last = change.seq
                yield "change", change
            if len(backlog) < 500:
                break
        while True:
            try:
                # A timeout scope, not `wait_for`: no task per change per console.
                async with asyncio.timeout(_KEEPALIVE_S):
                    change = await subscription.get()
            except TimeoutError:
                yield "keepalive", None
                continue
            except SubscriptionOverflow:
                yield "resync", last
                return
            except StopAsyncIteration:
                return
            if change.seq <= last:
                continue
            last = change.seq
            if _change_visible(principal, change):
                yield "change", change
    finally:
        subscription.close()


@router.get("/stream")
async def stream_sse(
    principal: Reader,  # maintenance staff: maintenance alarms only, as in the list
    alarms: Alarms,
    bus: Changes,
    since: Annotated[int | None, Query(ge=0, description="Replay changes after this seq.")] = None,
) -> StreamingResponse:
    """Server-Sent Events: `hello` with the cursor, then `alarm` events (id = seq)."""

    async def body() -> AsyncIterator[bytes]:
        async for kind, value in _replay_then_live(alarms, bus, principal, since):
            if kind == "hello":
                yield f"event: hello\ndata: {json.dumps({'cursor': value})}\n\n".encode()
            elif kind == "change":
                yield _sse(value)
            elif kind == "resync":
                yield f"event: resync\ndata: {json.dumps({'cursor': value})}\n\n".encode()
            else:
                yield b": keepalive\n\n"

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


@router.websocket("/ws")
async def stream_ws(
    websocket: WebSocket,
    principal: Reader,  # maintenance staff: maintenance alarms only, as in the list
    alarms: Alarms,
    bus: Changes,
    since: Annotated[int | None, Query(ge=0)] = None,
) -> None:
    """WebSocket: {"type":"hello","cursor":n}, then {"type":"change",…}; "resync" if cut off."""
    await websocket.accept()
    encoded = _ENCODED.setdefault(bus, _EncodedChanges())

    async def send_changes() -> None:
        async for kind, value in _replay_then_live(alarms, bus, principal, since):
            if kind == "hello":
                await websocket.send_json({"type": "hello", "cursor": value})
            elif kind == "change":
                await websocket.send_text(encoded.text(value))
            elif kind == "resync":
                await websocket.send_json({"type": "resync", "cursor": value})
                await websocket.close(code=1013)
                return
            else:
                await websocket.send_json({"type": "keepalive"})

    async def until_client_leaves() -> None:
        # Without reading, a closed client would be noticed only at the next send
        # (a keepalive away), holding its task and bus subscription until then.
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    sender = asyncio.create_task(send_changes())
    watcher = asyncio.create_task(until_client_leaves())
    try:
        done, _ = await asyncio.wait({sender, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, watcher):
            task.cancel()
        results = await asyncio.gather(sender, watcher, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception) and not isinstance(
            result, WebSocketDisconnect | RuntimeError
        ):
            raise result
    if watcher not in done:
        with contextlib.suppress(RuntimeError):
            await websocket.close()


@router.get("/{alarm_id}", response_model=AlarmDetailOut)
async def alarm_detail(alarm_id: uuid.UUID, principal: Reader, alarms: Alarms) -> AlarmDetailOut:
    """One alarm with its history, snapshots and delivery receipts."""
    try:
        found = await alarms.detail(alarm_id, lambda s: _visible(principal, s))
    except AlarmNotFound as exc:
        raise not_found("alarm") from exc
    history, media, deliveries = found.history, found.media, found.deliveries
    return AlarmDetailOut(
        alarm=_out(found.alarm, found.texts),
        history=[
            HistoryOut(
                at=h.at,
                actor=h.actor,
                action=h.action.value,
                from_state=h.from_state.value if h.from_state else None,
                to_state=h.to_state.value,
                note=h.note,
                details=dict(h.details),
                revision=h.revision,
            )
            for h in history
        ],
        media=[MediaOut.of(m) for m in media],
        deliveries=[DeliveryOut.of(d) for d in deliveries],
    )


@router.get("/{alarm_id}/media/{media_id}")
async def alarm_media(
    alarm_id: uuid.UUID, media_id: uuid.UUID, principal: Reader, alarms: Alarms
) -> Response:
    """Download one snapshot of an alarm the caller may see."""
    try:
        content_type, data = await alarms.media_content(
            alarm_id, media_id, lambda s: _visible(principal, s)
        )
    except AlarmNotFound as exc:
        raise not_found("alarm") from exc
    except KeyError as exc:
        raise not_found("media") from exc
    return Response(
        data,
        media_type=content_type,
        headers={"cache-control": "private, no-store", "x-content-type-options": "nosniff"},
    )


@router.post("/{alarm_id}/{action}", response_model=AlarmOut)
async def act(
    alarm_id: uuid.UUID,
    action: OperatorAction,
    principal: Actor,
    alarms: Alarms,
    body: Annotated[ActionIn | None, Body()] = None,
) -> AlarmOut:
    """Acknowledge, assign, dispatch, resolve, close, mark false alarm, reopen or note."""
    given = body or ActionIn()
    try:
        stored = await alarms.act(
            alarm_id,
            action.value,
            principal.actor,
            visible=lambda s: _visible(principal, s),
            note=given.note,
            assignee=given.assignee,
            department=given.department,
            remote_addr=principal.remote_addr,
        )
    except AlarmNotFound as exc:
        raise not_found("alarm") from exc
    except InvalidTransition as exc:
        raise Problem(409, "Invalid transition", str(exc), state=exc.state.value) from exc
    except StaleAlarm as exc:
        raise Problem(409, "Alarm changed", "the alarm changed meanwhile; reload it") from exc
    except ValueError as exc:
        raise Problem(422, "Invalid request", str(exc)) from exc
    return (await _outs(alarms, [stored]))[0]
