"""JWK (RFC 7517, RFC 7638 thumbprints, RFC 8037 OKP keys) and compact JWS (RFC 7515).

Only two signature algorithms exist here, each pinned to one key type, so that the algorithm is
never chosen by the token (RFC 8725 section 3.1):

====== =============================== ==========================================
alg    key                             signature
====== =============================== ==========================================
EdDSA  OKP, crv Ed25519 (RFC 8037)     64 bytes, through libsodium (pynacl)
ES256  EC, crv P-256 (RFC 7518 3.4)    r || s, 64 bytes, through cryptography
====== =============================== ==========================================

``none``, HMAC and RSA are rejected before any key is touched. A ``crit`` header that names
anything this code does not implement is rejected (RFC 7515 section 4.1.11). Base64url must be
canonical and JSON headers must not repeat member names (see :mod:`civic.encoding`).

Verification is written for the hot path: a compact JWS is split and decoded once, and the
signature check calls libsodium directly instead of going through a generic JOSE object model.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, Protocol

import nacl.bindings
import nacl.exceptions
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from civic.clock import RandomBytes, system_random
from civic.encoding import (
    b64url_decode,
    b64url_encode,
    json_dumps,
    json_dumps_canonical,
    json_loads_object,
)
from civic.errors import MalformedError, ReasonCode, UsageError, VerificationError

Alg = Literal["EdDSA", "ES256"]
ALGORITHMS: frozenset[str] = frozenset({"EdDSA", "ES256"})

MAX_JWS_LENGTH = 64 * 1024
"""Longest compact JWS accepted. Credentials and status lists are far smaller; larger is abuse."""

_P256_ORDER_BYTES = 32
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

# pynacl's cffi binding of libsodium (always built with pynacl), for the verify hot path.
_sodium: Any = importlib.import_module("nacl._sodium")


def _b64_field(jwk: Mapping[str, Any], name: str, length: int) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise MalformedError(
            ReasonCode.MALFORMED_JWK, f"JWK member {name!r} missing or not a string"
        )
    raw = b64url_decode(value)
    if len(raw) != length:
        raise MalformedError(ReasonCode.MALFORMED_JWK, f"JWK member {name!r} has the wrong length")
    return raw


@dataclass(frozen=True, slots=True, eq=False)
class PublicKey:
    """A public verification key, its algorithm fixed by its type.

    Build with :func:`public_key_from_jwk` or from a :class:`PrivateKey`. Equality compares key
    material (the RFC 7638 thumbprint), not any optional JWK members.
    """

    alg: Alg
    raw: bytes  # Ed25519: 32-byte public key; P-256: 65-byte uncompressed SEC1 point
    _ec_key: ec.EllipticCurvePublicKey | None = field(default=None, repr=False)

    def to_jwk(self) -> dict[str, str]:
        if self.alg == "EdDSA":
            return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(self.raw)}
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url_encode(self.raw[1:33]),
            "y": b64url_encode(self.raw[33:65]),
        }

    def thumbprint(self) -> str:
        """RFC 7638 JWK thumbprint, SHA-256, base64url."""
        digest = hashlib.sha256(json_dumps_canonical(self.to_jwk()).encode("ascii")).digest()
        return b64url_encode(digest)

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        """True when ``signature`` is valid for ``signing_input`` under this key."""
        if len(signature) != 64:
            return False
        if self.alg == "EdDSA":
            # libsodium's combined-mode open is the only verify binding pynacl has. Called
            # through pynacl's cffi module with no output buffer, it checks the signature
            # without the message buffer allocated and copied out that nacl.bindings makes.
            signed = signature + signing_input
            return (
                len(self.raw) == 32
                and _sodium.lib.crypto_sign_open(
                    _sodium.ffi.NULL, _sodium.ffi.NULL, signed, len(signed), self.raw
                )
                == 0
            )
        assert self._ec_key is not None
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        try:
            self._ec_key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.alg == self.alg and other.raw == self.raw

    def __hash__(self) -> int:
        return hash((self.alg, self.raw))


def _ec_public_key(point: bytes) -> ec.EllipticCurvePublicKey:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise MalformedError(ReasonCode.MALFORMED_JWK, "EC point is not on P-256") from None


def ed25519_public_key(raw: bytes) -> PublicKey:
    if len(raw) != 32:
        raise MalformedError(ReasonCode.MALFORMED_JWK, "Ed25519 public key must be 32 bytes")
    return PublicKey("EdDSA", bytes(raw))


def p256_public_key(point: bytes) -> PublicKey:
    """From a SEC1 point, compressed (33 bytes) or uncompressed (65 bytes)."""
    key = _ec_public_key(point)
    uncompressed = key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return PublicKey("ES256", uncompressed, key)


def public_key_from_jwk(jwk: Mapping[str, Any]) -> PublicKey:
    """Import a public JWK. Private members are refused: a public slot must never hold a secret."""
    if not isinstance(jwk, Mapping):
        raise MalformedError(ReasonCode.MALFORMED_JWK, "JWK is not a JSON object")
    if not _PRIVATE_MEMBERS.isdisjoint(jwk):
        raise MalformedError(ReasonCode.PRIVATE_KEY_MATERIAL, "private key member in a public JWK")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "OKP" and crv == "Ed25519":
        key = ed25519_public_key(_b64_field(jwk, "x", 32))
    elif kty == "EC" and crv == "P-256":
        point = b"\x04" + _b64_field(jwk, "x", 32) + _b64_field(jwk, "y", 32)
        key = PublicKey("ES256", point, _ec_public_key(point))
    elif isinstance(kty, str):
        raise MalformedError(ReasonCode.UNSUPPORTED_KEY_TYPE, "only OKP Ed25519 and EC P-256 keys")
    else:
        raise MalformedError(ReasonCode.MALFORMED_JWK, "JWK member 'kty' missing")
    _check_optional_members(jwk, key.alg)
    return key


def _check_optional_members(jwk: Mapping[str, Any], alg: Alg) -> None:
    if "alg" in jwk and jwk["alg"] != alg:
        raise MalformedError(ReasonCode.ALG_KEY_MISMATCH, "JWK 'alg' does not match its key type")
    if "use" in jwk and jwk["use"] != "sig":
        raise MalformedError(ReasonCode.MALFORMED_JWK, "JWK 'use' is not 'sig'")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or not ({"verify", "sign"} & set(ops))):
        raise MalformedError(ReasonCode.MALFORMED_JWK, "JWK 'key_ops' does not allow signatures")


class Signer(Protocol):
    """Something that signs with a private key it never exports (a file key, an HSM, a KMS)."""

    @property
    def alg(self) -> Alg: ...

    @property
    def public_key(self) -> PublicKey: ...

    def sign(self, data: bytes) -> bytes: ...


class PrivateKey:
    """A private signing key held in memory. Satisfies :class:`Signer`.

    ``repr`` shows only the public thumbprint; the secret leaves the object only through the
    explicitly named :meth:`export_private_jwk`.
    """

    __slots__ = ("_ec", "_ed_secret", "alg", "public_key")

    alg: Alg
    public_key: PublicKey

    def __init__(
        self,
        alg: Alg,
        public_key: PublicKey,
        *,
        ed_secret: bytes | None = None,
        ec_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> None:
        self.alg = alg
        self.public_key = public_key
        self._ed_secret = ed_secret
        self._ec = ec_key

    @classmethod
    def generate(cls, alg: Alg = "EdDSA", random: RandomBytes = system_random) -> PrivateKey:
        if alg == "EdDSA":
            return cls.from_ed25519_seed(random(32))
        if alg == "ES256":
            # cryptography draws from the OS CSPRNG; P-256 scalars from a caller's bytes would
            # need rejection sampling, so only Ed25519 keys take injected randomness.
            return cls._from_ec(ec.generate_private_key(ec.SECP256R1()))
        raise UsageError(ReasonCode.ALG_NOT_ALLOWED, "only EdDSA and ES256 keys")

    @classmethod
    def from_ed25519_seed(cls, seed: bytes) -> PrivateKey:
        if len(seed) != 32:
            raise MalformedError(ReasonCode.MALFORMED_JWK, "Ed25519 seed must be 32 bytes")
        public, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
        return cls("EdDSA", PublicKey("EdDSA", public), ed_secret=secret)

    @classmethod
    def _from_ec(cls, key: ec.EllipticCurvePrivateKey) -> PrivateKey:
        point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return cls("ES256", PublicKey("ES256", point, key.public_key()), ec_key=key)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> PrivateKey:
        """Import a private JWK (with ``d``); ``x``/``y`` must match the private scalar."""
        if not isinstance(jwk, Mapping) or "d" not in jwk:
            raise MalformedError(ReasonCode.MALFORMED_JWK, "private JWK needs member 'd'")
        public_part = {k: v for k, v in jwk.items() if k not in _PRIVATE_MEMBERS}
        expected = public_key_from_jwk(public_part)
        if expected.alg == "EdDSA":
            key = cls.from_ed25519_seed(_b64_field(jwk, "d", 32))
        else:
            scalar = int.from_bytes(_b64_field(jwk, "d", _P256_ORDER_BYTES), "big")
            try:
                key = cls._from_ec(ec.derive_private_key(scalar, ec.SECP256R1()))
            except ValueError:
                raise MalformedError(ReasonCode.MALFORMED_JWK, "invalid P-256 scalar") from None
        if key.public_key != expected:
            raise MalformedError(ReasonCode.MALFORMED_JWK, "private JWK does not match its x/y")
        return key

    def export_private_jwk(self) -> dict[str, str]:
        """The private JWK, for encrypted or 0600 storage. Never log the result."""
        jwk = self.public_key.to_jwk()
        if self._ed_secret is not None:
            jwk["d"] = b64url_encode(self._ed_secret[:32])
        else:
            assert self._ec is not None
            jwk["d"] = b64url_encode(
                self._ec.private_numbers().private_value.to_bytes(_P256_ORDER_BYTES, "big")
            )
        return jwk

    def sign(self, data: bytes) -> bytes:
        if self._ed_secret is not None:
            return nacl.bindings.crypto_sign(data, self._ed_secret)[:64]
        assert self._ec is not None
        r, s = decode_dss_signature(self._ec.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def __repr__(self) -> str:
        return f"PrivateKey(alg={self.alg!r}, thumbprint={self.public_key.thumbprint()!r})"


# --- compact JWS ---------------------------------------------------------------------------


class Jws(NamedTuple):
    """A parsed (not yet verified) compact JWS. The header is read-only."""

    header: Mapping[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes

    def payload_json(self) -> dict[str, Any]:
        return json_loads_object(self.payload, what="JWS payload")


_HEADER_CACHE: dict[str, Mapping[str, Any]] = {}
_HEADER_CACHE_SIZE = 1024


def _parse_header(header_b64: str) -> Mapping[str, Any]:
    """Decode a protected header; successful parses are kept, read-only, in a bounded cache.

    Headers repeat: one per issuer key and one per wallet algorithm, so most presentations
    skip a base64 decode and a strict JSON parse here.
    """
    if not header_b64:
        raise MalformedError(ReasonCode.MALFORMED_JWS, "empty JWS header")
    header = MappingProxyType(json_loads_object(b64url_decode(header_b64), what="JWS header"))
    if len(_HEADER_CACHE) >= _HEADER_CACHE_SIZE:
        _HEADER_CACHE.clear()  # a flood of distinct headers only costs re-parsing
    _HEADER_CACHE[header_b64] = header
    return header


def parse_jws(token: str) -> Jws:
    """Split and decode a compact JWS. Checks structure only; see :func:`verify_jws`."""
    if not isinstance(token, str):
        raise MalformedError(ReasonCode.MALFORMED_JWS, "JWS is not a string")
    if len(token) > MAX_JWS_LENGTH:
        raise MalformedError(ReasonCode.INPUT_TOO_LARGE, "JWS longer than the limit")
    # Three single-character searches instead of a split: the payload is most of the token.
    first = token.find(".")
    second = token.find(".", first + 1) if first >= 0 else -1
    if second < 0 or token.find(".", second + 1) >= 0:
        raise MalformedError(ReasonCode.MALFORMED_JWS, "compact JWS needs exactly three parts")
    header_b64 = token[:first]
    header = _HEADER_CACHE.get(header_b64)
    if header is None:
        header = _parse_header(header_b64)
    payload = b64url_decode(token[first + 1 : second])
    # Header and payload decoded, so both are ASCII: the signing input encodes without error.
    signing_input = token[:second].encode("ascii")
    return Jws(header, payload, signing_input, b64url_decode(token[second + 1 :]))


def _typ_matches(actual: object, expected: str) -> bool:
    # RFC 7515 section 4.1.9: "application/" may be omitted from a media type in typ.
    if not isinstance(actual, str):
        return False
    actual = actual.lower()
    if actual.startswith("application/"):
        actual = actual[len("application/") :]
    return actual == expected.lower()


def check_header(
    header: Mapping[str, Any],
    key: PublicKey,
    *,
    typ: str | None,
    understood_crit: Iterable[str] = (),
) -> None:
    """Algorithm pinned to the key, ``crit`` understood, ``typ`` as expected."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALGORITHMS:  # a list or object is unhashable
        raise VerificationError(ReasonCode.ALG_NOT_ALLOWED, f"algorithm not allowed: {alg!r:.20}")
    if alg != key.alg:
        raise VerificationError(ReasonCode.ALG_KEY_MISMATCH, "algorithm does not match the key")
    crit = header.get("crit")
    if crit is not None:
        allowed = frozenset(understood_crit)
        if (
            not isinstance(crit, list)
            or not crit
            or any(not isinstance(c, str) or c not in allowed or c not in header for c in crit)
        ):
            raise VerificationError(ReasonCode.CRIT_UNSUPPORTED, "unsupported critical header")
    if typ is not None and (actual := header.get("typ")) != typ and not _typ_matches(actual, typ):
        raise VerificationError(ReasonCode.TYP_MISMATCH, f"typ is not {typ}")


def verify_jws(
    token: str | Jws,
    key: PublicKey,
    *,
    typ: str | None,
    understood_crit: Iterable[str] = (),
    reason: ReasonCode = ReasonCode.SIGNATURE_INVALID,
) -> Jws:
    """Parse (if needed) and verify a compact JWS with ``key``; returns the parsed JWS.

    ``typ`` is required by callers on purpose: every token type in this system has one, and a
    token of one type must never verify as another (RFC 8725 section 3.11). Pass ``None`` only
    for external formats that have no ``typ``.
    """
    jws = parse_jws(token) if isinstance(token, str) else token
    check_header(jws.header, key, typ=typ, understood_crit=understood_crit)
    if not key.verify(jws.signing_input, jws.signature):
        raise VerificationError(reason, "signature does not verify")
    return jws


def sign_jws(header: Mapping[str, Any], payload: bytes, signer: Signer) -> str:
    """Sign ``payload``; ``alg`` comes from the signer and may not be overridden."""
    if "alg" in header and header["alg"] != signer.alg:
        raise UsageError(ReasonCode.ALG_KEY_MISMATCH, "header alg differs from the signer's")
    full_header = {"alg": signer.alg, **{k: v for k, v in header.items() if k != "alg"}}
    signing_input = (
        b64url_encode(json_dumps(full_header).encode("utf-8")) + "." + b64url_encode(payload)
    )
    signature = signer.sign(signing_input.encode("ascii"))
    return signing_input + "." + b64url_encode(signature)


def sign_jwt(header: Mapping[str, Any], claims: Mapping[str, Any], signer: Signer) -> str:
    """Sign a JSON claims set (compact JSON, UTF-8)."""
    return sign_jws(header, json_dumps(claims).encode("utf-8"), signer)
