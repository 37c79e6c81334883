"""What differs between the SQL of SQLite and of PostgreSQL, in one object.

Storage modules ask the store's `dialect` for the piece of SQL that differs
(row locks, array membership, case-insensitive LIKE, JSON array membership,
the change-log lock, reading a table's columns) instead of branching on the
backend's name. A `Dialect` is also the backend's name as a string
(`"sqlite"` / `"postgresql"`), so migrations keep rendering by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from hub.storage.base import Tx

__all__ = ["POSTGRESQL", "SQLITE", "Dialect"]


class Dialect(str):
    """One SQL dialect: the backend's name plus the SQL that differs on it."""

    __slots__ = ()

    @property
    def is_postgresql(self) -> bool:
        """True on PostgreSQL (and TimescaleDB)."""
        return self == "postgresql"

    @property
    def bulk_arrays(self) -> bool:
        """True when many rows go as one statement of array parameters (unnest, COPY);
        otherwise as multi-row VALUES lists."""
        return self.is_postgresql

    def row_lock(self, wanted: bool = True) -> str:
        """` FOR UPDATE` where rows can be locked for the transaction (SQLite's single
        writer needs none)."""
        return " FOR UPDATE" if wanted and self.is_postgresql else ""

    def skip_locked(self) -> str:
        """` FOR UPDATE SKIP LOCKED`: claim rows other transactions do not hold."""
        return " FOR UPDATE SKIP LOCKED" if self.is_postgresql else ""

    def ilike(self) -> str:
        """The case-insensitive LIKE operator (SQLite's LIKE is one for ASCII)."""
        return "ILIKE" if self.is_postgresql else "LIKE"

    def unindexed(self, column: str) -> str:
        """`column` kept out of index choice where the planner needs telling (SQLite `+`)."""
        return column if self.is_postgresql else f"+{column}"

    def subtree(self, column: str, path: str, glob: str) -> tuple[str, list[Any]]:
        """`column` starts with the materialized `path` (`glob`: the same as a GLOB pattern).

        SQLite uses an index only for GLOB (its LIKE ignores case); PostgreSQL
        answers LIKE 'prefix%' from a text_pattern_ops index.
        """
        if self.is_postgresql:
            return f"{column} LIKE %s", [path + "%"]
        return f"{column} GLOB %s", [glob]

    def analyze_sample(self) -> str | None:
        """A statement that makes ANALYZE sample rather than read whole tables, if needed."""
        return None if self.is_postgresql else "PRAGMA analysis_limit = 1000"

    def one_of(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """`column` is one of `values`: one array parameter on PostgreSQL (the same
        statement text for any number of values), an IN list on SQLite."""
        if self.is_postgresql:
            return f"{column} = ANY(%b::text[])", [list(values)]
        return f"{column} IN ({', '.join('%s' for _ in values)})", list(values)

    def json_array_contains(self, column: str, value: Any) -> tuple[str, list[Any]]:
        """The JSON array in `column` contains `value`."""
        if self.is_postgresql:
            return f"{column} @> %s::jsonb", [Jsonb([value])]
        sql = f"EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.value = %s)"  # noqa: S608 - a column name of the caller's
        return sql, [value]

    def transaction_lock(self, key: int) -> str | None:
        """A statement taking an exclusive lock on `key` until the transaction ends, where
        writers run concurrently (PostgreSQL); None where there is one writer (SQLite)."""
        return f"SELECT pg_advisory_xact_lock({int(key)})" if self.is_postgresql else None

    async def table_exists(self, tx: Tx, table: str) -> bool:
        """True when `table` exists."""
        if self.is_postgresql:
            row = await tx.fetchone("SELECT to_regclass(%s) IS NOT NULL", (table,))
            return bool(row and row[0])
        row = await tx.fetchone(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = %s", (table,)
        )
        return row is not None

    async def columns(self, tx: Tx, table: str) -> frozenset[str]:
        """The names of `table`'s columns."""
        if self.is_postgresql:
            rows = await tx.fetchall(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = %s AND table_schema = current_schema()",
                (table,),
            )
            return frozenset(str(row[0]) for row in rows)
        rows = await tx.fetchall(f"PRAGMA table_info({table})")
        return frozenset(str(row[1]) for row in rows)


SQLITE = Dialect("sqlite")
POSTGRESQL = Dialect("postgresql")
