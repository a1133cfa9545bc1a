"""Verifier tables (sqlmodel): presentation requests, nonces, and the audit log.

- ``verifier_requests``: one OpenID4VP request per row (id, policy, nonce, state, expiry, its
  status and, once answered, the staff verdict). The verdict holds the requested claim values
  for the counter screen, so rows are purged ``RETENTION`` seconds after they expire.
- ``verifier_nonces``: nonces this verifier issued (request nonces and offline counter
  challenges) and when each was spent; the database replay store (:mod:`verifier.replay`).
- ``verifier_audit``: one row per verdict: time, kind, policy, result, reason codes, vct and
  issuer identifiers, checkpoint size. Never a claim value.

SQLite (WAL) by default; PostgreSQL through ``DATABASE_URL`` for several replicas, optionally
in a schema of its own (``schema``), which tests use to run isolated.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import BigInteger, Column, Engine, Integer, Table, Text, event, text
from sqlalchemy import create_engine as sa_create_engine
from sqlmodel import Field, SQLModel

RETENTION = 3600
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_SCHEMA_LOCK_KEY = 0x43495649435F5646  # "CIVIC_VF": serialises table creation on PostgreSQL


class RequestRow(SQLModel, table=True):
    __tablename__ = "verifier_requests"

    id: str = Field(sa_column=Column(Text, primary_key=True))
    policy_id: str = Field(sa_column=Column(Text, nullable=False))
    nonce: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    state: str = Field(sa_column=Column(Text, nullable=False))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    expires_at: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    status: str = Field(sa_column=Column(Text, nullable=False))
    """pending -> processing -> answered (or expired, read from ``expires_at``)."""
    verdict: str | None = Field(default=None, sa_column=Column(Text))


class NonceRow(SQLModel, table=True):
    __tablename__ = "verifier_nonces"

    nonce: str = Field(sa_column=Column(Text, primary_key=True))
    expires_at: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    used_at: int | None = Field(default=None, sa_column=Column(BigInteger))


class AuditRow(SQLModel, table=True):
    __tablename__ = "verifier_audit"

    # INTEGER on SQLite: only that type aliases the rowid and autoincrements.
    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    at: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    kind: str = Field(sa_column=Column(Text, nullable=False))
    """``response`` (OpenID4VP) or ``offline`` (POST /verify)."""
    request_id: str | None = Field(default=None, sa_column=Column(Text))
    policy_id: str = Field(sa_column=Column(Text, nullable=False))
    result: str = Field(sa_column=Column(Text, nullable=False))
    reasons: str = Field(sa_column=Column(Text, nullable=False))
    """Space-separated reason codes, in check order."""
    vct: str = Field(sa_column=Column(Text, nullable=False))
    issuer: str = Field(sa_column=Column(Text, nullable=False))
    checkpoint_size: int | None = Field(default=None, sa_column=Column(BigInteger))


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


requests_table = _table(RequestRow)
nonces_table = _table(NonceRow)
audit_table = _table(AuditRow)
TABLES = (requests_table, nonces_table, audit_table)


def normalise_url(url: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_engine(url: str, *, schema: str | None = None) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = sa_create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    engine = sa_create_engine(url, pool_pre_ping=True, isolation_level="READ COMMITTED")
    if schema is not None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError("the database schema name must be a plain SQL identifier")
        engine = engine.execution_options(schema_translate_map={None: schema})
    return engine


def create_schema(engine: Engine) -> None:
    """Create the tables if missing; safe when several replicas start at once."""
    with engine.begin() as connection:
        if engine.dialect.name != "sqlite":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY}
            )
            schema = connection.get_execution_options().get("schema_translate_map", {}).get(None)
            if schema is not None:
                connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        SQLModel.metadata.create_all(connection, tables=list(TABLES))
