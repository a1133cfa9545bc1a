"""Database engines the services share: SQLite by default, PostgreSQL through psycopg 3.

Each service keeps its own tables and SQLite pragmas (durability differs: the registry log needs
``synchronous=FULL``, the verifier's nonce store survives with ``NORMAL`` plus a boot check).
What is the same everywhere lives here: URL spelling, the PostgreSQL engine (pre-ping, so a
restarted server costs one failed checkout rather than every pooled connection; READ COMMITTED,
so a writer that waited on a lock sees what was committed meanwhile), and schema placement.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, Table, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
SQLITE_TIMEOUT_SECONDS = 30
_SQLITE_MEMORY_URLS = ("sqlite://", "sqlite:///:memory:")


def normalise_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` mean psycopg 3, the driver we ship."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite_url(url: str) -> bool:
    return normalise_url(url).startswith("sqlite")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def table_of(model: type[SQLModel]) -> Table:
    """The SQLAlchemy table of a sqlmodel table class (for driver-level SQL)."""
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


def check_schema_name(schema: str) -> str:
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError("the database schema name must be a plain SQL identifier")
    return schema


def sqlite_engine(url: str, pragmas: Sequence[str], *, autocommit_driver: bool) -> Engine:
    """A SQLite engine that runs ``PRAGMA <p>`` for each of ``pragmas`` on every connection.

    ``autocommit_driver`` switches the sqlite3 module's own transaction handling off, for
    services whose ``begin`` hook says ``BEGIN IMMEDIATE`` itself.
    """
    url = normalise_url(url)
    engine = sa_create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_TIMEOUT_SECONDS},
        # One shared connection, or every pooled connection would see its own empty database.
        poolclass=StaticPool if url in _SQLITE_MEMORY_URLS else None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if autocommit_driver:
            dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    return engine


def postgres_engine(url: str, *, schema: str | None = None) -> Engine:
    """A PostgreSQL engine; ``schema`` places the service's tables in that schema."""
    engine = sa_create_engine(
        normalise_url(url), pool_pre_ping=True, isolation_level="READ COMMITTED"
    )
    if schema is not None:
        engine = engine.execution_options(schema_translate_map={None: check_schema_name(schema)})
    return engine


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` means the database cannot be reached right now (down, restarting, a
    connection cut, the pool exhausted), as opposed to a bug or a refused statement.

    Covers SQLAlchemy's wrapped errors and psycopg's own, which code at the driver level
    (a raw pooled connection's cursor, as in the issuer's hot path) sees unwrapped. A service
    answers these with 503 and ``service_unavailable``; its pool (pre-ping) replaces the dead
    connections once the server is back.
    """
    if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        return True
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    # Imported by the PostgreSQL dialect; without it no psycopg error can have been raised
    # (and SQLite deployments do not pay for importing it here).
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return False
    return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)
