"""DIDs made from a single public key: ``did:key`` and ``did:jwk``, create and resolve.

Specifications:

- W3C DID Core 1.0, section 3.1 (DID syntax) and 3.2 (DID URL syntax, fragments).
- W3C CCG "The did:key Method" v0.7: "Format" (``did:key:`` + multibase), "Document Creation
  Algorithm", "Signature Method Creation Algorithm" (key lengths, P-256 keys as *compressed*
  SEC1 points) and "Encryption Method Creation Algorithm" (the X25519 ``keyAgreement`` key
  derived from an Ed25519 key). Test vectors: ``w3c-ccg/did-method-key/test-vectors``.
- Multibase (``z`` = base58btc, draft-msporny-base58 section 2, Bitcoin alphabet), multicodec
  table (``ed25519-pub`` 0xed, ``p256-pub`` 0x1200, ...) and the multiformats unsigned-varint
  spec (minimal encoding, at most 9 bytes).
- did:jwk method specification (quartzjer/did-jwk ``spec.md``): ``did:jwk:`` + base64url of the
  UTF-8 JSON of a public JWK; the single verification method is always ``#0``.

Only Ed25519 and P-256 keys resolve, the two signature keys of :mod:`civic.jose`. Other key
types that did:key knows (X25519, P-384, P-521, secp256k1, RSA, BLS12-381, ...) are recognised
and refused with ``UNSUPPORTED_KEY_TYPE``, so a caller can tell "not for us" from "broken".

Strictness, and why:

- One key gives one DID. did:key demands the compressed P-256 point (an uncompressed one is
  refused, not normalised), base58 is bijective once leading zeros are fixed, and the varint
  must be minimal. :func:`did_jwk_from_public_key` serialises the JWK with sorted members
  (the order of the did:jwk spec's own example), but resolution accepts any member order and
  extra members, since the spec lets a DID carry any serialisation of the JWK.
- Ed25519 keys must be points of the prime-order subgroup (libsodium's check in the Ed25519 to
  X25519 conversion). Every key made from a seed is; a key that is not cannot have the
  keyAgreement key the did:key document needs, and is a sign of a forged or broken DID.
- A did:jwk holding private key material is refused (did:jwk spec, "Security"): a DID is public,
  and accepting one would teach callers to publish secrets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import nacl.bindings
import nacl.exceptions

from civic.encoding import b64url_decode, b64url_encode, json_dumps_canonical, json_loads
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError
from civic.jose import PublicKey, ed25519_public_key, p256_public_key, public_key_from_jwk

MAX_DID_LENGTH = 4096
"""Longest DID or DID URL accepted. A did:key is under 60 characters, a did:jwk under 250."""

DID_CONTEXT: tuple[str, ...] = (
    "https://www.w3.org/ns/did/v1",
    "https://w3id.org/security/suites/jws-2020/v1",
)
VERIFICATION_METHOD_TYPE = "JsonWebKey2020"

_DID_KEY_PREFIX = "did:key:"
_DID_JWK_PREFIX = "did:jwk:"
_MULTIBASE_BASE58BTC = "z"
_DID_JWK_FRAGMENT = "0"

# --- base58btc -------------------------------------------------------------------------------

BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_VALUE = {c: i for i, c in enumerate(BASE58_ALPHABET)}


def base58btc_encode(data: bytes) -> str:
    """Base58 with the Bitcoin alphabet; each leading zero byte becomes one ``1``."""
    zeros = len(data) - len(data.lstrip(b"\x00"))
    number = int.from_bytes(data, "big")
    digits: list[str] = []
    while number:
        number, digit = divmod(number, 58)
        digits.append(BASE58_ALPHABET[digit])
    return "1" * zeros + "".join(reversed(digits))


def base58btc_decode(text: str, *, reason: ReasonCode = ReasonCode.MALFORMED_INPUT) -> bytes:
    """Inverse of :func:`base58btc_encode`; any character outside the alphabet is refused."""
    number = 0
    for char in text:
        value = _BASE58_VALUE.get(char)
        if value is None:
            raise MalformedError(reason, "character outside the base58btc alphabet")
        number = number * 58 + value
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return b"\x00" * zeros + body


# --- unsigned varint and multicodec -----------------------------------------------------------

_VARINT_MAX_BYTES = 9  # multiformats unsigned-varint: values below 2**63


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128, minimal, as multicodec prefixes are written."""
    if value < 0 or value >= 1 << 63:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "varint value out of range")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(
    data: bytes, *, reason: ReasonCode = ReasonCode.MALFORMED_INPUT
) -> tuple[int, int]:
    """Read one unsigned varint from the start of ``data``: ``(value, bytes consumed)``.

    Non-minimal encodings are refused: ``0x80 0x00`` must not be a second spelling of 0, or one
    key would have several DIDs.
    """
    value = 0
    for index, byte in enumerate(data[:_VARINT_MAX_BYTES]):
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            if byte == 0 and index > 0:
                raise MalformedError(reason, "varint is not minimally encoded")
            return value, index + 1
    if len(data) >= _VARINT_MAX_BYTES:
        raise MalformedError(reason, "varint longer than 9 bytes")
    raise MalformedError(reason, "truncated varint")


MULTICODEC_ED25519_PUB = 0xED
MULTICODEC_P256_PUB = 0x1200
MULTICODEC_X25519_PUB = 0xEC

_KNOWN_UNSUPPORTED_KEY_CODECS: dict[int, str] = {
    0xE7: "secp256k1-pub",
    0xEA: "bls12_381-g1-pub",
    0xEB: "bls12_381-g2-pub",
    0xEC: "x25519-pub",
    0xEE: "bls12_381-g1g2-pub",
    0xEF: "sr25519-pub",
    0x1201: "p384-pub",
    0x1202: "p521-pub",
    0x1203: "ed448-pub",
    0x1204: "x448-pub",
    0x1205: "rsa-pub",
}

_ED25519_KEY_LENGTH = 32
_P256_COMPRESSED_LENGTH = 33


def _x25519_from_ed25519(raw: bytes) -> bytes | None:
    """The Montgomery form of an Ed25519 key, or None when libsodium refuses the point."""
    try:
        converted: bytes = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(raw)
    except nacl.exceptions.CryptoError:
        return None
    return converted


def _compressed_point(key: PublicKey) -> bytes:
    # raw is 0x04 || x || y; SEC1 compression keeps x and the parity of y.
    return bytes([0x02 | (key.raw[64] & 1)]) + key.raw[1:33]


def _require_valid_ed25519(key: PublicKey) -> bytes:
    x25519 = _x25519_from_ed25519(key.raw)
    if x25519 is None:
        raise MalformedError(
            ReasonCode.MALFORMED_JWK, "Ed25519 key is not a point of the prime-order subgroup"
        )
    return x25519


def multikey_from_public_key(key: PublicKey) -> str:
    """The multibase (base58btc) multicodec form of ``key``, the method-specific id of did:key."""
    if key.alg == "EdDSA":
        _require_valid_ed25519(key)
        payload = encode_varint(MULTICODEC_ED25519_PUB) + key.raw
    else:
        payload = encode_varint(MULTICODEC_P256_PUB) + _compressed_point(key)
    return _MULTIBASE_BASE58BTC + base58btc_encode(payload)


def _x25519_multikey(x25519: bytes) -> str:
    return _MULTIBASE_BASE58BTC + base58btc_encode(encode_varint(MULTICODEC_X25519_PUB) + x25519)


def public_key_from_multikey(
    multikey: str, *, reason: ReasonCode = ReasonCode.MALFORMED_INPUT
) -> PublicKey:
    """Decode a ``z...`` multikey into an Ed25519 or P-256 key.

    Raises ``reason`` for anything malformed and ``UNSUPPORTED_KEY_TYPE`` for a recognised key
    type this system does not use.
    """
    return _decode_multikey(multikey, reason)[0]


def _decode_multikey(multikey: str, reason: ReasonCode) -> tuple[PublicKey, bytes | None]:
    """The key and, for Ed25519, its X25519 form (computed once: it is the costly check)."""
    if not multikey.startswith(_MULTIBASE_BASE58BTC):
        raise MalformedError(reason, "multibase prefix is not 'z' (base58btc)")
    payload = base58btc_decode(multikey[1:], reason=reason)
    codec, used = decode_varint(payload, reason=reason)
    key_bytes = payload[used:]
    if codec == MULTICODEC_ED25519_PUB:
        if len(key_bytes) != _ED25519_KEY_LENGTH:
            raise MalformedError(reason, "Ed25519 public key must be 32 bytes")
        x25519 = _x25519_from_ed25519(key_bytes)
        if x25519 is None:
            raise MalformedError(reason, "Ed25519 key is not a point of the prime-order subgroup")
        return ed25519_public_key(key_bytes), x25519
    if codec == MULTICODEC_P256_PUB:
        if len(key_bytes) != _P256_COMPRESSED_LENGTH or key_bytes[0] not in (2, 3):
            raise MalformedError(reason, "P-256 public key must be a 33-byte compressed point")
        try:
            return p256_public_key(key_bytes), None
        except MalformedError:
            raise MalformedError(reason, "P-256 point is not on the curve") from None
    name = _KNOWN_UNSUPPORTED_KEY_CODECS.get(codec)
    if name is not None:
        raise MalformedError(ReasonCode.UNSUPPORTED_KEY_TYPE, f"{name} keys are not supported")
    raise MalformedError(reason, "multicodec is not a known public-key type")


# --- creating DIDs ----------------------------------------------------------------------------


def did_key_from_public_key(key: PublicKey) -> str:
    """``did:key:z...`` for an Ed25519 or P-256 key (P-256 as the compressed point)."""
    return _DID_KEY_PREFIX + multikey_from_public_key(key)


def did_jwk_from_public_key(key: PublicKey) -> str:
    """``did:jwk:`` + base64url of the public JWK, members sorted so a key gives one DID."""
    if key.alg == "EdDSA":
        _require_valid_ed25519(key)
    return _DID_JWK_PREFIX + b64url_encode(json_dumps_canonical(key.to_jwk()).encode("utf-8"))


# --- resolving DIDs ---------------------------------------------------------------------------

DidMethod = Literal["key", "jwk"]


@dataclass(frozen=True, slots=True)
class DidDocument:
    """A resolved did:key or did:jwk: one signature key, and at most one key-agreement key.

    ``key_agreement_id`` is the derived X25519 method for a did:key Ed25519 key, the signature
    method itself for P-256 (both methods' specs list it there), and None otherwise.
    """

    id: str
    method: DidMethod
    public_key: PublicKey
    verification_method_id: str
    key_agreement_id: str | None = None
    x25519_public_key: bytes | None = None

    def public_key_jwk(self) -> dict[str, Any]:
        """The JWK of the verification method: for did:jwk the JWK as written in the DID."""
        if self.method == "jwk":
            jwk: dict[str, Any] = json_loads(b64url_decode(self.id[len(_DID_JWK_PREFIX) :]))
            return jwk
        return self.public_key.to_jwk()

    def to_json(self) -> dict[str, Any]:
        """The DID document (DID Core section 5), verification methods as JsonWebKey2020."""
        methods: list[dict[str, Any]] = [
            self._method(self.verification_method_id, self.public_key_jwk())
        ]
        if self.x25519_public_key is not None and self.key_agreement_id is not None:
            x25519_jwk = {"kty": "OKP", "crv": "X25519", "x": b64url_encode(self.x25519_public_key)}
            methods.append(self._method(self.key_agreement_id, x25519_jwk))
        document: dict[str, Any] = {
            "@context": list(DID_CONTEXT),
            "id": self.id,
            "verificationMethod": methods,
        }
        for relationship in (
            "authentication",
            "assertionMethod",
            "capabilityInvocation",
            "capabilityDelegation",
        ):
            document[relationship] = [self.verification_method_id]
        if self.key_agreement_id is not None:
            document["keyAgreement"] = [self.key_agreement_id]
        return document

    def _method(self, method_id: str, jwk: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": method_id,
            "type": VERIFICATION_METHOD_TYPE,
            "controller": self.id,
            "publicKeyJwk": jwk,
        }


_METHOD_NAME = re.compile(r"did:([a-z0-9]+):")
# DID Core 3.1: method-specific-id = *( *idchar ":" ) 1*idchar; idchar allows pct-encoding.
_METHOD_SPECIFIC_ID = re.compile(
    r"(?:[A-Za-z0-9._:-]|%[0-9A-Fa-f]{2})*(?:[A-Za-z0-9._-]|%[0-9A-Fa-f]{2})"
)


def _check_did_text(did: object) -> str:
    if not isinstance(did, str):
        raise MalformedError(ReasonCode.MALFORMED_DID, "DID is not a string")
    if len(did) > MAX_DID_LENGTH:
        raise MalformedError(ReasonCode.INPUT_TOO_LARGE, "DID longer than the limit")
    return did


def resolve_did(did: str) -> DidDocument:
    """Resolve a did:key or did:jwk (no network: both are pure functions of the DID).

    Raises ``MALFORMED_DID``, ``UNSUPPORTED_DID_METHOD`` (did:web, did:example, ...),
    ``UNSUPPORTED_KEY_TYPE``, ``PRIVATE_KEY_MATERIAL`` or ``INPUT_TOO_LARGE``.
    """
    did = _check_did_text(did)
    if did.startswith(_DID_KEY_PREFIX):
        return _resolve_did_key(did)
    if did.startswith(_DID_JWK_PREFIX):
        return _resolve_did_jwk(did)
    method = _METHOD_NAME.match(did)
    if method is None or not _METHOD_SPECIFIC_ID.fullmatch(did, method.end()):
        raise MalformedError(ReasonCode.MALFORMED_DID, "not a DID")
    raise MalformedError(
        ReasonCode.UNSUPPORTED_DID_METHOD, f"DID method not supported: {method.group(1)!r:.40}"
    )


def _resolve_did_key(did: str) -> DidDocument:
    multikey = did[len(_DID_KEY_PREFIX) :]
    key, x25519 = _decode_multikey(multikey, ReasonCode.MALFORMED_DID)
    method_id = f"{did}#{multikey}"
    if x25519 is not None:
        return DidDocument(
            id=did,
            method="key",
            public_key=key,
            verification_method_id=method_id,
            key_agreement_id=f"{did}#{_x25519_multikey(x25519)}",
            x25519_public_key=x25519,
        )
    return DidDocument(
        id=did,
        method="key",
        public_key=key,
        verification_method_id=method_id,
        key_agreement_id=method_id,
    )


# Reasons from the JWK import that say something more useful than "malformed DID".
_JWK_REASONS_KEPT = frozenset({ReasonCode.PRIVATE_KEY_MATERIAL, ReasonCode.UNSUPPORTED_KEY_TYPE})


def _resolve_did_jwk(did: str) -> DidDocument:
    try:
        jwk = json_loads(b64url_decode(did[len(_DID_JWK_PREFIX) :]))
    except CivicError as exc:
        raise MalformedError(ReasonCode.MALFORMED_DID, f"did:jwk: {exc.detail}") from None
    if not isinstance(jwk, dict):
        raise MalformedError(ReasonCode.MALFORMED_DID, "did:jwk does not hold a JSON object")
    try:
        key = public_key_from_jwk(jwk)
    except CivicError as exc:
        if exc.reason in _JWK_REASONS_KEPT:
            raise
        raise MalformedError(ReasonCode.MALFORMED_DID, f"did:jwk: {exc.detail}") from None
    if key.alg == "EdDSA" and _x25519_from_ed25519(key.raw) is None:
        raise MalformedError(
            ReasonCode.MALFORMED_DID, "Ed25519 key is not a point of the prime-order subgroup"
        )
    method_id = f"{did}#{_DID_JWK_FRAGMENT}"
    # did:jwk spec: keyAgreement unless "use" is "sig". Ed25519 cannot agree keys at all, so it
    # is left out there too, as the spec's note on matching "use" to the curve implies.
    agrees_keys = key.alg == "ES256" and jwk.get("use") != "sig"
    return DidDocument(
        id=did,
        method="jwk",
        public_key=key,
        verification_method_id=method_id,
        key_agreement_id=method_id if agrees_keys else None,
    )


def public_key_from_did_url(did_url: str) -> PublicKey:
    """The signature key named by ``did:...#fragment`` (for example a JWS ``kid``).

    The fragment must name the DID's verification method (``#<multikey>`` for did:key, ``#0``
    for did:jwk); the did:key X25519 key-agreement fragment does not name a signature key.
    """
    did_url = _check_did_text(did_url)
    did, separator, _ = did_url.partition("#")
    if not separator:
        raise MalformedError(ReasonCode.MALFORMED_DID, "DID URL has no fragment")
    document = resolve_did(did)
    if document.verification_method_id != did_url:
        raise MalformedError(
            ReasonCode.MALFORMED_DID, "fragment does not name the DID's verification method"
        )
    return document.public_key
