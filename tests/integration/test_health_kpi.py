"""KPIs from a hand-built state history that crosses midnight and a month end (Asia/Shanghai).

Hand computation (UTC+8; November 2024 = [10-31 16:00Z, 11-30 16:00Z), 2,592,000 s):

- cam-a (town A): online from 10-31 12:00Z (before the month), offline 11-20 15:00Z
  (23:00 local) to 17:00Z (01:00 local next day), online again, degraded from
  11-30 15:00Z (23:00 local, the month's last hour) into December.
  online 1,724,400 + 856,800 = 2,581,200 intact; + 3,600 degraded = 2,584,800 online;
  offline 7,200; unknown 0.
- cam-b (town B): unknown until 11-10 04:00Z, online 432,000 s, unknown 2 h (hub
  restart) from 11-15 04:00Z, offline from 11-15 06:00Z to the month end: 1,332,000 s.
- cam-c (town B): no history at all: unknown the whole month, so not in the rates.
"""

from __future__ import annotations

import asyncio
import csv
import io
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from openpyxl import load_workbook

from hub.config import load_settings
from hub.devices.health_storage import HealthRepository, HealthSampleRow, TransitionRow
from hub.devices.kpi_report import ScopeError, build_kpi_report, parse_period
from hub.runtime import Hub
from hub.storage import SqlStore
from tests.helpers import act_as
from tests.integration.health_seed import TOWN_A, TOWN_B, seed_camera, seed_tree

UNTIL = datetime(2024, 12, 10, tzinfo=UTC)
MONTH_S = 2_592_000

A_ONLINE, A_INTACT, A_OFFLINE = 2_584_800, 2_581_200, 7_200
B_ONLINE, B_OFFLINE, B_UNKNOWN = 432_000, 1_332_000, 828_000


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


HISTORY = [
    ("cam-a", "2024-10-31T12:00", "unknown", "online"),
    ("cam-a", "2024-11-20T15:00", "online", "offline"),
    ("cam-a", "2024-11-20T17:00", "offline", "online"),
    ("cam-a", "2024-11-30T15:00", "online", "degraded"),
    ("cam-b", "2024-11-10T04:00", "unknown", "online"),
    ("cam-b", "2024-11-15T04:00", "online", "unknown"),
    ("cam-b", "2024-11-15T06:00", "unknown", "offline"),
]


async def seed_history(store: SqlStore) -> None:
    await seed_tree(store)
    await seed_camera(store, "cam-a", jurisdiction=TOWN_A)
    await seed_camera(store, "cam-b", jurisdiction=TOWN_B)
    await seed_camera(store, "cam-c", jurisdiction=TOWN_B)
    await HealthRepository(store).record(
        transitions=[
            TransitionRow(device, _t(at), old, new, f"{old} -> {new} by hand")
            for device, at, old, new in HISTORY
        ],
        now=UNTIL,
    )


def test_hand_numbers_add_up() -> None:
    assert A_ONLINE + A_OFFLINE == MONTH_S
    assert B_ONLINE + B_OFFLINE + B_UNKNOWN == MONTH_S


async def test_month_kpi_per_node_equals_hand_computation(store: SqlStore) -> None:
    await seed_history(store)
    report = await build_kpi_report(
        HealthRepository(store),
        period=parse_period(month="2024-11"),
        until=UNTIL,
        code="150102",
        scope_paths=None,
    )
    node = report.node
    assert (node.code, node.devices) == ("150102", 3)
    assert node.kpi.online_s == pytest.approx(A_ONLINE + B_ONLINE)
    assert node.kpi.intact_s == pytest.approx(A_INTACT + B_ONLINE)
    assert node.kpi.offline_s == pytest.approx(A_OFFLINE + B_OFFLINE)
    assert node.kpi.unknown_s == pytest.approx(B_UNKNOWN + MONTH_S)
    known = A_ONLINE + A_OFFLINE + B_ONLINE + B_OFFLINE
    assert node.kpi.online_rate == pytest.approx((A_ONLINE + B_ONLINE) / known)
    assert node.kpi.intact_rate == pytest.approx((A_INTACT + B_ONLINE) / known)

    town_a, town_b = report.children
    assert (town_a.code, town_a.devices) == ("150102001", 1)
    assert town_a.kpi.online_rate == pytest.approx(A_ONLINE / MONTH_S)
    assert town_a.kpi.intact_rate == pytest.approx(A_INTACT / MONTH_S)
    assert (town_b.code, town_b.devices) == ("150102002", 2)
    assert town_b.kpi.online_rate == pytest.approx(B_ONLINE / (B_ONLINE + B_OFFLINE))
    assert town_b.kpi.unknown_s == pytest.approx(B_UNKNOWN + MONTH_S)


async def test_days_are_cut_at_local_midnight(store: SqlStore) -> None:
    await seed_history(store)
    repository = HealthRepository(store)
    nov20 = await build_kpi_report(
        repository,
        period=parse_period(day="2024-11-20"),
        until=UNTIL,
        code="150102001",
        scope_paths=None,
    )
    nov21 = await build_kpi_report(
        repository,
        period=parse_period(day="2024-11-21"),
        until=UNTIL,
        code="150102001",
        scope_paths=None,
    )
    # 23:00-24:00 local offline on the 20th, 00:00-01:00 local on the 21st.
    assert (nov20.node.kpi.online_s, nov20.node.kpi.offline_s) == (82_800, 3_600)
    assert (nov21.node.kpi.online_s, nov21.node.kpi.offline_s) == (82_800, 3_600)
    # The month's last local hour is degraded: online but not intact.
    nov30 = await build_kpi_report(
        repository,
        period=parse_period(day="2024-11-30"),
        until=UNTIL,
        code="150102001",
        scope_paths=None,
    )
    assert nov30.node.kpi.online_s == 86_400
    assert nov30.node.kpi.intact_s == 82_800


async def test_report_refuses_a_node_outside_the_scope(store: SqlStore) -> None:
    await seed_history(store)
    with pytest.raises(ScopeError):
        await build_kpi_report(
            HealthRepository(store),
            period=parse_period(month="2024-11"),
            until=UNTIL,
            code="150102002",
            scope_paths=("/150102/150102001/",),
        )


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_kpi_api_and_scope(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgres" else None
    settings = load_settings(
        None, data_dir=tmp_path, storage={"url": dsn}, patrol={"enabled": False}
    )
    async with Hub(settings) as hub:
        await seed_history(hub.store)
        app = hub.app()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            act_as(app, role="maintenance", scope=("/150102/",))
            answer = await client.get(
                "/api/kpi", params={"jurisdiction": "150102", "month": "2024-11"}
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            known = A_ONLINE + A_OFFLINE + B_ONLINE + B_OFFLINE
            assert body["node"]["online_rate"] == pytest.approx(
                (A_ONLINE + B_ONLINE) / known, abs=1e-6
            )
            assert body["node"]["intact_rate"] == pytest.approx(
                (A_INTACT + B_ONLINE) / known, abs=1e-6
            )
            assert [c["code"] for c in body["children"]] == ["150102001", "150102002"]
            assert body["children"][0]["online_rate"] == pytest.approx(A_ONLINE / MONTH_S, abs=1e-6)
            assert body["zone"] == "Asia/Shanghai"

            day = await client.get(
                "/api/kpi", params={"jurisdiction": "150102001", "day": "2024-11-21"}
            )
            assert day.json()["node"]["offline_s"] == 3_600

            bad = await client.get("/api/kpi", params={"month": "2024-13"})
            assert bad.status_code == 422

            act_as(app, role="operator", scope=("/150102/150102001/",))
            hidden = await client.get(
                "/api/kpi", params={"jurisdiction": "150102002", "month": "2024-11"}
            )
            assert hidden.status_code == 404
            mine = await client.get("/api/kpi", params={"month": "2024-11"})
            assert mine.status_code == 200
            assert mine.json()["node"]["devices"] == 1
            assert [c["code"] for c in mine.json()["children"]] == ["150102001"]

            act_as(app, role="dispatcher", scope=("/",))
            forbidden = await client.get("/api/kpi", params={"month": "2024-11"})
            assert forbidden.status_code == 403


async def _seed_in(data_dir: Path) -> None:
    settings = load_settings(None, data_dir=data_dir, patrol={"enabled": False})
    async with Hub(settings) as hub:
        await seed_history(hub.store)


def test_kpi_report_cli_table_csv_xlsx(tmp_path: Path) -> None:
    asyncio.run(_seed_in(tmp_path))
    env = {"GRIDWATCH_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    command = [
        sys.executable,
        "-m",
        "hub.cli",
        "report",
        "kpi",
        "--month",
        "2024-11",
        "--jurisdiction",
        "150102",
    ]

    table = subprocess.run(command, capture_output=True, text=True, env=env, check=True, timeout=60)
    assert "150102001" in table.stdout and "99.72 %" in table.stdout  # town A online rate

    as_csv = subprocess.run(
        [*command, "--format", "csv"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["code"] for r in rows] == ["150102", "150102001", "150102002"]
    known = A_ONLINE + A_OFFLINE + B_ONLINE + B_OFFLINE
    assert float(rows[0]["online_rate"]) == pytest.approx((A_ONLINE + B_ONLINE) / known, abs=1e-6)
    assert float(rows[2]["intact_rate"]) == pytest.approx(
        B_ONLINE / (B_ONLINE + B_OFFLINE), abs=1e-6
    )

    out = tmp_path / "kpi.xlsx"
    subprocess.run(
        [*command, "--format", "xlsx", "--output", str(out)],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
    )
    sheet = load_workbook(out).active
    assert sheet is not None
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][:3] == ("period", "code", "name")
    assert values[1][1] == "150102"
    assert values[2][4] == pytest.approx(A_ONLINE / MONTH_S, abs=1e-6)


async def test_probe_success_counts_follow_reporting_days(store: SqlStore) -> None:
    """Samples either side of local midnight land in their own reporting day on every
    backend (on TimescaleDB through the daily continuous aggregate)."""
    await seed_history(store)
    samples = [
        HealthSampleRow(time=_t(at), device_id="cam-a", ok=ok, observed=observed)
        for at, ok, observed in [
            ("2024-11-20T15:50", True, "online"),  # 23:50 local, Nov 20
            ("2024-11-20T15:59", False, "offline"),  # 23:59 local, Nov 20
            ("2024-11-20T16:01", True, "degraded"),  # 00:01 local, Nov 21
            ("2024-11-21T15:59", True, "online"),  # 23:59 local, Nov 21
        ]
    ]
    repository = HealthRepository(store)
    await repository.record(samples=samples, now=UNTIL)
    for day, expected in [("2024-11-20", (2, 1)), ("2024-11-21", (2, 2))]:
        report = await build_kpi_report(
            repository,
            period=parse_period(day=day),
            until=UNTIL,
            code="150102001",
            scope_paths=None,
        )
        assert (report.node.probes, report.node.ok_probes) == expected, day
    month = await build_kpi_report(
        repository,
        period=parse_period(month="2024-11"),
        until=UNTIL,
        code=None,
        scope_paths=None,
    )
    assert (month.node.probes, month.node.ok_probes) == (4, 3)
    assert month.node.probe_success_rate == pytest.approx(0.75)
