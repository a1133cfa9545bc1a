"""The witness's persistent state: per log origin, the size and root it last cosigned.

tlog-witness ("add-checkpoint"): the witness MUST persist the new checkpoint before responding,
and checking the old size and storing the new one must be atomic, or two requests from the same
old size could both be cosigned and the later write roll the stored size back.
:meth:`WitnessStore.advance` therefore reads, decides and writes in one transaction:

- SQLite: ``BEGIN IMMEDIATE`` takes the database write lock before the read (the driver's own
  transaction handling is switched off so that we choose the ``BEGIN``), WAL with
  ``synchronous=FULL`` so that a committed state survives a crash;
- PostgreSQL: ``SELECT ... FOR UPDATE`` locks the origin's row; a log's first state is an
  ``INSERT`` that fails on the primary key if a concurrent request inserted first;
- and in both, the write is a compare-and-swap (``UPDATE ... WHERE size = :old AND root_hash =
  :old_root``) that must hit exactly one row, so an isolation surprise fails closed.

Tree sizes are stored as signed 64-bit integers, so sizes from 2^63 are refused
(:data:`MAX_STORED_SIZE`). The table holds public log data only (origins, sizes, hashes,
signed checkpoints).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Engine, LargeBinary, Table, Text, event, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from civic.witness import EMPTY_LOG_STATE, LogState, WitnessSizeConflict
from civic_service.db import is_sqlite_url, postgres_engine, sqlite_engine

MAX_STORED_SIZE = (1 << 63) - 1
"""Largest tree size the BIGINT columns hold."""

_SQLITE_BEGIN = "civic_witness_sqlite_begin"


class WitnessLogRow(SQLModel, table=True):
    """One row per log origin the witness has cosigned."""

    __tablename__ = "witness_log_state"

    origin: str = Field(sa_column=Column(Text, primary_key=True))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    checkpoint: str = Field(sa_column=Column(Text, nullable=False))
    """The latest cosigned checkpoint as a note: the log signature(s) the witness verified and
    its own cosignature(s), served to monitors (tlog-witness, "Monitor Retrieval Mechanism")."""
    updated_at: int = Field(sa_column=Column(BigInteger, nullable=False))


def _table() -> Table:
    table = WitnessLogRow.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


log_state_table = _table()


@dataclass(frozen=True)
class StoredLog:
    """A log's row: its state, the cosigned checkpoint note and when it was written."""

    origin: str
    state: LogState
    checkpoint: str
    updated_at: int


Decision = Callable[[LogState], tuple[LogState, str]]
"""Given the stored state, return (new state, cosigned checkpoint note) or raise to refuse."""


def create_witness_engine(url: str, *, schema: str | None = None) -> Engine:
    """An engine for the witness state; ``schema`` places the table in a PostgreSQL schema."""
    if not is_sqlite_url(url):
        return postgres_engine(url, schema=schema)
    engine = sqlite_engine(
        url, ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000"), autocommit_driver=True
    )

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_SQLITE_BEGIN, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    if schema is not None:
        engine = engine.execution_options(schema_translate_map={None: schema})
    return engine


class WitnessStore:
    """The witness state over SQLAlchemy; safe to share between threads and processes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @classmethod
    def open(cls, url: str, *, schema: str | None = None) -> WitnessStore:
        """Connect and create the table if it is missing."""
        store = cls(create_witness_engine(url, schema=schema))
        store.create_tables()
        return store

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def _is_sqlite(self) -> bool:
        return self._engine.dialect.name == "sqlite"

    def create_tables(self) -> None:
        SQLModel.metadata.create_all(self._engine, tables=[log_state_table])

    def drop_tables(self) -> None:
        SQLModel.metadata.drop_all(self._engine, tables=[log_state_table])

    def dispose(self) -> None:
        self._engine.dispose()

    def get(self, origin: str) -> StoredLog | None:
        with self._engine.connect() as connection:
            row = connection.execute(
                select(log_state_table).where(log_state_table.c.origin == origin)
            ).first()
        if row is None:
            return None
        return StoredLog(
            row.origin,
            LogState(int(row.size), bytes(row.root_hash)),
            row.checkpoint,
            int(row.updated_at),
        )

    def state(self, origin: str) -> LogState:
        """The last cosigned state of ``origin``, or the empty tree if it was never cosigned."""
        stored = self.get(origin)
        return stored.state if stored is not None else EMPTY_LOG_STATE

    def advance(self, origin: str, decide: Decision, now: int) -> LogState:
        """Atomically: read ``origin``'s state, let ``decide`` check it, store what it returns.

        Whatever ``decide`` raises propagates after a rollback, with nothing written. If another
        writer got in first despite the lock (or inserted the first row concurrently), raises
        :class:`~civic.witness.WitnessSizeConflict` with the size that writer stored.
        """
        columns = log_state_table.c
        with self._engine.connect() as base:
            connection = base.execution_options(**{_SQLITE_BEGIN: True})
            try:
                with connection.begin():
                    query = select(columns.size, columns.root_hash).where(columns.origin == origin)
                    if not self._is_sqlite:
                        query = query.with_for_update()
                    row = connection.execute(query).first()
                    stored = (
                        LogState(int(row.size), bytes(row.root_hash))
                        if row is not None
                        else EMPTY_LOG_STATE
                    )
                    new_state, checkpoint = decide(stored)
                    values = {
                        "size": new_state.size,
                        "root_hash": new_state.root_hash,
                        "checkpoint": checkpoint,
                        "updated_at": now,
                    }
                    if row is None:
                        connection.execute(log_state_table.insert().values(origin=origin, **values))
                    else:
                        result = connection.execute(
                            log_state_table.update()
                            .where(
                                columns.origin == origin,
                                columns.size == stored.size,
                                columns.root_hash == stored.root_hash,
                            )
                            .values(**values)
                        )
                        if result.rowcount != 1:
                            raise _Lost()
            except (IntegrityError, _Lost):
                pass
            else:
                return new_state
        raise WitnessSizeConflict(self.state(origin).size)


class _Lost(Exception):
    """The compare-and-swap found the row changed: roll back and report the winner's size."""
