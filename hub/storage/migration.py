"""Versioned schema migrations, written once for both SQL dialects.

A migration is a list of statements using a few type placeholders that each
dialect fills in ({TS}, {JSON}, {UUID}, {BOOL}, {BLOB}, {FLOAT}, {ID}). Migrations are
applied in order at start-up (and by `gridwatch migrate`) in one transaction
together with their rows in `schema_version`; a database whose schema is newer
than this code refuses to open. The list lives in `hub.storage.migrations`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["DialectName", "Migration", "OptionalStep", "render"]

#: The backends a migration is written for (`hub.storage.dialect.Dialect` is one by name).
DialectName = Literal["sqlite", "postgresql"]

_TYPES: dict[str, dict[str, str]] = {
    "sqlite": {
        "TS": "TEXT",
        "JSON": "TEXT",
        "UUID": "TEXT",
        "BOOL": "INTEGER",
        "BLOB": "BLOB",
        "FLOAT": "REAL",
        "ID": "INTEGER PRIMARY KEY AUTOINCREMENT",
    },
    "postgresql": {
        "TS": "TIMESTAMPTZ",
        "JSON": "JSONB",
        "UUID": "UUID",
        "BOOL": "BOOLEAN",
        "BLOB": "BYTEA",
        "FLOAT": "DOUBLE PRECISION",
        "ID": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    },
}


@dataclass(frozen=True)
class OptionalStep:
    """PostgreSQL statements that speed things up but are not required.

    They run together in a savepoint, only when `extension` (if named) is
    available to the server; a failure (e.g. no privilege to create the
    extension) is logged and the migration goes on without them. Code must stay
    correct without them.
    """

    purpose: str
    statements: Sequence[str]
    extension: str | None = None


@dataclass(frozen=True)
class Migration:
    """One schema step; `timescale` statements run only where TimescaleDB is present.

    `postgresql` / `sqlite` statements run after the shared ones on that dialect
    only (e.g. an index with an operator class SQLite does not know);
    `optional_postgresql` steps after those (see `OptionalStep`).
    """

    version: int
    name: str
    statements: Sequence[str]
    timescale: Sequence[str] = ()
    postgresql: Sequence[str] = ()
    sqlite: Sequence[str] = ()
    optional_postgresql: Sequence[OptionalStep] = ()

    def statements_for(self, dialect: str) -> list[str]:
        """The shared statements followed by `dialect`'s own."""
        extra = self.postgresql if dialect == "postgresql" else self.sqlite
        return [*self.statements, *extra]


def render(statement: str, dialect: str) -> str:
    """Fill a statement's type placeholders for `dialect`."""
    return statement.format(**_TYPES[dialect])
