"""Database tables and engines of the registry (docs/registry.md, "One sequencer").

Tables (sqlmodel): the log entries (leaf bytes, leaf hash, and the public subject they are
about, for the per-issuer query), the Merkle nodes of every perfect subtree (``civic.merkle``
``NodeStore`` layout), the tree size, and the published checkpoints with their cosignatures.
Nothing here holds personal data: entries are accreditation events (identifiers, keys, policy).

Engines: SQLite by default, in WAL mode with ``synchronous=FULL`` so that a committed entry
survives a crash before any checkpoint covers it; the driver's own transaction handling is
switched off so that the sequencer can say ``BEGIN IMMEDIATE`` (execution option
``sqlite_begin``). PostgreSQL through a ``postgresql://`` URL (psycopg 3).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import BigInteger, Column, Engine, LargeBinary, Table, Text, event, text
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import Connection
from sqlmodel import Field, SQLModel

SQLITE_BEGIN = "sqlite_begin"
"""Execution option naming the SQLite ``BEGIN`` mode of a connection's next transaction."""

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_SCHEMA_LOCK_KEY = 0x43495649435F5247  # "CIVIC_RG": serialises table creation on PostgreSQL


class EntryRow(SQLModel, table=True):
    __tablename__ = "registry_entries"

    leaf_index: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    leaf: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    event_type: str = Field(sa_column=Column(Text, nullable=False))
    subject: str | None = Field(default=None, sa_column=Column(Text, index=True))
    """The issuer URL or verifier client_id the event is about (public identifiers)."""
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class NodeRow(SQLModel, table=True):
    __tablename__ = "registry_merkle_nodes"

    level: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    node_index: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class TreeStateRow(SQLModel, table=True):
    __tablename__ = "registry_tree_state"

    id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))


class CheckpointRow(SQLModel, table=True):
    __tablename__ = "registry_checkpoints"

    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    """The signed note: log signature plus the witness cosignatures gathered."""
    cosignatures: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


entries_table = _table(EntryRow)
nodes_table = _table(NodeRow)
tree_state_table = _table(TreeStateRow)
checkpoints_table = _table(CheckpointRow)
TABLES = (entries_table, nodes_table, tree_state_table, checkpoints_table)

TREE_STATE_ID = 1


def normalise_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` mean psycopg 3, the driver we ship."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str, *, schema: str | None = None) -> Engine:
    """An engine for the registry tables; ``schema`` places them in a PostgreSQL schema."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = sa_create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Autocommit at the driver level: transactions are begun by the "begin" hook below.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            mode = connection.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
            if mode not in ("DEFERRED", "IMMEDIATE"):
                raise ValueError("unknown SQLite BEGIN mode")
            connection.exec_driver_sql(f"BEGIN {mode}")

        return engine
    # READ COMMITTED: after the advisory lock is granted, the next statement must see the
    # appends committed while we waited (a snapshot taken before the wait would not).
    engine = sa_create_engine(url, pool_pre_ping=True, isolation_level="READ COMMITTED")
    if schema is not None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError("the database schema name must be a plain SQL identifier")
        engine = engine.execution_options(schema_translate_map={None: schema})
    return engine


def create_schema(engine: Engine) -> None:
    """Create the registry tables and the tree-state row if missing; safe to run concurrently."""
    with engine.connect() as plain:
        connection = plain
        if is_sqlite(engine):
            connection = plain.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        with connection.begin():
            if not is_sqlite(engine):
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY}
                )
                schema = connection.get_execution_options().get("schema_translate_map", {})
                if schema.get(None):
                    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema[None]}"'))
            SQLModel.metadata.create_all(connection, tables=list(TABLES))
            exists = connection.execute(
                tree_state_table.select().where(tree_state_table.c.id == TREE_STATE_ID)
            ).first()
            if exists is None:
                connection.execute(tree_state_table.insert().values(id=TREE_STATE_ID, size=0))
