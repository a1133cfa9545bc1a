"""Merkle tree hashing, proof generation and proof verification (RFC 9162 section 2.1).

- Hashing (RFC 9162 section 2.1.1): leaf hash ``SHA-256(0x00 || data)``, interior node
  ``SHA-256(0x01 || left || right)``, the empty tree hashes to ``SHA-256("")``.
- Verification: inclusion proofs (section 2.1.3.2) and consistency proofs (section 2.1.4.2),
  with the structural pre-checks of transparency-dev/merkle: the proof must have exactly the
  length its (index, size) or (size1, size2) implies, ``index < size``, ``0 < size1 <= size2``,
  and equal sizes need an empty proof and equal roots.
- Generation: :class:`MerkleTree` over a :class:`NodeStore` that keeps the hash of every
  *perfect* subtree, addressed by ``(level, index)`` = the leaves
  ``[index * 2**level, (index + 1) * 2**level)``. Every proof node of RFC 9162 sections 2.1.3.1
  and 2.1.4.1 is either such a stored node or the right-border ("ephemeral") subtree of a tree
  whose size is not a power of two; the latter is folded from its perfect decomposition. So a
  root or proof for any historical tree size costs O(log n) node reads, fetched in one batch,
  and an append writes O(log n) nodes.

Hash length: the leaf hash and every proof node must be exactly 32 bytes, otherwise
:class:`MalformedError` (``MALFORMED_PROOF``). Roots are compared as given, as transparency-dev
does: a root of another length can never equal a computed SHA-256 node, so it fails as a
mismatch, and for two equal tree sizes the proof only asserts that the two roots are equal
(the vector ``consistency/additional/sizes-are-equal-one-and-proof-is-empty`` expects success
with two equal 12-byte "roots"). Callers that parse tree heads (checkpoints) enforce 32 bytes
there, where the root is first read.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from civic.errors import MalformedError, ReasonCode, UsageError, VerificationError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256

NodeKey = tuple[int, int]
"""``(level, index)`` of a perfect subtree: leaves ``[index << level, (index + 1) << level)``."""

ProofPlan = list[tuple[NodeKey, ...]]
"""One entry per proof node: the perfect subtrees (left to right) whose fold is that node."""


# --- hashing (RFC 9162 section 2.1.1) -------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(_NODE_PREFIX + left + right).digest()


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH of RFC 9162 section 2.1.1, computed directly: the reference for tests and small trees."""
    if not hashes:
        return EMPTY_ROOT

    def mth(start: int, end: int) -> bytes:
        if end - start == 1:
            return hashes[start]
        # k is the largest power of two smaller than n = end - start.
        k = 1 << ((end - start - 1).bit_length() - 1)
        return node_hash(mth(start, start + k), mth(start + k, end))

    return mth(0, len(hashes))


# --- which stored nodes a root or proof needs -----------------------------------------------


def _range_keys(start: int, end: int) -> tuple[NodeKey, ...]:
    # Valid for [0, end) and for a right border [start, end) where start is a multiple of a
    # power of two larger than end - start: then the set bits of the width, high to low, are
    # the perfect subtrees, each aligned on its own size.
    keys: list[NodeKey] = []
    while start < end:
        level = (end - start).bit_length() - 1
        keys.append((level, start >> level))
        start += 1 << level
    return tuple(keys)


def _path_keys(index: int, size: int, level: int) -> ProofPlan:
    # Audit path of the perfect node (level, index) in the tree of `size` leaves, bottom up.
    # Below `inner` levels the path climbs inside the perfect subtree that also holds the last
    # leaf; above it, index shares its bits with the last node, so only left siblings remain.
    inner = (index ^ ((size - 1) >> level)).bit_length()
    plan: ProofPlan = []
    for i in range(inner):
        node_level = level + i
        sibling = (index >> i) ^ 1
        if (sibling + 1) << node_level > size:
            # Only the topmost inner sibling can run past the last leaf: the ephemeral node.
            plan.append(_range_keys(sibling << node_level, size))
        else:
            plan.append(((node_level, sibling),))
    upper = index >> inner
    node_level = level + inner
    while upper:
        if upper & 1:
            plan.append(((node_level, upper ^ 1),))
        upper >>= 1
        node_level += 1
    return plan


def root_keys(size: int) -> tuple[NodeKey, ...]:
    """The perfect subtrees, left to right, whose right fold is the root of a tree of ``size``."""
    if size < 0:
        raise UsageError(ReasonCode.INDEX_OUT_OF_RANGE, "tree size must not be negative")
    return _range_keys(0, size)


def inclusion_proof_keys(index: int, size: int) -> ProofPlan:
    """Stored nodes for PATH(index, D[size]) of RFC 9162 section 2.1.3.1, bottom up."""
    if not 0 <= index < size:
        raise UsageError(ReasonCode.INDEX_OUT_OF_RANGE, "leaf index must be below the tree size")
    return _path_keys(index, size, 0)


def consistency_proof_keys(size1: int, size2: int) -> ProofPlan:
    """Stored nodes for PROOF(size1, D[size2]) of RFC 9162 section 2.1.4.1.

    ``size1 == 0`` is refused: verifiers reject every proof from the empty tree.
    """
    if not 0 < size1 <= size2:
        raise UsageError(
            ReasonCode.INDEX_OUT_OF_RANGE, "consistency proofs need 0 < size1 <= size2"
        )
    if size1 == size2:
        return []
    # The largest perfect subtree ending at size1: root1 is its root folded with left siblings,
    # so the proof is its audit path in tree size2, headed by the node itself unless it *is*
    # the old tree (size1 a power of two), which the verifier then takes from root1.
    level = (size1 & -size1).bit_length() - 1
    index = (size1 - 1) >> level
    plan = _path_keys(index, size2, level)
    if index:
        plan.insert(0, ((level, index),))
    return plan


# --- verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2) -------------------------------------


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise MalformedError(ReasonCode.MALFORMED_PROOF, f"{what} must be {HASH_SIZE} bytes")


def _check_proof(proof: Sequence[bytes], expected: int, what: str) -> None:
    if len(proof) != expected:
        raise MalformedError(
            ReasonCode.MALFORMED_PROOF,
            f"{what} has {len(proof)} nodes where the sizes imply {expected}",
        )
    for node in proof:
        _check_hash(node, f"{what} node")


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that ``proof`` implies for ``leaf_hash`` at ``index`` in a tree of ``size``."""
    _check_hash(leaf_hash, "leaf hash")
    if not 0 <= index < size:
        raise MalformedError(ReasonCode.INDEX_OUT_OF_RANGE, "leaf index must be below tree size")
    inner = (index ^ (size - 1)).bit_length()
    _check_proof(proof, inner + (index >> inner).bit_count(), "inclusion proof")
    current = leaf_hash
    for i, sibling in enumerate(proof):
        if i >= inner or (index >> i) & 1:
            current = node_hash(sibling, current)
        else:
            current = node_hash(current, sibling)
    return current


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise unless ``proof`` puts ``leaf_hash`` at ``index`` in the tree (``size``, ``root``)."""
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if not hmac.compare_digest(computed, root):
        raise VerificationError(
            ReasonCode.INCLUSION_PROOF_INVALID, "inclusion proof does not lead to the root"
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Raise unless ``proof`` shows the tree (size1, root1) is a prefix of (size2, root2)."""
    if not 0 <= size1 <= size2:
        raise MalformedError(ReasonCode.INDEX_OUT_OF_RANGE, "consistency needs size1 <= size2")
    if size1 == 0:
        raise MalformedError(
            ReasonCode.INDEX_OUT_OF_RANGE, "a consistency proof from the empty tree proves nothing"
        )
    if size1 == size2:
        _check_proof(proof, 0, "consistency proof")
        if not hmac.compare_digest(root1, root2):
            raise VerificationError(
                ReasonCode.CONSISTENCY_PROOF_INVALID, "equal tree sizes with different roots"
            )
        return
    # Same walk as the generator: the audit path of the last perfect subtree of tree size1.
    level = (size1 & -size1).bit_length() - 1
    index = (size1 - 1) >> level
    inner = (index ^ ((size2 - 1) >> level)).bit_length()
    head = 1 if index else 0
    _check_proof(proof, head + inner + (index >> inner).bit_count(), "consistency proof")
    hash1 = hash2 = proof[0] if index else root1
    for i in range(inner):
        sibling = proof[head + i]
        if (index >> i) & 1:
            hash1 = node_hash(sibling, hash1)
            hash2 = node_hash(sibling, hash2)
        else:
            # Right siblings lie beyond size1: they only build the new root.
            hash2 = node_hash(hash2, sibling)
    for sibling in proof[head + inner :]:
        hash1 = node_hash(sibling, hash1)
        hash2 = node_hash(sibling, hash2)
    matches1 = hmac.compare_digest(hash1, root1)
    matches2 = hmac.compare_digest(hash2, root2)
    if not (matches1 and matches2):
        which = "root1" if not matches1 else "root2"
        raise VerificationError(
            ReasonCode.CONSISTENCY_PROOF_INVALID, f"consistency proof does not lead to {which}"
        )


# --- generation over stored perfect subtrees ------------------------------------------------


class NodeStore(Protocol):
    """Hashes of perfect subtrees plus the leaf count, for :class:`MerkleTree`.

    Implementations must make ``put_many`` atomic (nodes and the new size together), so a
    reader never sees a size whose nodes are missing. ``get_many`` must return every key asked
    for; :class:`MerkleTree` only asks for nodes below ``size()``.
    """

    def size(self) -> int:
        """Number of leaves appended so far."""
        ...

    def get_many(self, keys: Sequence[NodeKey]) -> Mapping[NodeKey, bytes]: ...

    def put_many(self, nodes: Mapping[NodeKey, bytes], size: int) -> None:
        """Store ``nodes`` and set the leaf count to ``size``."""
        ...


class MemoryNodeStore:
    """A :class:`NodeStore` in a dict, for tests, tools and small logs."""

    __slots__ = ("_nodes", "_size")

    def __init__(self) -> None:
        self._nodes: dict[NodeKey, bytes] = {}
        self._size = 0

    def size(self) -> int:
        return self._size

    def get(self, level: int, index: int) -> bytes:
        return self.get_many([(level, index)])[(level, index)]

    def get_many(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        nodes = self._nodes
        try:
            return {key: nodes[key] for key in keys}
        except KeyError as missing:
            raise UsageError(
                ReasonCode.INDEX_OUT_OF_RANGE, f"no stored node {missing.args[0]}"
            ) from None

    def put_many(self, nodes: Mapping[NodeKey, bytes], size: int) -> None:
        self._nodes.update(nodes)
        self._size = size

    def __len__(self) -> int:
        """Number of stored nodes (about twice the leaf count)."""
        return len(self._nodes)


class MerkleTree:
    """An append-only RFC 9162 tree that serves roots and proofs for every size it has had.

    Holds no state besides the store, so several instances (or processes) can share one
    store; appends must still be serialised by the store's owner.
    """

    __slots__ = ("_store",)

    def __init__(self, store: NodeStore | None = None) -> None:
        self._store: NodeStore = store if store is not None else MemoryNodeStore()

    @property
    def store(self) -> NodeStore:
        return self._store

    def size(self) -> int:
        return self._store.size()

    def append(self, leaf_hash: bytes) -> int:
        """Append one leaf hash and return its index."""
        return self.append_many((leaf_hash,)).start

    def append_many(self, leaf_hashes: Iterable[bytes]) -> range:
        """Append leaf hashes in order with one read and one write; return their indices."""
        hashes = list(leaf_hashes)
        for value in hashes:
            if not isinstance(value, bytes) or len(value) != HASH_SIZE:
                raise UsageError(
                    ReasonCode.MALFORMED_INPUT, f"leaf hashes must be {HASH_SIZE} bytes"
                )
        start = self._store.size()
        if not hashes:
            return range(start, start)
        # The roots of the perfect subtrees of the current tree are exactly the left siblings
        # that new leaves will complete; keep them as a stack, lowest level on top.
        frontier_keys = _range_keys(0, start)
        found = self._store.get_many(frontier_keys) if frontier_keys else {}
        stack = [found[key] for key in frontier_keys]
        new_nodes: dict[NodeKey, bytes] = {}
        size = start
        for leaf in hashes:
            new_nodes[(0, size)] = current = leaf
            index = size
            level = 0
            while index & 1:
                current = node_hash(stack.pop(), current)
                index >>= 1
                level += 1
                new_nodes[(level, index)] = current
            stack.append(current)
            size += 1
        self._store.put_many(new_nodes, size)
        return range(start, size)

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all)."""
        size = self._checked_size(size)
        if size == 0:
            return EMPTY_ROOT
        return self._fetch([_range_keys(0, size)])[0]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) (RFC 9162 section 2.1.3.1), bottom up."""
        size = self._checked_size(size)
        return self._fetch(inclusion_proof_keys(index, size))

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """PROOF(size1, D[size2]) (RFC 9162 section 2.1.4.1)."""
        size2 = self._checked_size(size2)
        return self._fetch(consistency_proof_keys(size1, size2))

    def _checked_size(self, size: int | None) -> int:
        current = self._store.size()
        if size is None:
            return current
        if not 0 <= size <= current:
            raise UsageError(
                ReasonCode.INDEX_OUT_OF_RANGE, f"tree size {size} outside 0..{current}"
            )
        return size

    def _fetch(self, plan: Sequence[tuple[NodeKey, ...]]) -> list[bytes]:
        if not plan:
            return []
        nodes = self._store.get_many([key for group in plan for key in group])
        result: list[bytes] = []
        for group in plan:
            folded = nodes[group[-1]]
            for key in group[-2::-1]:
                folded = node_hash(nodes[key], folded)
            result.append(folded)
        return result
