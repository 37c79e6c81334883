"""Alarms: list, detail, operator actions, media, pull API, live stream (SSE and WebSocket).

Who may do what: operators act; operators and dispatchers read, pull and
stream; maintenance staff read maintenance alarms only; admins do everything.
Every alarm outside the caller's jurisdiction scope answers 404. Invalid
transitions answer 409 with the workflow's message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from alarms.models import AlarmCategory
from alarms.workflow import InvalidTransition, allowed_actions
from hub.alarms.dispatcher import Dispatcher
from hub.alarms.engine import AlarmChange, AlarmEngine, AlarmNotFound
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
from hub.alarms.storage import AlarmFilter, StaleAlarm, StoredAlarm
from hub.alarms.text_storage import AlarmTexts, opening_texts
from hub.api.deps import get_alarm_changes, get_alarms, get_dispatcher, get_settings
from hub.api.problems import Problem
from hub.auth.guards import Principal, Role, not_found, require
from hub.bus import EventBus, SubscriptionOverflow
from hub.config import Settings

__all__ = ["OperatorAction", "router"]

router = APIRouter(prefix="/api/alarms", tags=["alarms"])

Reader = Annotated[Principal, Depends(require(Role.OPERATOR, Role.DISPATCHER, Role.MAINTENANCE))]
Actor = Annotated[Principal, Depends(require(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(require())]
Engine = Annotated[AlarmEngine, Depends(get_alarms)]
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


async def _outs(engine: AlarmEngine, found: list[StoredAlarm]) -> list[AlarmOut]:
    """Alarms as the API shows them, each with the texts it was opened with."""
    texts = await opening_texts(engine.store, [s.alarm.id for s in found])
    return [_out(s, texts.get(s.alarm.id)) for s in found]


def _encode_cursor(stored: StoredAlarm) -> str:
    raw = f"{stored.alarm.opened_at.isoformat()}|{stored.alarm.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, alarm_id = raw.partition("|")
        parsed = datetime.fromisoformat(at)
        uuid.UUID(alarm_id)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise Problem(422, "Invalid request", "cursor is not one this API returned") from exc
    if parsed.tzinfo is None:
        raise Problem(422, "Invalid request", "cursor is not one this API returned")
    return parsed, alarm_id


async def _load(engine: AlarmEngine, principal: Principal, alarm_id: uuid.UUID) -> StoredAlarm:
    async with engine.store.reading() as tx:
        stored = await engine.repo.get(tx, alarm_id)
    if stored is None or not _visible(principal, stored):
        raise not_found("alarm")
    return stored


@router.get("", response_model=AlarmPage)
async def list_alarms(
    principal: Reader,
    engine: Engine,
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
    found = await engine.repo.search(
        query,
        scope_paths=principal.scope_paths,
        limit=limit + 1,
        cursor=_decode_cursor(cursor) if cursor else None,
    )
    page = found[:limit]
    next_cursor = _encode_cursor(page[-1]) if len(found) > limit and page else None
    return AlarmPage(items=await _outs(engine, page), next_cursor=next_cursor)


@router.get("/changes", response_model=ChangesPage)
async def pull_changes(
    principal: Annotated[Principal, Depends(require(Role.DISPATCHER, Role.OPERATOR))],
    engine: Engine,
    since: Annotated[int, Query(ge=0, description="Last `seq` seen; 0 from the start.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ChangesPage:
    """Committed alarm changes after `since`, in a stable order (the pull API)."""
    changes = await engine.repo.changes(
        since, limit=limit, scope_paths=principal.scope_paths, categories=_categories(principal)
    )
    next_since = changes[-1].seq if changes else since
    return ChangesPage(items=[ChangeOut.of(c) for c in changes], next_since=next_since)


@router.get("/sinks", response_model=list[SinkStatusOut])
async def sink_status(
    principal: Annotated[Principal, Depends(require(Role.OPERATOR))],
    engine: Engine,
    settings: Annotated[Settings, Depends(get_settings)],
) -> list[SinkStatusOut]:
    """Each configured sink: disabled (e.g. after 410 Gone) and its outbox backlog."""
    types = {sink.name: sink.type for sink in settings.alarms.sinks}
    states = await engine.repo.sink_states(sorted(types))
    return [SinkStatusOut.of(state, types[state.name]) for state in states]


@router.post("/sinks/{name}/enable", response_model=SinkStatusOut)
async def enable_sink(
    name: str,
    principal: Admin,
    engine: Engine,
    settings: Annotated[Settings, Depends(get_settings)],
    dispatcher: Annotated[Dispatcher | None, Depends(get_dispatcher)],
    requeue_dead: Annotated[bool, Query(description="Also retry its dead rows.")] = False,
) -> SinkStatusOut:
    """Re-enable a sink an endpoint disabled; its waiting rows are delivered."""
    types = {sink.name: sink.type for sink in settings.alarms.sinks}
    if name not in types:
        raise not_found("sink")
    now = engine.now()
    await engine.repo.set_sink_disabled(name, False, None, now)
    if requeue_dead:
        await engine.repo.requeue_dead(name, now)
    async with engine.store.transaction() as tx:
        await engine.repo.audit(
            tx,
            at=now,
            actor=principal.actor,
            action="sink.enable",
            target=name,
            remote_addr=principal.remote_addr,
            details={"requeue_dead": requeue_dead},
        )
    if dispatcher is not None:
        dispatcher.wake()
    (state,) = await engine.repo.sink_states([name])
    return SinkStatusOut.of(state, types[name])


def _sse(change: AlarmChange) -> bytes:
    data = ChangeOut.of(change).model_dump_json()
    return f"id: {change.seq}\nevent: alarm\ndata: {data}\n\n".encode()


async def _replay_then_live(
    engine: AlarmEngine, bus: EventBus[AlarmChange], principal: Principal, since: int | None
) -> AsyncIterator[tuple[str, Any]]:
    """("hello", cursor), then every visible change after it, then ("resync", None) if cut off.

    Subscribing before reading the backlog, and skipping live changes already
    sent, means no change is lost or repeated between the two.
    """
    subscription = bus.subscribe(maxsize=1000, name=f"stream:{principal.subject}")
    try:
        last = await engine.repo.last_change_seq() if since is None else since
        yield "hello", last
        while True:
            backlog = await engine.repo.changes(
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
                change = await asyncio.wait_for(subscription.get(), _KEEPALIVE_S)
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
    engine: Engine,
    bus: Changes,
    since: Annotated[int | None, Query(ge=0, description="Replay changes after this seq.")] = None,
) -> StreamingResponse:
    """Server-Sent Events: `hello` with the cursor, then `alarm` events (id = seq)."""

    async def body() -> AsyncIterator[bytes]:
        async for kind, value in _replay_then_live(engine, bus, principal, since):
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
    engine: Engine,
    bus: Changes,
    since: Annotated[int | None, Query(ge=0)] = None,
) -> None:
    """WebSocket: {"type":"hello","cursor":n}, then {"type":"change",…}; "resync" if cut off."""
    await websocket.accept()

    async def send_changes() -> None:
        async for kind, value in _replay_then_live(engine, bus, principal, since):
            if kind == "hello":
                await websocket.send_json({"type": "hello", "cursor": value})
            elif kind == "change":
                message = ChangeOut.of(value).model_dump(mode="json")
                await websocket.send_json({"type": "change", **message})
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
async def alarm_detail(alarm_id: uuid.UUID, principal: Reader, engine: Engine) -> AlarmDetailOut:
    """One alarm with its history, snapshots and delivery receipts."""
    stored = await _load(engine, principal, alarm_id)
    history = await engine.repo.history(alarm_id)
    media = await engine.repo.media(alarm_id)
    deliveries = await engine.repo.deliveries(alarm_id)
    return AlarmDetailOut(
        alarm=(await _outs(engine, [stored]))[0],
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
    alarm_id: uuid.UUID, media_id: uuid.UUID, principal: Reader, engine: Engine
) -> Response:
    """Download one snapshot of an alarm the caller may see."""
    await _load(engine, principal, alarm_id)
    try:
        content_type, data = await engine.repo.media_content(alarm_id, media_id)
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
    engine: Engine,
    body: Annotated[ActionIn | None, Body()] = None,
) -> AlarmOut:
    """Acknowledge, assign, dispatch, resolve, close, mark false alarm, reopen or note."""
    given = body or ActionIn()
    try:
        stored = await engine.act(
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
    return (await _outs(engine, [stored]))[0]
