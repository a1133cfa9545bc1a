"""The verifier's database writes: SQLite group commit (verifier.db.Writer) under the replay
store: a nonce is spent once whatever the concurrency, a failed write fails only its caller,
and every answer comes after its commit; after a reboot no nonce issued before it is
spendable (what makes ``synchronous=NORMAL`` safe)."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

import verifier.app
import verifier.db
from civic.errors import ReasonCode, VerificationError
from tests.services.registry_harness import wait_for
from verifier.db import (
    LoopBatch,
    Writer,
    WriterBusy,
    audit_table,
    boot_id,
    create_engine,
    create_schema,
    nonces_table,
    void_nonces_after_reboot,
)
from verifier.replay import SqlReplayStore

NOW = 1_800_000_000


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'verifier.sqlite3'}")
    create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def writer(engine: Engine) -> Iterator[Writer]:
    writer = Writer(engine)
    yield writer
    writer.close()


def _audit_row(n: int) -> dict[str, Any]:
    return {
        "id": n,
        "at": NOW,
        "kind": "offline",
        "request_id": None,
        "policy_id": "bar-entry",
        "result": "valid",
        "reasons": "",
        "vct": "",
        "issuer": "",
        "checkpoint_size": None,
    }


def _add_audit_row(connection: Connection, *, n: int) -> None:
    connection.execute(insert(audit_table), _audit_row(n))


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def test_one_nonce_spent_concurrently_is_spent_once(writer: Writer) -> None:
    store = SqlReplayStore(writer)
    store.issue("n-" + "a" * 30, now=NOW, ttl=300)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: store.consume("n-" + "a" * 30, now=NOW + 1), range(64)))
    assert answers.count(True) == 1
    assert answers.count(False) == 63


def test_many_nonces_spent_concurrently_each_once(writer: Writer) -> None:
    store = SqlReplayStore(writer)
    nonces = [f"nonce-{i:04d}-0123456789" for i in range(200)]
    store.issue_many(nonces, now=NOW, ttl=300)
    with ThreadPoolExecutor(16) as pool:
        first = list(pool.map(lambda n: store.consume(n, now=NOW + 1), nonces))
        again = list(pool.map(lambda n: store.consume(n, now=NOW + 2), nonces))
    assert first == [True] * 200
    assert again == [False] * 200


def test_unknown_and_expired_nonces(writer: Writer) -> None:
    store = SqlReplayStore(writer)
    store.issue("expiring-nonce-0123456789", now=NOW, ttl=10)
    for nonce, at in (("never-issued-0123456789", NOW), ("expiring-nonce-0123456789", NOW + 10)):
        with pytest.raises(VerificationError) as caught:
            store.consume(nonce, now=at)
        assert caught.value.reason is ReasonCode.NONCE_UNKNOWN


def test_unissued_nonces_spend_once(writer: Writer) -> None:
    store = SqlReplayStore(writer)
    assert store.consume("cli-nonce-0123456789", now=NOW, require_issued=False) is True
    assert store.consume("cli-nonce-0123456789", now=NOW, require_issued=False) is False


def test_a_failed_write_fails_only_its_caller(engine: Engine, writer: Writer) -> None:
    writer.run(lambda connection: connection.execute(insert(audit_table), _audit_row(1)))
    gate = threading.Event()
    started = threading.Event()

    def hold(_connection: Connection) -> None:
        started.set()
        gate.wait(10)

    def add(n: int) -> Callable[[Connection], object]:
        return lambda connection: connection.execute(insert(audit_table), _audit_row(n))

    with ThreadPoolExecutor(8) as pool:
        held = writer.submit(hold)  # in the writer thread, which holds the database meanwhile
        assert started.wait(10)
        # These queue up behind the held transaction and are committed as one batch, in
        # which row 1 already exists.
        futures = {n: pool.submit(writer.run, add(n)) for n in (2, 3, 1, 4, 5)}
        wait_for(lambda: writer._queue.qsize() == 5, 10, "five queued writes")
        gate.set()
        held.result(10)
        with pytest.raises(IntegrityError):
            futures[1].result(10)
        for n in (2, 3, 4, 5):
            futures[n].result(10)
    assert _count(engine, audit_table) == 5


def test_answers_come_after_the_commit(engine: Engine, writer: Writer) -> None:
    store = SqlReplayStore(writer)
    store.issue("visible-nonce-0123456789", now=NOW, ttl=300)
    assert store.consume("visible-nonce-0123456789", now=NOW) is True
    # A fresh connection (another process, as far as SQLite is concerned) sees it spent.
    other = create_engine(str(engine.url))
    with other.connect() as connection:
        used_at = connection.execute(select(nonces_table.c.used_at)).scalar_one()
    other.dispose()
    assert used_at == NOW


def test_two_writers_on_one_file_take_turns(engine: Engine, tmp_path: Path) -> None:
    # Two writers stand for two worker processes: each opens the lock file on its own.
    second_engine = create_engine(str(engine.url))
    writers = [Writer(engine), Writer(second_engine)]
    try:
        stores = [SqlReplayStore(w) for w in writers]
        nonces = [f"shared-{i:04d}-0123456789" for i in range(120)]
        stores[0].issue_many(nonces, now=NOW, ttl=300)
        with ThreadPoolExecutor(16) as pool:
            answers = list(
                pool.map(
                    lambda pair: stores[pair[0] % 2].consume(pair[1], now=NOW + 1),
                    [(i, n) for i in range(2) for n in nonces],
                )
            )
        assert answers.count(True) == len(nonces)
        assert answers.count(False) == len(nonces)
        assert (tmp_path / "verifier.sqlite3-writer.lock").exists()
    finally:
        for w in writers:
            w.close()
        second_engine.dispose()


def test_a_closed_writer_refuses_work(engine: Engine) -> None:
    writer = Writer(engine)
    writer.run(lambda connection: connection.execute(insert(audit_table), _audit_row(1)))
    writer.close()
    with pytest.raises(RuntimeError):
        writer.run(lambda connection: connection.execute(insert(audit_table), _audit_row(2)))
    assert _count(engine, audit_table) == 1


def _reboot(writer: Writer, boot: str, now: int) -> int:
    return writer.run(
        lambda connection: void_nonces_after_reboot(connection, current_boot=boot, now=now)
    )


def test_nonces_issued_before_a_reboot_are_void_after_it(writer: Writer) -> None:
    store = SqlReplayStore(writer)
    store.issue("before-any-boot-0123456789", now=NOW, ttl=300)
    assert _reboot(writer, "boot-a", NOW) == 1  # first start: nothing known is trusted
    store.issue_many(["kept-0123456789", "spent-0123456789"], now=NOW, ttl=300)
    assert store.consume("spent-0123456789", now=NOW + 1) is True
    # Another worker starting under the same boot changes nothing.
    assert _reboot(writer, "boot-a", NOW + 2) == 0
    assert store.consume("kept-0123456789", now=NOW + 3) is True
    store.issue("pending-0123456789", now=NOW + 4, ttl=300)
    # The machine went down: the pending nonce may have been spent in a lost commit.
    assert _reboot(writer, "boot-b", NOW + 60) == 1
    assert store.consume("pending-0123456789", now=NOW + 61) is False
    store.issue("after-reboot-0123456789", now=NOW + 62, ttl=300)
    assert store.consume("after-reboot-0123456789", now=NOW + 63) is True


def test_sqlite_syncs_fully_where_reboots_cannot_be_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def synchronous(name: str) -> int:
        engine = create_engine(f"sqlite:///{tmp_path / name}")
        with engine.connect() as connection:
            value = int(connection.exec_driver_sql("PRAGMA synchronous").scalar_one())
        engine.dispose()
        return value

    if boot_id() is not None:
        assert synchronous("normal.sqlite3") == 1  # NORMAL
    monkeypatch.setattr(verifier.db, "BOOT_ID_FILE", tmp_path / "no-such-file")
    assert boot_id() is None
    assert synchronous("full.sqlite3") == 2  # FULL


def _hold_the_writer(writer: Writer) -> tuple[threading.Event, Future[None]]:
    """Keep the writer thread inside a transaction until the returned gate is set."""
    gate, started = threading.Event(), threading.Event()

    def hold(_connection: Connection) -> None:
        started.set()
        gate.wait(10)

    held = writer.submit(hold)
    assert started.wait(10)
    return gate, held


def test_writes_on_the_callers_thread_when_the_database_is_free(
    engine: Engine, writer: Writer
) -> None:
    writer.run(lambda connection: connection.execute(insert(audit_table), _audit_row(1)))
    where = writer.try_now(lambda _connection: threading.current_thread())
    assert where is threading.current_thread()
    gate, held = _hold_the_writer(writer)
    with pytest.raises(WriterBusy):
        writer.try_now(lambda connection: connection.execute(insert(audit_table), _audit_row(2)))
    gate.set()
    held.result(10)
    assert _count(engine, audit_table) == 1


def test_an_event_loops_writes_of_one_pass_are_committed_together(
    engine: Engine, writer: Writer
) -> None:
    store = SqlReplayStore(writer)
    nonces = [f"loop-nonce-{i:04d}-0123456789" for i in range(20)]
    store.issue_many(nonces, now=NOW, ttl=300)
    batch = LoopBatch(writer)
    transactions: list[int] = []

    def spend(nonce: str, n: int) -> Callable[[Connection], object]:
        write = SqlReplayStore.spend_write(nonce, now=NOW + 1, also=partial(_add_audit_row, n=n))

        def counted(connection: Connection) -> object:
            transactions.append(id(connection.get_transaction()))
            return write(connection)

        return counted

    async def spend_all() -> list[object]:
        # The same nonce twice in one batch: spent once, as one after the other.
        return await asyncio.gather(
            *(batch.run(spend(nonce, n)) for n, nonce in enumerate([*nonces, nonces[0]]))
        )

    answers = asyncio.run(spend_all())
    assert answers == ["spent"] * 20 + ["reused"]
    assert len(set(transactions)) == 1
    assert _count(engine, audit_table) == 20


def test_a_write_failing_in_a_loop_batch_fails_only_its_caller(
    engine: Engine, writer: Writer
) -> None:
    writer.run(partial(_add_audit_row, n=1))
    batch = LoopBatch(writer)

    async def add_all() -> list[object]:
        return await asyncio.gather(
            *(batch.run(partial(_add_audit_row, n=n)) for n in (2, 3, 1, 4)),
            return_exceptions=True,
        )

    answers = asyncio.run(add_all())
    assert [type(answer) for answer in answers] == [type(None)] * 2 + [IntegrityError, type(None)]
    assert _count(engine, audit_table) == 4

    async def add_one() -> object:
        return await batch.run(partial(_add_audit_row, n=1))

    with pytest.raises(IntegrityError):
        asyncio.run(add_one())


def test_a_loop_batch_waits_for_a_busy_database(engine: Engine, writer: Writer) -> None:
    gate, held = _hold_the_writer(writer)
    batch = LoopBatch(writer)

    async def add_all() -> list[None]:
        waiting = asyncio.gather(*(batch.run(partial(_add_audit_row, n=n)) for n in (1, 2)))
        for _ in range(3):  # passes of the event loop (no waiting): the batch is tried
            await asyncio.sleep(0)
        assert not waiting.done()  # handed to the writer thread, behind the held transaction
        gate.set()
        return await waiting

    assert asyncio.run(add_all()) == [None, None]
    held.result(10)
    assert _count(engine, audit_table) == 2


def test_the_writer_thread_checkpoints_the_wal(
    writer: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verifier.db, "CHECKPOINT_EVERY", 5)
    checkpoints: list[str] = []
    original = Writer._checkpoint

    def counted(self: Writer) -> None:
        checkpoints.append(threading.current_thread().name)
        original(self)

    monkeypatch.setattr(Writer, "_checkpoint", counted)
    for round_ in (1, 2):
        for n in range(6):
            writer.run(partial(_add_audit_row, n=10 * round_ + n))
        wait_for(lambda round_=round_: len(checkpoints) == round_, 10, "a checkpoint")
    assert set(checkpoints) == {"db-writer"}


def test_the_audit_row_names_every_column_of_the_table() -> None:
    columns = [c.name for c in audit_table.columns if c.name != "id"]
    assert list(verifier.app._AUDIT_COLUMNS) == columns
    statement = verifier.app._SQLITE_AUDIT_INSERT
    named = statement.split("(", 1)[1].split(")", 1)[0]
    assert statement.startswith("INSERT INTO verifier_audit (")
    assert named.split(", ") == columns
    assert statement.count("?") == len(columns)


def _create_schema_at_once(url: str, barrier: Any) -> None:
    engine = create_engine(url)
    barrier.wait(10)
    create_schema(engine)
    engine.dispose()


def test_workers_starting_at_once_create_the_tables_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    barrier = context.Barrier(4)
    workers = [
        context.Process(target=_create_schema_at_once, args=(url, barrier)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]


def test_the_wal_starts_over_under_continuous_writes(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two writers (two worker processes, as far as the lock file is concerned) never pause:
    # a checkpoint that ran only beside them would never reach the end of the WAL.
    monkeypatch.setattr(verifier.db, "CHECKPOINT_EVERY", 25)
    second_engine = create_engine(str(engine.url))
    writers = [Writer(engine), Writer(second_engine)]
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: writers[n % 2].run(partial(_add_audit_row, n=n)), range(3000)))
    finally:
        for writer in writers:
            writer.close()
        second_engine.dispose()
    assert _count(engine, audit_table) == 3000
    # 3000 commits of a few pages each make a WAL of over 30 MB if it never starts over.
    assert (tmp_path / "verifier.sqlite3-wal").stat().st_size < 4 * 1024 * 1024
