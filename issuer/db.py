"""Tables and engines of the issuer service (issue 4: "Storage", "Privacy").

What is kept, and for how long:

- ``issuer_offers``: one row per credential offer (OpenID4VCI 1.0 section 4.1). Bearer secrets
  are stored only as SHA-256 digests (the offer reference, the pre-authorized code, the access
  token); the transaction code only as an HMAC keyed by the pre-authorized code, so that the
  database alone reveals none of them. ``claims`` is the only personal data in the database:
  it is set to NULL the moment the credential is delivered, the offer is burned, or it expires.
- ``issuer_credentials``: what was issued, without claims: id, vct, signing kid, status list
  and index, holder key thumbprint (RFC 7638), times, current status. The unique constraint on
  ``(status_list_id, status_index)`` is what makes an index never handed out twice, also
  between processes sharing one PostgreSQL database; rows are never deleted, so an index is
  never reused.
- ``issuer_status_lists``: the lists and a ``version`` bumped on every status change, so that
  a cached Status List Token is re-signed on the next fetch after a change.
- ``issuer_nonces``: ``c_nonce`` values (OpenID4VCI 1.0 section 7), deleted when used or expired.
- ``issuer_api_keys``: admin API keys, as SHA-256 of their secret part, with their vct scope.
- ``issuer_signing_keys``: public JWKs and the file each private key lives in.

Engines: SQLite by default, in WAL mode, with the driver's implicit transactions switched off
so that writers say ``BEGIN IMMEDIATE`` and never deadlock on a lock upgrade; PostgreSQL through
``postgresql://`` (psycopg 3) at READ COMMITTED, where the conditional updates used here
(``... WHERE state = 'offered'``) re-check their condition after waiting for a row lock.

Durability on SQLite. Connections run ``synchronous=NORMAL``: a commit appends to the WAL
without an fsync, which survives a crash of the process but not of the machine (power loss,
kernel panic), where the last commits may roll back. Which commits may be lost that way is
decided per transaction:

- durable (``durable=True``, the default of :func:`write_transaction`): everything whose loss
  would break a promise already made to someone outside: delivering credentials (their status
  indices, the spent token and nonces, the deleted claims), status changes, offers, keys, API
  keys, wrong transaction codes. After the commit, and after the writer lock is released, the
  WAL file is fsynced before the caller goes on (:func:`sync_wal`): the credential leaves the
  server only once its row is on disk, so a power loss can never free an index that a wallet
  holds. Concurrent deliveries share fsyncs (one fsync covers every frame written before it;
  :func:`sync_wal_shared` is that group commit for the event loop), and no writer waits on
  another's fsync, which ``synchronous=FULL`` (fsync inside the commit, under the write lock)
  would make them do: about 4 ms here, a ceiling of ~250 deliveries/s.
- not durable: issuing an access token and a ``c_nonce``. Losing them fails closed: the wallet
  holds a token or nonce the issuer no longer knows and asks again; the pre-authorized code
  comes back unspent only together with everything it led to (a delivery's fsync covers every
  earlier frame of the WAL, so a delivered credential's token exchange is always on disk).

SQLite's own NORMAL mode syncs the WAL before each checkpoint and the database after it, so a
commit's frames are on disk either in the WAL (our fsync) or in the database (the checkpoint)
by the time the WAL is reused. PostgreSQL commits are durable as configured by the server
(``synchronous_commit``, on by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.exc import DBAPIError
from sqlmodel import Field, SQLModel

from civic_service.db import is_sqlite, is_sqlite_url, postgres_engine, sqlite_engine, table_of

BUSY_TIMEOUT = 30.0
"""Seconds a SQLite writer waits for another connection's write lock."""
_SQLITE_BEGIN = "issuer_sqlite_begin"
_SCHEMA_LOCK_KEY = 0x43495649435F4953  # "CIVIC_IS": serialises table creation on PostgreSQL
# PostgreSQL SQLSTATEs after which a whole transaction may simply be run again.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
_SQLITE_WRITER_LOCKS: dict[str, threading.Lock] = {}
_SQLITE_WRITER_LOCKS_GUARD = threading.Lock()

T = TypeVar("T")


class OfferRow(SQLModel, table=True):
    __tablename__ = "issuer_offers"

    offer_id: str = Field(sa_column=Column(Text, primary_key=True))
    ref_sha256: bytes = Field(sa_column=Column(LargeBinary, nullable=False, unique=True))
    code_sha256: bytes = Field(sa_column=Column(LargeBinary, nullable=False, unique=True))
    tx_code_mac: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    configuration_id: str = Field(sa_column=Column(Text, nullable=False))
    vct: str = Field(sa_column=Column(Text, nullable=False))
    claims: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """Subject claims (JSON) until delivery, burning or expiry; then NULL."""
    state: str = Field(sa_column=Column(Text, nullable=False))
    tx_code_failures: int = Field(sa_column=Column(Integer, nullable=False))
    api_key_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    code_expires_at: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    token_sha256: bytes | None = Field(
        default=None, sa_column=Column(LargeBinary, nullable=True, unique=True)
    )
    token_expires_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    delivered_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class CredentialRow(SQLModel, table=True):
    __tablename__ = "issuer_credentials"
    __table_args__ = (
        UniqueConstraint("status_list_id", "status_index", name="uq_issuer_status_entry"),
    )

    credential_id: str = Field(sa_column=Column(Text, primary_key=True))
    offer_id: str = Field(sa_column=Column(Text, nullable=False, index=True))
    vct: str = Field(sa_column=Column(Text, nullable=False, index=True))
    kid: str = Field(sa_column=Column(Text, nullable=False))
    status_list_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    status_index: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: int = Field(sa_column=Column(Integer, nullable=False))
    holder_thumbprint: str = Field(sa_column=Column(Text, nullable=False))
    issued_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    expires_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    status_changed_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class StatusListRow(SQLModel, table=True):
    __tablename__ = "issuer_status_lists"

    list_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    bits: int = Field(sa_column=Column(Integer, nullable=False))
    full: bool = Field(sa_column=Column(Boolean, nullable=False))
    version: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class NonceRow(SQLModel, table=True):
    __tablename__ = "issuer_nonces"

    nonce: str = Field(sa_column=Column(Text, primary_key=True))
    expires_at: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))


class ApiKeyRow(SQLModel, table=True):
    __tablename__ = "issuer_api_keys"

    key_id: str = Field(sa_column=Column(Text, primary_key=True))
    secret_sha256: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    vcts: str = Field(sa_column=Column(Text, nullable=False))
    """JSON list of the vct values this key may act on."""
    label: str = Field(sa_column=Column(Text, nullable=False))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    revoked_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class SigningKeyRow(SQLModel, table=True):
    __tablename__ = "issuer_signing_keys"

    kid: str = Field(sa_column=Column(Text, primary_key=True))
    alg: str = Field(sa_column=Column(Text, nullable=False))
    public_jwk: str = Field(sa_column=Column(Text, nullable=False))
    key_file: str = Field(sa_column=Column(Text, nullable=False))
    created_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    retired_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


offers = table_of(OfferRow)
credentials = table_of(CredentialRow)
status_lists = table_of(StatusListRow)
nonces = table_of(NonceRow)
api_keys = table_of(ApiKeyRow)
signing_keys = table_of(SigningKeyRow)
TABLES = (offers, credentials, status_lists, nonces, api_keys, signing_keys)

Index("ix_issuer_credentials_list_status", credentials.c.status_list_id, credentials.c.status)
# The purge (every offer created, and periodically) looks for live offers past their expiry:
# by state first, or it would visit every offer ever made, since used ones stay as records.
Index("ix_issuer_offers_state_code_expiry", offers.c.state, offers.c.code_expires_at)
Index("ix_issuer_offers_state_token_expiry", offers.c.state, offers.c.token_expires_at)


def create_engine(url: str, *, schema: str | None = None) -> Engine:
    """An engine for the issuer tables; ``schema`` places them in a PostgreSQL schema."""
    if is_sqlite_url(url):
        if schema is not None:
            raise ValueError("a database schema is for PostgreSQL only")
        # BEGIN comes from the hook below. secure_delete: deleted claims are overwritten in
        # the file, not just unlinked from the b-tree.
        engine = sqlite_engine(
            url,
            (
                "journal_mode=WAL",
                "synchronous=NORMAL",
                f"busy_timeout={int(BUSY_TIMEOUT * 1000)}",
                "secure_delete=ON",
            ),
            autocommit_driver=True,
        )

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            immediate = connection.get_execution_options().get(_SQLITE_BEGIN, False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return postgres_engine(url, schema=schema)


def _sqlite_writer_lock(engine: Engine) -> threading.Lock:
    key = str(engine.url)
    with _SQLITE_WRITER_LOCKS_GUARD:
        return _SQLITE_WRITER_LOCKS.setdefault(key, threading.Lock())


@contextmanager
def write_transaction(engine: Engine, *, durable: bool = True) -> Iterator[Connection]:
    """A transaction that will write: ``BEGIN IMMEDIATE`` on SQLite (one writer at a time).

    On SQLite the threads of one process also queue on a lock first: SQLite's own busy
    handler waits by sleeping (up to 100 ms a round), which a mutex hands over at once.
    ``durable`` commits are on disk when the block ends (see the module notes).
    """
    if not is_sqlite(engine):
        with engine.connect() as connection, connection.begin():
            yield connection
        return
    with _sqlite_writer_lock(engine), engine.connect() as plain:
        connection = plain.execution_options(**{_SQLITE_BEGIN: True})
        with connection.begin():
            yield connection
    if durable:
        sync_wal(engine)


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection, connection.begin():
        yield connection


def is_retryable(error: DBAPIError) -> bool:
    """A PostgreSQL deadlock or serialization failure: the transaction can simply run again."""
    return getattr(error.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


def run_write(engine: Engine, work: Callable[[Connection], T], *, attempts: int = 3) -> T:
    """Run ``work`` in a write transaction, again from scratch after a deadlock (PostgreSQL)."""
    for attempt in range(attempts):
        try:
            with write_transaction(engine) as connection:
                return work(connection)
        except DBAPIError as error:
            if attempt + 1 < attempts and is_retryable(error):
                continue
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def create_schema(engine: Engine) -> None:
    """Create the issuer's tables if missing; safe to run from several processes at once."""
    with write_transaction(engine) as connection:
        if not is_sqlite(engine):
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY}
            )
            schema = connection.get_execution_options().get("schema_translate_map", {}).get(None)
            if schema:
                connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        SQLModel.metadata.create_all(connection, tables=list(TABLES))
        # create_all makes an index only with its table: a database made before the index was
        # added gets it here.
        for table in TABLES:
            for index in table.indexes:
                index.create(connection, checkfirst=True)


# --- driver-level statements for the request hot path ----------------------------------------
#
# The OpenID4VCI endpoints run a handful of fixed statements per request. Through SQLAlchemy
# Core each costs 0.1-0.3 ms of statement building, cache-key generation and result wrapping,
# and each pooled transaction another 0.3 ms of events; at the driver level a primary-key
# SELECT on SQLite takes about 10 us. So the hot path writes its SQL once, as text with
# ``{table}`` names and ``:name`` parameters, rendered per dialect (PostgreSQL's schema and
# ``%(name)s`` parameters), and runs it on a raw pooled DB-API connection. The tables are
# still defined, created and used everywhere else through sqlmodel.

_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")


@functools.lru_cache(maxsize=256)
def render_sql(template: str, dialect: str, schema: str | None) -> str:
    """``template`` with its ``{table}`` names (and ``{for_update}``) filled in for the
    dialect, and ``:name`` parameters in the driver's style."""
    names = {table.name: f'"{schema}".{table.name}' if schema else table.name for table in TABLES}
    # SQLite has no row locks: BEGIN IMMEDIATE already holds the only write lock.
    names["for_update"] = "" if dialect == "sqlite" else " FOR UPDATE"
    sql = template.format(**names)
    if dialect != "sqlite":
        sql = _PARAMETER.sub(r"%(\1)s", sql)
    return sql


class DriverTransaction:
    """Statements inside one transaction opened by :func:`driver_transaction`."""

    __slots__ = ("_cursor", "_dialect", "_schema")

    def __init__(self, cursor: DBAPICursor, dialect: str, schema: str | None) -> None:
        self._cursor = cursor
        self._dialect = dialect
        self._schema = schema

    def execute(self, template: str, params: Mapping[str, Any] | None = None) -> int:
        """Run a statement; returns the number of rows it changed."""
        self._cursor.execute(render_sql(template, self._dialect, self._schema), params or {})
        return int(self._cursor.rowcount)

    def one(self, template: str, params: Mapping[str, Any] | None = None) -> tuple[Any, ...] | None:
        self._cursor.execute(render_sql(template, self._dialect, self._schema), params or {})
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def all(self, template: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        self._cursor.execute(render_sql(template, self._dialect, self._schema), params or {})
        return [tuple(row) for row in self._cursor.fetchall()]


class _ThreadConnections:
    """One SQLite connection per thread for the driver-level statements, out of the pool.

    A pool checkout and return (with its reset) cost more than a small transaction, four
    times per issuance. SQLite connections are cheap to keep, and every thread that runs the
    hot path (the event loop's, and the pool threads) keeps its own for the engine's life;
    they are detached from the pool, so they never hold a pool slot that Core code waits for.
    ``engine.dispose()`` closes them, and threads then open fresh ones.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = weakref.ref(engine)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[Any] = []
        self._generation = 0

    def get(self) -> Any:
        mine = getattr(self._local, "connection", None)
        if mine is not None and mine[0] == self._generation:
            return mine[1]
        engine = self._engine()
        if engine is None:
            raise RuntimeError("the engine is gone")
        pooled = engine.raw_connection()  # the pool's connect hooks set the PRAGMAs
        pooled.detach()
        connection = pooled.dbapi_connection
        with self._lock:
            self._open.append(connection)
            self._local.connection = (self._generation, connection)
        return connection

    def discard(self) -> None:
        """Drop this thread's connection (after an error that may have left it unusable)."""
        mine = getattr(self._local, "connection", None)
        self._local.connection = None
        if mine is not None:
            with self._lock:
                if mine[1] in self._open:
                    self._open.remove(mine[1])
            mine[1].close()

    def close_all(self) -> None:
        with self._lock:
            self._generation += 1
            for connection in self._open:
                connection.close()
            self._open.clear()


@dataclass(frozen=True)
class _DriverInfo:
    dialect: str
    schema: str | None
    writer_lock: threading.Lock | None
    wal_path: str | None
    connections: _ThreadConnections | None
    """SQLite files only: a :memory: database exists once per pooled connection."""
    shared_sync: _SharedSync | None


_DRIVER_INFO: weakref.WeakKeyDictionary[Engine, _DriverInfo] = weakref.WeakKeyDictionary()


def _driver_info(engine: Engine) -> _DriverInfo:
    info = _DRIVER_INFO.get(engine)
    if info is None:
        schema = engine.get_execution_options().get("schema_translate_map", {}).get(None)
        database = engine.url.database if is_sqlite(engine) else None
        on_disk = bool(database) and database != ":memory:" and "mode=memory" not in str(database)
        connections = _ThreadConnections(engine) if on_disk else None
        wal_path = os.path.abspath(f"{database}-wal") if on_disk else None
        info = _DriverInfo(
            dialect=engine.dialect.name,
            schema=schema if isinstance(schema, str) else None,
            writer_lock=_sqlite_writer_lock(engine) if is_sqlite(engine) else None,
            wal_path=wal_path,
            connections=connections,
            shared_sync=_SharedSync(wal_path) if wal_path is not None else None,
        )
        if connections is not None:
            event.listen(engine, "engine_disposed", lambda _engine: connections.close_all())
        _DRIVER_INFO[engine] = info
    return info


_FIRST_BUSY_WAIT = 50e-6
_LONGEST_BUSY_WAIT = 2e-3


def _begin_immediate(cursor: Any) -> None:
    """``BEGIN IMMEDIATE``, waiting for another process's writer in short steps.

    SQLite's busy handler sleeps 1, 2, 5, 10 ... ms between attempts, while a writer of the
    other worker process holds the lock for some 50-100 us; on the event loop that sleep
    stalls every request of the worker. Here the handler is off for this one statement and
    the wait starts at 50 us, doubling up to 2 ms, for at most ``BUSY_TIMEOUT`` seconds.
    """
    cursor.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + BUSY_TIMEOUT
        wait = _FIRST_BUSY_WAIT
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() + wait > deadline:
                    raise
            time.sleep(wait)
            wait = min(2 * wait, _LONGEST_BUSY_WAIT)
    finally:
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")


@contextmanager
def _sqlite_thread_transaction(
    info: _DriverInfo, connections: _ThreadConnections, *, write: bool
) -> Iterator[DriverTransaction]:
    connection = connections.get()
    cursor = connection.cursor()
    try:
        if write:
            _begin_immediate(cursor)
        else:
            cursor.execute("BEGIN")
    except BaseException:
        connections.discard()
        raise
    try:
        yield DriverTransaction(cursor, info.dialect, info.schema)
    except BaseException:
        try:
            cursor.execute("ROLLBACK")
        except Exception:
            connections.discard()
        raise
    try:
        cursor.execute("COMMIT")
    except BaseException:
        # A failed COMMIT leaves the transaction open: roll it back, start afresh next time.
        connections.discard()
        raise
    finally:
        cursor.close()


@contextmanager
def driver_transaction(
    engine: Engine, *, write: bool, durable: bool = False
) -> Iterator[DriverTransaction]:
    """A transaction at the driver level: committed on success, rolled back on error.

    Writers on SQLite take the process's writer mutex and ``BEGIN IMMEDIATE``, as in
    :func:`write_transaction`; readers get a deferred ``BEGIN`` so that their statements see
    one snapshot. PostgreSQL opens its transaction implicitly (READ COMMITTED) on a pooled
    connection. ``durable`` commits are on disk when the block ends (see the module notes).
    """
    info = _driver_info(engine)
    with info.writer_lock if write and info.writer_lock is not None else nullcontext():
        if info.connections is not None:
            with _sqlite_thread_transaction(info, info.connections, write=write) as transaction:
                yield transaction
        else:
            raw = engine.raw_connection()
            try:
                cursor = raw.cursor()
                if info.writer_lock is not None:
                    cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield DriverTransaction(cursor, info.dialect, info.schema)
                except BaseException:
                    raw.rollback()
                    raise
                raw.commit()
            finally:
                raw.close()
    if durable and write:
        _sync_wal(info)


_SYNCED_DIRECTORIES: set[str] = set()


def _sync_wal(info: _DriverInfo) -> None:
    if info.wal_path is not None:
        _fsync_wal(info.wal_path)


def _fsync_wal(wal_path: str) -> None:
    try:
        fd = os.open(wal_path, os.O_RDONLY)
    except FileNotFoundError:
        return  # no WAL left: a completed checkpoint has synced everything into the database
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    directory = os.path.dirname(wal_path)
    if directory not in _SYNCED_DIRECTORIES:
        # Once per process: the WAL's directory entry, in case the file is new.
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        _SYNCED_DIRECTORIES.add(directory)


def sync_wal(engine: Engine) -> None:
    """Make every commit so far durable (SQLite file databases; otherwise nothing to do)."""
    _sync_wal(_driver_info(engine))


class _SharedSync:
    """Group commit for :func:`sync_wal_shared`: one thread per database file fsyncs its WAL
    for every commit whose caller asked before that fsync began.

    An fsync covers every frame written before it starts, so concurrent deliveries need not
    each have one, nor each a hop to the thread pool and back (which, per delivery, cost more
    CPU than the fsync). The thread ends after ``_IDLE_SECONDS`` without a request.
    """

    _IDLE_SECONDS = 2.0

    def __init__(self, wal_path: str) -> None:
        self._wal_path = wal_path
        self._condition = threading.Condition()
        self._waiting: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._running = False

    def request(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        with self._condition:
            self._waiting.append((loop, future))
            if self._running:
                self._condition.notify()
                return
            self._running = True
        threading.Thread(target=self._run, name="issuer-wal-sync", daemon=True).start()

    def _run(self) -> None:
        while True:
            with self._condition:
                if not self._waiting:
                    self._condition.wait(self._IDLE_SECONDS)
                    if not self._waiting:
                        self._running = False
                        return
                # Every commit of this batch ended before its caller asked: the fsync below,
                # begun after, covers them all. Later requests wait for the next round.
                batch, self._waiting = self._waiting, []
            error: BaseException | None = None
            try:
                _fsync_wal(self._wal_path)
            except BaseException as caught:  # handed to each waiter, raised in its request
                error = caught
            loops: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for loop, future in batch:
                loops.setdefault(loop, []).append(future)
            for loop, futures in loops.items():
                # A closed loop raises RuntimeError: nobody waits there any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, futures, error)


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():  # the request was cancelled meanwhile
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


async def sync_wal_shared(engine: Engine) -> None:
    """:func:`sync_wal` for the event loop: returns once every commit made before the call is
    on disk, sharing the fsync with the concurrent callers (group commit)."""
    info = _driver_info(engine)
    if info.shared_sync is None:
        return
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    info.shared_sync.request(loop, future)
    await future


def _retryable_driver_error(error: Exception) -> bool:
    if isinstance(error, DBAPIError):
        return is_retryable(error)
    return getattr(error, "sqlstate", None) in _RETRYABLE_SQLSTATES


def run_driver_write(
    engine: Engine,
    work: Callable[[DriverTransaction], T],
    *,
    durable: bool = True,
    attempts: int = 3,
) -> T:
    """:func:`run_write` at the driver level: ``work`` again from scratch after a deadlock."""
    for attempt in range(attempts):
        try:
            with driver_transaction(engine, write=True, durable=durable) as transaction:
                return work(transaction)
        except Exception as error:
            if attempt + 1 < attempts and _retryable_driver_error(error):
                continue
            raise
    raise AssertionError("unreachable")  # pragma: no cover
