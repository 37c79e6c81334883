"""Jurisdiction codes, levels, materialized paths and tree building."""

from __future__ import annotations

import sqlite3

import pytest
from pydantic import ValidationError

from camera_registry import (
    JurisdictionCode,
    JurisdictionLevel,
    JurisdictionNode,
    JurisdictionTreeError,
    build_tree,
    check_child_level,
    is_within,
    path_codes,
    path_of,
    subtree_glob,
    subtree_pattern,
)

L = JurisdictionLevel


def node(code: str, name: str, level: JurisdictionLevel, parent: str | None) -> JurisdictionNode:
    return JurisdictionNode(code=code, name=name, level=level, parent_code=parent)


DISTRICT_TREE = [
    node("150102", "新城区", L.DISTRICT, None),
    node("150102001", "海拉尔东路街道", L.TOWN, "150102"),
    node("150102002", "锡林郭勒北路街道", L.TOWN, "150102"),
    node("150102001001", "东风路社区", L.VILLAGE, "150102001"),
    node("150102001001001", "东风路第一网格", L.GRID, "150102001001"),
    node("150102001001001001", "东风路1号院微网格", L.MICRO_GRID, "150102001001001"),
    # A grid directly under a street office that has no communities.
    node("150102002901", "锡林北路直属网格", L.GRID, "150102002"),
]


def test_levels_are_ordered_from_district_down() -> None:
    assert [level.depth for level in L] == [0, 1, 2, 3, 4]
    assert L.MICRO_GRID.depth > L.GRID.depth > L.VILLAGE.depth > L.TOWN.depth


@pytest.mark.parametrize("code", ["150102", "150102001001001001", "WG-07", "a" * 32])
def test_codes_accepted(code: str) -> None:
    assert str(JurisdictionCode(code)) == code.upper()


@pytest.mark.parametrize(
    "code",
    ["", "a" * 33, "15/01", "150%", "150_1", "-150", "新城区", "150 102", "15*", "1?", "[1]"],
)
def test_codes_that_would_break_paths_or_patterns_are_refused(code: str) -> None:
    with pytest.raises(ValueError, match="invalid jurisdiction code"):
        JurisdictionCode(code)


def test_codes_are_upper_cased_everywhere() -> None:
    assert JurisdictionCode("wg-07") == JurisdictionCode("WG-07")
    assert node("wg-07", "网格", L.GRID, "wg").code == "WG-07"


def test_node_holds_chinese_names_and_refuses_bad_values() -> None:
    district = node("150102", "新城区", L.DISTRICT, None)
    assert district.name == "新城区"
    with pytest.raises(ValidationError):
        node("150102", "", L.DISTRICT, None)
    with pytest.raises(ValidationError, match="own parent"):
        node("150102", "新城区", L.DISTRICT, "150102")
    with pytest.raises(ValidationError):
        JurisdictionNode.model_validate(
            {"code": "1", "name": "x", "level": "province", "parent_code": None}
        )


def test_path_of_builds_prefix_paths() -> None:
    root = path_of(DISTRICT_TREE[0], None)
    town = path_of(DISTRICT_TREE[1], root)
    village = path_of(DISTRICT_TREE[3], town)
    assert root == "/150102/"
    assert town == "/150102/150102001/"
    assert village == "/150102/150102001/150102001001/"
    assert path_codes(village) == ["150102", "150102001", "150102001001"]
    assert is_within(village, town)
    assert not is_within(town, village)


def test_path_of_refuses_inconsistent_input() -> None:
    with pytest.raises(ValueError, match="needs its parent"):
        path_of(DISTRICT_TREE[1], None)
    with pytest.raises(ValueError, match="takes no parent path"):
        path_of(DISTRICT_TREE[0], "/1/")
    with pytest.raises(ValueError, match="does not end at"):
        path_of(DISTRICT_TREE[3], "/150102/150102002/")
    with pytest.raises(ValueError, match="invalid jurisdiction path"):
        path_of(DISTRICT_TREE[1], "150102")


def test_child_level_must_be_deeper() -> None:
    district, town = DISTRICT_TREE[0], DISTRICT_TREE[1]
    check_child_level(district, town)
    with pytest.raises(ValueError, match="must be deeper"):
        check_child_level(town, node("150102001999", "同级", L.TOWN, "150102001"))


def test_build_tree_gives_every_node_its_path() -> None:
    paths = build_tree(reversed(DISTRICT_TREE))  # order of input does not matter
    assert paths == {
        "150102": "/150102/",
        "150102001": "/150102/150102001/",
        "150102002": "/150102/150102002/",
        "150102001001": "/150102/150102001/150102001001/",
        "150102001001001": "/150102/150102001/150102001001/150102001001001/",
        "150102001001001001": (
            "/150102/150102001/150102001001/150102001001001/150102001001001001/"
        ),
        "150102002901": "/150102/150102002/150102002901/",
    }


def test_build_tree_reports_orphans_cycles_levels_and_duplicates_together() -> None:
    nodes = [
        *DISTRICT_TREE,
        node("150102003001", "无上级社区", L.VILLAGE, "150102003"),  # orphan
        node("X1", "环一", L.GRID, "X2"),  # cycle X1 -> X2 -> X1
        node("X2", "环二", L.MICRO_GRID, "X1"),
        node("150102001002", "级别倒挂", L.TOWN, "150102001"),  # town under a town
        node("150102001", "重复", L.TOWN, "150102"),  # duplicate code
    ]
    with pytest.raises(JurisdictionTreeError) as caught:
        build_tree(nodes)
    problems = {(p.code, p.reason.split(":")[0]) for p in caught.value.problems}
    reasons = " | ".join(p.reason for p in caught.value.problems)
    assert ("150102003001", "parent 150102003 is not in the tree (orphan)") in problems
    assert "cycle" in reasons and "X1" in reasons and "X2" in reasons
    assert any(p.code == "150102001002" and "deeper" in p.reason for p in caught.value.problems)
    assert any(
        p.code == "150102001" and "more than once" in p.reason for p in caught.value.problems
    )
    assert "invalid jurisdiction tree" in str(caught.value)


def test_subtree_patterns_find_everything_under_a_node_with_an_index() -> None:
    """The paths do what storage needs: a prefix query that an index answers."""
    paths = build_tree(DISTRICT_TREE)
    town_path = paths["150102001"]
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE TABLE j (code TEXT PRIMARY KEY, path TEXT NOT NULL)")
        db.execute("CREATE INDEX j_path ON j (path)")
        db.executemany("INSERT INTO j VALUES (?, ?)", paths.items())
        glob = db.execute(
            "SELECT code FROM j WHERE path GLOB ? ORDER BY code", (subtree_glob(town_path),)
        ).fetchall()
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT code FROM j WHERE path GLOB ?", (subtree_glob(town_path),)
        ).fetchall()
        db.execute("PRAGMA case_sensitive_like = ON")
        like = db.execute(
            "SELECT code FROM j WHERE path LIKE ? ORDER BY code", (subtree_pattern(town_path),)
        ).fetchall()
    finally:
        db.close()
    expected = [("150102001",), ("150102001001",), ("150102001001001",), ("150102001001001001",)]
    assert glob == expected
    assert like == expected
    assert "USING COVERING INDEX j_path" in str(plan) or "USING INDEX j_path" in str(plan)
