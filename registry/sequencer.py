"""The single sequencer of the registry log (docs/registry.md, "One sequencer").

An append is one database transaction:

1. take the log lock: ``BEGIN IMMEDIATE`` on SQLite (one writer per database file),
   ``pg_advisory_xact_lock`` on PostgreSQL (released by the commit or rollback), so that
   appends from several threads or processes are serialised and the tree never forks;
2. read the tree size;
3. bring the in-memory trust state up to that size (another process may have appended) and
   validate the entry against it (``civic.trust``): any failure raises with its reason code
   and the transaction is rolled back, so nothing is appended;
4. write the entry row, the new Merkle nodes and the new size (:class:`SqlNodeStore`);
5. commit. Only then does the caller learn the index and may a checkpoint cover the entry.

The trust state cache is replaced only after a successful commit, so a failed commit can
never leave it ahead of the database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from civic.clock import Clock, system_clock
from civic.errors import CivicError
from civic.merkle import MerkleTree
from civic.trust import GovernanceConfig, SignedEntry, TrustState, parse_entry
from civic_service.db import is_sqlite
from registry.db import SQLITE_BEGIN, entries_table
from registry.store import SqlNodeStore, read_entries, read_size

SEQUENCER_LOCK_KEY = 0x43495649435F5351  # "CIVIC_SQ", the pg_advisory_xact_lock key
CATCH_UP_BATCH = 1000


@dataclass(frozen=True)
class Appended:
    index: int
    leaf_hash: bytes
    size: int


def entry_subject(entry: SignedEntry) -> str | None:
    """The public identifier an event is about, indexed for the per-issuer query."""
    event = entry.event
    for member in ("issuer", "verifier"):
        value = getattr(event, member, None)
        if isinstance(value, str):
            return value
    return None


class Sequencer:
    """Serialises appends to one log; safe to share between threads and to run in many processes."""

    def __init__(
        self,
        engine: Engine,
        governance: GovernanceConfig,
        *,
        now: Clock = system_clock,
        on_append: Callable[[Appended], None] | None = None,
    ) -> None:
        self._engine = engine
        self._governance = governance
        self._now = now
        self._on_append = on_append
        self._lock = threading.Lock()
        self._state = TrustState.genesis(governance)

    @property
    def engine(self) -> Engine:
        return self._engine

    def trust_state(self) -> TrustState:
        """The trust state at the current size of the database (catching up if needed)."""
        with self._lock, self._engine.connect() as connection, connection.begin():
            self._state = self._caught_up(connection, read_size(connection))
            return self._state

    def append(self, body: bytes) -> Appended:
        """Validate and append one posted entry; raises :class:`CivicError`, appending nothing."""
        # Any JSON spelling is accepted; the leaf is the entry's canonical JSON.
        entry = parse_entry(body)
        with self._lock:
            appended, state = self._append_locked(entry)
            self._state = state
        if self._on_append is not None:
            self._on_append(appended)
        return appended

    def _append_locked(self, entry: SignedEntry) -> tuple[Appended, TrustState]:
        with self._engine.connect() as plain:
            connection = plain
            if is_sqlite(self._engine):
                connection = plain.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            with connection.begin():
                if not is_sqlite(self._engine):
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEQUENCER_LOCK_KEY}
                    )
                size = read_size(connection)
                state = self._state = self._caught_up(connection, size)
                # Validation raises before anything is written; the rollback is then a no-op.
                new_state = state.apply(entry)
                digest = entry.leaf_hash()
                connection.execute(
                    entries_table.insert().values(
                        leaf_index=size,
                        leaf=entry.leaf_bytes(),
                        leaf_hash=digest,
                        event_type=entry.event.type,
                        subject=entry_subject(entry),
                        created_at=self._now(),
                    )
                )
                index = MerkleTree(SqlNodeStore(connection)).append(digest)
                if index != size:
                    raise RuntimeError("the tree size moved while the log lock was held")
            # Leaving the block committed: the entry is durable from here on.
        return Appended(size, digest, size + 1), new_state

    def _caught_up(self, connection: Connection, size: int) -> TrustState:
        """The cached state folded forward to ``size`` with the entries in the database."""
        state = self._state
        if state.size > size:
            # The database is behind our cache (restored from a backup?): start over.
            state = TrustState.genesis(self._governance)
        while state.size < size:
            batch = read_entries(connection, state.size, min(size, state.size + CATCH_UP_BATCH))
            if not batch:
                raise RuntimeError("the tree size counts entries that are not stored")
            if batch[0].index != state.size or batch[-1].index != state.size + len(batch) - 1:
                raise RuntimeError("the entries table has a gap")
            try:
                entries = [parse_entry(item.leaf, require_canonical=True) for item in batch]
                state = state.apply_many(entries)
            except CivicError as error:
                # A stored entry that no longer validates means the database was edited.
                raise RuntimeError(
                    f"a stored entry fails validation: {error.reason.value}: {error.detail}"
                ) from None
        return state
