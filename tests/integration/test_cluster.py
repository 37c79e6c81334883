"""Several hub nodes on one PostgreSQL: membership, singleton jobs, devices split and moved.

The members are separate processes (`cluster_child`), killed with SIGKILL where a
node dies: nothing of theirs gets to say goodbye, so what moves is moved by the
survivors' reading of the heartbeat table and by PostgreSQL ending the dead
session's advisory locks.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from hub.config import load_settings
from hub.runtime import Hub
from tests.helpers import act_as
from tests.integration.cluster_child import DEVICES

ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT_S = 0.5
TIMEOUT_S = 3.0
HUB_JOBS = {"alarm-sla", "task-deadlines", "retention", "registry-counts"}


@contextmanager
def member(url: str, node: str, out: Path) -> Iterator[subprocess.Popen[str]]:
    """A cluster member in its own process; SIGTERM (then SIGKILL) at the end."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.cluster_child",
            url,
            node,
            str(out),
            f"--heartbeat={HEARTBEAT_S}",
            f"--timeout={TIMEOUT_S}",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert ready.split() == ["READY", node], f"member {node} did not start ({process.poll()})"
        yield process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


def ownership(out: Path, node: str) -> list[tuple[float, str, str]]:
    """(time, '+' or '-', device) lines of one member's ownership log."""
    path = out / f"{node}.log"
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        at, change = line.split(" ", 1)
        entries.append((float(at), change[0], change[1:]))
    return entries


def owned_now(out: Path, node: str) -> set[str]:
    """What the member owns after the last line of its log."""
    owned: set[str] = set()
    for _, sign, device in ownership(out, node):
        (owned.add if sign == "+" else owned.discard)(device)
    return owned


def intervals(out: Path, node: str, end: float) -> dict[str, list[tuple[float, float]]]:
    """Per device, the [from, to) times the member owned it (open ones closed at `end`)."""
    held: dict[str, float] = {}
    spans: dict[str, list[tuple[float, float]]] = {}
    for at, sign, device in ownership(out, node):
        if sign == "+":
            held[device] = at
        elif device in held:
            spans.setdefault(device, []).append((held.pop(device), at))
    for device, since in held.items():
        spans.setdefault(device, []).append((since, end))
    return spans


def job_ticks(out: Path, node: str) -> list[float]:
    """When the member's singleton job ran (a tick every 50 ms while it holds the lock)."""
    path = out / f"{node}.job"
    if not path.exists():
        return []
    return [float(line) for line in path.read_text(encoding="utf-8").split()]


def wait_for(condition: object, timeout_s: float, what: str) -> float:
    """Poll `condition()` every 100 ms; the seconds it took, or fail naming `what`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if condition():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout_s} s")


def split_is_complete(out: Path, nodes: list[str]) -> bool:
    """Every device owned by exactly one of `nodes`, and each of them owning some."""
    sets = [owned_now(out, node) for node in nodes]
    if not all(sets):
        return False
    total = sum(len(s) for s in sets)
    return total == len(DEVICES) and set().union(*sets) == set(DEVICES)


def assert_no_overlap(out: Path, nodes: list[str], end: float, killed: dict[str, float]) -> None:
    """No device was owned by two members at the same moment (a killed member owns
    nothing after its kill)."""
    spans: dict[str, list[tuple[float, float, str]]] = {}
    for node in nodes:
        for device, held in intervals(out, node, killed.get(node, end)).items():
            for start, stop in held:
                spans.setdefault(device, []).append(
                    (start, min(stop, killed.get(node, stop)), node)
                )
    for device, owned in spans.items():
        owned.sort()
        for (_, stop, first), (start, _, second) in itertools.pairwise(owned):
            assert start >= stop, f"{device} owned by {first} and {second} at once"


@pytest.mark.timeout(120)
def test_devices_split_across_three_nodes_and_move_without_doubles(
    pg_dsn: str, tmp_path: Path
) -> None:
    nodes = ["node-a", "node-b", "node-c"]
    with ExitStack() as stack:
        stack.enter_context(member(pg_dsn, nodes[0], tmp_path))
        # One node alone owns everything and runs the job.
        wait_for(lambda: split_is_complete(tmp_path, nodes[:1]), 10, "node-a owning all")
        stack.enter_context(member(pg_dsn, nodes[1], tmp_path))
        wait_for(lambda: split_is_complete(tmp_path, nodes[:2]), 15, "a split over two nodes")
        third = stack.enter_context(member(pg_dsn, nodes[2], tmp_path))
        wait_for(lambda: split_is_complete(tmp_path, nodes), 15, "a split over three nodes")
        shares = [len(owned_now(tmp_path, node)) for node in nodes]
        # Rendezvous hashing spreads 240 devices roughly evenly (80 each).
        assert all(40 <= share <= 120 for share in shares), shares

        # kill -9 of the third: the two others take its devices.
        killed_at = time.time()
        os.kill(third.pid, signal.SIGKILL)
        third.wait(timeout=5)
        took = wait_for(
            lambda: split_is_complete(tmp_path, nodes[:2]), 30, "takeover of a dead node's devices"
        )
        # Silence past the timeout, then at most one heartbeat to notice it.
        assert took <= TIMEOUT_S + 3 * HEARTBEAT_S + 1.0, took
        assert_no_overlap(tmp_path, nodes, time.time(), {nodes[2]: killed_at})


@pytest.mark.timeout(120)
def test_singleton_job_runs_on_one_node_and_moves_after_kill(pg_dsn: str, tmp_path: Path) -> None:
    with ExitStack() as stack:
        first = stack.enter_context(member(pg_dsn, "node-a", tmp_path))
        stack.enter_context(member(pg_dsn, "node-b", tmp_path))
        wait_for(lambda: len(job_ticks(tmp_path, "node-a")) > 10, 10, "the job on node-a")
        time.sleep(1.0)
        # node-b never ran it while node-a held the lock.
        assert job_ticks(tmp_path, "node-b") == []
        killed_at = time.time()
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=5)
        took = wait_for(lambda: job_ticks(tmp_path, "node-b"), 30, "the job moving to node-b")
        # PostgreSQL ends the killed session (its socket closed) at once; node-b
        # tries the lock at its next heartbeat.
        assert took <= 2 * HEARTBEAT_S + 2.0, took
        assert max(job_ticks(tmp_path, "node-a")) <= killed_at + 0.05
        assert min(job_ticks(tmp_path, "node-b")) > killed_at


async def test_cluster_nodes_route_lists_states_for_admins_only(
    pg_dsn: str, tmp_path: Path
) -> None:
    settings = load_settings(
        None,
        data_dir=tmp_path / "a",
        node_id="hub-a",
        storage={"url": pg_dsn},
        cluster={"heartbeat_s": 0.5, "node_timeout_s": 5.0, "handover_s": 1.0},
    )
    other = load_settings(
        None,
        data_dir=tmp_path / "b",
        node_id="hub-b",
        storage={"url": pg_dsn},
        http={"port": 8081},
        cluster={"heartbeat_s": 0.5, "node_timeout_s": 5.0, "handover_s": 1.0},
    )
    async with Hub(settings) as hub_a:
        app = hub_a.app()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            hub_b = Hub(other)
            await hub_b.start()
            try:
                act_as(app, "admin")
                body = (await client.get("/api/cluster/nodes")).json()
                assert body["mode"] == "cluster" and body["node_id"] == "hub-a"
                states = {n["node_id"]: n["state"] for n in body["nodes"]}
                assert states == {"hub-a": "alive", "hub-b": "alive"}
                # The jobs the table reports were taken at start; a later beat says so.
                for _ in range(100):
                    body = (await client.get("/api/cluster/nodes")).json()
                    jobs = {n["node_id"]: set(n["jobs"]) for n in body["nodes"]}
                    if jobs["hub-a"]:
                        break
                    await asyncio.sleep(0.1)
                assert jobs["hub-a"] == HUB_JOBS
                assert jobs["hub-b"] == set()
                act_as(app, "operator")
                assert (await client.get("/api/cluster/nodes")).status_code == 403
            finally:
                await hub_b.stop()
            act_as(app, "admin")
            body = (await client.get("/api/cluster/nodes")).json()
            states = {n["node_id"]: n["state"] for n in body["nodes"]}
            assert states == {"hub-a": "alive", "hub-b": "stopped"}


async def test_sqlite_hub_is_one_node_running_everything(tmp_path: Path) -> None:
    async with Hub(load_settings(None, data_dir=tmp_path, node_id="solo")) as hub:
        app = hub.app()
        act_as(app, "admin")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            body = (await client.get("/api/cluster/nodes")).json()
        assert body["mode"] == "single"
        assert [n["node_id"] for n in body["nodes"]] == ["solo"]
        assert hub.cluster.is_mine("any-device")
        assert set(hub.cluster.jobs) == {
            "alarm-sla",
            "task-deadlines",
            "retention",
            "registry-counts",
        }


async def test_nodes_starting_together_on_an_empty_database_all_start(
    pg_dsn: str, tmp_path: Path
) -> None:
    hubs = [
        Hub(
            load_settings(
                None,
                data_dir=tmp_path / name,
                node_id=name,
                storage={"url": pg_dsn},
                cluster={"heartbeat_s": 0.5, "node_timeout_s": 5.0, "handover_s": 1.0},
            )
        )
        for name in ("hub-a", "hub-b", "hub-c")
    ]
    try:
        await asyncio.gather(*(hub.start() for hub in hubs))
        # One first administrator for the cluster, told to whichever node made it.
        assert [hub.first_admin_password is not None for hub in hubs].count(True) == 1
        users = await hubs[0].auth.users()
        assert [user.username for user in users] == ["admin"]
    finally:
        for hub in hubs:
            await hub.stop()
