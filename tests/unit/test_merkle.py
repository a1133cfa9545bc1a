"""Tests for civic.merkle: RFC 9162 hashing, proof generation over stored nodes, verification."""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civic.encoding import b64std_decode
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError
from civic.merkle import (
    EMPTY_ROOT,
    MemoryNodeStore,
    MerkleTree,
    NodeKey,
    consistency_proof_keys,
    inclusion_proof_keys,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    root_keys,
    verify_consistency,
    verify_inclusion,
)
from tests.vectors import VECTORS_DIR, load_json, vectors_path

# --- an independent reference: the recursive definitions of RFC 9162 section 2.1 -------------


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """Largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    if not d:
        return _sha(b"")
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return _sha(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], complete: bool) -> list[bytes]:
    if m == len(d):
        return [] if complete else [ref_mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], complete), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def make_leaves(count: int, salt: bytes = b"") -> list[bytes]:
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(count)]


def flip_bit(value: bytes, bit: int) -> bytes:
    flipped = bytearray(value)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


PROPERTY_MAX = 2500
LEAVES = make_leaves(PROPERTY_MAX)
TREE = MerkleTree()
TREE.append_many(LEAVES)


@cache
def ref_root(size: int) -> bytes:
    return ref_mth(LEAVES[:size])


# --- hashing --------------------------------------------------------------------------------


def test_hasher_known_answers() -> None:
    ref = load_json("merkle", "rfc6962_reference.json")
    kat = ref["hasher_kat"]
    assert EMPTY_ROOT.hex() == kat["empty"] == ref["empty_tree_root"]
    for case in kat["leaf"]:
        assert leaf_hash(bytes.fromhex(case["data_hex"])).hex() == case["leaf_hash"]
    for case in kat["node"]:
        got = node_hash(bytes.fromhex(case["left"]), bytes.fromhex(case["right"]))
        assert got.hex() == case["node_hash"]


def test_reference_tree_roots_and_stored_nodes() -> None:
    ref = load_json("merkle", "rfc6962_reference.json")
    leaves = [leaf_hash(bytes.fromhex(x)) for x in ref["leaves_hex"]]
    assert [h.hex() for h in leaves] == ref["leaf_hashes_hex"]
    store = MemoryNodeStore()
    tree = MerkleTree(store)
    for i, h in enumerate(leaves):
        assert tree.append(h) == i
    for size_text, root_hex in ref["roots_by_size"].items():
        size = int(size_text)
        assert root_from_leaf_hashes(leaves[:size]).hex() == root_hex
        assert tree.root(size).hex() == root_hex
    assert tree.root().hex() == ref["roots_by_size"]["8"]
    levels = ref["node_hashes_by_level"]["levels"]
    for level, row in enumerate(levels):
        for index, node_hex in enumerate(row):
            assert store.get(level, index).hex() == node_hex
    # Exactly the perfect subtrees are stored: 8 + 4 + 2 + 1.
    assert len(store) == sum(len(row) for row in levels) == 15


def test_ct_consistency_proofs() -> None:
    ref = load_json("merkle", "rfc6962_reference.json")
    tree = MerkleTree()
    tree.append_many(leaf_hash(bytes.fromhex(x)) for x in ref["leaves_hex"])
    for case in ref["consistency_proofs"]:
        proof = [bytes.fromhex(p) for p in case["proof"]]
        root1, root2 = bytes.fromhex(case["root1"]), bytes.fromhex(case["root2"])
        verify_consistency(case["size1"], case["size2"], proof, root1, root2)
        assert tree.consistency_proof(case["size1"], case["size2"]) == proof
        assert tree.root(case["size1"]) == root1
        assert tree.root(case["size2"]) == root2


def test_real_ct_log_inclusion_proof() -> None:
    case = load_json("merkle", "rfc6962_reference.json")["real_log_inclusion"]
    leaf = leaf_hash(bytes.fromhex(case["raw_leaf_hex"]))
    assert leaf.hex() == case["leaf_hash"]
    path = [bytes.fromhex(p) for p in case["audit_path"]]
    root = bytes.fromhex(case["root_hash"])
    index, size = case["leaf_index"], case["tree_size"]
    assert len(path) == 22
    verify_inclusion(leaf, index, size, path, root)
    assert root_from_inclusion_proof(leaf, index, size, path) == root
    with pytest.raises(VerificationError) as err:
        verify_inclusion(leaf, index, size, [*path[:-1], flip_bit(path[-1], 0)], root)
    assert err.value.reason is ReasonCode.INCLUSION_PROOF_INVALID
    with pytest.raises(MalformedError):
        verify_inclusion(leaf, index, size, path[:-1], root)


# --- transparency-dev/merkle test data --------------------------------------------------------

MERKLE_VECTORS = VECTORS_DIR / "merkle"
VECTOR_FILES = sorted(
    str(p.relative_to(MERKLE_VECTORS))
    for kind in ("inclusion", "consistency")
    for p in (MERKLE_VECTORS / kind).rglob("*.json")
)


def _decode_hashes(values: list[str] | None) -> list[bytes]:
    return [b64std_decode(v) for v in values or []]


def _run_vector(relative: str) -> tuple[dict[str, Any], CivicError | None]:
    case = load_json("merkle", *Path(relative).parts)
    try:
        if relative.startswith("inclusion/"):
            verify_inclusion(
                b64std_decode(case["leafHash"]),
                case["leafIdx"],
                case["treeSize"],
                _decode_hashes(case["proof"]),
                b64std_decode(case["root"]),
            )
        else:
            verify_consistency(
                case["size1"],
                case["size2"],
                _decode_hashes(case["proof"]),
                b64std_decode(case["root1"]),
                b64std_decode(case["root2"]),
            )
    except CivicError as error:
        return case, error
    return case, None


def test_vector_files_present() -> None:
    assert vectors_path("merkle").is_dir()
    assert len(VECTOR_FILES) == 196


@pytest.mark.vectors
@pytest.mark.parametrize("relative", VECTOR_FILES)
def test_transparency_dev_vectors(relative: str) -> None:
    case, error = _run_vector(relative)
    failed = error is not None
    assert failed == case["wantErr"], case["desc"]
    name = Path(relative).name
    if name.startswith("modified-proof"):
        # Well-formed but wrong: must be a verification failure, not a parse failure.
        assert isinstance(error, VerificationError)


def test_equal_sizes_compare_roots() -> None:
    root = leaf_hash(b"x")
    verify_consistency(1, 1, [], root, root)
    with pytest.raises(VerificationError) as err:
        verify_consistency(1, 1, [], root, leaf_hash(b"y"))
    assert err.value.reason is ReasonCode.CONSISTENCY_PROOF_INVALID


# --- verifier edge cases ----------------------------------------------------------------------


def test_verifier_structural_errors_have_precise_reasons() -> None:
    leaf = LEAVES[0]
    root = ref_root(4)
    proof = ref_path(0, LEAVES[:4])
    cases: list[tuple[Any, ReasonCode]] = [
        (lambda: verify_inclusion(leaf, 4, 4, proof, root), ReasonCode.INDEX_OUT_OF_RANGE),
        (lambda: verify_inclusion(leaf, -1, 4, proof, root), ReasonCode.INDEX_OUT_OF_RANGE),
        (lambda: verify_inclusion(leaf[:31], 0, 4, proof, root), ReasonCode.MALFORMED_PROOF),
        (lambda: verify_inclusion(leaf, 0, 4, proof[:1], root), ReasonCode.MALFORMED_PROOF),
        (
            lambda: verify_inclusion(leaf, 0, 4, [proof[0], proof[1][:16]], root),
            ReasonCode.MALFORMED_PROOF,
        ),
        (lambda: verify_consistency(0, 0, [], root, root), ReasonCode.INDEX_OUT_OF_RANGE),
        (lambda: verify_consistency(0, 4, [], root, root), ReasonCode.INDEX_OUT_OF_RANGE),
        (lambda: verify_consistency(4, 3, [], root, root), ReasonCode.INDEX_OUT_OF_RANGE),
        (lambda: verify_consistency(4, 4, [root], root, root), ReasonCode.MALFORMED_PROOF),
        (lambda: verify_consistency(2, 4, [], root, root), ReasonCode.MALFORMED_PROOF),
    ]
    for call, reason in cases:
        with pytest.raises(MalformedError) as err:
            call()
        assert err.value.reason is reason
    # A root of the wrong length is never a tree head: it fails as a mismatch.
    with pytest.raises(VerificationError) as mismatch:
        verify_inclusion(leaf, 0, 4, proof, root + b"\0")
    assert mismatch.value.reason is ReasonCode.INCLUSION_PROOF_INVALID


@given(
    index=st.integers(-2, 70),
    size=st.integers(-2, 70),
    size2=st.integers(-2, 70),
    proof=st.lists(st.binary(min_size=0, max_size=40), max_size=9),
    roots=st.lists(st.binary(min_size=30, max_size=33), min_size=2, max_size=2),
)
def test_verifiers_only_raise_civic_errors(
    index: int, size: int, size2: int, proof: list[bytes], roots: list[bytes]
) -> None:
    calls: list[Callable[[], None]] = [
        lambda: verify_inclusion(roots[0], index, size, proof, roots[1]),
        lambda: verify_consistency(size, size2, proof, roots[0], roots[1]),
    ]
    for call in calls:
        with contextlib.suppress(MalformedError, VerificationError):
            call()


# --- generated proofs against the reference ---------------------------------------------------


def test_small_trees_match_rfc_definitions_exhaustively() -> None:
    for size in range(1, 34):
        d = LEAVES[:size]
        root = ref_root(size)
        assert TREE.root(size) == root == root_from_leaf_hashes(d)
        for index in range(size):
            proof = TREE.inclusion_proof(index, size)
            assert proof == ref_path(index, d)
            verify_inclusion(LEAVES[index], index, size, proof, root)
        for size1 in range(1, size + 1):
            proof = TREE.consistency_proof(size1, size)
            assert proof == ref_subproof(size1, d, True)
            verify_consistency(size1, size, proof, ref_root(size1), root)


@given(st.data())
def test_inclusion_proofs_verify_and_resist_tampering(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, PROPERTY_MAX), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    root = ref_root(size)
    proof = TREE.inclusion_proof(index, size)
    assert proof == ref_path(index, LEAVES[:size])
    verify_inclusion(LEAVES[index], index, size, proof, root)
    assert TREE.root(size) == root

    if proof:
        position = data.draw(st.integers(0, len(proof) - 1), label="position")
        bit = data.draw(st.integers(0, 255), label="bit")
        tampered = list(proof)
        tampered[position] = flip_bit(proof[position], bit)
        with pytest.raises(VerificationError):
            verify_inclusion(LEAVES[index], index, size, tampered, root)
    if size > 1:
        other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index), label="other")
        with pytest.raises((MalformedError, VerificationError)):
            verify_inclusion(LEAVES[index], other, size, proof, root)
        with pytest.raises(VerificationError):
            verify_inclusion(LEAVES[other], index, size, proof, root)


@given(st.data())
def test_consistency_proofs_verify_and_resist_tampering(data: st.DataObject) -> None:
    size2 = data.draw(st.integers(1, PROPERTY_MAX), label="size2")
    size1 = data.draw(st.integers(1, size2), label="size1")
    root1, root2 = ref_root(size1), ref_root(size2)
    proof = TREE.consistency_proof(size1, size2)
    assert proof == ref_subproof(size1, LEAVES[:size2], True)
    verify_consistency(size1, size2, proof, root1, root2)

    if proof:
        position = data.draw(st.integers(0, len(proof) - 1), label="position")
        bit = data.draw(st.integers(0, 255), label="bit")
        tampered = list(proof)
        tampered[position] = flip_bit(proof[position], bit)
        with pytest.raises(VerificationError):
            verify_consistency(size1, size2, tampered, root1, root2)
    with pytest.raises(VerificationError):
        verify_consistency(size1, size2, proof, flip_bit(root1, 7), root2)
    if size1 < size2:
        other = data.draw(st.integers(1, size2).filter(lambda s: s != size1), label="other size1")
        with pytest.raises((MalformedError, VerificationError)):
            verify_consistency(other, size2, proof, root1, root2)


def test_key_plans_follow_rfc_examples() -> None:
    assert root_keys(0) == ()
    assert root_keys(13) == ((3, 0), (2, 2), (0, 12))
    # PATH(5, D[7]) = [leaf 4, leaf 6, MTH(D[0:4])].
    assert inclusion_proof_keys(5, 7) == [((0, 4),), ((0, 6),), ((2, 0),)]
    # PATH(0, D[7]): the last node is the ephemeral MTH(D[4:7]) = node(4..5) + leaf 6.
    assert inclusion_proof_keys(0, 7) == [((0, 1),), ((1, 1),), ((1, 2), (0, 6))]
    # PROOF(3, D[7]) = [leaf 2, leaf 3, MTH(D[0:2]), MTH(D[4:7])].
    assert consistency_proof_keys(3, 7) == [((0, 2),), ((0, 3),), ((1, 0),), ((1, 2), (0, 6))]
    # PROOF(4, D[8]): the old root is the node itself and is not sent.
    assert consistency_proof_keys(4, 8) == [((2, 1),)]
    assert consistency_proof_keys(5, 5) == []


def test_generation_rejects_out_of_range_requests() -> None:
    tree = MerkleTree()
    tree.append_many(LEAVES[:10])
    cases: list[Any] = [
        lambda: tree.root(11),
        lambda: tree.root(-1),
        lambda: tree.inclusion_proof(10),
        lambda: tree.inclusion_proof(5, 5),
        lambda: tree.inclusion_proof(0, 11),
        lambda: tree.consistency_proof(0, 5),
        lambda: tree.consistency_proof(6, 5),
        lambda: tree.consistency_proof(3, 11),
        lambda: root_keys(-1),
    ]
    for call in cases:
        with pytest.raises(UsageError) as err:
            call()
        assert err.value.reason is ReasonCode.INDEX_OUT_OF_RANGE
    assert tree.root(0) == EMPTY_ROOT
    assert MerkleTree().root() == EMPTY_ROOT


def test_append_rejects_bad_leaf_hashes_without_writing() -> None:
    tree = MerkleTree()
    tree.append_many(LEAVES[:3])
    for bad in (LEAVES[3][:31], LEAVES[3] + b"\0", "not bytes"):
        with pytest.raises(UsageError) as err:
            tree.append_many([LEAVES[3], bad])  # type: ignore[list-item]
        assert err.value.reason is ReasonCode.MALFORMED_INPUT
        assert tree.size() == 3
    assert tree.root() == ref_root(3)
    assert tree.append_many([]) == range(3, 3)


def test_append_many_equals_single_appends_in_any_batching() -> None:
    one_by_one = MemoryNodeStore()
    single = MerkleTree(one_by_one)
    for h in LEAVES[:300]:
        single.append(h)
    batched_store = MemoryNodeStore()
    batched = MerkleTree(batched_store)
    rng = random.Random(7)
    position = 0
    while position < 300:
        end = min(position + rng.randint(1, 40), 300)
        assert batched.append_many(LEAVES[position:end]) == range(position, end)
        position = end
    assert batched_store.get_many(list(_all_keys(300))) == one_by_one.get_many(list(_all_keys(300)))
    assert len(batched_store) == len(one_by_one) == 2 * 300 - (300).bit_count()
    assert batched.root() == single.root() == ref_root(300)


def _all_keys(size: int) -> list[NodeKey]:
    return [(level, index) for level in range(size.bit_length()) for index in range(size >> level)]


# --- cost: one batch read per root/proof, O(log n) reads and writes -------------------------


class CountingStore:
    def __init__(self, inner: MemoryNodeStore) -> None:
        self.inner = inner
        self.reset()

    def reset(self) -> None:
        self.get_calls = 0
        self.keys_read = 0
        self.put_calls = 0
        self.nodes_written = 0

    def size(self) -> int:
        return self.inner.size()

    def get_many(self, keys: Sequence[NodeKey]) -> Mapping[NodeKey, bytes]:
        self.get_calls += 1
        self.keys_read += len(keys)
        return self.inner.get_many(keys)

    def put_many(self, nodes: Mapping[NodeKey, bytes], size: int) -> None:
        self.put_calls += 1
        self.nodes_written += len(nodes)
        self.inner.put_many(nodes, size)


BIG_SIZE = 2**16 + 4321


@pytest.fixture(scope="module")
def big() -> tuple[MerkleTree, CountingStore, list[bytes]]:
    leaves = make_leaves(BIG_SIZE, salt=b"big")
    store = CountingStore(MemoryNodeStore())
    tree = MerkleTree(store)
    tree.append_many(leaves)
    assert store.get_calls == 0
    assert store.put_calls == 1
    assert store.nodes_written == 2 * BIG_SIZE - BIG_SIZE.bit_count()
    return tree, store, leaves


def _read_budget(size: int) -> int:
    return 2 * math.ceil(math.log2(max(size, 2))) + 2


def test_big_tree_root_matches_reference(
    big: tuple[MerkleTree, CountingStore, list[bytes]],
) -> None:
    tree, _, leaves = big
    for size in (BIG_SIZE, 2**16, 2**16 - 1, 40_000):
        assert tree.root(size) == root_from_leaf_hashes(leaves[:size])


def test_proofs_and_roots_cost_one_batch_of_log_reads(
    big: tuple[MerkleTree, CountingStore, list[bytes]],
) -> None:
    tree, store, leaves = big
    rng = random.Random(2024)
    sizes = {BIG_SIZE, 1, 2, 3}
    for k in range(1, 17):
        sizes.update({2**k - 1, 2**k, 2**k + 1})
    sizes.update(rng.randint(1, BIG_SIZE) for _ in range(30))
    roots: dict[int, bytes] = {}
    for size in sorted(sizes):
        budget = _read_budget(size)
        store.reset()
        root = roots[size] = tree.root(size)
        assert store.get_calls == 1
        assert store.keys_read <= budget
        for index in {0, size - 1, size // 2, rng.randrange(size)}:
            store.reset()
            proof = tree.inclusion_proof(index, size)
            assert store.get_calls <= 1
            assert store.keys_read <= budget
            verify_inclusion(leaves[index], index, size, proof, root)
        size1s = {1, size, max(1, size - 1), rng.randint(1, size), 1 << (size.bit_length() - 1)}
        for size1 in sorted(size1s):
            store.reset()
            proof = tree.consistency_proof(size1, size)
            assert store.get_calls <= 1
            assert store.keys_read <= budget
            root1 = roots.get(size1) or tree.root(size1)
            verify_consistency(size1, size, proof, root1, root)
    assert store.put_calls == 0


def test_append_costs_log_writes_and_one_read() -> None:
    store = CountingStore(MemoryNodeStore())
    tree = MerkleTree(store)
    leaves = make_leaves(2**10 + 77, salt=b"append")
    for size, h in enumerate(leaves):
        store.reset()
        assert tree.append(h) == size
        assert store.put_calls == 1
        assert store.get_calls == (1 if size else 0)
        assert store.keys_read == size.bit_count()
        # The new leaf plus one node per perfect subtree it completes.
        trailing_ones = (~size & (size + 1)).bit_length() - 1
        assert store.nodes_written == 1 + trailing_ones
        assert store.nodes_written <= math.log2(size + 1) + 1
    assert tree.root() == root_from_leaf_hashes(leaves)
