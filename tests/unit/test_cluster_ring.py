"""Rendezvous ownership and the handover rule that keeps a device off two nodes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.cluster.config import ClusterSettings
from hub.cluster.ring import Handover, owner

DEVICES = [f"cam-{n:05d}" for n in range(3000)]
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def test_owner_is_the_same_on_every_node_and_spreads_evenly() -> None:
    nodes = ["n1", "n2", "n3"]
    owners = [owner(device, nodes) for device in DEVICES]
    assert owners == [owner(device, list(reversed(nodes))) for device in DEVICES]
    counts = {node: owners.count(node) for node in nodes}
    assert all(900 <= count <= 1100 for count in counts.values()), counts
    assert owner("cam-1", []) is None


def test_only_the_leaving_nodes_devices_move() -> None:
    before = {device: owner(device, ["n1", "n2", "n3"]) for device in DEVICES}
    after = {device: owner(device, ["n1", "n2"]) for device in DEVICES}
    moved = {device for device in DEVICES if before[device] != after[device]}
    assert moved == {device for device in DEVICES if before[device] == "n3"}


def test_a_joining_node_waits_for_the_handover_a_dead_nodes_devices_move_at_once() -> None:
    old = Handover("n1", timedelta(seconds=10))
    old.see({"n1", "n2"}, T0 - timedelta(seconds=30))
    assert not any(old.is_mine(d) for d in DEVICES), "n2 was there first: n1 waits"
    assert old.see({"n1", "n2"}, T0 - timedelta(seconds=15))
    assert {d for d in DEVICES if old.is_mine(d)} == {
        d for d in DEVICES if owner(d, ["n1", "n2"]) == "n1"
    }
    joiner = Handover("n3", timedelta(seconds=10))
    joiner.see({"n1", "n2", "n3"}, T0)
    # The joiner's share is still n1's and n2's: it waits.
    assert not any(joiner.is_mine(d) for d in DEVICES)
    # n1 sees the join and lets go at once of what moves to n3.
    assert old.see({"n1", "n2", "n3"}, T0 + timedelta(seconds=1))
    mine = {d for d in DEVICES if old.is_mine(d)}
    assert mine == {d for d in DEVICES if owner(d, ["n1", "n2", "n3"]) == "n1"}
    # n2 dies during the handover: its devices that go to n3 are n3's at once.
    assert joiner.see({"n1", "n3"}, T0 + timedelta(seconds=2))
    taken = {d for d in DEVICES if joiner.is_mine(d)}
    assert taken == {
        d for d in DEVICES if owner(d, ["n1", "n2"]) == "n2" and owner(d, ["n1", "n3"]) == "n3"
    }
    # After the handover the joiner owns its whole share.
    assert joiner.see({"n1", "n3"}, T0 + timedelta(seconds=10))
    assert {d for d in DEVICES if joiner.is_mine(d)} == {
        d for d in DEVICES if owner(d, ["n1", "n3"]) == "n3"
    }


def test_first_node_owns_everything_at_once_and_a_fenced_node_nothing() -> None:
    alone = Handover("n1", timedelta(seconds=10))
    alone.see({"n1"}, T0)
    assert all(alone.is_mine(d) for d in DEVICES[:100])
    # Out of the cluster (its heartbeat stale): owns nothing.
    assert alone.see(set(), T0 + timedelta(seconds=12))
    assert not any(alone.is_mine(d) for d in DEVICES[:100])
    # Back alone: everything again, at once (nobody else holds anything).
    assert alone.see({"n1"}, T0 + timedelta(seconds=13))
    assert all(alone.is_mine(d) for d in DEVICES[:100])


def test_settings_refuse_a_timeout_shorter_than_two_heartbeats() -> None:
    with pytest.raises(ValueError, match="two heartbeats"):
        ClusterSettings(heartbeat_s=10, node_timeout_s=15)
    assert ClusterSettings().node_timeout_s == 15
