"""Transparency-log checkpoints and their witness cosignatures.

- C2SP tlog-checkpoint v1.0.0 (https://c2sp.org/tlog-checkpoint), "Note text": origin line,
  decimal tree size without leading zeros, base64 root hash, optional non-empty extension lines.
  Parsing is strict: the root must be 32 bytes (a SHA-256 RFC 6962 root) in canonical base64 and
  the size must fit in 64 bits.
- C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature), the Ed25519 ``cosignature/v1`` type
  only (signature type 0x04): key ID = SHA-256(name || 0x0A || 0x04 || public key)[:4]; the
  signature is key ID (4) || big-endian timestamp (8) || Ed25519 signature (64) over
  ``"cosignature/v1\\ntime <T>\\n"`` followed by the checkpoint body ("Ed25519 signed message").
  ML-DSA-44 (type 0x06) cosignatures are not supported and their keys are rejected.

A verifier believes a checkpoint only when the log signed it and a quorum of configured witnesses
cosigned it: :func:`verify_witnessed_checkpoint`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from civic.clock import Clock, RandomBytes, system_clock, system_random
from civic.encoding import b64std_decode, b64std_encode
from civic.errors import MalformedError, ReasonCode, UsageError, VerificationError
from civic.note import (
    ED25519_TYPE,
    Ed25519NoteKey,
    Note,
    Signer,
    Verifier,
    check_key_type,
    compute_key_id,
    decode_vkey,
    ed25519_verify,
    encode_vkey,
    generate_ed25519_note_key,
    is_valid_key_name,
    open_note,
    sign_note,
)

COSIGNATURE_V1_TYPE = 0x04
"""Signature type byte of timestamped Ed25519 cosignatures (tlog-cosignature)."""

ROOT_HASH_BYTES = 32
MAX_TREE_SIZE = (1 << 64) - 1
MAX_COSIGNATURE_TIMESTAMP = (1 << 63) - 1
"""tlog-cosignature: the timestamp MUST NOT exceed 2^63 - 1."""

DEFAULT_MAX_FUTURE_SKEW = 300
"""Seconds a cosignature timestamp may lie ahead of our clock and still count."""

_TREE_SIZE = re.compile(r"0|[1-9][0-9]*")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f]")
_KEY_ID_BYTES = 4
_TIMESTAMP_BYTES = 8
_ED25519_SIGNATURE_BYTES = 64
_COSIGNATURE_BYTES = _KEY_ID_BYTES + _TIMESTAMP_BYTES + _ED25519_SIGNATURE_BYTES


def _checkpoint_problem(
    origin: object, size: object, root_hash: object, extensions: object
) -> str | None:
    """Why these fields cannot form a checkpoint, or None. Shared by parser and constructor."""
    if not isinstance(origin, str) or not origin:
        return "origin must be a non-empty string"
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_TREE_SIZE:
        return "tree size must be an integer in [0, 2^64)"
    if not isinstance(root_hash, bytes) or len(root_hash) != ROOT_HASH_BYTES:
        return f"root hash must be {ROOT_HASH_BYTES} bytes"
    if not isinstance(extensions, tuple) or not all(
        isinstance(line, str) and line for line in extensions
    ):
        return "extension lines must be a tuple of non-empty strings"
    for line in (origin, *extensions):
        if _CONTROL_CHARS.search(line):
            return "checkpoint lines must not contain control characters or newlines"
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:
            return "checkpoint lines must be valid UTF-8"
    return None


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, tree size, RFC 6962 root hash and opaque extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problem = _checkpoint_problem(self.origin, self.size, self.root_hash, self.extensions)
        if problem:
            raise UsageError(ReasonCode.MALFORMED_CHECKPOINT, problem)

    def to_text(self) -> str:
        """The note text (body) of this checkpoint, ending in a newline."""
        lines = [self.origin, str(self.size), b64std_encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)


def _bad_checkpoint(detail: str) -> MalformedError:
    return MalformedError(ReasonCode.MALFORMED_CHECKPOINT, detail)


def parse_checkpoint(text: str | bytes) -> Checkpoint:
    """Parse a checkpoint body (the note text, without signatures). Strict; see module doc."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad_checkpoint("checkpoint is not valid UTF-8") from None
    if not isinstance(text, str):
        raise _bad_checkpoint("checkpoint must be text")
    if not text.endswith("\n"):
        raise _bad_checkpoint("checkpoint must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise _bad_checkpoint("checkpoint needs origin, size and root hash lines")
    origin, size_text, root_text, *extensions = lines
    # The length bound keeps int() away from its digit limit; 2^64 - 1 has 20 digits.
    if len(size_text) > 20 or not _TREE_SIZE.fullmatch(size_text):
        raise _bad_checkpoint("tree size must be decimal without leading zeros, below 2^64")
    size = int(size_text)
    try:
        root_hash = b64std_decode(root_text)
    except MalformedError:
        raise _bad_checkpoint("root hash is not canonical standard base64") from None
    problem = _checkpoint_problem(origin, size, root_hash, tuple(extensions))
    if problem:
        raise _bad_checkpoint(problem)
    return Checkpoint(origin, size, root_hash, tuple(extensions))


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint together with the opened note it came from (and its other signatures)."""

    checkpoint: Checkpoint
    note: Note


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[Signer]) -> bytes:
    """The checkpoint as a signed note; the log's key name SHOULD equal the origin."""
    return sign_note(checkpoint.to_text(), signers)


def _check_origin(checkpoint: Checkpoint, origin: str | None) -> None:
    if origin is not None and checkpoint.origin != origin:
        raise VerificationError(
            ReasonCode.CHECKPOINT_ORIGIN_MISMATCH, "checkpoint is for a different log origin"
        )


def open_checkpoint(note: bytes | str, log_verifier: Verifier, origin: str) -> SignedCheckpoint:
    """Verify the log's signature on ``note``, then parse it and check its origin.

    The text is parsed only after the signature verified (signed-note: the text MUST be ignored
    unless signed by a trusted key).
    """
    opened = open_note(note, [log_verifier])
    checkpoint = parse_checkpoint(opened.text)
    _check_origin(checkpoint, origin)
    return SignedCheckpoint(checkpoint, opened)


# -- cosignatures ------------------------------------------------------------------------------


def cosignature_message(checkpoint_text: str | bytes, timestamp: int) -> bytes:
    """The bytes a cosigner signs: header line, time line, then the whole checkpoint body."""
    if isinstance(checkpoint_text, str):
        try:
            body = checkpoint_text.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad_checkpoint("checkpoint is not valid UTF-8") from None
    else:
        body = checkpoint_text
    return b"cosignature/v1\ntime %d\n" % timestamp + body


@dataclass(frozen=True)
class Cosignature:
    """A decoded ``cosignature/v1`` signature: key ID, timestamp and Ed25519 signature."""

    key_id: int
    timestamp: int
    signature: bytes


def _bad_cosignature(detail: str) -> MalformedError:
    return MalformedError(ReasonCode.MALFORMED_COSIGNATURE, detail)


def _split_cosignature(raw: bytes) -> tuple[int, bytes]:
    """(timestamp, Ed25519 signature) from timestamp || signature, or MalformedError."""
    if len(raw) != _TIMESTAMP_BYTES + _ED25519_SIGNATURE_BYTES:
        raise _bad_cosignature("a cosignature/v1 signature is 8 + 64 bytes after the key ID")
    timestamp = int.from_bytes(raw[:_TIMESTAMP_BYTES], "big")
    if timestamp > MAX_COSIGNATURE_TIMESTAMP:
        raise _bad_cosignature("cosignature timestamp exceeds 2^63 - 1")
    return timestamp, raw[_TIMESTAMP_BYTES:]


def parse_cosignature(signature_b64: str) -> Cosignature:
    """Decode the base64 of a cosignature line; rejects anything but the 76-byte layout."""
    if not isinstance(signature_b64, str):
        raise _bad_cosignature("cosignature must be a base64 string")
    try:
        raw = b64std_decode(signature_b64)
    except MalformedError:
        raise _bad_cosignature("cosignature is not canonical standard base64") from None
    if len(raw) != _COSIGNATURE_BYTES:
        raise _bad_cosignature(f"a cosignature/v1 signature is {_COSIGNATURE_BYTES} bytes")
    timestamp, signature = _split_cosignature(raw[_KEY_ID_BYTES:])
    return Cosignature(int.from_bytes(raw[:_KEY_ID_BYTES], "big"), timestamp, signature)


@dataclass(frozen=True)
class CosignatureVerifier:
    """A witness's Ed25519 ``cosignature/v1`` key; ``key_id`` is computed with type 0x04.

    Usable as a :class:`civic.note.Verifier` in :func:`civic.note.open_note`.
    """

    name: str
    key_id: int
    public_key: bytes

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name) or len(self.public_key) != 32:
            raise UsageError(ReasonCode.MALFORMED_NOTE_KEY, "invalid name or public key")
        if self.key_id != compute_key_id(self.name, COSIGNATURE_V1_TYPE, self.public_key):
            raise UsageError(ReasonCode.MALFORMED_NOTE_KEY, "key ID does not match the key")

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> CosignatureVerifier:
        if not is_valid_key_name(name):
            raise UsageError(ReasonCode.MALFORMED_NOTE_KEY, "invalid key name")
        return cls(name, compute_key_id(name, COSIGNATURE_V1_TYPE, public_key), public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        """Accept a type 0x04 vkey, or a plain Ed25519 (0x01) vkey converted to 0x04.

        The ID written in the vkey must match its own type byte; the cosignature key ID is then
        recomputed with 0x04 (as transparency-dev/formats ``NewVerifierForCosignatureV1`` does).
        """
        decoded = decode_vkey(vkey)
        check_key_type(decoded, (COSIGNATURE_V1_TYPE, ED25519_TYPE), "cosignature verifier")
        if decoded.key_id != compute_key_id(decoded.name, decoded.type_byte, decoded.material):
            raise MalformedError(ReasonCode.MALFORMED_NOTE_KEY, "key ID does not match the key")
        return cls.from_public_key(decoded.name, decoded.material)

    @property
    def vkey(self) -> str:
        return encode_vkey(self.name, COSIGNATURE_V1_TYPE, self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Note-verifier protocol: ``signature`` is timestamp || Ed25519 signature."""
        try:
            timestamp, ed25519_signature = _split_cosignature(signature)
        except MalformedError:
            return False
        return ed25519_verify(
            self.public_key, cosignature_message(message, timestamp), ed25519_signature
        )

    def verify_cosignature(self, checkpoint_text: str | bytes, signature_b64: str) -> int:
        """Check one cosignature line's base64 over ``checkpoint_text``; return its timestamp.

        Raises ``MALFORMED_COSIGNATURE`` for a bad encoding and ``COSIGNATURE_INVALID`` when the
        key ID is not this key's or the signature does not verify.
        """
        cosignature = parse_cosignature(signature_b64)
        if cosignature.key_id != self.key_id:
            raise VerificationError(
                ReasonCode.COSIGNATURE_INVALID, "cosignature key ID is not this witness's"
            )
        message = cosignature_message(checkpoint_text, cosignature.timestamp)
        if not ed25519_verify(self.public_key, message, cosignature.signature):
            raise VerificationError(
                ReasonCode.COSIGNATURE_INVALID, f"invalid cosignature by {self.name}"
            )
        return cosignature.timestamp


class CosignatureSigner(Ed25519NoteKey):
    """A witness's Ed25519 ``cosignature/v1`` signer (type 0x04).

    Only type 0x04 skeys load: a log's 0x01 key should not double as a witness key.
    """

    __slots__ = ("_now",)
    KEY_TYPE = COSIGNATURE_V1_TYPE
    KIND = "cosignature signer"

    def __init__(self, name: str, seed: bytes, now: Clock = system_clock) -> None:
        super().__init__(name, seed)
        self._now = now

    @classmethod
    def from_skey(cls, skey: str, now: Clock = system_clock) -> CosignatureSigner:
        decoded = cls.decode_skey(skey)
        return cls(decoded.name, decoded.material, now)

    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self._name, self._key_id, self.public_key)

    def sign(self, message: bytes) -> bytes:
        """Note-signer protocol: ``message`` must be a checkpoint body; returns timestamp || sig.

        Refusing non-checkpoints keeps a witness key from vouching for arbitrary text.
        """
        parse_checkpoint(message)
        timestamp = self._now()
        if not isinstance(timestamp, int) or not 0 <= timestamp <= MAX_COSIGNATURE_TIMESTAMP:
            raise UsageError(ReasonCode.MALFORMED_COSIGNATURE, "clock gave an invalid timestamp")
        signature = self._signing_key.sign(cosignature_message(message, timestamp)).signature
        return timestamp.to_bytes(_TIMESTAMP_BYTES, "big") + bytes(signature)


def generate_cosignature_key(name: str, random: RandomBytes = system_random) -> tuple[str, str]:
    """A fresh witness key pair ``(skey, vkey)`` of type 0x04; the skey is secret."""
    return generate_ed25519_note_key(name, COSIGNATURE_V1_TYPE, random)


# -- witnessed checkpoints ---------------------------------------------------------------------


@dataclass(frozen=True)
class WitnessCosignature:
    witness: CosignatureVerifier
    timestamp: int


@dataclass(frozen=True)
class WitnessedCheckpoint:
    """A checkpoint signed by its log and cosigned by at least the quorum of witnesses."""

    checkpoint: Checkpoint
    note: Note
    cosignatures: tuple[WitnessCosignature, ...]

    @property
    def witnesses(self) -> frozenset[CosignatureVerifier]:
        return frozenset(cosignature.witness for cosignature in self.cosignatures)


def verify_witnessed_checkpoint(
    note: bytes | str,
    log_verifier: Verifier,
    witnesses: Sequence[CosignatureVerifier],
    quorum: int,
    *,
    origin: str | None = None,
    now: Clock = system_clock,
    max_future_skew: int = DEFAULT_MAX_FUTURE_SKEW,
) -> WitnessedCheckpoint:
    """Believe a checkpoint only if the log signed it and ``quorum`` distinct witnesses cosigned.

    - The log signature is checked as in :func:`open_checkpoint` (``origin`` optional here).
    - For each witness, its first signature line with matching name and key ID is checked (as
      golang/mod treats a known key). A malformed or failing cosignature by a configured witness
      raises (``MALFORMED_COSIGNATURE`` / ``COSIGNATURE_INVALID``): it is evidence of tampering,
      not an absence.
    - A cosignature dated more than ``max_future_skew`` seconds after ``now()`` is not counted
      (tlog-cosignature lets verifiers reject future timestamps); a skewed witness clock then
      shows up as a missed quorum rather than a forged-looking signature.
    - Fewer than ``quorum`` counted witnesses raises ``WITNESS_QUORUM_NOT_MET``.
    """
    if not 0 <= quorum <= len(witnesses):
        raise UsageError(ReasonCode.WITNESS_QUORUM_NOT_MET, "quorum must be in [0, witnesses]")
    configured: dict[tuple[str, int], CosignatureVerifier] = {}
    for witness in witnesses:
        key = (witness.name, witness.key_id)
        if key in configured or key == (log_verifier.name, log_verifier.key_id):
            # A duplicate would count twice toward the quorum.
            raise UsageError(ReasonCode.NOTE_AMBIGUOUS_KEY, "a witness key is configured twice")
        configured[key] = witness

    opened = open_note(note, [log_verifier])
    checkpoint = parse_checkpoint(opened.text)
    _check_origin(checkpoint, origin)

    latest_acceptable = now() + max_future_skew
    counted: list[WitnessCosignature] = []
    too_new = 0
    checked: set[tuple[str, int]] = set()
    for signature in opened.unverified:
        key = (signature.name, signature.key_id)
        cosigner = configured.get(key)
        if cosigner is None or key in checked:
            continue
        checked.add(key)
        timestamp = cosigner.verify_cosignature(opened.text, signature.signature_b64)
        if timestamp > latest_acceptable:
            too_new += 1
            continue
        counted.append(WitnessCosignature(cosigner, timestamp))
    if len(counted) < quorum:
        detail = f"{len(counted)} of the required {quorum} witness cosignatures"
        if too_new:
            detail += f" ({too_new} more dated in the future)"
        raise VerificationError(ReasonCode.WITNESS_QUORUM_NOT_MET, detail)
    return WitnessedCheckpoint(checkpoint, opened, tuple(counted))
