"""Checkpoint publishing (docs/registry.md, "One sequencer" and "Witness").

After appends commit, the publisher signs a C2SP tlog-checkpoint for the current tree with the
log's note key, sends it to every configured witness (C2SP tlog-witness ``add-checkpoint``, via
``registry.witness_client``) with a consistency proof from the size that witness last
cosigned, keeps only cosignatures that verify under the witness's configured key, and stores
the note with those cosignature lines appended (signed-note: signature lines follow the text
in any order).

Appends never wait for witnesses: publishing runs on a background thread woken after each
append, coalescing bursts into one checkpoint, and each witness call is bounded by
``witness_timeout``. A checkpoint short of the witness quorum is stored and retried every
``republish_interval`` seconds; meanwhile ``GET /checkpoint`` keeps serving the newest
checkpoint that met the quorum, so clients can still sync to it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import httpx
from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from civic.checkpoint import Checkpoint, sign_checkpoint
from civic.clock import Clock, system_clock
from civic.errors import CivicError
from civic.merkle import MerkleTree
from civic.note import NoteSigner
from civic.witness import WitnessSizeConflict, attach_cosignatures
from registry.db import checkpoints_table
from registry.settings import Witness
from registry.store import SqlNodeStore
from registry.witness_client import request_cosignature

log = logging.getLogger("registry.publisher")


@dataclass(frozen=True)
class PublishedCheckpoint:
    size: int
    note: str
    cosignatures: int


class Publisher:
    """Signs, witnesses, stores and serves checkpoints of one log."""

    def __init__(
        self,
        engine: Engine,
        signer: NoteSigner,
        origin: str,
        witnesses: Sequence[Witness] = (),
        *,
        quorum: int = 0,
        witness_timeout: float = 5.0,
        republish_interval: float = 30.0,
        now: Clock = system_clock,
    ) -> None:
        self._engine = engine
        self._signer = signer
        self._origin = origin
        self._witnesses = tuple(witnesses)
        self._quorum = quorum
        self._timeout = witness_timeout
        self._interval = republish_interval
        self._now = now
        # What each witness last cosigned, as far as we know; corrected by 409 answers.
        self._witness_sizes: dict[str, int] = {w.verifier.name: 0 for w in self._witnesses}
        self._publish_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = httpx.Client(timeout=witness_timeout)

    # -- serving ---------------------------------------------------------------------------

    def latest(self) -> PublishedCheckpoint | None:
        """The newest checkpoint that met the witness quorum, else the newest one stored."""
        columns = checkpoints_table.c
        query = select(columns.size, columns.note, columns.cosignatures)
        with self._engine.connect() as connection:
            row = connection.execute(
                query.where(columns.cosignatures >= self._quorum)
                .order_by(columns.size.desc())
                .limit(1)
            ).first()
            if row is None:
                row = connection.execute(query.order_by(columns.size.desc()).limit(1)).first()
        if row is None:
            return None
        return PublishedCheckpoint(int(row[0]), str(row[1]), int(row[2]))

    # -- publishing ------------------------------------------------------------------------

    def publish(self) -> PublishedCheckpoint:
        """Checkpoint the current tree unless a checkpoint with the quorum already covers it."""
        with self._publish_lock:
            with self._engine.connect() as connection, connection.begin():
                tree = MerkleTree(SqlNodeStore(connection))
                size = tree.size()
                root = tree.root(size)
                stored = self._stored(connection, size)
            if stored is not None and stored.cosignatures >= self._quorum:
                return stored
            note = sign_checkpoint(Checkpoint(self._origin, size, root), [self._signer])
            gathered = self._gather(note, size)
            lines = [line for witness_lines in gathered for line in witness_lines]
            witnessed = attach_cosignatures(note, lines).decode("utf-8")
            cosigned = sum(1 for witness_lines in gathered if witness_lines)
            return self._store(PublishedCheckpoint(size, witnessed, cosigned))

    def _gather(self, note: bytes, size: int) -> list[list[str]]:
        """Each witness's cosignature lines, asked concurrently, each bounded in time."""
        if not self._witnesses:
            return []
        pool = ThreadPoolExecutor(max_workers=len(self._witnesses))
        try:
            futures = [pool.submit(self._ask, w, note, size) for w in self._witnesses]
            lines: list[list[str]] = []
            for witness, future in zip(self._witnesses, futures, strict=True):
                try:
                    # A conflict costs a second round trip, hence twice the per-call bound.
                    answer = future.result(timeout=2 * self._timeout + 1)
                except FutureTimeout:
                    log.warning("witness %s did not answer in time", witness.verifier.name)
                    continue
                lines.append(answer)
            return lines
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _ask(self, witness: Witness, note: bytes, size: int) -> list[str]:
        """The witness's verified cosignature lines, or [] if it refused or failed."""
        name = witness.verifier.name
        old = self._witness_sizes.get(name, 0)
        if old > size:
            # The witness saw a newer checkpoint (another replica published it).
            return []
        try:
            lines = request_cosignature(
                witness.url,
                old,
                self._consistency_proof(old, size),
                note,
                self._timeout,
                witness=witness.verifier,
                consistency_proof=lambda witness_size: self._consistency_proof(witness_size, size),
                client=self._http,
            )
        except WitnessSizeConflict as conflict:
            self._witness_sizes[name] = conflict.current_size
            log.warning("witness %s is at size %d", name, conflict.current_size)
            return []
        except (CivicError, httpx.HTTPError) as error:
            reason = error.reason.value if isinstance(error, CivicError) else type(error).__name__
            log.warning("witness %s did not cosign: %s", name, reason)
            return []
        self._witness_sizes[name] = size
        return lines

    def _consistency_proof(self, old: int, size: int) -> list[bytes]:
        if old in (0, size):
            return []
        with self._engine.connect() as connection, connection.begin():
            return MerkleTree(SqlNodeStore(connection)).consistency_proof(old, size)

    @staticmethod
    def _stored(connection: Connection, size: int) -> PublishedCheckpoint | None:
        columns = checkpoints_table.c
        row = connection.execute(
            select(columns.note, columns.cosignatures).where(columns.size == size)
        ).first()
        return None if row is None else PublishedCheckpoint(size, str(row[0]), int(row[1]))

    def _store(self, published: PublishedCheckpoint) -> PublishedCheckpoint:
        """Insert, or replace a stored note at the same size that has fewer cosignatures."""
        columns = checkpoints_table.c
        values = {
            "note": published.note,
            "cosignatures": published.cosignatures,
            "created_at": self._now(),
        }
        try:
            with self._engine.begin() as connection:
                connection.execute(checkpoints_table.insert().values(size=published.size, **values))
            return published
        except IntegrityError:
            pass
        with self._engine.begin() as connection:
            connection.execute(
                checkpoints_table.update()
                .where(columns.size == published.size)
                .where(columns.cosignatures < published.cosignatures)
                .values(**values)
            )
            stored = self._stored(connection, published.size)
        return stored if stored is not None else published

    # -- background thread -----------------------------------------------------------------

    def notify(self) -> None:
        """Ask for a new checkpoint soon; returns at once."""
        self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="checkpoint-publisher", daemon=True)
        self._thread.start()
        self.notify()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self._timeout + 5)
            self._thread = None
        self._http.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=self._interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.publish()
            except Exception:
                # Keep serving the last checkpoint; the next wake-up or interval retries.
                log.exception("publishing a checkpoint failed")
