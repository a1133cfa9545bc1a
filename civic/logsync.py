"""Client sync against the registry log, and offline trust bundles.

Implements docs/registry.md, "Client sync and bundles": a checkpoint is believed only with the
log's signature and a quorum of witness cosignatures (C2SP tlog-checkpoint, tlog-cosignature;
:func:`civic.checkpoint.verify_witnessed_checkpoint`); the new tree must extend the last trusted
one (RFC 9162 section 2.1.4 consistency proof, then the root recomputed from the previous
compact range and the new leaves, RFC 9162 section 2.1.1); then every new entry is validated and
folded (:mod:`civic.trust`). Any failure raises with its reason code; snapshots are immutable,
so the caller's previous snapshot stays in force.

Precedence when several things are wrong: the checkpoint and witnesses first, then rollback /
fork / consistency, then the root over all fetched leaves, and only then an entry that does
not validate. So tampering with the served entries always shows as ``log_root_mismatch``, and
entry validation codes mean the *witnessed* log holds a bad entry.

A witness whose name is configured but whose cosignature line carries another key ID counts
for nothing; when that costs the quorum, the error is ``witness_key_mismatch`` rather than
``witness_quorum_not_met``, because the configuration (or the witness) needs attention.

Bundle freshness: a bundle's age is ``now`` minus the time at which a full quorum had cosigned,
i.e. the quorum-th newest counted cosignature timestamp (one fresh witness cannot make a bundle
fresh on its own). Without witnesses (quorum 0) no age can be established and the bundle is
stale.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from civic.checkpoint import (
    DEFAULT_MAX_FUTURE_SKEW,
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    WitnessCosignature,
    WitnessedCheckpoint,
    sign_checkpoint,
    verify_witnessed_checkpoint,
)
from civic.clock import Clock, system_clock
from civic.encoding import json_dumps_canonical, json_loads, utf8_decode
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError
from civic.merkle import MerkleTree, leaf_hash, node_hash, verify_consistency
from civic.note import NoteSigner, Verifier, parse_unverified_note
from civic.trust import (
    GovernanceConfig,
    SignedEntry,
    TrustState,
    compact_range_append,
    compact_range_root,
    parse_entry,
)

BUNDLE_FORMAT = "civic-trust-bundle/1"
PAGE_SIZE = 1000
MAX_BUNDLE_ENTRIES = 10_000_000


class LogSource(Protocol):
    """Where a client reads the log from (``registry.client.HttpLogSource``, :class:`MemoryLog`).

    Implementations raise ``log_unavailable`` for transport failures.
    """

    def checkpoint(self) -> bytes:
        """The latest signed checkpoint note, with the witness cosignatures."""
        ...

    def entries(self, start: int, end: int) -> list[bytes]:
        """Leaf bytes of entries ``[start, end)`` (a prefix of them is allowed)."""
        ...

    def consistency_proof(self, old: int, new: int) -> list[bytes]: ...


@dataclass(frozen=True)
class LogConfig:
    """What a relying party is configured with out of band."""

    origin: str
    log_verifier: Verifier
    witnesses: tuple[CosignatureVerifier, ...]
    witness_quorum: int
    governance: GovernanceConfig
    max_future_skew: int = DEFAULT_MAX_FUTURE_SKEW

    def __post_init__(self) -> None:
        object.__setattr__(self, "witnesses", tuple(self.witnesses))
        if not 0 <= self.witness_quorum <= len(self.witnesses):
            raise UsageError(
                ReasonCode.WITNESS_QUORUM_NOT_MET, "witness quorum must be in [0, witnesses]"
            )


@dataclass(frozen=True)
class TrustSnapshot:
    """A witnessed checkpoint and the trust state folded from exactly its entries.

    ``entries`` holds the leaf bytes when the sync was asked to retain them (needed to export
    a bundle). ``age`` and ``stale`` are set by :func:`verify_bundle`; a snapshot from
    :func:`sync` is fresh when made, use :meth:`age_at` / :meth:`ensure_fresh` later on.
    """

    note: bytes = field(repr=False)
    checkpoint: Checkpoint
    cosignatures: tuple[WitnessCosignature, ...]
    state: TrustState
    witness_quorum: int
    entries: tuple[bytes, ...] | None = field(default=None, repr=False)
    age: int | None = None
    stale: bool = False

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root_hash(self) -> bytes:
        return self.checkpoint.root_hash

    @property
    def compact_range(self) -> tuple[bytes, ...]:
        """Right-edge subtree roots of the tree: extends it without the old entries."""
        return self.state.compact_range

    @property
    def witness_timestamps(self) -> dict[str, int]:
        return {c.witness.name: c.timestamp for c in self.cosignatures}

    @property
    def witnessed_at(self) -> int | None:
        """When a full quorum of witnesses had cosigned (quorum-th newest timestamp)."""
        if self.witness_quorum == 0 or len(self.cosignatures) < self.witness_quorum:
            return None
        newest_first = sorted((c.timestamp for c in self.cosignatures), reverse=True)
        return newest_first[self.witness_quorum - 1]

    def age_at(self, now: int) -> int | None:
        witnessed = self.witnessed_at
        return None if witnessed is None else max(0, now - witnessed)

    def ensure_fresh(self, now: int, max_age: int) -> None:
        """Raise ``trust_stale`` unless a witness quorum vouched within ``max_age`` seconds."""
        age = self.age_at(now)
        if age is None or age > max_age:
            raise VerificationError(ReasonCode.TRUST_STALE, "trust snapshot is older than allowed")

    def to_json(self) -> dict[str, Any]:
        """A summary for display."""
        return {
            "origin": self.checkpoint.origin,
            "size": self.size,
            "witness_timestamps": self.witness_timestamps,
            "age": self.age,
            "stale": self.stale,
            "state": self.state.to_json(),
        }


def _roots_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def _open_checkpoint(note: bytes, config: LogConfig, now: Clock) -> WitnessedCheckpoint:
    try:
        return verify_witnessed_checkpoint(
            note,
            config.log_verifier,
            config.witnesses,
            config.witness_quorum,
            origin=config.origin,
            now=now,
            max_future_skew=config.max_future_skew,
        )
    except VerificationError as error:
        if error.reason is ReasonCode.WITNESS_QUORUM_NOT_MET and _has_key_mismatch(note, config):
            raise VerificationError(
                ReasonCode.WITNESS_KEY_MISMATCH,
                f"{error.detail}; a configured witness signed with another key",
            ) from None
        raise


def _has_key_mismatch(note: bytes, config: LogConfig) -> bool:
    configured = {(w.name, w.key_id) for w in config.witnesses}
    names = {w.name for w in config.witnesses}
    return any(
        signature.name in names and (signature.name, signature.key_id) not in configured
        for signature in parse_unverified_note(note).unverified
    )


def _checked_note(note: object) -> bytes:
    if isinstance(note, str):
        return note.encode("utf-8")
    if not isinstance(note, bytes):
        raise MalformedError(ReasonCode.MALFORMED_NOTE, "log source returned a non-bytes note")
    return note


def sync(
    source: LogSource,
    config: LogConfig,
    previous: TrustSnapshot | None,
    now: Clock = system_clock,
    *,
    page_size: int = PAGE_SIZE,
    retain_entries: bool = False,
    workers: int | None = None,
) -> TrustSnapshot:
    """Bring ``previous`` (or genesis) up to the source's latest witnessed checkpoint.

    Fetches only the entries after ``previous.size``, in pages of ``page_size``. With
    ``retain_entries`` the new snapshot keeps every leaf (the previous snapshot's too, which
    must then have been retained) so it can be exported with :func:`export_bundle`.
    """
    if page_size < 1:
        raise UsageError(ReasonCode.INDEX_OUT_OF_RANGE, "page size must be positive")
    if previous is not None and previous.checkpoint.origin != config.origin:
        raise UsageError(ReasonCode.CHECKPOINT_ORIGIN_MISMATCH, "previous snapshot of another log")
    if retain_entries and previous is not None and previous.entries is None:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "the previous snapshot kept no entries")
    note = _checked_note(source.checkpoint())
    witnessed = _open_checkpoint(note, config, now)
    checkpoint = witnessed.checkpoint
    state = previous.state if previous is not None else TrustState.genesis(config.governance)
    old_size = state.size
    if previous is not None:
        if checkpoint.size < previous.size:
            raise VerificationError(
                ReasonCode.LOG_ROLLBACK,
                f"log checkpoint size {checkpoint.size} is below the trusted {previous.size}",
            )
        if checkpoint.size == previous.size:
            if not _roots_equal(checkpoint.root_hash, previous.root_hash):
                raise VerificationError(
                    ReasonCode.LOG_FORK, f"two different roots for tree size {checkpoint.size}"
                )
        elif previous.size > 0:
            proof = source.consistency_proof(previous.size, checkpoint.size)
            verify_consistency(
                previous.size, checkpoint.size, proof, previous.root_hash, checkpoint.root_hash
            )
    leaves: list[bytes] | None = None
    if retain_entries:
        leaves = list(previous.entries or ()) if previous is not None else []
    state = _fetch_and_fold(
        source.entries,
        state,
        checkpoint,
        page_size=page_size,
        retained=leaves,
        workers=workers,
    )
    assert state.size == checkpoint.size and old_size <= state.size
    return TrustSnapshot(
        note=note,
        checkpoint=checkpoint,
        cosignatures=witnessed.cosignatures,
        state=state,
        witness_quorum=config.witness_quorum,
        entries=tuple(leaves) if leaves is not None else None,
    )


class _LeafStream:
    """The leaves ``[start, end)`` of a log, fetched page by page, hashed in order.

    Hashes go into a compact range (right-edge subtree roots, RFC 9162 section 2.1.1) that
    starts from the trusted one, so the final root covers the old tree plus every new leaf.
    The folded state takes its compact range from here too (:meth:`folded_range`): hashing
    each leaf once serves both the root check and the state.
    """

    def __init__(
        self,
        fetch: Callable[[int, int], list[bytes]],
        state: TrustState,
        end: int,
        page_size: int,
        retained: list[bytes] | None,
    ) -> None:
        self._fetch = fetch
        self._end = end
        self._page_size = page_size
        self._retained = retained
        self._page: list[bytes] = []
        self._offset = 0
        self.position = state.size
        self._hashed = state.size
        self._stack = list(state.compact_range)
        self._yielded_range: tuple[int, tuple[bytes, ...]] | None = None
        self.failure: CivicError | None = None
        self.parse_error: CivicError | None = None

    def _has_leaf(self) -> bool:
        """True when ``_page[_offset]`` is the next leaf, fetching a page when needed."""
        if self._offset < len(self._page):
            return True
        if self.position >= self._end:
            return False
        try:
            self._next_page()
        except CivicError as error:
            self.failure = error
            raise
        return True

    def _next_page(self) -> None:
        position, end = self.position, self._end
        page = self._fetch(position, min(end, position + self._page_size))
        if not isinstance(page, list) or not page:
            raise VerificationError(
                ReasonCode.LOG_ROOT_MISMATCH,
                f"the log serves no entry at index {position} below its size {end}",
            )
        if len(page) > end - position:
            raise VerificationError(
                ReasonCode.LOG_ROOT_MISMATCH, "the log serves more entries than its checkpoint"
            )
        if not all(isinstance(leaf, bytes) for leaf in page):
            raise MalformedError(
                ReasonCode.REGISTRY_ENTRY_MALFORMED, "the log source returned a non-bytes leaf"
            )
        if self._retained is not None:
            self._retained.extend(page)
        self._page = page
        self._offset = 0

    def _add_hash(self, digest: bytes) -> None:
        stack, index = self._stack, self._hashed
        while index & 1:
            digest = node_hash(stack.pop(), digest)
            index >>= 1
        stack.append(digest)
        self._hashed += 1

    def root(self) -> bytes:
        return compact_range_root(self._stack)

    def folded_range(self) -> tuple[int, tuple[bytes, ...]]:
        """Size and compact range of the tree up to the last entry :meth:`entries` yielded."""
        if self._yielded_range is not None:
            return self._yielded_range
        return self._hashed, tuple(self._stack)

    def entries(self) -> Iterator[SignedEntry]:
        """Parse and hash leaves; stop (recording the error) at the first unparsable one."""
        while self._has_leaf():
            page = self._page
            for offset in range(self._offset, len(page)):
                leaf = page[offset]
                self._offset = offset + 1
                self.position += 1
                try:
                    entry = parse_entry(leaf, require_canonical=True)
                except CivicError as error:
                    self._yielded_range = (self._hashed, tuple(self._stack))
                    self._add_hash(leaf_hash(leaf))
                    index = self.position - 1
                    self.parse_error = type(error)(error.reason, f"entry {index}: {error.detail}")
                    return
                self._add_hash(entry.leaf_hash())
                yield entry

    def drain(self) -> None:
        """Hash whatever the fold left unread."""
        while self._has_leaf():
            page = self._page
            for leaf in page[self._offset :]:
                self._add_hash(leaf_hash(leaf))
            self.position += len(page) - self._offset
            self._offset = len(page)


def _fetch_and_fold(
    fetch: Callable[[int, int], list[bytes]],
    state: TrustState,
    checkpoint: Checkpoint,
    *,
    page_size: int,
    retained: list[bytes] | None,
    workers: int | None,
) -> TrustState:
    """Fetch ``[state.size, checkpoint.size)``, check the root, fold; see the module doc.

    Leaves stream through parsing into :meth:`TrustState.apply_many`, so memory holds a page
    or so, not the log. A validation error is held back until every leaf is hashed, because a
    root mismatch explains it better.
    """
    stream = _LeafStream(fetch, state, checkpoint.size, page_size, retained)
    fold_error: CivicError | None = None
    try:
        state = state._apply_many(
            stream.entries(), workers, stream.folded_range, checkpoint.size - state.size
        )
    except CivicError as error:
        if stream.failure is not None:
            raise stream.failure from None
        fold_error = error
    stream.drain()
    if not _roots_equal(stream.root(), checkpoint.root_hash):
        raise VerificationError(
            ReasonCode.LOG_ROOT_MISMATCH, "the entries do not hash to the checkpoint root"
        )
    # A fold error concerns an entry before any parse error: entries are parsed in order.
    if fold_error is not None:
        raise fold_error
    if stream.parse_error is not None:
        raise stream.parse_error
    return state


# --- bundles --------------------------------------------------------------------------------


def export_bundle(
    snapshot: TrustSnapshot, entries: Sequence[bytes] | None = None
) -> dict[str, Any]:
    """The offline trust bundle of ``snapshot``: its checkpoint note and every entry.

    ``entries`` are the leaf bytes of the whole log up to the snapshot's size; by default the
    ones the snapshot retained (``sync(..., retain_entries=True)``). They are checked against
    the checkpoint root so that a bundle never carries something its checkpoint does not cover.
    """
    leaves = snapshot.entries if entries is None else tuple(entries)
    if leaves is None:
        raise UsageError(ReasonCode.MALFORMED_BUNDLE, "the snapshot kept no entries to export")
    if len(leaves) != snapshot.size:
        raise UsageError(ReasonCode.MALFORMED_BUNDLE, "entries do not match the checkpoint size")
    range_ = compact_range_append((), 0, (leaf_hash(leaf) for leaf in leaves))
    if not _roots_equal(compact_range_root(range_), snapshot.root_hash):
        raise UsageError(ReasonCode.LOG_ROOT_MISMATCH, "entries do not match the checkpoint root")
    return {
        "format": BUNDLE_FORMAT,
        "checkpoint": utf8_decode(snapshot.note),
        "entries": [json_loads(leaf) for leaf in leaves],
    }


def _bad_bundle(detail: str) -> MalformedError:
    return MalformedError(ReasonCode.MALFORMED_BUNDLE, detail)


def _bundle_leaves(bundle: object) -> tuple[bytes, list[bytes]]:
    if isinstance(bundle, bytes | str):
        try:
            bundle = json_loads(bundle)
        except MalformedError as error:
            raise _bad_bundle(f"bundle is not JSON ({error.reason.value})") from None
    if not isinstance(bundle, Mapping):
        raise _bad_bundle("bundle must be a JSON object")
    if set(bundle) != {"format", "checkpoint", "entries"}:
        raise _bad_bundle('bundle is exactly {"format", "checkpoint", "entries"}')
    if bundle["format"] != BUNDLE_FORMAT:
        raise _bad_bundle(f"bundle format is not {BUNDLE_FORMAT}")
    note, entries = bundle["checkpoint"], bundle["entries"]
    if not isinstance(note, str) or not isinstance(entries, list):
        raise _bad_bundle("checkpoint must be the note text and entries a list")
    if len(entries) > MAX_BUNDLE_ENTRIES:
        raise _bad_bundle("bundle has too many entries")
    leaves: list[bytes] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise _bad_bundle("every bundle entry is a JSON object")
        try:
            leaves.append(json_dumps_canonical(entry).encode("utf-8"))
        except (TypeError, ValueError, RecursionError):
            raise _bad_bundle("a bundle entry is not JSON") from None
    try:
        note_bytes = note.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad_bundle("checkpoint is not valid UTF-8") from None
    return note_bytes, leaves


def verify_bundle(
    bundle: Mapping[str, Any] | bytes | str,
    config: LogConfig,
    now: Clock = system_clock,
    max_age: int | None = None,
    *,
    workers: int | None = None,
) -> TrustSnapshot:
    """Verify an offline bundle from scratch (checkpoint, witnesses, root, every entry).

    The returned snapshot carries its ``age`` (see the module doc) and ``stale`` when that age
    exceeds ``max_age`` or cannot be established; ``max_age=None`` never marks it stale. A stale
    snapshot is still a correct view of the log: callers must turn verdicts based on it into
    ``undetermined``, never ``valid``.
    """
    note, leaves = _bundle_leaves(bundle)
    witnessed = _open_checkpoint(note, config, now)
    checkpoint = witnessed.checkpoint
    if len(leaves) != checkpoint.size:
        raise VerificationError(
            ReasonCode.LOG_ROOT_MISMATCH,
            f"bundle has {len(leaves)} entries for a checkpoint of size {checkpoint.size}",
        )
    state = _fetch_and_fold(
        lambda start, end: leaves[start:end],
        TrustState.genesis(config.governance),
        checkpoint,
        page_size=PAGE_SIZE,
        retained=None,
        workers=workers,
    )
    snapshot = TrustSnapshot(
        note=note,
        checkpoint=checkpoint,
        cosignatures=witnessed.cosignatures,
        state=state,
        witness_quorum=config.witness_quorum,
        entries=tuple(leaves),
    )
    age = snapshot.age_at(now())
    return replace(snapshot, age=age, stale=max_age is not None and (age is None or age > max_age))


# --- an in-memory log -----------------------------------------------------------------------


class MemoryLog:
    """An in-memory log that serves as a :class:`LogSource`: for tests, demos and tools.

    ``append`` takes leaves as given (no validation: tests use it to build bad logs too);
    ``publish`` signs a checkpoint of the current tree with the log key and has every witness
    cosign it. The served checkpoint, entries and proofs are plain attributes/methods that
    tests may override to play a misbehaving log.
    """

    def __init__(
        self,
        origin: str,
        log_signer: NoteSigner,
        witnesses: Sequence[CosignatureSigner] = (),
    ) -> None:
        self.origin = origin
        self.log_signer = log_signer
        self.witnesses = list(witnesses)
        self.tree = MerkleTree()
        self.leaves: list[bytes] = []
        self.note: bytes | None = None

    def append(self, entry: SignedEntry | bytes) -> int:
        leaf = entry.leaf_bytes() if isinstance(entry, SignedEntry) else entry
        self.leaves.append(leaf)
        return self.tree.append(leaf_hash(leaf))

    def checkpoint_at(self, size: int | None = None) -> Checkpoint:
        size = self.tree.size() if size is None else size
        return Checkpoint(self.origin, size, self.tree.root(size))

    def sign(
        self, checkpoint: Checkpoint, witnesses: Sequence[CosignatureSigner] | None = None
    ) -> bytes:
        cosigners = self.witnesses if witnesses is None else witnesses
        return sign_checkpoint(checkpoint, [self.log_signer, *cosigners])

    def publish(self) -> bytes:
        """Sign and serve a checkpoint of the whole tree; returns the note."""
        self.note = self.sign(self.checkpoint_at())
        return self.note

    # LogSource

    def checkpoint(self) -> bytes:
        if self.note is None:
            raise VerificationError(ReasonCode.LOG_UNAVAILABLE, "no checkpoint published yet")
        return self.note

    def entries(self, start: int, end: int) -> list[bytes]:
        if not 0 <= start <= end:
            raise UsageError(ReasonCode.INDEX_OUT_OF_RANGE, "bad entry range")
        return self.leaves[start:end]

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        return self.tree.consistency_proof(old, new)
