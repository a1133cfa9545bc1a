"""IETF Token Status List (draft-ietf-oauth-status-list).

Implements, by section of the draft:

- 4.1 the compressed byte array: ``bits`` of 1, 2, 4 or 8 per entry; entry ``i`` sits in byte
  ``i * bits // 8`` at bit offset ``(i * bits) % 8`` counted from the least significant bit;
  DEFLATE inside the ZLIB (RFC 1950) wrapper, level 9 when we compress (with a 1 KiB window
  for arrays over 4 KiB, to keep encoding fast: see ``_ZLIB_SMALL_WBITS``).
- 4.2 the JSON ``StatusList`` object ``{"bits", "lst", ["aggregation_uri"]}``.
- 5.1 the Status List Token as a JWT (``typ: statuslist+jwt``; ``sub``, ``iat``, ``exp``,
  ``ttl``, ``status_list``), signed and verified through :mod:`civic.jose`.
- 6.1/6.2 the ``status`` claim of a Referenced Token, ``{"status_list": {"idx", "uri"}}``.
- 7 the status type values, 8.3 the validation rules, 11.1 (careful decoding).

Decoding is strict because the list arrives from the network: ``lst`` must be canonical
base64url, the ZLIB header and Adler-32 trailer are required (raw DEFLATE is refused), nothing
may follow the ZLIB stream, and decompression stops at a byte cap so that a small "zip bomb"
cannot exhaust memory.

A decoded list does not know how many entries its issuer meant to use: its size is the capacity
of the byte array (``len(bytes) * 8 // bits``). Entries past the issuer's last index read as 0.

URIs (the ``uri`` of a reference and the ``sub`` of a token) must be absolute ``https`` URLs with
a host, ASCII, without user information or fragment. Plain ``http`` is accepted only for the
loopback hosts ``127.0.0.1``, ``localhost`` and ``::1``, and when reading an untrusted
credential only if the caller passes ``unsafe_allow_http_loopback=True`` (local tests).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from civic.clock import Clock, system_clock
from civic.encoding import b64url_decode, b64url_encode, json_loads_object
from civic.errors import MalformedError, ReasonCode, UsageError, VerificationError
from civic.jose import MAX_JWS_LENGTH, PublicKey, Signer, sign_jwt, verify_jws

STATUS_LIST_JWT_TYP = "statuslist+jwt"

ALLOWED_BITS: frozenset[int] = frozenset({1, 2, 4, 8})

MAX_STATUS_LIST_BYTES = 4 * 1024 * 1024
"""Default cap on a decompressed list: 2^24 entries at 2 bits, 4 times the spec's largest
example. Lists for herd privacy (2^17 entries at 2 bits) are 32 KiB."""

MAX_STATUS_LIST_TOKEN_LENGTH = MAX_JWS_LENGTH
"""Longest Status List Token accepted; :func:`civic.jose.parse_jws` could not take more."""

MAX_URI_LENGTH = 2048

_ZLIB_WBITS = 15  # positive: the RFC 1950 header and Adler-32 trailer are mandatory
_ZLIB_LEVEL = 9  # section 4.1: "the highest compression level available"
# Level 9 follows hash chains up to 4096 long; on a sparse list (mostly zero bytes, a few
# percent set at random) with the full 32 KiB window that costs ~40 ms for 2^17 entries at
# 2 bits. A 1 KiB window bounds the chains: ~7 ms, output within a few percent either way.
# Small arrays keep the full window, which reproduces the draft's examples byte for byte.
_ZLIB_SMALL_WBITS = 10
_ZLIB_FULL_WINDOW_MAX_BYTES = 4096
_APPLICATION_SPECIFIC_VALUES = frozenset({0x03, 0x0C, 0x0D, 0x0E, 0x0F})
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class Status(IntEnum):
    """Status type values (section 7.1). Values 3 and 0x0C-0x0F map to APPLICATION_SPECIFIC."""

    VALID = 0
    INVALID = 1
    SUSPENDED = 2
    APPLICATION_SPECIFIC = 3


def _is_int(value: object) -> TypeGuard[int]:
    # bool is an int subclass; JSON true must never pass as the number 1.
    return isinstance(value, int) and not isinstance(value, bool)


def _unpack_table(bits: int) -> list[bytes]:
    """For each byte value, its entries in index order, one byte per entry."""
    mask = (1 << bits) - 1
    per_byte = 8 // bits
    return [bytes((value >> (k * bits)) & mask for k in range(per_byte)) for value in range(256)]


_UNPACK_TABLES = {bits: _unpack_table(bits) for bits in (1, 2, 4)}


class StatusList:
    """A mutable list of ``size`` status values of ``bits`` bits each, packed as section 4.1."""

    __slots__ = ("_bits", "_data", "_mask", "_size")

    def __init__(self, size: int, bits: int) -> None:
        if not _is_int(bits) or bits not in ALLOWED_BITS:
            raise UsageError(ReasonCode.STATUS_LIST_MALFORMED, "bits must be 1, 2, 4 or 8")
        if not _is_int(size) or size <= 0:
            raise UsageError(ReasonCode.STATUS_LIST_MALFORMED, "size must be a positive integer")
        self._bits = bits
        self._mask = (1 << bits) - 1
        self._size = size
        self._data = bytearray((size * bits + 7) // 8)

    @classmethod
    def from_bytes(cls, data: bytes, bits: int) -> StatusList:
        """A list over an uncompressed byte array; its size is the array's full capacity."""
        if not _is_int(bits) or bits not in ALLOWED_BITS:
            raise UsageError(ReasonCode.STATUS_LIST_MALFORMED, "bits must be 1, 2, 4 or 8")
        if not data:
            raise UsageError(ReasonCode.STATUS_LIST_MALFORMED, "empty status list")
        status_list = cls(len(data) * 8 // bits, bits)
        status_list._data[:] = data
        return status_list

    @property
    def bits(self) -> int:
        return self._bits

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return self._size

    def get(self, index: int) -> int:
        """The raw status value at ``index`` (0 .. 2**bits - 1)."""
        if not _is_int(index) or not 0 <= index < self._size:
            raise VerificationError(
                ReasonCode.STATUS_INDEX_OUT_OF_RANGE, "index outside the status list"
            )
        bit = index * self._bits
        return (self._data[bit >> 3] >> (bit & 7)) & self._mask

    def set(self, index: int, status: int) -> None:
        if not _is_int(index) or not 0 <= index < self._size:
            raise UsageError(ReasonCode.STATUS_INDEX_OUT_OF_RANGE, "index outside the status list")
        if not _is_int(status) or not 0 <= status <= self._mask:
            raise UsageError(
                ReasonCode.STATUS_LIST_MALFORMED, f"status does not fit in {self._bits} bits"
            )
        bit = index * self._bits
        byte_index, offset = bit >> 3, bit & 7
        cleared = self._data[byte_index] & ~(self._mask << offset) & 0xFF
        self._data[byte_index] = cleared | (status << offset)

    def values(self) -> bytes:
        """Every entry in index order, one byte each: a fast bulk form of :meth:`get`."""
        if self._bits == 8:
            return bytes(self._data)
        table = _UNPACK_TABLES[self._bits]
        return b"".join(map(table.__getitem__, self._data))[: self._size]

    def to_bytes(self) -> bytes:
        """The uncompressed byte array of section 4.1."""
        return bytes(self._data)

    def compressed(self) -> bytes:
        """ZLIB (RFC 1950) at level 9: the ``lst`` bytes of the CBOR form. Deterministic."""
        wbits = _ZLIB_WBITS if len(self._data) <= _ZLIB_FULL_WINDOW_MAX_BYTES else _ZLIB_SMALL_WBITS
        compressor = zlib.compressobj(_ZLIB_LEVEL, zlib.DEFLATED, wbits)
        return compressor.compress(self._data) + compressor.flush()

    def encode(self) -> dict[str, Any]:
        """The JSON ``StatusList`` object of section 4.2."""
        return {"bits": self._bits, "lst": b64url_encode(self.compressed())}

    @classmethod
    def from_compressed(
        cls, data: bytes, bits: int, *, max_size_bytes: int = MAX_STATUS_LIST_BYTES
    ) -> StatusList:
        """Decompress a ZLIB byte array (the CBOR form's ``lst``), at most ``max_size_bytes``."""
        if not _is_int(bits) or bits not in ALLOWED_BITS:
            raise MalformedError(ReasonCode.STATUS_LIST_MALFORMED, "bits must be 1, 2, 4 or 8")
        if not _is_int(max_size_bytes) or max_size_bytes <= 0:
            # zlib reads a max_length of 0 as "unlimited": never let a bad cap mean no cap.
            raise UsageError(ReasonCode.MALFORMED_INPUT, "max_size_bytes must be positive")
        if not isinstance(data, bytes | bytearray):
            raise MalformedError(ReasonCode.STATUS_LIST_MALFORMED, "lst is not a byte string")
        decompressor = zlib.decompressobj(wbits=_ZLIB_WBITS)
        try:
            # One byte over the cap tells "exactly at the cap" from "over it" without
            # inflating more than the cap allows.
            raw = decompressor.decompress(data, max_size_bytes + 1)
        except zlib.error:
            raise MalformedError(
                ReasonCode.STATUS_LIST_MALFORMED, "lst is not a valid ZLIB stream"
            ) from None
        if len(raw) > max_size_bytes:
            raise MalformedError(
                ReasonCode.STATUS_LIST_TOO_LARGE, "decompressed status list over the size cap"
            )
        if not decompressor.eof:
            raise MalformedError(ReasonCode.STATUS_LIST_MALFORMED, "truncated ZLIB stream")
        if decompressor.unused_data:
            raise MalformedError(
                ReasonCode.STATUS_LIST_MALFORMED, "data after the end of the ZLIB stream"
            )
        if not raw:
            raise MalformedError(ReasonCode.STATUS_LIST_MALFORMED, "empty status list")
        return cls.from_bytes(raw, bits)

    @classmethod
    def decode(cls, obj: object, *, max_size_bytes: int = MAX_STATUS_LIST_BYTES) -> StatusList:
        """Parse the JSON ``StatusList`` object of section 4.2 (already JSON-decoded)."""
        if not isinstance(obj, Mapping):
            raise MalformedError(ReasonCode.STATUS_LIST_MALFORMED, "status_list is not an object")
        bits = obj.get("bits")
        if not _is_int(bits) or bits not in ALLOWED_BITS:
            raise MalformedError(ReasonCode.STATUS_LIST_MALFORMED, "bits must be 1, 2, 4 or 8")
        if not _is_int(max_size_bytes) or max_size_bytes <= 0:
            raise UsageError(ReasonCode.MALFORMED_INPUT, "max_size_bytes must be positive")
        lst = obj.get("lst")
        if not isinstance(lst, str):
            raise MalformedError(ReasonCode.STATUS_LIST_MALFORMED, "lst is not a string")
        aggregation_uri = obj.get("aggregation_uri")
        if aggregation_uri is not None and not isinstance(aggregation_uri, str):
            raise MalformedError(
                ReasonCode.STATUS_LIST_MALFORMED, "aggregation_uri is not a string"
            )
        # DEFLATE never grows data by more than 5 bytes per 64 KiB block plus the ZLIB frame,
        # so anything longer than this would inflate past the cap anyway: refuse it unread.
        if len(lst) > (max_size_bytes + max_size_bytes // 1024 + 64) * 4 // 3 + 4:
            raise MalformedError(ReasonCode.STATUS_LIST_TOO_LARGE, "lst longer than the cap")
        try:
            compressed = b64url_decode(lst)
        except MalformedError:
            raise MalformedError(
                ReasonCode.STATUS_LIST_MALFORMED, "lst is not canonical base64url"
            ) from None
        return cls.from_compressed(compressed, bits, max_size_bytes=max_size_bytes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StatusList):
            return NotImplemented
        return (self._bits, self._size, self._data) == (other._bits, other._size, other._data)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"StatusList(size={self._size}, bits={self._bits})"


# --- URIs -----------------------------------------------------------------------------------


def _uri_problem(uri: object, *, allow_http_loopback: bool) -> str | None:
    """Why ``uri`` is not an acceptable status list URI, or None when it is."""
    if not isinstance(uri, str) or not uri:
        return "URI is not a non-empty string"
    if len(uri) > MAX_URI_LENGTH:
        return "URI longer than the limit"
    return _string_uri_problem(uri, allow_http_loopback)


# An issuer has a handful of lists, so every verification asks about the same few URIs.
@functools.lru_cache(maxsize=1024)
def _string_uri_problem(uri: str, allow_http_loopback: bool) -> str | None:
    if any(not 0x21 <= ord(c) <= 0x7E for c in uri):
        return "URI has characters outside printable ASCII"
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return "URI does not parse"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "URI has user information"
    if "#" in uri:
        return "URI has a fragment"
    if not host:
        return "URI has no host"
    if uri.startswith("https://"):
        return None
    if uri.startswith("http://") and host in _LOOPBACK_HOSTS:
        return None if allow_http_loopback else "plain http URI (only allowed for local tests)"
    return "URI is not https"


# --- Referenced Token: the status claim (section 6) -----------------------------------------


@dataclass(frozen=True, slots=True)
class StatusReference:
    """Where a Referenced Token's status lives: entry ``index`` of the list at ``uri``."""

    index: int
    uri: str

    def __post_init__(self) -> None:
        if not _is_int(self.index) or self.index < 0:
            raise UsageError(ReasonCode.STATUS_CLAIM_MALFORMED, "idx must be a non-negative int")
        problem = _uri_problem(self.uri, allow_http_loopback=True)
        if problem is not None:
            raise UsageError(ReasonCode.STATUS_CLAIM_MALFORMED, problem)

    def to_claim(self) -> dict[str, Any]:
        """The value of the ``status`` claim (section 6.2)."""
        return {"status_list": {"idx": self.index, "uri": self.uri}}


def parse_status_claim(obj: object, *, unsafe_allow_http_loopback: bool = False) -> StatusReference:
    """Parse the value of a Referenced Token's ``status`` claim (section 6.2).

    Members other than ``status_list`` (other status mechanisms) and members of ``status_list``
    other than ``idx`` and ``uri`` are ignored, as the draft allows.
    """
    if not isinstance(obj, Mapping):
        raise MalformedError(ReasonCode.STATUS_CLAIM_MALFORMED, "status claim is not an object")
    reference = obj.get("status_list")
    if not isinstance(reference, Mapping):
        raise MalformedError(
            ReasonCode.STATUS_CLAIM_MALFORMED, "status claim has no status_list object"
        )
    index = reference.get("idx")
    if not _is_int(index) or index < 0:
        raise MalformedError(ReasonCode.STATUS_CLAIM_MALFORMED, "idx must be a non-negative int")
    uri = reference.get("uri")
    problem = _uri_problem(uri, allow_http_loopback=unsafe_allow_http_loopback)
    if problem is not None:
        raise MalformedError(ReasonCode.STATUS_CLAIM_MALFORMED, problem)
    assert isinstance(uri, str)
    return StatusReference(index, uri)


# --- Status List Token in JWT format (section 5.1) ------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedStatusList:
    """A Status List Token whose signature, subject and times have been checked."""

    status_list: StatusList
    uri: str
    iat: int
    exp: int | None
    ttl: int | None


def _positive_int_or_none(value: object, name: str) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or value <= 0:
        raise UsageError(ReasonCode.MALFORMED_INPUT, f"{name} must be a positive integer")
    return value


def sign_status_list_token(
    status_list: StatusList,
    *,
    subject_uri: str,
    signer: Signer,
    kid: str,
    now: Clock = system_clock,
    ttl: int | None = None,
    lifetime: int | None = None,
) -> str:
    """Sign ``status_list`` as a Status List Token. ``lifetime`` seconds after now sets ``exp``."""
    problem = _uri_problem(subject_uri, allow_http_loopback=True)
    if problem is not None:
        raise UsageError(ReasonCode.MALFORMED_INPUT, f"subject_uri: {problem}")
    if not isinstance(kid, str) or not kid:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "kid must be a non-empty string")
    ttl = _positive_int_or_none(ttl, "ttl")
    lifetime = _positive_int_or_none(lifetime, "lifetime")
    issued_at = now()
    claims: dict[str, Any] = {"sub": subject_uri, "iat": issued_at}
    if lifetime is not None:
        claims["exp"] = issued_at + lifetime
    if ttl is not None:
        claims["ttl"] = ttl
    claims["status_list"] = status_list.encode()
    token = sign_jwt({"typ": STATUS_LIST_JWT_TYP, "kid": kid}, claims, signer)
    if len(token) > MAX_STATUS_LIST_TOKEN_LENGTH:
        # Signing a token no verifier will accept only moves the failure somewhere later.
        raise UsageError(ReasonCode.STATUS_LIST_TOO_LARGE, "token over the verifiers' size cap")
    return token


def _numeric_date(claims: Mapping[str, Any], name: str, *, required: bool) -> int | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    # Integer seconds only: every token in this system uses them, and floats invite rounding.
    if not _is_int(value) or value < 0:
        raise MalformedError(ReasonCode.STATUS_LIST_MALFORMED, f"{name} is not a NumericDate")
    return value


def verify_status_list_token(
    token: str,
    *,
    key: PublicKey,
    expected_uri: str,
    now: Clock = system_clock,
    skew: int = 60,
    max_size_bytes: int = MAX_STATUS_LIST_BYTES,
) -> VerifiedStatusList:
    """Verify a Status List Token (sections 5.1 and 8.3) fetched for ``expected_uri``.

    Checks, in order: the token's length, ``typ``, the algorithm pinned to ``key``, the
    signature, the claim types, ``sub == expected_uri``, ``iat``/``nbf`` not in the future and
    ``exp`` not past (each with ``skew`` seconds of tolerance), and then decodes the list.
    """
    if not isinstance(token, str):
        raise MalformedError(ReasonCode.STATUS_LIST_MALFORMED, "token is not a string")
    if len(token) > MAX_STATUS_LIST_TOKEN_LENGTH:
        raise MalformedError(ReasonCode.STATUS_LIST_TOO_LARGE, "token longer than the cap")
    try:
        jws = verify_jws(
            token, key, typ=STATUS_LIST_JWT_TYP, reason=ReasonCode.STATUS_LIST_SIGNATURE_INVALID
        )
        claims = json_loads_object(jws.payload, what="status list token payload")
    except MalformedError as exc:
        # A broken token is a broken status list to whoever acts on the verdict.
        raise MalformedError(ReasonCode.STATUS_LIST_MALFORMED, exc.detail) from exc

    sub = claims.get("sub")
    if not isinstance(sub, str):
        raise MalformedError(ReasonCode.STATUS_LIST_MALFORMED, "sub is missing or not a string")
    iat = _numeric_date(claims, "iat", required=True)
    assert iat is not None
    exp = _numeric_date(claims, "exp", required=False)
    nbf = _numeric_date(claims, "nbf", required=False)
    ttl = claims.get("ttl")
    if ttl is not None and (not _is_int(ttl) or ttl <= 0):
        raise MalformedError(ReasonCode.STATUS_LIST_MALFORMED, "ttl is not a positive integer")
    if "status_list" not in claims:
        raise MalformedError(ReasonCode.STATUS_LIST_MALFORMED, "status_list claim missing")

    if sub != expected_uri:
        raise VerificationError(
            ReasonCode.STATUS_LIST_SUBJECT_MISMATCH, "sub is not the expected status list URI"
        )
    current = now()
    if iat > current + skew:
        raise VerificationError(ReasonCode.IAT_IN_FUTURE, "status list issued in the future")
    if nbf is not None and nbf > current + skew:
        raise VerificationError(ReasonCode.NOT_YET_VALID, "status list not yet valid")
    if exp is not None and current - skew >= exp:
        raise VerificationError(ReasonCode.STATUS_LIST_EXPIRED, "status list token expired")

    status_list = StatusList.decode(claims["status_list"], max_size_bytes=max_size_bytes)
    return VerifiedStatusList(status_list=status_list, uri=sub, iat=iat, exp=exp, ttl=ttl)


# --- Status of a Referenced Token (section 8.3, steps 5-7) ---------------------------------


def status_of(verified: VerifiedStatusList, reference: StatusReference) -> Status:
    """The status of the referenced entry; unknown (reserved) values fail closed."""
    if reference.uri != verified.uri:
        raise VerificationError(
            ReasonCode.STATUS_LIST_SUBJECT_MISMATCH, "reference points at another status list"
        )
    value = verified.status_list.get(reference.index)
    if value in (Status.VALID, Status.INVALID, Status.SUSPENDED):
        return Status(value)
    if value in _APPLICATION_SPECIFIC_VALUES:
        return Status.APPLICATION_SPECIFIC
    raise VerificationError(ReasonCode.STATUS_VALUE_UNKNOWN, f"reserved status value 0x{value:02x}")
