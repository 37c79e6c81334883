"""Outbox records: idempotency keys, backoff bounds, dead-lettering, the JSON payload."""

from __future__ import annotations

import json
import random
import uuid
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alarms import (
    Location,
    OutboxRecord,
    OutboxState,
    after_failure,
    after_success,
    alarm_payload,
    apply,
    backoff,
    mark_delivering,
    new_outbox_record,
)
from tests.unit.alarm_factories import ALARM_ID, T0, new_alarm


def test_idempotency_key_is_alarm_revision_sink() -> None:
    alarm, entry = new_alarm()
    record = new_outbox_record(alarm, "governance", alarm_payload(alarm, entry), T0)
    assert record.idempotency_key == f"{ALARM_ID}:1:governance"
    assert record.state is OutboxState.PENDING
    assert record.next_attempt_at == T0
    assert record.attempts == 0
    # Writing the same revision for the same sink twice gives the same row id.
    again = new_outbox_record(alarm, "governance", {}, T0 + timedelta(seconds=3))
    assert again.id == record.id
    other_sink = new_outbox_record(alarm, "police_cap", {}, T0)
    acked, _ = apply(alarm, "acknowledge", "op", T0)
    next_revision = new_outbox_record(acked, "governance", {}, T0)
    assert len({record.id, other_sink.id, next_revision.id}) == 3
    assert next_revision.idempotency_key == f"{ALARM_ID}:2:governance"


def test_first_retry_is_within_five_seconds() -> None:
    rng = random.Random(7)
    waits = [backoff(1, rng) for _ in range(2000)]
    assert max(waits) <= timedelta(seconds=5)
    assert min(waits) >= timedelta(0)
    # Full jitter really spreads: not all retries land on the same instant.
    assert len({w.total_seconds() for w in waits}) > 1000


@given(attempt=st.integers(1, 10_000), seed=st.integers(0, 2**32))
def test_backoff_is_bounded_and_never_negative(attempt: int, seed: int) -> None:
    wait = backoff(attempt, random.Random(seed))
    ceiling = min(timedelta(minutes=10), timedelta(seconds=4) * 2 ** min(attempt - 1, 32))
    assert timedelta(0) <= wait <= ceiling


def test_backoff_grows_exponentially_until_the_cap() -> None:
    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    assert [backoff(n, Top()).total_seconds() for n in range(1, 10)] == [
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        512,
        600,
    ]
    with pytest.raises(ValueError, match="attempt must be >= 1"):
        backoff(0, Top())


def test_failures_retry_then_dead_letter_after_the_limit() -> None:
    alarm, entry = new_alarm()
    record = new_outbox_record(alarm, "governance", alarm_payload(alarm, entry), T0)
    rng = random.Random(1)
    now = T0
    for attempt in range(1, 5):
        record = after_failure(mark_delivering(record), now, "HTTP 500", 5, rng)
        assert record.state is OutboxState.PENDING
        assert record.attempts == attempt
        assert record.last_error == "HTTP 500"
        assert now <= record.next_attempt_at <= now + timedelta(seconds=4 * 2 ** (attempt - 1))
        now = record.next_attempt_at
    record = after_failure(mark_delivering(record), now, "timeout after 10 s", 5, rng)
    assert record.state is OutboxState.DEAD
    assert record.attempts == 5
    assert record.last_error == "timeout after 10 s"
    with pytest.raises(ValueError, match="cannot fail again"):
        after_failure(record, now, "again", 5, rng)
    with pytest.raises(ValueError, match="only pending records can be claimed"):
        mark_delivering(record)


def test_gone_endpoint_dead_letters_at_once() -> None:
    alarm, _ = new_alarm()
    record = new_outbox_record(alarm, "governance", {}, T0)
    dead = after_failure(record, T0, "410 Gone", 10, random.Random(), permanent=True)
    assert (dead.state, dead.attempts) == (OutboxState.DEAD, 1)


def test_success_records_a_receipt() -> None:
    alarm, _ = new_alarm()
    record = mark_delivering(new_outbox_record(alarm, "governance", {}, T0))
    delivered = after_success(record, T0 + timedelta(milliseconds=300))
    assert delivered.state is OutboxState.DELIVERED
    assert delivered.delivered_at == T0 + timedelta(milliseconds=300)
    assert delivered.attempts == 1


def test_long_errors_are_truncated() -> None:
    alarm, _ = new_alarm()
    record = new_outbox_record(alarm, "governance", {}, T0)
    failed = after_failure(record, T0, "x" * 5000, 3, random.Random())
    assert failed.last_error is not None
    assert len(failed.last_error) == 1000


def test_record_values_are_checked() -> None:
    with pytest.raises(ValueError, match="invalid sink name"):
        OutboxRecord(
            id=uuid.uuid4(),
            alarm_id=ALARM_ID,
            revision=1,
            sink="Gov Center!",
            payload={},
            next_attempt_at=T0,
        )
    with pytest.raises(ValueError, match="delivered_at is set exactly when"):
        OutboxRecord(
            id=uuid.uuid4(),
            alarm_id=ALARM_ID,
            revision=1,
            sink="gov",
            payload={},
            next_attempt_at=T0,
            state=OutboxState.DELIVERED,
        )


def test_payload_is_json_with_alarm_change_and_location() -> None:
    alarm, _ = new_alarm(priority=1, type="panic", dedup_key="panic:cam-001")
    acked, entry = apply(
        alarm, "acknowledge", "op-li", T0 + timedelta(seconds=20), note="on the phone"
    )
    body = alarm_payload(acked, entry, Location(31.2304, 121.4737, 25, "School gate"))
    decoded = json.loads(json.dumps(body))
    assert decoded["event"] == "alarm.acknowledge"
    assert decoded["alarm_id"] == str(ALARM_ID)
    assert decoded["revision"] == 2
    assert decoded["jurisdiction"] == "310101001"
    assert decoded["alarm"]["priority"] == 1
    assert decoded["alarm"]["state"] == "acknowledged"
    assert decoded["alarm"]["type"] == "panic"
    assert decoded["alarm"]["opened_at"] == "2024-05-01T08:00:00+00:00"
    assert decoded["change"] == {
        "at": "2024-05-01T08:00:20+00:00",
        "actor": "op-li",
        "action": "acknowledge",
        "from_state": "new",
        "to_state": "acknowledged",
        "note": "on the phone",
        "details": {},
    }
    assert decoded["location"] == {
        "latitude": 31.2304,
        "longitude": 121.4737,
        "radius_m": 25,
        "description": "School gate",
    }
    assert alarm_payload(alarm, new_alarm()[1])["location"] is None


def test_payload_refuses_a_history_entry_of_another_revision() -> None:
    alarm, opened = new_alarm()
    acked, _ = apply(alarm, "acknowledge", "op", T0)
    with pytest.raises(ValueError, match="history entry is revision 1"):
        alarm_payload(acked, opened)
