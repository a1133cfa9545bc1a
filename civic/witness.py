"""The C2SP tlog-witness ``add-checkpoint`` protocol, minus the HTTP and the database.

Implements https://c2sp.org/tlog-witness, "add-checkpoint":

- The request body (:func:`parse_add_checkpoint_request`, :func:`encode_add_checkpoint_request`):
  ``old <size>\\n``, at most 63 consistency proof lines of standard base64 (each one 32-byte
  hash), an empty line, then the signed checkpoint note. Every line ends in ``\\n``; the size has
  no leading zeros.
- The witness's checks, in the order the service applies them, each failure raising a
  :class:`~civic.errors.CivicError` whose reason code the service maps to the spec's status
  (:data:`STATUS_BY_REASON`):

  1. malformed body or checkpoint: 400;
  2. unknown origin (:func:`open_submitted_checkpoint`): 404 ``log_origin_unknown``;
  3. no signature by a trusted log key, or a trusted key's signature fails: 403;
  4. old size above the checkpoint size: 400 ``log_rollback``;
  5. a size-0 checkpoint without the empty-tree root: 422 ``log_root_mismatch``;
     a non-empty proof with old size 0: 422 ``malformed_proof``;
  6. old size different from the size last cosigned (:func:`check_against_state`): 409 with the
     current size as ``text/x.tlog.size`` (:class:`WitnessSizeConflict`);
  7. equal sizes with another root (a split view): 422 ``log_fork``; a consistency proof that
     does not verify from the stored (size, root): 422.

- The response: one cosignature line per witness key (:func:`cosignature_lines`), as C2SP
  signed-note signature lines ``— <name> <base64>\\n``; the client side parses them back with
  :func:`parse_cosignature_lines` and verifies them with :func:`verify_witness_response`.

Deviation: the spec says witnesses SHOULD use ML-DSA-44 cosignatures; this module signs Ed25519
``cosignature/v1`` only (the only type :mod:`civic.checkpoint` implements).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from civic.checkpoint import (
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    SignedCheckpoint,
    parse_checkpoint,
)
from civic.encoding import b64std_decode, b64std_encode
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError
from civic.merkle import EMPTY_ROOT, HASH_SIZE, verify_consistency
from civic.note import (
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    SIGNATURE_PREFIX,
    NoteSignature,
    Verifier,
    is_valid_key_name,
    open_note,
    parse_unverified_note,
)

MAX_PROOF_LINES = 63
"""tlog-witness: the client MUST NOT send more than 63 consistency proof lines."""

MAX_REQUEST_BYTES = 64 * 1024
"""Default bound on an add-checkpoint body: 63 proof lines and a checkpoint with a few
signatures take about 4 KiB, so this leaves room for long extension lines and many log keys."""

TLOG_SIZE_CONTENT_TYPE = "text/x.tlog.size"
"""Content type of the 409 Conflict body: the current tree size in decimal and a newline."""

STATUS_BY_REASON: Mapping[ReasonCode, int] = {
    ReasonCode.MALFORMED_INPUT: 400,
    ReasonCode.MALFORMED_NOTE: 400,
    ReasonCode.MALFORMED_CHECKPOINT: 400,
    ReasonCode.LOG_ROLLBACK: 400,
    ReasonCode.INPUT_TOO_LARGE: 413,
    ReasonCode.LOG_ORIGIN_UNKNOWN: 404,
    ReasonCode.NOTE_NO_VERIFIABLE_SIGNATURE: 403,
    ReasonCode.NOTE_SIGNATURE_INVALID: 403,
    ReasonCode.NOTE_AMBIGUOUS_KEY: 403,
    ReasonCode.WITNESS_SIZE_CONFLICT: 409,
    ReasonCode.LOG_ROOT_MISMATCH: 422,
    ReasonCode.LOG_FORK: 422,
    ReasonCode.MALFORMED_PROOF: 422,
    ReasonCode.CONSISTENCY_PROOF_INVALID: 422,
}
"""HTTP status of each refusal (tlog-witness, "add-checkpoint"); anything else is a 500."""

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_MAX_TREE_SIZE = (1 << 64) - 1
_MAX_RESPONSE_LINES = 16


@dataclass(frozen=True)
class AddCheckpointRequest:
    """A parsed add-checkpoint body. ``checkpoint_note`` is still unverified."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint_note: bytes


@dataclass(frozen=True)
class LogState:
    """What a witness remembers of one log: the size and root hash it last cosigned."""

    size: int
    root_hash: bytes


EMPTY_LOG_STATE = LogState(0, EMPTY_ROOT)
"""The state of a log the witness never cosigned (tlog-witness: the old size is then zero)."""


class WitnessSizeConflict(VerificationError):
    """The old size is not the size the witness last cosigned; ``current_size`` is that size."""

    def __init__(self, current_size: int, detail: str = "") -> None:
        super().__init__(
            ReasonCode.WITNESS_SIZE_CONFLICT,
            detail or f"old size does not match the witness's latest cosigned size {current_size}",
        )
        self.current_size = current_size


def _bad_request(detail: str) -> MalformedError:
    return MalformedError(ReasonCode.MALFORMED_INPUT, detail)


def _parse_size(text: str, what: str) -> int:
    if not _DECIMAL.fullmatch(text):
        raise _bad_request(f"{what} must be decimal without leading zeros")
    value = int(text)
    if value > _MAX_TREE_SIZE:
        raise _bad_request(f"{what} must be below 2^64")
    return value


# -- the request body --------------------------------------------------------------------------


def parse_add_checkpoint_request(
    body: bytes, *, max_bytes: int = MAX_REQUEST_BYTES
) -> AddCheckpointRequest:
    """Split an add-checkpoint body into old size, proof hashes and the checkpoint note.

    Only the framing is checked here; the note is parsed when its signature is verified.
    """
    if not isinstance(body, bytes):
        raise _bad_request("request body must be bytes")
    if len(body) > max_bytes:
        raise MalformedError(ReasonCode.INPUT_TOO_LARGE, "request body too large")
    header_end = body.find(b"\n\n")
    if header_end < 0:
        raise _bad_request("request needs an old size line, proof lines and an empty line")
    try:
        header = body[:header_end].decode("ascii")
    except UnicodeDecodeError:
        raise _bad_request("old size and proof lines must be ASCII") from None
    lines = header.split("\n")
    first, proof_lines = lines[0], lines[1:]
    if not first.startswith("old "):
        raise _bad_request("request must start with an 'old <size>' line")
    old_size = _parse_size(first[4:], "old size")
    if len(proof_lines) > MAX_PROOF_LINES:
        raise _bad_request(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof: list[bytes] = []
    for line in proof_lines:
        try:
            node = b64std_decode(line)
        except MalformedError:
            raise _bad_request("proof line is not canonical standard base64") from None
        if len(node) != HASH_SIZE:
            raise _bad_request(f"proof line must encode a {HASH_SIZE}-byte hash")
        proof.append(node)
    note = body[header_end + 2 :]
    if not note:
        raise _bad_request("request has no checkpoint")
    return AddCheckpointRequest(old_size, tuple(proof), note)


def encode_add_checkpoint_request(
    old_size: int, proof: Sequence[bytes], checkpoint_note: bytes
) -> bytes:
    """The add-checkpoint body a log sends (the inverse of :func:`parse_add_checkpoint_request`)."""
    if isinstance(old_size, bool) or not isinstance(old_size, int):
        raise UsageError(ReasonCode.MALFORMED_INPUT, "old size must be an integer")
    if not 0 <= old_size <= _MAX_TREE_SIZE:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "old size must be in [0, 2^64)")
    if len(proof) > MAX_PROOF_LINES:
        raise UsageError(ReasonCode.MALFORMED_INPUT, f"more than {MAX_PROOF_LINES} proof nodes")
    for node in proof:
        if not isinstance(node, bytes) or len(node) != HASH_SIZE:
            raise UsageError(ReasonCode.MALFORMED_INPUT, f"proof nodes must be {HASH_SIZE} bytes")
    if not isinstance(checkpoint_note, bytes) or not checkpoint_note:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "the signed checkpoint must be bytes")
    lines = [f"old {old_size}", *(b64std_encode(node) for node in proof)]
    return "".join(line + "\n" for line in lines).encode("ascii") + b"\n" + checkpoint_note


# -- the 409 body --------------------------------------------------------------------------------


def encode_tlog_size(size: int) -> bytes:
    """The body of a 409 Conflict answer: the size in decimal and a newline."""
    return b"%d\n" % size


def parse_tlog_size(body: bytes) -> int:
    """The witness's current size from a 409 body (``text/x.tlog.size``)."""
    if not isinstance(body, bytes) or not body.endswith(b"\n") or len(body) > 21:
        raise _bad_request("a tlog size body is a decimal number and a newline")
    try:
        text = body[:-1].decode("ascii")
    except UnicodeDecodeError:
        raise _bad_request("a tlog size body is ASCII") from None
    return _parse_size(text, "witness size")


# -- the witness's checks --------------------------------------------------------------------


def open_submitted_checkpoint(
    note: bytes, logs: Mapping[str, Sequence[Verifier]]
) -> SignedCheckpoint:
    """Verify the log signature on a submitted checkpoint against the keys for its origin.

    The origin is read from the unverified text only to choose the keys; nothing else of the
    text is used before a trusted key's signature verified. Signatures by other keys (earlier
    cosignatures, other witnesses) are ignored, as the spec requires.
    """
    unverified = parse_unverified_note(note)
    origin = parse_checkpoint(unverified.text).origin
    verifiers = logs.get(origin)
    if not verifiers:
        raise VerificationError(
            ReasonCode.LOG_ORIGIN_UNKNOWN, "no log with this checkpoint origin is configured"
        )
    opened = open_note(note, verifiers)
    return SignedCheckpoint(parse_checkpoint(opened.text), opened)


def check_request_shape(request: AddCheckpointRequest, checkpoint: Checkpoint) -> None:
    """The checks that need no stored state (steps 4 and 5 of the module doc)."""
    if request.old_size > checkpoint.size:
        raise VerificationError(
            ReasonCode.LOG_ROLLBACK, "old size is larger than the checkpoint size"
        )
    if checkpoint.size == 0 and checkpoint.root_hash != EMPTY_ROOT:
        raise VerificationError(
            ReasonCode.LOG_ROOT_MISMATCH, "a checkpoint of size 0 must have the empty-tree root"
        )
    if request.old_size == 0 and request.proof:
        raise VerificationError(
            ReasonCode.MALFORMED_PROOF, "the consistency proof must be empty when old size is 0"
        )


def check_against_state(
    request: AddCheckpointRequest, checkpoint: Checkpoint, stored: LogState
) -> LogState:
    """Check the request against the stored state; return the state to store on success.

    Raises :class:`WitnessSizeConflict` on a stale old size, ``LOG_FORK`` for a second root at
    the stored size, and the :func:`civic.merkle.verify_consistency` errors for a bad proof.
    """
    check_request_shape(request, checkpoint)
    if request.old_size != stored.size:
        raise WitnessSizeConflict(stored.size)
    if checkpoint.size == stored.size:
        if request.proof:
            raise VerificationError(
                ReasonCode.MALFORMED_PROOF, "the consistency proof must be empty at equal sizes"
            )
        if checkpoint.root_hash != stored.root_hash:
            raise VerificationError(
                ReasonCode.LOG_FORK, "a different root hash at the size already cosigned"
            )
    elif stored.size > 0:
        verify_consistency(
            stored.size, checkpoint.size, request.proof, stored.root_hash, checkpoint.root_hash
        )
    return LogState(checkpoint.size, checkpoint.root_hash)


# -- cosignature lines -------------------------------------------------------------------------


def cosignature_lines(checkpoint_text: str, signers: Sequence[CosignatureSigner]) -> list[str]:
    """One signature line ``— <name> <base64>\\n`` per witness key over ``checkpoint_text``.

    The signers' clock supplies the timestamp; tlog-witness forbids a zero timestamp, so a
    clock reading 0 is refused rather than producing a cosignature without a time statement.
    """
    if not signers:
        raise UsageError(ReasonCode.MALFORMED_COSIGNATURE, "at least one witness key is needed")
    message = checkpoint_text.encode("utf-8")
    lines: list[str] = []
    for signer in signers:
        signature = signer.sign(message)
        if int.from_bytes(signature[:8], "big") == 0:
            raise UsageError(ReasonCode.MALFORMED_COSIGNATURE, "cosignature timestamp is zero")
        raw = signer.key_id.to_bytes(4, "big") + signature
        lines.append(NoteSignature(signer.name, signer.key_id, b64std_encode(raw)).line())
    return lines


def parse_cosignature_lines(body: bytes) -> list[NoteSignature]:
    """Parse a 200 add-checkpoint body: one or more note signature lines, nothing else."""
    if not isinstance(body, bytes) or not body.endswith(b"\n"):
        raise MalformedError(
            ReasonCode.MALFORMED_COSIGNATURE, "response must be signature lines ending in newline"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedError(ReasonCode.MALFORMED_COSIGNATURE, "response is not UTF-8") from None
    lines = text[:-1].split("\n")
    if len(lines) > _MAX_RESPONSE_LINES:
        raise MalformedError(ReasonCode.MALFORMED_COSIGNATURE, "too many signature lines")
    signatures: list[NoteSignature] = []
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise MalformedError(
                ReasonCode.MALFORMED_COSIGNATURE, "line does not start with an em dash and a space"
            )
        name, _, signature_b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not is_valid_key_name(name):
            raise MalformedError(ReasonCode.MALFORMED_COSIGNATURE, "bad key name")
        try:
            raw = b64std_decode(signature_b64)
        except MalformedError:
            raise MalformedError(
                ReasonCode.MALFORMED_COSIGNATURE, "signature is not canonical standard base64"
            ) from None
        if len(raw) <= 4:
            raise MalformedError(ReasonCode.MALFORMED_COSIGNATURE, "signature too short")
        signatures.append(NoteSignature(name, int.from_bytes(raw[:4], "big"), signature_b64))
    return signatures


def verify_witness_response(
    body: bytes, checkpoint_text: str, witness: CosignatureVerifier
) -> list[str]:
    """The lines of ``body`` by ``witness``, each verified over ``checkpoint_text``.

    Lines by other keys are dropped (the client MUST ignore unknown keys). A line under the
    witness's name and key ID that fails, a zero timestamp, or no line by the witness at all
    raises: a log that attached such a line would make every verifier reject its checkpoint.
    """
    kept: list[str] = []
    for signature in parse_cosignature_lines(body):
        if (signature.name, signature.key_id) != (witness.name, witness.key_id):
            continue
        timestamp = witness.verify_cosignature(checkpoint_text, signature.signature_b64)
        if timestamp == 0:
            raise VerificationError(
                ReasonCode.COSIGNATURE_INVALID, "witness cosignature has a zero timestamp"
            )
        if signature.line() not in kept:
            kept.append(signature.line())
    if not kept:
        raise VerificationError(
            ReasonCode.COSIGNATURE_INVALID, f"no cosignature by witness key {witness.name}"
        )
    return kept


def attach_cosignatures(signed_checkpoint: bytes, lines: Iterable[str]) -> bytes:
    """The signed checkpoint with ``lines`` appended (lines it already carries are skipped).

    The note's existing bytes are kept as they are, so earlier signatures stay valid.
    """
    note = parse_unverified_note(signed_checkpoint)
    present = {signature.line() for signature in note.unverified}
    added: list[str] = []
    for line in lines:
        parsed = parse_cosignature_lines(line.encode("utf-8"))
        if len(parsed) != 1:
            raise UsageError(ReasonCode.MALFORMED_COSIGNATURE, "one signature line at a time")
        if line not in present:
            present.add(line)
            added.append(line)
    if len(note.unverified) + len(added) > MAX_SIGNATURES:
        raise UsageError(ReasonCode.MALFORMED_NOTE, f"more than {MAX_SIGNATURES} signatures")
    # Appending to the original bytes, not re-encoding the parsed note, keeps it byte-identical.
    result = signed_checkpoint + "".join(added).encode("utf-8")
    if len(result) > MAX_NOTE_BYTES:
        raise UsageError(ReasonCode.INPUT_TOO_LARGE, "signed note would be too large")
    return result


def status_for(error: CivicError) -> int:
    """The HTTP status tlog-witness prescribes for ``error`` (500 for an unexpected one)."""
    return STATUS_BY_REASON.get(error.reason, 500)
