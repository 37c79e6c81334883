"""The jurisdiction tree: levels, codes, nodes and materialized paths.

**Codes.** A jurisdiction code is 1-32 characters from ASCII letters, digits and
``-``, starting with a letter or digit; letters are upper-cased on the way in, so
case-insensitive ``LIKE`` (SQLite's default) and case-sensitive ``GLOB`` / ``LIKE``
agree. Codes never contain ``/`` (the path separator), ``%`` / ``_`` (``LIKE``
wildcards) nor ``*``, ``?``, ``[`` (``GLOB`` wildcards), so subtree patterns need
no escaping. The recommended convention, which the
reference district follows, is hierarchical digits: the district's 6-digit GB/T
2260 code (``150102``), then three more digits per level, as in the national
statistics division codes: town/street ``150102001``, village/community
``150102001001``, grid ``150102001001001``, micro-grid ``150102001001001001``.
The convention is not enforced: the tree is defined by `parent_code`.

**Paths.** Each node's path lists the codes from the root down to the node,
each followed by ``/``: ``/150102/150102001/150102001001/``. "Everything under
this node" (the node included) is ``path LIKE '/150102/150102001/%'``, which a
B-tree index on ``path`` answers on PostgreSQL (with ``text_pattern_ops`` or the
``C`` collation). On SQLite use ``path GLOB '/150102/150102001/*'`` (`subtree_glob`)
with a plain index, or ``LIKE`` with ``PRAGMA case_sensitive_like = ON``: SQLite
only uses an index for a ``LIKE`` prefix when it is case-sensitive.

**Levels.** district → town (or street) → village (or community) → grid →
micro-grid. A child's level is deeper than its parent's; a level may be skipped
(a grid directly under a street office that has no communities).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "JURISDICTION_CODE_PATTERN",
    "JurisdictionCode",
    "JurisdictionCodeStr",
    "JurisdictionLevel",
    "JurisdictionNode",
    "JurisdictionTreeError",
    "TreeProblem",
    "build_tree",
    "check_child_level",
    "is_within",
    "path_codes",
    "path_of",
    "subtree_glob",
    "subtree_pattern",
    "validate_jurisdiction_code",
]

#: What a jurisdiction code looks like once upper-cased (see the module docstring).
JURISDICTION_CODE_PATTERN = re.compile(r"[0-9A-Z][0-9A-Z\-]{0,31}")
_PATH_PATTERN = re.compile(r"(/[0-9A-Z][0-9A-Z\-]{0,31})+/")


class JurisdictionLevel(StrEnum):
    """The levels of the tree, from the top down."""

    DISTRICT = "district"
    TOWN = "town"
    VILLAGE = "village"
    GRID = "grid"
    MICRO_GRID = "micro_grid"

    @property
    def depth(self) -> int:
        """0 for district, 4 for micro-grid."""
        return _LEVEL_ORDER.index(self)


_LEVEL_ORDER: tuple[JurisdictionLevel, ...] = tuple(JurisdictionLevel)


def validate_jurisdiction_code(value: str) -> str:
    """Return `value` upper-cased if it is a usable jurisdiction code, else raise ValueError."""
    code = value.upper() if isinstance(value, str) and value.isascii() else None
    if code is None or not JURISDICTION_CODE_PATTERN.fullmatch(code):
        raise ValueError(
            f"invalid jurisdiction code {value!r}: expected 1-32 ASCII letters, digits or '-'"
        )
    return code


#: A jurisdiction code inside pydantic models (a validated `str`).
JurisdictionCodeStr = Annotated[str, AfterValidator(validate_jurisdiction_code)]


@dataclass(frozen=True, slots=True)
class JurisdictionCode:
    """A validated jurisdiction code; `str(code)` gives it back."""

    value: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", validate_jurisdiction_code(self.value))

    def __str__(self) -> str:
        return self.value


class JurisdictionNode(BaseModel):
    """One node of the tree. Chinese names are normal data."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    code: JurisdictionCodeStr
    name: str = Field(min_length=1, max_length=64, description="e.g. 新华街道")
    level: JurisdictionLevel
    parent_code: JurisdictionCodeStr | None = Field(
        default=None, description="None for a root node (normally the district)"
    )

    @model_validator(mode="after")
    def _not_own_parent(self) -> JurisdictionNode:
        if self.parent_code == self.code:
            raise ValueError(f"jurisdiction {self.code} cannot be its own parent")
        return self


def check_child_level(parent: JurisdictionNode, child: JurisdictionNode) -> None:
    """Raise ValueError unless `child`'s level is deeper than `parent`'s."""
    if child.level.depth <= parent.level.depth:
        raise ValueError(
            f"jurisdiction {child.code} is a {child.level} and cannot sit under "
            f"{parent.code}, a {parent.level}: a child's level must be deeper"
        )


def path_codes(path: str) -> list[str]:
    """Return the codes of a path from the root down; raise ValueError on a bad path."""
    if not _PATH_PATTERN.fullmatch(path):
        raise ValueError(f"invalid jurisdiction path {path!r}: expected '/code/.../code/'")
    return path.strip("/").split("/")


def path_of(node: JurisdictionNode, parent_path: str | None) -> str:
    """Return `node`'s materialized path given its parent's path (None for a root)."""
    if node.parent_code is None:
        if parent_path is not None:
            raise ValueError(f"jurisdiction {node.code} is a root and takes no parent path")
        return f"/{node.code}/"
    if parent_path is None:
        raise ValueError(f"jurisdiction {node.code} needs its parent {node.parent_code}'s path")
    ancestors = path_codes(parent_path)
    if ancestors[-1] != node.parent_code:
        raise ValueError(
            f"path {parent_path!r} does not end at {node.code}'s parent {node.parent_code}"
        )
    if node.code in ancestors:
        raise ValueError(f"jurisdiction {node.code} would be its own ancestor")
    return f"{parent_path}{node.code}/"


def subtree_pattern(path: str) -> str:
    """Return the SQL LIKE pattern matching `path` and everything under it."""
    path_codes(path)
    return f"{path}%"


def subtree_glob(path: str) -> str:
    """Return the SQL GLOB pattern matching `path` and everything under it."""
    path_codes(path)
    return f"{path}*"


def is_within(path: str, ancestor_path: str) -> bool:
    """True if `path` is `ancestor_path` or lies under it."""
    return path.startswith(ancestor_path)


@dataclass(frozen=True, slots=True)
class TreeProblem:
    """Why one node cannot be placed in the tree."""

    code: str
    reason: str


class JurisdictionTreeError(ValueError):
    """The nodes do not form a tree; `problems` lists every cause found."""

    def __init__(self, problems: Iterable[TreeProblem]) -> None:
        self.problems: tuple[TreeProblem, ...] = tuple(problems)
        summary = "; ".join(f"{p.code}: {p.reason}" for p in self.problems[:5])
        more = len(self.problems) - 5
        suffix = f" (and {more} more)" if more > 0 else ""
        super().__init__(f"invalid jurisdiction tree: {summary}{suffix}")


def build_tree(nodes: Iterable[JurisdictionNode]) -> dict[str, str]:
    """Return every node's path by code, or raise JurisdictionTreeError.

    Reported: duplicate codes, orphans (parent not among `nodes`), cycles, and
    children whose level is not deeper than their parent's. Nodes beneath a broken
    node are not reported separately: fixing the cause fixes them.
    """
    by_code: dict[str, JurisdictionNode] = {}
    problems: list[TreeProblem] = []
    for node in nodes:
        if node.code in by_code:
            problems.append(TreeProblem(node.code, "code appears more than once"))
            continue
        by_code[node.code] = node

    for node in by_code.values():
        parent = by_code.get(node.parent_code) if node.parent_code is not None else None
        if node.parent_code is not None and parent is None:
            problems.append(
                TreeProblem(node.code, f"parent {node.parent_code} is not in the tree (orphan)")
            )
        elif parent is not None:
            try:
                check_child_level(parent, node)
            except ValueError as exc:
                problems.append(TreeProblem(node.code, str(exc)))

    paths: dict[str, str] = {}
    broken: set[str] = set()
    for start in by_code:
        chain: list[str] = []
        on_chain: set[str] = set()
        current: str | None = start
        # Walk up until a node whose path is known, a root, or trouble.
        while current is not None and current not in paths and current not in broken:
            if current in on_chain:
                cycle = chain[chain.index(current) :]
                problems.append(TreeProblem(current, "cycle: " + " → ".join([*cycle, current])))
                broken.update(chain)
                chain = []
                break
            walked = by_code.get(current)
            if walked is None:  # orphan, already reported
                broken.update(chain)
                chain = []
                break
            chain.append(current)
            on_chain.add(current)
            current = walked.parent_code
        if current is not None and current in broken:
            broken.update(chain)
            continue
        for code in reversed(chain):
            node = by_code[code]
            parent_path = paths[node.parent_code] if node.parent_code is not None else None
            paths[code] = path_of(node, parent_path)

    if problems:
        raise JurisdictionTreeError(problems)
    return paths
