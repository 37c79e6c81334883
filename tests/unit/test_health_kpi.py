"""Health state machine and online/intact-rate KPIs on hand-computed histories."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from camera_registry.health import Evidence, HealthPolicy, HealthTracker
from camera_registry.kpi import (
    PeriodKpi,
    combine,
    daily_kpis,
    day_bounds,
    month_bounds,
    monthly_kpi,
    period_kpi,
)
from camera_registry.models import HealthState

ONLINE, DEGRADED, OFFLINE, UNKNOWN = (
    HealthState.ONLINE,
    HealthState.DEGRADED,
    HealthState.OFFLINE,
    HealthState.UNKNOWN,
)
SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
HOUR = 3600.0


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def local(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=SHANGHAI).astimezone(UTC)


# --- health state machine ---


def test_unknown_until_evidence_then_online() -> None:
    tracker = HealthTracker("cam-1", HealthPolicy(), started_at=at(0))
    assert tracker.state is UNKNOWN
    transition = tracker.observe(ONLINE, "probe ok: 8 frames", at(1))
    assert transition is not None
    assert (transition.previous, transition.state, transition.at) == (UNKNOWN, ONLINE, at(1))
    assert transition.reason == "probe ok: 8 frames"
    assert tracker.status().since == at(1)


def test_single_loss_does_not_flap_offline() -> None:
    tracker = HealthTracker("cam-1", HealthPolicy(failures_to_offline=3), started_at=at(0))
    tracker.observe(ONLINE, "ok", at(1))
    assert tracker.observe(OFFLINE, "connection refused", at(11)) is None
    assert tracker.state is ONLINE and tracker.status().suspect
    assert tracker.observe(ONLINE, "ok", at(21)) is None
    assert not tracker.status().suspect
    assert tracker.observe(OFFLINE, "timeout", at(31)) is None
    assert tracker.observe(OFFLINE, "timeout", at(41)) is None
    gone = tracker.observe(OFFLINE, "timeout", at(51))
    assert gone is not None and gone.state is OFFLINE
    assert gone.reason == "3 consecutive failures, last: timeout"
    assert tracker.status().since == at(51)
    back = tracker.observe(ONLINE, "ok", at(61))
    assert back is not None and (back.previous, back.state) == (OFFLINE, ONLINE)


def test_failures_after_start_stay_unknown_until_confirmed() -> None:
    tracker = HealthTracker("cam-1", HealthPolicy(failures_to_offline=2), started_at=at(0))
    assert tracker.observe(OFFLINE, "refused", at(1)) is None
    assert tracker.state is UNKNOWN
    offline = tracker.observe(OFFLINE, "refused", at(2))
    assert offline is not None and (offline.previous, offline.state) == (UNKNOWN, OFFLINE)


def test_quality_fault_degrades_and_recovers() -> None:
    tracker = HealthTracker("cam-1", HealthPolicy(), started_at=at(0))
    tracker.observe(ONLINE, "ok", at(1))
    evidence = Evidence(
        observed=DEGRADED, reason="blurred: 18% of usual sharpness", faults=("blur",)
    )
    degraded = tracker.observe(DEGRADED, evidence, at(11))
    assert degraded is not None and degraded.state is DEGRADED
    assert degraded.evidence is evidence and degraded.reason.startswith("blurred")
    assert tracker.observe(DEGRADED, "frozen picture", at(21)) is None
    recovered = tracker.observe(ONLINE, "ok", at(31))
    assert recovered is not None and recovered.state is ONLINE


def test_degrade_needs_consecutive_faults_when_configured() -> None:
    tracker = HealthTracker("cam-1", HealthPolicy(faults_to_degrade=2), started_at=at(0))
    tracker.observe(ONLINE, "ok", at(1))
    assert tracker.observe(DEGRADED, "frozen", at(2)) is None
    assert tracker.observe(ONLINE, "ok", at(3)) is None
    assert tracker.observe(DEGRADED, "frozen", at(4)) is None
    second = tracker.observe(DEGRADED, "frozen", at(5))
    assert second is not None and second.state is DEGRADED


def test_reachable_with_unconfirmed_fault_leaves_offline() -> None:
    policy = HealthPolicy(failures_to_offline=1, faults_to_degrade=2)
    tracker = HealthTracker("cam-1", policy, started_at=at(0))
    tracker.observe(OFFLINE, "refused", at(1))
    back = tracker.observe(DEGRADED, "frozen", at(2))
    assert back is not None and back.state is ONLINE
    assert "not yet confirmed" in back.reason


def test_missed_heartbeats_take_a_silent_device_offline() -> None:
    policy = HealthPolicy(heartbeat_interval_s=60, missed_heartbeats_to_offline=3)
    tracker = HealthTracker("panic-7", policy, started_at=at(0))
    tracker.observe(ONLINE, "heartbeat", at(1))
    assert tracker.check_heartbeat(at(1) + timedelta(seconds=179)) is None
    silent = tracker.check_heartbeat(at(1) + timedelta(seconds=180))
    assert silent is not None and silent.state is OFFLINE
    assert "3 heartbeats" in silent.reason
    assert tracker.check_heartbeat(at(10)) is None  # already offline: no repeat


def test_device_never_heard_from_goes_offline_after_missed_heartbeats() -> None:
    policy = HealthPolicy(heartbeat_interval_s=60, missed_heartbeats_to_offline=2)
    tracker = HealthTracker("panic-7", policy, started_at=at(0))
    assert tracker.check_heartbeat(at(1)) is None
    transition = tracker.check_heartbeat(at(2))
    assert transition is not None and transition.previous is UNKNOWN


def test_late_evidence_is_ignored_and_inputs_validated() -> None:
    tracker = HealthTracker("cam-1", HealthPolicy(failures_to_offline=1), started_at=at(0))
    tracker.observe(ONLINE, "ok", at(10))
    assert tracker.observe(OFFLINE, "old failure", at(5)) is None
    assert tracker.state is ONLINE
    with pytest.raises(ValueError):
        tracker.observe(ONLINE, "ok", datetime(2026, 11, 30, 12, 0))  # noqa: DTZ001
    with pytest.raises(ValueError):
        Evidence(observed=UNKNOWN, reason="?")
    with pytest.raises(ValueError):
        tracker.observe(ONLINE, Evidence(observed=OFFLINE, reason="x"), at(20))
    with pytest.raises(ValueError):
        HealthPolicy(failures_to_offline=0)


# --- KPIs ---

# Local (Asia/Shanghai) story across midnight of 30 Nov and the month end:
#   30 Nov 10:00 online, 20:00 degraded, 22:00 offline,
#    1 Dec 02:00 online, 12:00 unknown (hub restart), 13:00 online,
#   report made at 2 Dec 00:00.
HISTORY = [
    (local(2026, 11, 30, 10), ONLINE),
    (local(2026, 11, 30, 20), DEGRADED),
    (local(2026, 11, 30, 22), OFFLINE),
    (local(2026, 12, 1, 2), ONLINE),
    (local(2026, 12, 1, 12), UNKNOWN),
    (local(2026, 12, 1, 13), ONLINE),
]
UNTIL = local(2026, 12, 2, 0)


def test_reporting_days_are_local_days() -> None:
    start, end = day_bounds(date(2026, 12, 1))
    assert start == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    assert end == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
    start, end = month_bounds(2026, 12)
    assert (start, end) == (
        datetime(2026, 11, 30, 16, 0, tzinfo=UTC),
        datetime(2026, 12, 31, 16, 0, tzinfo=UTC),
    )
    assert month_bounds(2028, 2)[1] - month_bounds(2028, 2)[0] == timedelta(days=29)


def test_daily_kpis_across_midnight() -> None:
    nov30, dec1 = daily_kpis(HISTORY, date(2026, 11, 30), date(2026, 12, 1), until=UNTIL)
    # 30 Nov: unknown 00-10, online 10-20, degraded 20-22, offline 22-24.
    assert nov30.unknown_s == 10 * HOUR
    assert (nov30.online_s, nov30.intact_s, nov30.offline_s) == (12 * HOUR, 10 * HOUR, 2 * HOUR)
    assert nov30.degraded_s == 2 * HOUR
    assert nov30.online_rate == pytest.approx(12 / 14)
    assert nov30.intact_rate == pytest.approx(10 / 14)
    # 1 Dec: offline 00-02 (carried over midnight), online 02-12, unknown 12-13, online 13-24.
    assert (dec1.online_s, dec1.intact_s, dec1.offline_s) == (21 * HOUR, 21 * HOUR, 2 * HOUR)
    assert dec1.unknown_s == 1 * HOUR
    assert dec1.online_rate == pytest.approx(21 / 23)
    assert dec1.intact_rate == pytest.approx(21 / 23)


def test_monthly_kpi_across_month_end() -> None:
    november = monthly_kpi(HISTORY, 2026, 11, until=UNTIL)
    assert november.unknown_s == (29 * 24 + 10) * HOUR  # nothing known before 30 Nov 10:00
    assert (november.online_s, november.intact_s, november.offline_s) == (
        12 * HOUR,
        10 * HOUR,
        2 * HOUR,
    )
    december = monthly_kpi(HISTORY, 2026, 12, until=UNTIL)
    # Only 1 Dec has elapsed: the rest of the month is the future, not counted.
    assert (december.online_s, december.offline_s, december.unknown_s) == (
        21 * HOUR,
        2 * HOUR,
        1 * HOUR,
    )
    assert december.intact_rate == pytest.approx(21 / 23)


def test_utc_day_would_give_other_numbers() -> None:
    """The same history cut at UTC midnight: shows the local day matters."""
    utc_day = period_kpi(
        HISTORY,
        datetime(2026, 11, 30, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
        until=UNTIL,
    )
    local_day = daily_kpis(HISTORY, date(2026, 11, 30), date(2026, 11, 30), until=UNTIL)[0]
    assert utc_day.offline_s == 4 * HOUR  # 22:00-02:00 local all falls in the UTC day
    assert utc_day.online_rate != local_day.online_rate


def test_no_history_means_no_rate() -> None:
    kpi = monthly_kpi([], 2026, 11, until=UNTIL)
    assert kpi.known_s == 0 and kpi.online_rate is None and kpi.intact_rate is None
    assert kpi.unknown_s == 30 * 24 * HOUR


def test_combine_weighs_devices_by_known_time() -> None:
    day = daily_kpis(HISTORY, date(2026, 11, 30), date(2026, 11, 30), until=UNTIL)[0]
    always = period_kpi([(local(2026, 11, 1), ONLINE)], day.start, day.end, until=UNTIL)
    assert always.online_rate == 1.0
    town = combine([day, always])
    assert town.online_rate == pytest.approx((12 + 24) / (14 + 24))
    assert town.intact_rate == pytest.approx((10 + 24) / (14 + 24))
    other = PeriodKpi(day.start, day.end + timedelta(days=1), 0, 0, 0, 0)
    with pytest.raises(ValueError):
        combine([day, other])


def test_history_must_be_ordered_and_aware() -> None:
    start, end = day_bounds(date(2026, 11, 30))
    with pytest.raises(ValueError):
        period_kpi(list(reversed(HISTORY)), start, end, until=UNTIL)
    with pytest.raises(ValueError):
        period_kpi([(datetime(2026, 11, 30), ONLINE)], start, end, until=UNTIL)  # noqa: DTZ001
