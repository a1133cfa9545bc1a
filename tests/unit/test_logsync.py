"""Client sync against the registry log, attacks on it, and offline trust bundles."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civic import trust
from civic.checkpoint import Checkpoint, CosignatureSigner, sign_checkpoint
from civic.clock import FixedClock
from civic.encoding import json_dumps, json_loads
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError
from civic.logsync import (
    BUNDLE_FORMAT,
    LogConfig,
    MemoryLog,
    TrustSnapshot,
    export_bundle,
    sync,
    verify_bundle,
)
from civic.merkle import MerkleTree, leaf_hash
from civic.note import NoteSigner, sign_note
from civic.trust import SignedEntry, TrustState, parse_entry, sign_event
from tests.unit.test_trust import ISSUER, NOW, Governance, private_key

ORIGIN = "registry.civic.example/seoul"


def _seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


class World:
    """A governance, a log with three witnesses (quorum 2) and a relying party's config."""

    def __init__(self, label: str = "world", *, witness_quorum: int = 2) -> None:
        self.gov = Governance(n=3, quorum=2, label=label)
        self.clock = FixedClock(NOW)
        self.witness_clocks = [FixedClock(NOW - 30 * i) for i in range(3)]
        self.witnesses = [
            CosignatureSigner(f"witness{i}.example", _seed(f"{label}/w{i}"), self.witness_clocks[i])
            for i in range(3)
        ]
        self.log = MemoryLog(ORIGIN, NoteSigner(ORIGIN, _seed(f"{label}/log")), self.witnesses)
        self.config = LogConfig(
            origin=ORIGIN,
            log_verifier=self.log.log_signer.verifier(),
            witnesses=tuple(w.verifier() for w in self.witnesses),
            witness_quorum=witness_quorum,
            governance=self.gov.config,
        )
        self.issued = 0

    def grow(self, count: int) -> list[SignedEntry]:
        """Append ``count`` accreditation entries and publish a witnessed checkpoint."""
        entries = []
        for _ in range(count):
            self.issued += 1
            entry = (
                self.gov.verifier_add(f"v{self.issued}", verifier=f"https://v{self.issued}.example")
                if self.issued % 3 == 0
                else self.gov.issuer_add(f"k{self.issued}")
            )
            self.log.append(entry)
            entries.append(entry)
        self.log.publish()
        return entries

    def sync(self, previous: TrustSnapshot | None = None, **kwargs: Any) -> TrustSnapshot:
        return sync(self.log, self.config, previous, self.clock, **kwargs)


class Recording:
    """A LogSource wrapper that records what the client asked for."""

    def __init__(self, inner: MemoryLog) -> None:
        self.inner = inner
        self.entry_calls: list[tuple[int, int]] = []
        self.proof_calls: list[tuple[int, int]] = []

    def checkpoint(self) -> bytes:
        return self.inner.checkpoint()

    def entries(self, start: int, end: int) -> list[bytes]:
        self.entry_calls.append((start, end))
        return self.inner.entries(start, end)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        self.proof_calls.append((old, new))
        return self.inner.consistency_proof(old, new)


class Tampered:
    """A LogSource serving a real checkpoint with other entries or proofs."""

    def __init__(
        self,
        inner: MemoryLog,
        leaves: list[bytes] | None = None,
        proof: Callable[[list[bytes]], list[bytes]] | None = None,
        note: bytes | None = None,
    ) -> None:
        self.inner = inner
        self.leaves = list(inner.leaves) if leaves is None else leaves
        self.proof = proof
        self.note = note

    def checkpoint(self) -> bytes:
        return self.note if self.note is not None else self.inner.checkpoint()

    def entries(self, start: int, end: int) -> list[bytes]:
        return self.leaves[start:end]

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        proof = self.inner.consistency_proof(old, new)
        return self.proof(proof) if self.proof is not None else proof


def reason_of(action: Callable[[], object]) -> ReasonCode:
    with pytest.raises(CivicError) as caught:
        action()
    return caught.value.reason


def assert_unchanged(snapshot: TrustSnapshot, before: dict[str, Any]) -> None:
    assert snapshot.to_json() == before
    assert snapshot.state.root == snapshot.root_hash


# --- honest logs ----------------------------------------------------------------------------


def test_sync_from_genesis_folds_the_witnessed_log() -> None:
    world = World("genesis")
    entries = world.grow(6)
    snapshot = world.sync()
    assert snapshot.size == 6 and snapshot.state.size == 6
    assert snapshot.root_hash == snapshot.state.root == world.log.tree.root()
    assert snapshot.state.issuer_key(ISSUER, "k1") is not None
    assert snapshot.state.verifier("https://v3.example") is not None
    assert snapshot.compact_range == snapshot.state.compact_range
    assert snapshot.note == world.log.checkpoint() and snapshot.entries is None
    assert snapshot.witness_timestamps == {
        "witness0.example": NOW, "witness1.example": NOW - 30, "witness2.example": NOW - 60
    }  # fmt: skip
    assert snapshot.witnessed_at == NOW - 30  # the second newest: quorum 2
    assert snapshot.age_at(NOW + 70) == 100 and not snapshot.stale
    expected = TrustState.genesis(world.gov.config).apply_many(entries, workers=0)
    assert snapshot.state.to_json() == expected.to_json()


def test_empty_log_syncs_to_the_genesis_state() -> None:
    world = World("empty")
    world.log.publish()
    snapshot = world.sync()
    assert snapshot.size == 0 and snapshot.state.governance == world.gov.config
    again = world.sync(snapshot)
    assert again.size == 0
    world.grow(2)
    assert world.sync(again).size == 2


def test_incremental_sync_fetches_only_new_entries() -> None:
    world = World("incremental")
    world.grow(5)
    recording = Recording(world.log)
    first = sync(recording, world.config, None, world.clock)
    assert recording.entry_calls == [(0, 5)] and recording.proof_calls == []
    world.grow(7)
    recording.entry_calls.clear()
    second = sync(recording, world.config, first, world.clock)
    assert recording.entry_calls == [(5, 12)] and recording.proof_calls == [(5, 12)]
    assert second.size == 12 and second.state.root == world.log.tree.root()
    assert second.state.to_json() == world.sync().state.to_json()
    assert first.size == 5  # the previous snapshot is untouched
    # Nothing new: no entries and no proof, the same state under the fresher checkpoint.
    recording.entry_calls.clear()
    recording.proof_calls.clear()
    world.witness_clocks[0].advance(600)
    world.clock.advance(600)
    world.log.publish()
    third = sync(recording, world.config, second, world.clock)
    assert recording.entry_calls == [] and recording.proof_calls == []
    assert third.state is second.state and third.witness_timestamps["witness0.example"] == NOW + 600


def test_entries_are_fetched_in_pages() -> None:
    world = World("pages")
    world.grow(10)
    recording = Recording(world.log)
    snapshot = sync(recording, world.config, None, world.clock, page_size=4)
    assert recording.entry_calls == [(0, 4), (4, 8), (8, 10)]
    assert snapshot.size == 10
    with pytest.raises(UsageError):
        sync(recording, world.config, None, world.clock, page_size=0)


def test_a_source_may_answer_with_a_short_page() -> None:
    world = World("short-pages")
    world.grow(7)

    class Short(Recording):
        def entries(self, start: int, end: int) -> list[bytes]:
            self.entry_calls.append((start, end))
            return self.inner.entries(start, min(end, start + 2))

    short = Short(world.log)
    assert sync(short, world.config, None, world.clock).size == 7
    assert short.entry_calls == [(0, 7), (2, 7), (4, 7), (6, 7)]


@settings(max_examples=12)
@given(st.integers(0, 9), st.integers(0, 9))
def test_two_step_sync_equals_one_step(first: int, more: int) -> None:
    world = World(f"steps-{first}-{more}")
    world.grow(first)
    early = world.sync()
    world.grow(more)
    stepped = world.sync(early)
    direct = world.sync()
    assert stepped.state.to_json() == direct.state.to_json()
    assert stepped.compact_range == direct.compact_range


@pytest.mark.parametrize("checkers", ["threads", "processes"])
def test_threaded_sync_over_pages_and_chunks(
    monkeypatch: pytest.MonkeyPatch, checkers: str
) -> None:
    # Signature chunks of 8 and pages of 7 never line up; the state's compact range comes from
    # the leaf stream, so it must be the very one a fold computes on its own.
    monkeypatch.setattr(trust, "_CHUNK", 8)
    monkeypatch.setattr(trust, "_PROCESS_CHUNK", 8)
    if checkers == "processes":
        # Every sync counts as large: its signatures go to checker processes.
        monkeypatch.setattr(trust, "_PROCESS_MIN_ENTRIES", 1)
    world = World("threaded")
    world.grow(12)
    early = world.sync(workers=0)
    world.grow(25)
    inline = world.sync(workers=0)
    for previous in (None, early):
        threaded = world.sync(previous, workers=1, page_size=7)
        assert threaded.state.to_json() == inline.state.to_json()
        assert threaded.compact_range == inline.compact_range
        assert threaded.state.root == world.log.tree.root()
    folded = TrustState.genesis(world.gov.config).apply_many(
        [parse_entry(leaf, require_canonical=True) for leaf in world.log.leaves], workers=1
    )
    assert folded.compact_range == inline.compact_range and folded.size == 37
    world.log.append(b"not json")
    world.grow(20)
    for workers in (0, 1):
        with pytest.raises(MalformedError) as caught:
            world.sync(early, workers=workers, page_size=7)
        assert caught.value.detail.startswith("entry 37: ")


# --- attacks: each detected with its reason, the previous snapshot unchanged ---------------


@pytest.fixture
def synced() -> tuple[World, TrustSnapshot, dict[str, Any]]:
    world = World("attacks")
    world.grow(5)
    previous = world.sync()
    world.grow(4)
    return world, previous, previous.to_json()


def _attack(
    world: World, previous: TrustSnapshot | None, source: object, before: dict[str, Any] | None
) -> ReasonCode:
    reason = reason_of(lambda: sync(source, world.config, previous, world.clock))  # type: ignore[arg-type]
    if previous is not None and before is not None:
        assert_unchanged(previous, before)
    return reason


def test_tampered_entry(synced: tuple[World, TrustSnapshot, dict[str, Any]]) -> None:
    world, previous, before = synced
    leaves = list(world.log.leaves)
    leaves[6] = leaves[6].replace(b"k7", b"k8")
    assert _attack(world, previous, Tampered(world.log, leaves), before) is (
        ReasonCode.LOG_ROOT_MISMATCH
    )
    # Also from genesis, and with a tampered entry that no longer parses.
    leaves[1] = b"{" + leaves[1]
    assert _attack(world, None, Tampered(world.log, leaves), None) is ReasonCode.LOG_ROOT_MISMATCH


def test_removed_entry(synced: tuple[World, TrustSnapshot, dict[str, Any]]) -> None:
    world, previous, before = synced
    leaves = list(world.log.leaves)
    del leaves[6]
    assert _attack(world, previous, Tampered(world.log, leaves), before) is (
        ReasonCode.LOG_ROOT_MISMATCH
    )


def test_reordered_entries(synced: tuple[World, TrustSnapshot, dict[str, Any]]) -> None:
    world, previous, before = synced
    leaves = list(world.log.leaves)
    leaves[5], leaves[7] = leaves[7], leaves[5]
    assert _attack(world, previous, Tampered(world.log, leaves), before) is (
        ReasonCode.LOG_ROOT_MISMATCH
    )


def test_extra_entries_are_refused(synced: tuple[World, TrustSnapshot, dict[str, Any]]) -> None:
    world, previous, before = synced

    class Overlong(Tampered):
        def entries(self, start: int, end: int) -> list[bytes]:
            return self.leaves[start : end + 1]

    leaves = [*world.log.leaves, world.gov.issuer_add("extra").leaf_bytes()]
    assert _attack(world, previous, Overlong(world.log, leaves), before) is (
        ReasonCode.LOG_ROOT_MISMATCH
    )


def test_forked_log_same_size_other_root(
    synced: tuple[World, TrustSnapshot, dict[str, Any]],
) -> None:
    world, previous, before = synced
    # The log signs, and witnesses that were fooled cosign, a second tree of size 5.
    fork = MerkleTree()
    fork.append_many(leaf_hash(leaf) for leaf in world.log.leaves[:4])
    fork.append(leaf_hash(world.gov.issuer_add("forked").leaf_bytes()))
    note = world.log.sign(Checkpoint(ORIGIN, 5, fork.root()))
    assert _attack(world, previous, Tampered(world.log, note=note), before) is ReasonCode.LOG_FORK


def test_forked_history_at_a_larger_size(
    synced: tuple[World, TrustSnapshot, dict[str, Any]],
) -> None:
    world, previous, before = synced
    # A rewritten log of size 9 whose first 5 leaves differ from what we trusted.
    rewritten = MemoryLog(ORIGIN, world.log.log_signer, world.witnesses)
    for leaf in [world.gov.issuer_add("rewritten").leaf_bytes(), *world.log.leaves[1:]]:
        rewritten.append(leaf)
    rewritten.publish()
    assert _attack(world, previous, rewritten, before) is ReasonCode.CONSISTENCY_PROOF_INVALID


def test_bad_consistency_proofs(synced: tuple[World, TrustSnapshot, dict[str, Any]]) -> None:
    world, previous, before = synced

    def flip(proof: list[bytes]) -> list[bytes]:
        return [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]

    assert _attack(world, previous, Tampered(world.log, proof=flip), before) is (
        ReasonCode.CONSISTENCY_PROOF_INVALID
    )
    assert _attack(world, previous, Tampered(world.log, proof=lambda p: p[:-1]), before) is (
        ReasonCode.MALFORMED_PROOF
    )


def test_rollback_to_a_smaller_tree(synced: tuple[World, TrustSnapshot, dict[str, Any]]) -> None:
    world, _, _ = synced
    latest = world.sync()
    before = latest.to_json()
    old_note = world.log.sign(world.log.checkpoint_at(5))
    assert _attack(world, latest, Tampered(world.log, note=old_note), before) is (
        ReasonCode.LOG_ROLLBACK
    )


def test_entry_without_valid_governance_signatures() -> None:
    world = World("ungoverned")
    world.grow(3)
    previous = world.sync()
    before = previous.to_json()
    # A log that appends (and witnesses that cosign) an entry no governance quorum signed.
    event = world.gov.event("issuer.key.retire", issuer=ISSUER, kid="k1", retired_at=NOW)
    world.log.append(world.gov.sign(event, ["gov-0"]))
    world.grow(1)
    with pytest.raises(VerificationError) as caught:
        world.sync(previous)
    assert caught.value.reason is ReasonCode.GOVERNANCE_QUORUM_NOT_MET
    assert caught.value.detail.startswith("entry 3: ")
    assert_unchanged(previous, before)
    # Signed by an outsider under a governance kid.
    forged = World("forged")
    forged.log.append(sign_event(event, [("gov-0", private_key("x")), ("gov-1", private_key("y"))]))
    forged.log.publish()
    assert reason_of(forged.sync) is ReasonCode.GOVERNANCE_SIGNATURE_INVALID


def test_witnessed_log_with_a_non_canonical_or_broken_entry() -> None:
    world = World("non-canonical")
    entry = world.gov.issuer_add()
    world.log.append(json_dumps(entry.to_json()).encode())  # valid JSON, members not sorted
    world.log.publish()
    assert reason_of(world.sync) is ReasonCode.REGISTRY_ENTRY_MALFORMED
    broken = World("broken")
    broken.grow(2)
    broken.log.append(b"not json")
    broken.grow(2)
    with pytest.raises(MalformedError) as caught:
        broken.sync()
    assert caught.value.reason is ReasonCode.REGISTRY_ENTRY_MALFORMED
    assert caught.value.detail.startswith("entry 2: ")


def test_first_failing_entry_is_reported() -> None:
    world = World("first-failure")
    world.grow(2)
    world.log.append(world.gov.issuer_add("k1"))  # duplicate kid at index 2
    world.log.append(b"[]")  # malformed at index 3
    world.log.publish()
    with pytest.raises(VerificationError) as caught:
        world.sync()
    assert caught.value.reason is ReasonCode.DUPLICATE_KID
    assert caught.value.detail.startswith("entry 2: ")


def test_checkpoint_short_of_the_witness_quorum(
    synced: tuple[World, TrustSnapshot, dict[str, Any]],
) -> None:
    world, previous, before = synced
    note = world.log.sign(world.log.checkpoint_at(), world.witnesses[:1])
    assert _attack(world, previous, Tampered(world.log, note=note), before) is (
        ReasonCode.WITNESS_QUORUM_NOT_MET
    )
    # Cosignatures dated in the future do not count either.
    world.witness_clocks[1].advance(3600)
    note = world.log.sign(world.log.checkpoint_at(), world.witnesses[:2])
    assert _attack(world, previous, Tampered(world.log, note=note), before) is (
        ReasonCode.WITNESS_QUORUM_NOT_MET
    )


def test_witness_key_mismatch(synced: tuple[World, TrustSnapshot, dict[str, Any]]) -> None:
    world, previous, before = synced
    # witness1 cosigns with a key other than the one the relying party configured.
    impostor = CosignatureSigner("witness1.example", _seed("impostor"), FixedClock(NOW))
    note = world.log.sign(world.log.checkpoint_at(), [world.witnesses[0], impostor])
    assert _attack(world, previous, Tampered(world.log, note=note), before) is (
        ReasonCode.WITNESS_KEY_MISMATCH
    )
    # With the quorum met by others, the stray line is ignored.
    note = world.log.sign(world.log.checkpoint_at(), [*world.witnesses[::2], impostor])
    assert sync(Tampered(world.log, note=note), world.config, previous, world.clock).size == 9


def test_checkpoint_signed_by_another_log_or_for_another_origin(
    synced: tuple[World, TrustSnapshot, dict[str, Any]],
) -> None:
    world, previous, before = synced
    stranger = NoteSigner(ORIGIN, _seed("stranger"))
    text = world.log.checkpoint_at().to_text()
    note = sign_note(text, [stranger, *world.witnesses])
    assert _attack(world, previous, Tampered(world.log, note=note), before) is (
        ReasonCode.NOTE_NO_VERIFIABLE_SIGNATURE
    )
    elsewhere = Checkpoint("registry.civic.example/busan", 9, world.log.tree.root())
    note = sign_checkpoint(elsewhere, [world.log.log_signer, *world.witnesses])
    assert _attack(world, previous, Tampered(world.log, note=note), before) is (
        ReasonCode.CHECKPOINT_ORIGIN_MISMATCH
    )


def test_sync_usage_errors() -> None:
    world = World("usage")
    world.grow(1)
    snapshot = world.sync()
    with pytest.raises(UsageError):
        LogConfig(ORIGIN, world.config.log_verifier, world.config.witnesses, 4, world.gov.config)
    other = LogConfig(
        "elsewhere.example/log",
        world.config.log_verifier,
        world.config.witnesses,
        2,
        world.gov.config,
    )
    with pytest.raises(UsageError):
        sync(world.log, other, snapshot, world.clock)
    with pytest.raises(UsageError):
        world.sync(snapshot, retain_entries=True)  # the previous snapshot kept no entries
    empty = MemoryLog(ORIGIN, world.log.log_signer)
    assert reason_of(lambda: sync(empty, world.config, None, world.clock)) is (
        ReasonCode.LOG_UNAVAILABLE
    )


# --- bundles --------------------------------------------------------------------------------


def test_bundle_round_trip() -> None:
    world = World("bundle")
    world.grow(4)
    first = world.sync(retain_entries=True)
    world.grow(3)
    latest = world.sync(first, retain_entries=True)
    assert latest.entries == tuple(world.log.leaves)
    bundle = export_bundle(latest)
    assert bundle["format"] == BUNDLE_FORMAT and len(bundle["entries"]) == 7
    # Through a file: JSON text, then loaded again.
    text = json_dumps(bundle)
    for form in (bundle, text, text.encode(), json_loads(text)):
        restored = verify_bundle(form, world.config, FixedClock(NOW + 100), max_age=3600)
        assert restored.state.to_json() == latest.state.to_json()
        assert restored.root_hash == latest.root_hash and not restored.stale
        assert restored.age == 130  # NOW + 100 minus the second newest cosignature (NOW - 30)
    # A snapshot that kept no entries exports with entries from elsewhere.
    plain = world.sync()
    assert export_bundle(plain, world.log.entries(0, 7)) == bundle
    with pytest.raises(UsageError):
        export_bundle(plain)
    with pytest.raises(UsageError):
        export_bundle(plain, world.log.entries(0, 6))
    with pytest.raises(UsageError):
        export_bundle(plain, [*world.log.entries(0, 6), b"{}"])


def test_stale_bundle() -> None:
    world = World("stale")
    world.grow(2)
    bundle = export_bundle(world.sync(retain_entries=True))
    late = FixedClock(NOW + 7 * 86400)
    stale = verify_bundle(bundle, world.config, late, max_age=86400)
    assert stale.stale and stale.age == 7 * 86400 + 30
    assert stale.state.size == 2  # still a correct view of the log, only too old to rely on
    with pytest.raises(VerificationError) as caught:
        stale.ensure_fresh(late(), 86400)
    assert caught.value.reason is ReasonCode.TRUST_STALE
    fresh = verify_bundle(bundle, world.config, FixedClock(NOW + 60), max_age=86400)
    assert not fresh.stale
    fresh.ensure_fresh(NOW + 60, 86400)
    assert not verify_bundle(bundle, world.config, late).stale  # no max_age: never stale


def test_bundle_age_needs_a_full_quorum() -> None:
    world = World("quorum-age", witness_quorum=1)
    world.grow(1)
    bundle = export_bundle(world.sync(retain_entries=True))
    one = verify_bundle(bundle, world.config, FixedClock(NOW + 10), max_age=60)
    assert one.age == 10  # quorum 1: the newest cosignature
    none = World("no-witness", witness_quorum=0)
    none.grow(1)
    unwitnessed = export_bundle(none.sync(retain_entries=True))
    snapshot = verify_bundle(unwitnessed, none.config, FixedClock(NOW), max_age=60)
    assert snapshot.age is None and snapshot.stale
    with pytest.raises(VerificationError):
        snapshot.ensure_fresh(NOW, 60)


BAD_BUNDLES: list[tuple[str, Callable[[dict[str, Any]], object]]] = [
    ("not an object", lambda b: b.clear()),
    ("wrong format", lambda b: b.update(format="civic-trust-bundle/2")),
    ("extra member", lambda b: b.update(extra=True)),
    ("checkpoint not text", lambda b: b.update(checkpoint=5)),
    ("entries not a list", lambda b: b.update(entries={})),
    ("entry not an object", lambda b: b["entries"].append("x")),
]


@pytest.mark.parametrize("change", [c for _, c in BAD_BUNDLES], ids=[n for n, _ in BAD_BUNDLES])
def test_malformed_bundles(change: Callable[[dict[str, Any]], object]) -> None:
    world = World("bad-bundles")
    world.grow(2)
    bundle = export_bundle(world.sync(retain_entries=True))
    change(bundle)
    assert reason_of(lambda: verify_bundle(bundle, world.config, world.clock)) is (
        ReasonCode.MALFORMED_BUNDLE
    )


def test_tampered_bundles() -> None:
    world = World("tampered-bundle")
    world.grow(3)
    bundle = export_bundle(world.sync(retain_entries=True))
    for bad in (b"{", b"[]", "\ud800"):
        assert reason_of(lambda bad=bad: verify_bundle(bad, world.config, world.clock)) is (
            ReasonCode.MALFORMED_BUNDLE
        )
    dropped = dict(bundle, entries=bundle["entries"][:2])
    assert reason_of(lambda: verify_bundle(dropped, world.config, world.clock)) is (
        ReasonCode.LOG_ROOT_MISMATCH
    )
    changed = json_loads(json_dumps(bundle))
    changed["entries"][1]["event"]["not_after"] += 1
    assert reason_of(lambda: verify_bundle(changed, world.config, world.clock)) is (
        ReasonCode.LOG_ROOT_MISMATCH
    )
    unwitnessed = dict(bundle, checkpoint=world.log.sign(world.log.checkpoint_at(), []).decode())
    assert reason_of(lambda: verify_bundle(unwitnessed, world.config, world.clock)) is (
        ReasonCode.WITNESS_QUORUM_NOT_MET
    )


def test_memory_log_helpers() -> None:
    world = World("memory-log")
    world.grow(3)
    assert world.log.entries(1, 2) == [world.log.leaves[1]]
    with pytest.raises(UsageError):
        world.log.entries(2, 1)
    assert world.log.checkpoint_at(2).size == 2
    assert len(world.log.consistency_proof(2, 3)) > 0
