"""A press storm's further presses take a short way through the alarm engine; it must
decide exactly what the full rules pass decides.

Two engines, one with the short way and one without, get the same events in the
same batches (and the same operator actions between them) on stores of their own;
afterwards every alarm, history entry, change-log row and outbox row must be equal.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alarms.workflow import InvalidTransition
from camera_registry.events import DeviceEvent
from hub.alarms import query_storage
from hub.alarms.config import AlarmSettings
from hub.alarms.engine import AlarmChange, AlarmEngine
from hub.alarms.storage import AlarmFilter
from hub.bus import EventBus
from hub.storage import SqlStore
from hub.storage.sqlite import SQLiteStore
from tests.helpers import make_event
from tests.integration.alarm_support import SECRET, Clock, add_device

SINKS: list[dict[str, Any]] = [
    {"name": "center", "type": "webhook", "url": "http://127.0.0.1:9/hook", "secrets": [SECRET]},
    {"name": "cap", "type": "cap", "url": "http://127.0.0.1:9/cap", "secrets": [SECRET]},
]
BUTTONS = ("btn-001", "btn-002")
CAMERA = "cam-001"

#: (device, kind, payload): presses (drill or not, retained or not) and what else
#: the buttons and camera send: offline / online (auto-close), a vendor quality fault
#: and intrusion (payload conditions: always the full pass).
_EVENT: st.SearchStrategy[tuple[str, str, dict[str, Any]]] = st.one_of(
    st.tuples(
        st.sampled_from(BUTTONS),
        st.just("panic.press"),
        st.fixed_dictionaries({}, optional={"drill": st.just(True), "retained": st.just(True)}),
    ),
    st.tuples(
        st.sampled_from((*BUTTONS, CAMERA)),
        st.sampled_from(("health.offline", "health.online")),
        st.just({}),
    ),
    st.tuples(st.just(CAMERA), st.sampled_from(("vqd.blur", "vqd.ok")), st.just({})),
    st.tuples(
        st.just(CAMERA),
        st.just("onvif.intrusion"),
        st.sampled_from(({"state": True}, {"state": False})),
    ),
)
#: Between batches: an operator acts on the n-th active alarm (or nobody does).
_ACTION = st.one_of(
    st.none(),
    st.tuples(st.integers(0, 3), st.sampled_from(("acknowledge", "false_alarm", "resolve"))),
)
_SCENARIO = st.lists(
    st.tuples(st.lists(_EVENT, min_size=1, max_size=25), _ACTION, st.integers(0, 400)),
    min_size=1,
    max_size=6,
)


async def _engine(path: Path, clock: Clock, *, fast: bool) -> AlarmEngine:
    store = SQLiteStore(path)
    await store.open()
    for button in BUTTONS:
        await add_device(store, button, kind="panic", linked_cameras=[CAMERA])
    await add_device(store, CAMERA)
    alarm_settings = AlarmSettings.model_validate({"sinks": SINKS, "linkage": {"snapshots": False}})
    return AlarmEngine(
        store,
        alarm_settings,
        clock=clock,
        bus=EventBus[AlarmChange]("changes"),
        fast_repeats=fast,
    )


async def _rows(store: SqlStore) -> dict[str, list[Any]]:
    queries = {
        "alarms": "SELECT * FROM alarms ORDER BY id",
        "history": "SELECT alarm_id, at, actor, action, from_state, to_state, note, details,"
        " revision FROM alarm_history ORDER BY id",
        "changes": "SELECT alarm_id, revision, action, at, jurisdiction_path, category, payload"
        " FROM alarm_changes ORDER BY seq",
        "outbox": "SELECT alarm_id, revision, sink, idempotency_key, payload, state"
        " FROM outbox ORDER BY id",
        "rejected": "SELECT reason FROM rejected_messages ORDER BY reason",
    }
    async with store.reading() as tx:
        return {name: await tx.fetchall(sql) for name, sql in queries.items()}


async def _act(engine: AlarmEngine, index: int, action: str) -> str:
    found = await query_storage.search(engine.store, AlarmFilter(), scope_paths=None, limit=100)
    active = sorted(
        (stored for stored in found if stored.alarm.is_active), key=lambda s: str(s.alarm.id)
    )
    if not active:
        return "none"
    stored = active[index % len(active)]
    try:
        await engine.act(
            stored.alarm.id, action, "user:op1", visible=lambda _: True, note="checked on site"
        )
    except (InvalidTransition, ValueError) as exc:
        return type(exc).__name__
    return "done"


async def _run(scenario: list[Any]) -> int:
    """Play `scenario` through both engines, compare; how many presses took the short way."""
    with tempfile.TemporaryDirectory() as tmp:
        clock = Clock()
        fast = await _engine(Path(tmp) / "fast.sqlite3", clock, fast=True)
        full = await _engine(Path(tmp) / "full.sqlite3", clock, fast=False)
        try:
            n = 0
            for batch, action, seconds in scenario:
                events: list[DeviceEvent] = []
                for device, kind, payload in batch:
                    n += 1
                    events.append(
                        make_event(n, device_id=device, kind=kind, payload={"n": n, **payload})
                    )
                for engine in (fast, full):
                    result = await engine.store.ingest(events, in_transaction=engine.in_transaction)
                    engine.after_commit(result)
                if action is not None:
                    outcomes = [await _act(engine, *action) for engine in (fast, full)]
                    assert outcomes[0] == outcomes[1]
                clock.advance(seconds)
            fast_rows, full_rows = await _rows(fast.store), await _rows(full.store)
            for table in full_rows:
                assert fast_rows[table] == full_rows[table], table
            assert full.short_repeats == 0
            return fast.short_repeats
        finally:
            await fast.store.close()
            await full.store.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_SCENARIO)
def test_the_short_way_for_repeats_decides_what_the_full_pass_decides(
    scenario: list[Any],
) -> None:
    asyncio.run(_run(scenario))


def test_a_press_storm_takes_the_short_way_and_matches_the_full_pass() -> None:
    """Hundreds of presses of two buttons in a few batches, drills among them."""
    presses = [
        (BUTTONS[i % 2], "panic.press", {"drill": True} if i % 7 == 0 else {}) for i in range(300)
    ]
    short_ways = asyncio.run(_run([(presses, None, 5)] * 3))
    # Per button and drill flag, the full pass takes the press that opens the alarm
    # and the first repeat of every batch (which makes the batch's revision).
    assert short_ways == 900 - (2 + 1 + 1) * 4
