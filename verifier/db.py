"""Verifier tables (sqlmodel): presentation requests, nonces, and the audit log.

- ``verifier_requests``: one OpenID4VP request per row (id, policy, nonce, state, expiry, its
  status and, once answered, the staff verdict). The verdict holds the requested claim values
  for the counter screen, so rows are purged ``RETENTION`` seconds after they expire.
- ``verifier_nonces``: nonces this verifier issued (request nonces and offline counter
  challenges) and when each was spent; the database replay store (:mod:`verifier.replay`).
- ``verifier_audit``: one row per verdict: time, kind, policy, result, reason codes, vct and
  issuer identifiers, checkpoint size. Never a claim value.

- ``verifier_meta``: the boot id of the machine the database was last opened on (below).

SQLite (WAL) by default; PostgreSQL through ``DATABASE_URL`` for several replicas, optionally
in a schema of its own (``schema``), which tests use to run isolated.

Durability on SQLite. A spent nonce must stay spent: were a spend lost, a captured
presentation could be replayed inside the nonce's lifetime. ``synchronous=NORMAL`` in WAL mode
loses no commit when a process crashes (the WAL is written before the commit returns; only
its fsync is deferred to checkpoints); it can lose the last commits when the machine itself
goes down. That loss is made harmless instead of paid for with an fsync per commit: the
database remembers the boot id of the machine it was last opened on
(``/proc/sys/kernel/random/boot_id``), and when a verifier starts after a reboot it marks every
nonce not yet spent as spent (:func:`void_nonces_after_reboot`). Challenges shown before the
reboot must be fetched again; nothing issued before it can be spent after it. Audit rows of
the last moments before a power cut can be lost. Where the boot id cannot be read,
``synchronous=FULL`` is kept.

Writes go through a :class:`Writer`. On SQLite it is a group commit: one thread per process
runs every queued write of the moment in one transaction and answers each caller only once
that transaction is committed. The writer threads of all processes on one database file take
turns on an ``flock`` of ``<database>-writer.lock`` first: SQLite's own busy handler waits by
sleeping (1 ms, 2 ms, 5 ms... up to 100 ms a round), a lock hands over the moment it is
released. A write that fails makes its batch roll back; the batch is then run again one write
per transaction, so a failure is reported only to its own caller. On PostgreSQL each write is
simply its own transaction in the caller's thread (the server syncs every commit, with its
own group commit).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    Text,
    insert,
    select,
    text,
    update,
)
from sqlmodel import Field, SQLModel

from civic_service.db import is_sqlite_url, postgres_engine, sqlite_engine, table_of

log = logging.getLogger("civic.verifier.db")

T = TypeVar("T")

RETENTION = 3600
WAL_SIZE_LIMIT = 16 * 1024 * 1024
MAX_BATCH = 512
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


class MetaRow(SQLModel, table=True):
    __tablename__ = "verifier_meta"

    key: str = Field(sa_column=Column(Text, primary_key=True))
    value: str = Field(sa_column=Column(Text, nullable=False))


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


requests_table = table_of(RequestRow)
nonces_table = table_of(NonceRow)
audit_table = table_of(AuditRow)
meta_table = table_of(MetaRow)
TABLES = (requests_table, nonces_table, audit_table, meta_table)
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str | None:
    """This machine's boot id (Linux), new after every reboot; None where there is none."""
    try:
        value = BOOT_ID_FILE.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value or None


def create_engine(url: str, *, schema: str | None = None) -> Engine:
    if is_sqlite_url(url):
        # synchronous=NORMAL may lose the last commits on power loss; the boot check voids
        # nonces left from before a reboot, so NORMAL is safe only where boot_id exists.
        synchronous = "NORMAL" if boot_id() is not None else "FULL"
        # journal_size_limit: a WAL that grew while a checkpoint could not finish is cut back
        # when it starts over, not kept at its largest.
        return sqlite_engine(
            url,
            (
                "journal_mode=WAL",
                f"synchronous={synchronous}",
                "busy_timeout=30000",
                f"journal_size_limit={WAL_SIZE_LIMIT}",
            ),
            autocommit_driver=False,
        )
    return postgres_engine(url, schema=schema)


def _sqlite_lock_path(engine: Engine) -> str | None:
    """The lock file our writers of one SQLite database file take turns on (None: memory)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return f"{database}-writer.lock"


@contextmanager
def _sqlite_turn(engine: Engine) -> Iterator[None]:
    """This process's turn on the database file's writer lock, waiting for it (SQLite only)."""
    path = _sqlite_lock_path(engine)
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def create_schema(engine: Engine) -> None:
    """Create the tables if missing; safe when several replicas or workers start at once
    (PostgreSQL: an advisory lock; SQLite: the writers' lock file, else two workers both
    find a table missing and the second fails to create it)."""
    with _sqlite_turn(engine), engine.begin() as connection:
        if engine.dialect.name != "sqlite":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY}
            )
            schema = connection.get_execution_options().get("schema_translate_map", {}).get(None)
            if schema is not None:
                connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        SQLModel.metadata.create_all(connection, tables=list(TABLES))


def void_nonces_after_reboot(connection: Connection, *, current_boot: str, now: int) -> int:
    """When the database was last opened under another boot (or never), mark every nonce not
    yet spent as spent, and remember this boot. Returns how many were voided."""
    stored = connection.execute(
        select(meta_table.c.value).where(meta_table.c.key == "boot_id")
    ).scalar_one_or_none()
    if stored == current_boot:
        return 0
    voided = connection.execute(
        update(nonces_table).where(nonces_table.c.used_at.is_(None)).values(used_at=now)
    ).rowcount
    if stored is None:
        connection.execute(insert(meta_table).values(key="boot_id", value=current_boot))
    else:
        connection.execute(
            update(meta_table).where(meta_table.c.key == "boot_id").values(value=current_boot)
        )
    if voided:
        log.warning("the machine rebooted: %d unspent nonces voided", voided)
    return int(voided)


# --- writes -----------------------------------------------------------------------------------


def sqlite_driver(connection: Connection) -> sqlite3.Connection | None:
    """The driver's own connection under ``connection`` when that is SQLite, else None: the
    hot path's few statements go to it directly, inside the same transaction."""
    if connection.dialect.name != "sqlite":
        return None
    driver = connection.connection.driver_connection
    return driver if isinstance(driver, sqlite3.Connection) else None


_Item = tuple[Callable[[Connection], Any], "Future[Any]"]


class WriterBusy(Exception):
    """:meth:`Writer.try_now` could not write without waiting."""


CHECKPOINT_EVERY = 500
"""Commits between two WAL checkpoints, which the writer thread runs (never a caller)."""


class Writer:
    """Runs write transactions: :meth:`run` returns once its write is committed.

    On SQLite all writes of a process go through one connection, held by whoever holds
    ``_mutex`` and this process's turn (the ``flock``): the writer thread, committing a batch,
    or a caller of :meth:`try_now` that finds both free at once. Its automatic checkpoints are
    off, so that no commit (and no event loop) waits for the fsyncs of a checkpoint; the writer
    thread checkpoints every ``CHECKPOINT_EVERY`` commits, the bulk beside the writers and the
    last few frames in its turn (see :meth:`_checkpoint`).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._batched = engine.dialect.name == "sqlite"
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock_fd: int | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._mutex = threading.Lock()
        self._connection: Connection | None = None
        self._commits = 0
        self._checkpoint_queued = False
        self._closed = False
        self._lock_path = _sqlite_lock_path(engine)

    @property
    def batched(self) -> bool:
        """Whether writes are group-committed by the writer thread (SQLite)."""
        return self._batched

    def run(self, write: Callable[[Connection], T]) -> T:
        """Run ``write`` in a transaction and return its result once committed; its exception
        (the transaction rolled back) if it raised."""
        if not self._batched:
            with self.engine.begin() as connection:
                return write(connection)
        try:
            return self.try_now(write)
        except WriterBusy:
            return self.submit(write).result()

    def submit(self, write: Callable[[Connection], T]) -> Future[T]:
        """Queue ``write`` (batched writers only); the future resolves once it is committed."""
        if not self._batched:
            raise RuntimeError("only a batched writer queues writes")
        if self._closed:
            raise RuntimeError("the database writer is closed")
        self._ensure_thread()
        future: Future[T] = Future()
        self._queue.put((write, future))
        return future

    def try_now(self, write: Callable[[Connection], T]) -> T:
        """Run ``write`` in a transaction of its own in this thread if the database is free
        for writing right now, without any wait; raise :class:`WriterBusy` (nothing done)
        otherwise. Handing a write to the writer thread and back costs more than the write;
        an event loop tries this first and awaits :meth:`submit` only when it must."""
        if not self._batched or self._closed or not self._mutex.acquire(blocking=False):
            raise WriterBusy
        try:
            self._ensure_thread()
            if self._lock_fd is not None:
                try:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise WriterBusy from None
            try:
                connection = self._writing_connection()
                with connection.begin():
                    result = write(connection)
                self._committed()
                return result
            finally:
                if self._lock_fd is not None:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    def close(self) -> None:
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30)
        with self._mutex:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                if self._lock_path is not None:
                    self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
                thread = threading.Thread(target=self._loop, name="db-writer", daemon=True)
                thread.start()
                self._thread = thread

    def _writing_connection(self) -> Connection:
        """The process's writing connection (call with ``_mutex`` held)."""
        if self._connection is None:
            connection = self.engine.connect()
            connection.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
            connection.commit()
            self._connection = connection
        return self._connection

    def _committed(self) -> None:
        """Count a commit (``_mutex`` held); queue a checkpoint now and then."""
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY and not self._checkpoint_queued:
            self._checkpoint_queued = True
            self._queue.put((_checkpoint_marker, Future()))

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            checkpoint = any(write is _checkpoint_marker for write, _ in batch)
            batch = [entry for entry in batch if entry[0] is not _checkpoint_marker]
            if batch:
                self._commit(batch)
            if checkpoint:
                self._checkpoint()
            if stop:
                return

    def _checkpoint(self) -> None:
        with self._mutex:
            self._commits = 0
            self._checkpoint_queued = False
        try:
            # The bulk on a connection of its own, outside our turn: a PASSIVE checkpoint
            # waits for no writer and no writer waits for it. But with writers appending all
            # the while it never catches up with the end of the WAL, and SQLite rewinds the
            # WAL only once it has: the WAL grew by megabytes a second under load. So the
            # few frames written meanwhile are checkpointed again in our turn, with no writer
            # of any process, and the next write starts the WAL over.
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").all()
            with self._process_turn() as connection:
                driver = sqlite_driver(connection)
                assert driver is not None
                driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except Exception:  # the next one will try again; the WAL only grows meanwhile
            log.exception("WAL checkpoint failed")

    @contextmanager
    def _process_turn(self) -> Iterator[Connection]:
        with self._mutex:
            if self._lock_fd is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield self._writing_connection()
            finally:
                if self._lock_fd is not None:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _transaction(self, batch: list[_Item]) -> list[Any]:
        with self._process_turn() as connection:
            with connection.begin():
                results = [write(connection) for write, _ in batch]
            self._committed()
            return results

    def _commit(self, batch: list[_Item]) -> None:
        try:
            results = self._transaction(batch)
        except Exception as error:
            if len(batch) == 1:
                batch[0][1].set_exception(error)
                return
            # Somebody's write failed: each on its own, so that only its caller hears of it.
            for item in batch:
                self._commit([item])
            return
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)


_ALONE: Any = object()
"""What a batch's future says when its write must run on its own (see :class:`LoopBatch`)."""


class LoopBatch:
    """Group commit on an event loop, in front of a batched :class:`Writer`.

    The writes that the tasks of one event loop ask for during one pass of the loop (a burst
    of verifications from many connections) run in one transaction, written at the end of the
    pass, and each caller resumes once that transaction is committed: what each caller gets is
    what a write of its own would have given, for a commit less per write. A batch that cannot
    be written at once (the database busy, or a write in it raising: everything then rolled
    back) is handed back, and each write runs on its own through the :class:`Writer`, so that
    a failure reaches only its own caller, as the writer thread does with its batches.
    """

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._pending: dict[
            asyncio.AbstractEventLoop, list[tuple[Callable[[Connection], Any], asyncio.Future[Any]]]
        ] = {}

    async def run(self, write: Callable[[Connection], T]) -> T:
        """Run ``write`` in the loop's next batch; return its result once committed."""
        loop = asyncio.get_running_loop()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._flush, loop)
        future: asyncio.Future[Any] = loop.create_future()
        pending.append((write, future))
        result = await future
        if result is _ALONE:
            try:
                return self._writer.try_now(write)
            except WriterBusy:
                return await asyncio.wrap_future(self._writer.submit(write))
        return cast(T, result)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._pending.pop(loop)
        results: list[Any]
        try:
            results = self._writer.try_now(
                lambda connection: [write(connection) for write, _ in batch]
            )
        except WriterBusy:
            results = [_ALONE] * len(batch)
        except Exception as error:
            if len(batch) == 1:
                if not batch[0][1].cancelled():
                    batch[0][1].set_exception(error)
                return
            results = [_ALONE] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.cancelled():
                future.set_result(result)


def _checkpoint_marker(_connection: Connection) -> None:
    raise AssertionError("the checkpoint marker is not a write")
