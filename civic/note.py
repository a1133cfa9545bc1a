"""Signed notes and note keys (C2SP signed-note v1.0.0, https://c2sp.org/signed-note).

Implements: "Format" (text, blank line, signature lines; UTF-8 with no control character but
newline; split at the last blank line), "Signatures" (key name + key ID select the key; unknown
keys are ignored, a known key whose signature fails rejects the note, no verified signature
rejects the note), "Ed25519 signatures" (type 0x01, key ID = SHA-256(name || 0x0A || type ||
public key)[:4]) and "Verifier keys" (``<name>+<hex key ID>+<base64(type || key)>``). Signer
keys use the golang.org/x/mod/sumdb/note encoding ``PRIVATE+KEY+<name>+<hex key ID>+<base64(type
|| Ed25519 seed)>``, and :func:`open_note` follows that package's ``Open``: signatures are capped at
:data:`MAX_SIGNATURES`, repeated signatures are dropped, and a verifier list naming one key twice
is rejected once a signature needs that key.

Deviations, all stricter than golang/mod: base64 must be canonical (two spellings of one signature
must not both be accepted), key IDs in keys must be lowercase hex, and key names must not hold
control characters (a note could never carry them anyway).

Timestamped cosignatures (type 0x04) and checkpoints live in :mod:`civic.checkpoint`; their
verifiers satisfy the :class:`Verifier` protocol here, so one :func:`open_note` call can check a log
signature and witness cosignatures together.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from nacl.exceptions import CryptoError
from nacl.signing import SigningKey, VerifyKey

from civic.clock import RandomBytes, system_random
from civic.encoding import b64std_decode, b64std_encode
from civic.errors import MalformedError, ReasonCode, UsageError, VerificationError

ED25519_TYPE = 0x01
"""Signature type byte of plain Ed25519 note signatures (signed-note, "Signature types")."""

MAX_SIGNATURES = 100
"""golang/mod's cap on signature lines; the spec asks verifiers to accept at least 16."""

MAX_NOTE_BYTES = 1 << 20
"""Upper bound on a note we will parse: 100 post-quantum signatures (~5 kB each) fit easily."""

SIGNATURE_PREFIX = "\u2014 "
"""Every signature line starts with an em dash (U+2014) and a space."""

_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")
_FORBIDDEN_NOTE_CHARS = re.compile(r"[\x00-\x09\x0b-\x1f]")
_ED25519_KEY_BYTES = 32
_ED25519_SIGNATURE_BYTES = 64
_KEY_ID_BYTES = 4


class Verifier(Protocol):
    """Anything that can check one kind of note signature for one key.

    ``signature`` is the signature with its 4-byte key ID already removed; ``message`` is the
    note text. Returns False for a wrong or badly sized signature; never raises for bad input.
    """

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def verify(self, message: bytes, signature: bytes) -> bool: ...


class Signer(Protocol):
    """Anything that can sign a note text; returns the signature without the key ID."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def sign(self, message: bytes) -> bytes: ...


def is_valid_key_name(name: str) -> bool:
    """Non-empty, no ``+``, no Unicode space, no control character, encodable as UTF-8."""
    if not name or "+" in name:
        return False
    if any(char.isspace() or char < " " for char in name):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def compute_key_id(name: str, type_byte: int, public_key: bytes) -> int:
    """Key ID = first four bytes, big-endian, of SHA-256(name || 0x0A || type || public key)."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([type_byte]) + public_key)
    return int.from_bytes(digest.digest()[:_KEY_ID_BYTES], "big")


def encode_vkey(name: str, type_byte: int, public_key: bytes) -> str:
    key_id = compute_key_id(name, type_byte, public_key)
    return f"{name}+{key_id:08x}+{b64std_encode(bytes([type_byte]) + public_key)}"


def encode_skey(name: str, key_id: int, type_byte: int, seed: bytes) -> str:
    return f"PRIVATE+KEY+{name}+{key_id:08x}+{b64std_encode(bytes([type_byte]) + seed)}"


@dataclass(frozen=True)
class DecodedKey:
    """The parts of a vkey or skey: name, the key ID as written, type byte and key material."""

    name: str
    key_id: int
    type_byte: int
    material: bytes


def _bad_key(detail: str) -> MalformedError:
    return MalformedError(ReasonCode.MALFORMED_NOTE_KEY, detail)


def _decode_key_parts(name: str, key_id_hex: str, key_b64: str) -> DecodedKey:
    if not is_valid_key_name(name):
        raise _bad_key("invalid key name")
    if not _KEY_ID_HEX.fullmatch(key_id_hex):
        raise _bad_key("key ID is not 8 lowercase hex digits")
    try:
        raw = b64std_decode(key_b64)
    except MalformedError:
        raise _bad_key("key is not canonical standard base64") from None
    if not raw:
        raise _bad_key("empty key")
    return DecodedKey(name, int(key_id_hex, 16), raw[0], raw[1:])


def decode_vkey(vkey: str) -> DecodedKey:
    """Split ``name+keyid+base64`` on the first two ``+`` (base64 may itself contain ``+``).

    Checks structure only; the caller checks the type byte, key length and key ID.
    """
    if not isinstance(vkey, str):
        raise _bad_key("verifier key is not a string")
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise _bad_key("verifier key needs three '+'-separated parts")
    return _decode_key_parts(*parts)


def decode_skey(skey: str) -> DecodedKey:
    """Split ``PRIVATE+KEY+name+keyid+base64`` on the first four ``+``. Structure only."""
    if not isinstance(skey, str):
        raise _bad_key("signer key is not a string")
    parts = skey.split("+", 4)
    if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
        raise _bad_key("signer key must be PRIVATE+KEY+<name>+<key ID>+<key>")
    return _decode_key_parts(*parts[2:])


def check_key_type(decoded: DecodedKey, accepted: Sequence[int], kind: str) -> None:
    if decoded.type_byte not in accepted:
        # Only types 0x01 and 0x04 are implemented; ECDSA (0x02), RFC 6962 (0x05), ML-DSA-44
        # (0x06) and unassigned bytes all land here.
        raise _bad_key(f"unsupported signature type 0x{decoded.type_byte:02x} for a {kind}")
    if len(decoded.material) != _ED25519_KEY_BYTES:
        raise _bad_key("Ed25519 key material must be 32 bytes")


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(signature) != _ED25519_SIGNATURE_BYTES:
        return False
    try:
        VerifyKey(public_key).verify(message, signature)
    except (CryptoError, ValueError, TypeError):
        return False
    return True


def ed25519_public_key(seed: bytes) -> bytes:
    return bytes(SigningKey(seed).verify_key)


@dataclass(frozen=True)
class NoteVerifier:
    """An Ed25519 (type 0x01) note verifier key."""

    name: str
    key_id: int
    public_key: bytes

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name) or len(self.public_key) != _ED25519_KEY_BYTES:
            raise UsageError(ReasonCode.MALFORMED_NOTE_KEY, "invalid name or public key")
        if self.key_id != compute_key_id(self.name, ED25519_TYPE, self.public_key):
            raise UsageError(ReasonCode.MALFORMED_NOTE_KEY, "key ID does not match the key")

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> NoteVerifier:
        if not is_valid_key_name(name):
            raise UsageError(ReasonCode.MALFORMED_NOTE_KEY, "invalid key name")
        return cls(name, compute_key_id(name, ED25519_TYPE, public_key), public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        decoded = decode_vkey(vkey)
        check_key_type(decoded, (ED25519_TYPE,), "note verifier")
        if decoded.key_id != compute_key_id(decoded.name, ED25519_TYPE, decoded.material):
            raise _bad_key("key ID does not match the key")
        return cls(decoded.name, decoded.key_id, decoded.material)

    @property
    def vkey(self) -> str:
        return encode_vkey(self.name, ED25519_TYPE, self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        return ed25519_verify(self.public_key, message, signature)


class Ed25519NoteKey:
    """An Ed25519 signing key with a note key name and its key ID, for one key type.

    The two signers of this system, a log's note signer (type 0x01) and a witness's
    ``cosignature/v1`` signer (type 0x04), differ only in their type byte and in what they
    sign. Its repr shows the name and key ID, never the seed.
    """

    __slots__ = ("_key_id", "_name", "_signing_key")
    KEY_TYPE: ClassVar[int]
    KIND: ClassVar[str]

    def __init__(self, name: str, seed: bytes) -> None:
        if not is_valid_key_name(name):
            raise UsageError(ReasonCode.MALFORMED_NOTE_KEY, "invalid key name")
        if len(seed) != _ED25519_KEY_BYTES:
            raise UsageError(ReasonCode.MALFORMED_NOTE_KEY, "Ed25519 seed must be 32 bytes")
        self._name = name
        self._signing_key = SigningKey(bytes(seed))
        self._key_id = compute_key_id(name, self.KEY_TYPE, self.public_key)

    @classmethod
    def decode_skey(cls, skey: str) -> DecodedKey:
        """The parts of an skey of this class's type whose key ID matches its key."""
        decoded = decode_skey(skey)
        check_key_type(decoded, (cls.KEY_TYPE,), cls.KIND)
        public_key = ed25519_public_key(decoded.material)
        # The skey names the public key's ID, so it can only be checked after derivation.
        if compute_key_id(decoded.name, cls.KEY_TYPE, public_key) != decoded.key_id:
            raise _bad_key("key ID does not match the key")
        return decoded

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> int:
        return self._key_id

    @property
    def public_key(self) -> bytes:
        return bytes(self._signing_key.verify_key)

    @property
    def vkey(self) -> str:
        return encode_vkey(self._name, self.KEY_TYPE, self.public_key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r}, key_id={self._key_id:08x})"


class NoteSigner(Ed25519NoteKey):
    """An Ed25519 (type 0x01) note signer."""

    __slots__ = ()
    KEY_TYPE = ED25519_TYPE
    KIND = "note signer"

    @classmethod
    def from_skey(cls, skey: str) -> NoteSigner:
        decoded = cls.decode_skey(skey)
        return cls(decoded.name, decoded.material)

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self._name, self._key_id, self.public_key)

    def sign(self, message: bytes) -> bytes:
        return bytes(self._signing_key.sign(message).signature)


def generate_ed25519_note_key(
    name: str, type_byte: int, random: RandomBytes = system_random
) -> tuple[str, str]:
    """A fresh Ed25519 key pair of ``type_byte`` as ``(skey, vkey)``; the skey is secret."""
    if not is_valid_key_name(name):
        raise UsageError(ReasonCode.MALFORMED_NOTE_KEY, "invalid key name")
    seed = random(_ED25519_KEY_BYTES)
    public_key = ed25519_public_key(seed)
    key_id = compute_key_id(name, type_byte, public_key)
    return encode_skey(name, key_id, type_byte, seed), encode_vkey(name, type_byte, public_key)


def generate_note_key(name: str, random: RandomBytes = system_random) -> tuple[str, str]:
    """A fresh Ed25519 note key pair as ``(skey, vkey)``; the skey is secret."""
    return generate_ed25519_note_key(name, ED25519_TYPE, random)


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key ID, and the base64 of key ID || signature."""

    name: str
    key_id: int
    signature_b64: str

    @property
    def signature(self) -> bytes:
        """The signature bytes after the 4-byte key ID."""
        return b64std_decode(self.signature_b64)[_KEY_ID_BYTES:]

    def line(self) -> str:
        return f"{SIGNATURE_PREFIX}{self.name} {self.signature_b64}\n"


@dataclass(frozen=True)
class Note:
    """A note's text with its signatures by known keys (``verified``) and by others."""

    text: str
    verified: tuple[NoteSignature, ...] = ()
    unverified: tuple[NoteSignature, ...] = ()


def _malformed(detail: str) -> MalformedError:
    return MalformedError(ReasonCode.MALFORMED_NOTE, detail)


@dataclass(frozen=True)
class _ParsedLine:
    line: str
    signature: NoteSignature
    raw: bytes


def _parse(note: bytes | str) -> tuple[str, bytes, list[_ParsedLine]]:
    if isinstance(note, str):
        try:
            data = note.encode("utf-8")
        except UnicodeEncodeError:
            raise _malformed("note is not valid UTF-8") from None
    elif isinstance(note, bytes | bytearray | memoryview):
        data = bytes(note)
    else:
        raise _malformed("note must be bytes")
    if len(data) > MAX_NOTE_BYTES:
        raise MalformedError(ReasonCode.INPUT_TOO_LARGE, "note too large")
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("note is not valid UTF-8") from None
    if _FORBIDDEN_NOTE_CHARS.search(decoded):
        raise _malformed("note contains a control character")
    # Split the bytes, not the decoded string: the signed message is the text's exact bytes.
    split = data.rfind(b"\n\n")
    if split < 0:
        raise _malformed("note has no signature block")
    text_bytes = data[: split + 1]
    text, block = text_bytes.decode("utf-8"), data[split + 2 :].decode("utf-8")
    if not block or not block.endswith("\n"):
        raise _malformed("signature block is empty or does not end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise _malformed(f"more than {MAX_SIGNATURES} signatures")
    parsed: list[_ParsedLine] = []
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise _malformed("signature line does not start with an em dash and a space")
        name, _, signature_b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not is_valid_key_name(name) or not signature_b64:
            raise _malformed("bad key name or empty signature")
        try:
            raw = b64std_decode(signature_b64)
        except MalformedError:
            raise _malformed("signature is not canonical standard base64") from None
        if len(raw) <= _KEY_ID_BYTES:
            raise _malformed("signature too short")
        key_id = int.from_bytes(raw[:_KEY_ID_BYTES], "big")
        parsed.append(_ParsedLine(line, NoteSignature(name, key_id, signature_b64), raw))
    return text, text_bytes, parsed


def parse_unverified_note(note: bytes | str) -> Note:
    """Parse a note without checking any signature: every signature lands in ``unverified``.

    The text of such a note must not be trusted; this is for tools that inspect or forward
    notes (a witness adding its cosignature verifies the log signature with :func:`open_note`).
    Identical signature lines are dropped, as :func:`open_note` does for unknown keys.
    """
    text, _, parsed = _parse(note)
    seen: set[str] = set()
    unverified: list[NoteSignature] = []
    for entry in parsed:
        if entry.line not in seen:
            seen.add(entry.line)
            unverified.append(entry.signature)
    return Note(text, (), tuple(unverified))


def open_note(note: bytes | str, verifiers: Sequence[Verifier]) -> Note:
    """Parse ``note`` and check its signatures against ``verifiers`` (golang/mod ``Open``).

    Raises :class:`MalformedError` (``MALFORMED_NOTE``) for a bad note, and
    :class:`VerificationError` with ``NOTE_SIGNATURE_INVALID`` when a known key's signature fails,
    ``NOTE_AMBIGUOUS_KEY`` when a signature's name and key ID match several verifiers, and
    ``NOTE_NO_VERIFIABLE_SIGNATURE`` when no known key signed.
    """
    text, text_bytes, parsed = _parse(note)
    known: dict[tuple[str, int], list[Verifier]] = {}
    for verifier in verifiers:
        known.setdefault((verifier.name, verifier.key_id), []).append(verifier)
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    seen_known: set[tuple[str, int]] = set()
    seen_unknown_lines: set[str] = set()
    for entry in parsed:
        signature = entry.signature
        key = (signature.name, signature.key_id)
        candidates = known.get(key)
        if not candidates:
            if entry.line not in seen_unknown_lines:
                seen_unknown_lines.add(entry.line)
                unverified.append(signature)
            continue
        label = f"{signature.name}+{signature.key_id:08x}"
        if len(candidates) > 1:
            raise VerificationError(ReasonCode.NOTE_AMBIGUOUS_KEY, f"ambiguous key {label}")
        if key in seen_known:
            # golang/mod keeps only the first signature per known key.
            continue
        seen_known.add(key)
        if not candidates[0].verify(text_bytes, entry.raw[_KEY_ID_BYTES:]):
            raise VerificationError(
                ReasonCode.NOTE_SIGNATURE_INVALID, f"invalid signature for key {label}"
            )
        verified.append(signature)
    if not verified:
        raise VerificationError(
            ReasonCode.NOTE_NO_VERIFIABLE_SIGNATURE, "note has no verifiable signatures"
        )
    return Note(text, tuple(verified), tuple(unverified))


def _check_text(text: str) -> None:
    if not isinstance(text, str):
        raise _malformed("note text must be a string")
    if not text.endswith("\n"):
        raise _malformed("note text must end with a newline")
    if _FORBIDDEN_NOTE_CHARS.search(text):
        raise _malformed("note text contains a control character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _malformed("note text is not valid UTF-8") from None


def sign_note(text: str | Note, signers: Sequence[Signer]) -> bytes:
    """Sign ``text`` with every signer and return the encoded note.

    Given a :class:`Note`, its existing signatures (verified and unverified) come first, except
    those by a key that signs again here, then the new ones (golang/mod ``Sign``).
    """
    note = text if isinstance(text, Note) else Note(text)
    _check_text(note.text)
    if not signers:
        raise UsageError(ReasonCode.MALFORMED_NOTE, "at least one signer is needed")
    message = note.text.encode("utf-8")
    new_lines: list[str] = []
    new_keys: set[tuple[str, int]] = set()
    for signer in signers:
        name, key_id = signer.name, signer.key_id
        if not is_valid_key_name(name) or not 0 <= key_id < 1 << 32:
            raise UsageError(ReasonCode.MALFORMED_NOTE_KEY, "signer has an invalid name or ID")
        if (name, key_id) in new_keys:
            raise UsageError(ReasonCode.NOTE_AMBIGUOUS_KEY, "the same key is listed twice")
        new_keys.add((name, key_id))
        raw = key_id.to_bytes(_KEY_ID_BYTES, "big") + signer.sign(message)
        new_lines.append(NoteSignature(name, key_id, b64std_encode(raw)).line())
    kept_lines: list[str] = []
    for existing in (*note.verified, *note.unverified):
        if (existing.name, existing.key_id) in new_keys:
            continue
        try:
            raw = b64std_decode(existing.signature_b64)
        except MalformedError:
            raise _malformed("existing signature is not canonical base64") from None
        if (
            not is_valid_key_name(existing.name)
            or len(raw) <= _KEY_ID_BYTES
            or int.from_bytes(raw[:_KEY_ID_BYTES], "big") != existing.key_id
        ):
            raise _malformed("existing signature does not match its key ID")
        kept_lines.append(existing.line())
    lines = kept_lines + new_lines
    if len(lines) > MAX_SIGNATURES:
        raise UsageError(ReasonCode.MALFORMED_NOTE, f"more than {MAX_SIGNATURES} signatures")
    encoded = (note.text + "\n" + "".join(lines)).encode("utf-8")
    if len(encoded) > MAX_NOTE_BYTES:
        raise UsageError(ReasonCode.INPUT_TOO_LARGE, "signed note would be too large")
    return encoded
