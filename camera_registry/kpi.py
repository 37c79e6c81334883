"""Online rate and intact rate from a state history, time-weighted. No I/O.

A history is a list of `(at, state)` changes: each state holds from its `at`
until the next change, the last one until `until` (the moment the report is
made, passed in). Reporting days and months are local to the reporting zone
(Asia/Shanghai by default): a day is [local midnight, next local midnight).

Decisions, so that every report computes the same numbers:

- **`unknown` time is left out of the denominator.** It is time the hub could
  not judge (a restart, before the first probe, before the device's first
  known state); counting it as offline would punish the contractor for the
  hub's outages, counting it as online would hide real ones. It is reported
  as `unknown_s` so a large gap stays visible.
- **online** = `online` + `degraded` (the device answers); **intact** =
  `online` only (it answers and its picture has no fault).
- `online_rate = online_s / known_s`, `intact_rate = intact_s / known_s`,
  `known_s = online_s + offline_s`; both are None when `known_s` is 0.
- For a jurisdiction, `combine` adds device seconds, so each device weighs by
  the time it was known.
- Time after `until` (the future) is not counted at all.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from camera_registry.models import HealthState

__all__ = [
    "REPORTING_ZONE",
    "PeriodKpi",
    "StateChange",
    "combine",
    "daily_kpis",
    "day_bounds",
    "month_bounds",
    "monthly_kpi",
    "period_kpi",
]

#: The zone reporting days and months are counted in.
REPORTING_ZONE = ZoneInfo("Asia/Shanghai")

StateChange = tuple[datetime, HealthState]


def _require_aware(at: datetime, what: str) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")


@dataclass(frozen=True, slots=True)
class PeriodKpi:
    """Seconds spent in each state over [start, end), and the two rates."""

    start: datetime
    end: datetime
    online_s: float
    intact_s: float
    offline_s: float
    unknown_s: float

    def __post_init__(self) -> None:
        for value in (self.online_s, self.intact_s, self.offline_s, self.unknown_s):
            if value < 0:
                raise ValueError("durations must be >= 0")
        if self.intact_s > self.online_s + 1e-6:
            raise ValueError("intact time cannot exceed online time")

    @property
    def known_s(self) -> float:
        """Seconds the state was known (the rates' denominator)."""
        return self.online_s + self.offline_s

    @property
    def degraded_s(self) -> float:
        """Seconds reachable but with a quality fault."""
        return self.online_s - self.intact_s

    @property
    def online_rate(self) -> float | None:
        """Share of known time the device answered; None without known time."""
        return self.online_s / self.known_s if self.known_s > 0 else None

    @property
    def intact_rate(self) -> float | None:
        """Share of known time the device answered with a fault-free picture."""
        return self.intact_s / self.known_s if self.known_s > 0 else None


def day_bounds(day: date, zone: ZoneInfo = REPORTING_ZONE) -> tuple[datetime, datetime]:
    """[start, end) of a reporting day, as UTC instants."""
    start = datetime.combine(day, time.min, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    return start.astimezone(ZoneInfo("UTC")), end.astimezone(ZoneInfo("UTC"))


def month_bounds(
    year: int, month: int, zone: ZoneInfo = REPORTING_ZONE
) -> tuple[datetime, datetime]:
    """[start, end) of a reporting month, as UTC instants."""
    last_day = calendar.monthrange(year, month)[1]
    start, _ = day_bounds(date(year, month, 1), zone)
    _, end = day_bounds(date(year, month, last_day), zone)
    return start, end


def _check_history(history: Sequence[StateChange]) -> None:
    previous: datetime | None = None
    for at, state in history:
        _require_aware(at, "history times")
        HealthState(state)
        if previous is not None and at < previous:
            raise ValueError("history must be in time order")
        previous = at


def period_kpi(
    history: Sequence[StateChange], start: datetime, end: datetime, *, until: datetime
) -> PeriodKpi:
    """Time-weighted KPI of one device over [start, end), counting nothing after `until`."""
    _require_aware(start, "start")
    _require_aware(end, "end")
    _require_aware(until, "until")
    if end < start:
        raise ValueError("end must not be before start")
    _check_history(history)
    seconds = dict.fromkeys(HealthState, 0.0)
    stop = min(end, until)
    changes: list[StateChange] = list(history)
    # Before the first change (or with no history at all) the state was not known.
    first_known = changes[0][0] if changes else stop
    seconds[HealthState.UNKNOWN] += _overlap(start, first_known, start, stop)
    ends = [at for at, _ in changes[1:]] + ([stop] if changes else [])
    for (at, state), until_next in zip(changes, ends, strict=True):
        seconds[HealthState(state)] += _overlap(at, until_next, start, stop)
    online = seconds[HealthState.ONLINE]
    degraded = seconds[HealthState.DEGRADED]
    return PeriodKpi(
        start=start,
        end=end,
        online_s=online + degraded,
        intact_s=online,
        offline_s=seconds[HealthState.OFFLINE],
        unknown_s=seconds[HealthState.UNKNOWN],
    )


def _overlap(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> float:
    return max(0.0, (min(a_end, b_end) - max(a_start, b_start)).total_seconds())


def daily_kpis(
    history: Sequence[StateChange],
    first_day: date,
    last_day: date,
    *,
    until: datetime,
    zone: ZoneInfo = REPORTING_ZONE,
) -> list[PeriodKpi]:
    """One KPI per reporting day from `first_day` to `last_day` inclusive."""
    if last_day < first_day:
        raise ValueError("last_day must not be before first_day")
    days = (last_day - first_day).days + 1
    result = []
    for offset in range(days):
        start, end = day_bounds(first_day + timedelta(days=offset), zone)
        result.append(period_kpi(history, start, end, until=until))
    return result


def monthly_kpi(
    history: Sequence[StateChange],
    year: int,
    month: int,
    *,
    until: datetime,
    zone: ZoneInfo = REPORTING_ZONE,
) -> PeriodKpi:
    """The KPI of one reporting month."""
    start, end = month_bounds(year, month, zone)
    return period_kpi(history, start, end, until=until)


def combine(kpis: Iterable[PeriodKpi]) -> PeriodKpi:
    """Add several devices' KPIs over the same period (a jurisdiction's figure)."""
    items = list(kpis)
    if not items:
        raise ValueError("nothing to combine")
    start, end = items[0].start, items[0].end
    if any(k.start != start or k.end != end for k in items):
        raise ValueError("KPIs to combine must cover the same period")
    return PeriodKpi(
        start=start,
        end=end,
        online_s=sum(k.online_s for k in items),
        intact_s=sum(k.intact_s for k in items),
        offline_s=sum(k.offline_s for k in items),
        unknown_s=sum(k.unknown_s for k in items),
    )
