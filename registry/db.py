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

from sqlalchemy import BigInteger, Column, Engine, LargeBinary, Text, event, text
from sqlalchemy.engine import Connection
from sqlmodel import Field, SQLModel

from civic_service.db import is_sqlite, is_sqlite_url, postgres_engine, sqlite_engine, table_of

SQLITE_BEGIN = "sqlite_begin"
"""Execution option naming the SQLite ``BEGIN`` mode of a connection's next transaction."""

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


entries_table = table_of(EntryRow)
nodes_table = table_of(NodeRow)
tree_state_table = table_of(TreeStateRow)
checkpoints_table = table_of(CheckpointRow)
TABLES = (entries_table, nodes_table, tree_state_table, checkpoints_table)

TREE_STATE_ID = 1


def create_engine(url: str, *, schema: str | None = None) -> Engine:
    """An engine for the registry tables; ``schema`` places them in a PostgreSQL schema."""
    if is_sqlite_url(url):
        # Autocommit at the driver level: transactions are begun by the "begin" hook below.
        engine = sqlite_engine(
            url,
            ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000"),
            autocommit_driver=True,
        )

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            mode = connection.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
            if mode not in ("DEFERRED", "IMMEDIATE"):
                raise ValueError("unknown SQLite BEGIN mode")
            connection.exec_driver_sql(f"BEGIN {mode}")

        return engine
    # READ COMMITTED matters here: after the advisory lock is granted, the next statement must
    # see the appends committed while we waited.
    return postgres_engine(url, schema=schema)


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
