"""Offline QR transport for SD-JWT (+KB) presentations: lossless, compact, alphanumeric mode.

Implements, for the offline presentation of DESIGN.md ("the wallet shows a QR holding the
SD-JWT+KB, packed losslessly"):

- base45, RFC 9285 (section 4), decoded strictly as its section 6 requires;
- raw DEFLATE, RFC 1951, with a preset dictionary (RFC 1950 section 2.2 FDICT semantics, used
  with a raw stream so no zlib header or Adler-32 is sent);
- the SD-JWT compact serialization of RFC 9901 section 4 (``<JWS>~<disclosure>~...~[<KB-JWT>]``)
  and the JWS Compact Serialization of RFC 7515 section 7.1, split back into binary parts;
- QR Code alphanumeric mode (ISO/IEC 18004:2015 section 7.4.4), whose 45-character set is
  exactly the base45 alphabet, so a packed text costs 5.5 bits per character instead of 8.

Wire format, version 1 (``CW1:``). Everything here is frozen for version 1, the preset
dictionary included: a change makes a new version, never an edit.

    packed   = "CW1:" base45(body)
    body     = rawdeflate(skeleton, zdict=_PRESET_DICTIONARY_V1) || tail
    skeleton = 0x00 utf8(text)                       ; TEXT mode: any text at all
             / 0x01 element *(0xF9 element)          ; SD_JWT mode: 0xF9 stands for "~"
    element  = segment                               ; a disclosure: b64url(segment)
             / segment 0xFA segment 0xFA varint(n)   ; a JWS: header "." payload "." the n
                                                     ; signature bytes taken from the tail
    segment  = *(%x00-F4 / marker)                   ; JSON text with its random strings marked
    marker   = 0xFF          ; '"' b64url(next 32 tail bytes) '"'
             / 0xFE          ; '"' b64url(next 16 tail bytes) '"'
             / 0xFD varint(i); '"' b64url(SHA-256(element i)) '"', element i another disclosure
             / 0xFC          ; '"' b64url(SHA-256(all elements before this last one, "~"-ended)) '"'

The tail carries the random values (signatures, digests, salts, key coordinates) as raw bytes
in the order the skeleton consumes them: random bytes do not compress, and keeping them out of
the DEFLATE stream keeps its Huffman codes tuned to the JSON text. Digests that the packed data
determines (``_sd`` entries of the disclosures sent along, the KB-JWT ``sd_hash``) are not sent
at all but recomputed. Bytes 0xF5-0xFF never occur in UTF-8, which leaves them free for markers
and separators; a part that holds them, or one that is not canonical base64url, sends the whole
input in TEXT mode instead. Varints are unsigned LEB128 in their shortest form. :func:`pack`
builds both modes when it can and keeps the shorter body; :func:`unpack` accepts this grammar
and nothing else, and either way the verifier checks every digest and signature as usual.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import re
import zlib
from collections.abc import Iterator
from typing import Any, Final, Literal

import qrcode
import qrcode.constants
import qrcode.exceptions
import qrcode.util
import zxingcpp
from PIL import Image

from civic.encoding import b64url_decode, utf8_decode
from civic.errors import MalformedError, ReasonCode, UsageError

__all__ = [
    "MAX_PACKED_CHARS",
    "MAX_PNG_BYTES",
    "MAX_PNG_PIXELS",
    "MAX_SKELETON_BYTES",
    "MAX_TEXT_BYTES",
    "PACKED_PREFIX",
    "ErrorCorrection",
    "b45decode",
    "b45encode",
    "decode_png",
    "is_packed",
    "pack",
    "qr_version",
    "render_png",
    "render_terminal",
    "unpack",
]

PACKED_PREFIX: Final = "CW1:"

# A QR code holds at most 4,296 alphanumeric characters; these bounds are for texts that arrive
# by other channels. pack refuses what unpack would refuse, so every packing reads back.
MAX_SKELETON_BYTES: Final = 64 * 1024
"""Largest skeleton (DEFLATE output) :func:`unpack` inflates: the decompression bomb cap."""
MAX_PACKED_CHARS: Final = 128 * 1024
"""Longest packed text :func:`unpack` reads."""
MAX_TEXT_BYTES: Final = 128 * 1024
"""Largest text (UTF-8 bytes) :func:`pack` takes and :func:`unpack` returns."""

MAX_PNG_BYTES: Final = 16 * 1024 * 1024
MAX_PNG_PIXELS: Final = 40_000_000

ErrorCorrection = Literal["L", "M", "Q", "H"]

_PACKED_PREFIX_RE: Final = re.compile(r"CW[0-9]{1,3}:")

# --- base45 (RFC 9285) ---------------------------------------------------------------------

_B45_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_B45_VALUES: Final = bytes(
    _B45_ALPHABET.index(chr(b)) if chr(b) in _B45_ALPHABET else 0xFF for b in range(256)
)
"""``bytes.translate`` table: an ASCII character's base45 value, 0xFF if it has none."""


def b45encode(data: bytes) -> str:
    """Encode bytes as base45 (RFC 9285 section 4)."""
    out: list[str] = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        n, c = divmod(n, 45)
        e, d = divmod(n, 45)
        out += (_B45_ALPHABET[c], _B45_ALPHABET[d], _B45_ALPHABET[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out += (_B45_ALPHABET[c], _B45_ALPHABET[d])
    return "".join(out)


def b45decode(text: str) -> bytes:
    """Decode base45 strictly (RFC 9285 section 6): foreign characters, a dangling single
    character and triples or pairs above the range they encode (``GGW`` is 65536) are all
    rejected, so each byte string has exactly one accepted encoding."""
    if len(text) % 3 == 1:
        raise MalformedError(ReasonCode.MALFORMED_QR_PAYLOAD, "impossible base45 length")
    # Characters become their values in one C pass; anything outside the alphabet (non-ASCII
    # included) becomes 0xFF, which no value is.
    values = text.encode("ascii", "replace").translate(_B45_VALUES)
    if b"\xff" in values:
        raise MalformedError(
            ReasonCode.MALFORMED_QR_PAYLOAD, "character outside the base45 alphabet"
        )
    full = len(values) - len(values) % 3
    count = full // 3
    # Every triple at once, in C: the digits go into 32-bit little-endian lanes of three big
    # integers, so that c + 45 d + 2025 e (at most 91,124: no carry between lanes) is three
    # big-integer operations instead of a Python loop (the loop was a third of unpacking).
    lanes = bytearray(4 * count)
    lanes[0::4] = values[0:full:3]
    c = int.from_bytes(lanes, "little")
    lanes[0::4] = values[1:full:3]
    d = int.from_bytes(lanes, "little")
    lanes[0::4] = values[2:full:3]
    e = int.from_bytes(lanes, "little")
    lanes = bytearray((c + 45 * d + 2025 * e).to_bytes(4 * count, "little"))
    if lanes[2::4].count(0) != count:  # a lane's third byte: the triple is above 0xFFFF
        raise MalformedError(ReasonCode.MALFORMED_QR_PAYLOAD, "base45 triple out of range")
    out = bytearray(2 * count)
    out[0::2] = lanes[1::4]  # big-endian: high byte first
    out[1::2] = lanes[0::4]
    if full < len(values):
        n = values[full] + values[full + 1] * 45
        if n > 0xFF:
            raise MalformedError(ReasonCode.MALFORMED_QR_PAYLOAD, "base45 pair out of range")
        out.append(n)
    return bytes(out)


# --- preset dictionary ------------------------------------------------------------------------

# Skeleton text (see the grammar above: random strings already replaced by markers, 0xF9 for
# "~", 0xFA for ".") that presentations of this system are made of. DEFLATE refers back into it
# as if it had been sent before the data, and nearer text is cheaper to refer to, so the layout
# civic.sdjwtvc and civic.sdjwt write comes last. Frozen for CW1: a change makes a new version.
_PRESET_DICTIONARY_V1: Final = b"".join(
    (
        # JSON written with spaces, as in the RFC 9901 examples and by other issuers.
        b'{"alg": "ES256", "typ": "dc+sd-jwt", "kid": "\xfa{"_sd": [\xff, \xff, \xff], '
        b'"iss": "https://", "iat": 17, "exp": 17, "vct": "", "_sd_alg": "sha-256", '
        b'"cnf": {"jwk": {"kty": "EC", "crv": "P-256", "x": \xff, "y": \xff}}}\xfa@'
        b'\xf9[\xfe, "given_name", "\xf9{"alg": "ES256", "typ": "kb+jwt"}\xfa'
        b'{"nonce": "", "aud": "https://", "iat": 17, "sd_hash": \xfc}\xfa@',
        # Vaccination: EU DCC fields, each disclosable on its own.
        b'"vct":"urn:civic:vct:vaccination:1"\xf9[\xfe,"vaccination",{"_sd":[\xff,\xff,\xff]}]'
        b'\xf9[\xfe,"tg","840539006"]\xf9[\xfe,"vp","1119349007"]\xf9[\xfe,"mp","EU/1/20/1528"]'
        b'\xf9[\xfe,"ma","ORG-100030215"]\xf9[\xfe,"dn",\xf9[\xfe,"sd",\xf9[\xfe,"dt","202'
        b'\xf9[\xfe,"co","KR"]\xf9[\xfe,"is","Korea Disease Control and Prevention Agency"]'
        b'\xf9[\xfe,"ci","URN:UVCI:01:KR:KDCA/202',
        # Youth allowance.
        b'"vct":"urn:civic:vct:youth-allowance:1"\xf9[\xfe,"programme_id","seoul-youth-'
        b'allowance-202"]\xf9[\xfe,"monthly_amount",\xf9[\xfe,"currency","KRW"]'
        b'\xf9[\xfe,"period",{"_sd":[\xff,\xff,\xff]}]\xf9[\xfe,"start","202\xf9[\xfe,"end","202'
        b'\xf9[\xfe,"allowance_status","active"]\xf9[\xfe,"eligibility",{"_sd":[\xff,\xff,\xff]}]'
        b'\xf9[\xfe,"age_19_to_34",true]\xf9[\xfe,"seoul_resident",true]'
        b'\xf9[\xfe,"not_employed_full_time",true]\xf9[\xfe,"not_enrolled_as_student",true]'
        b'\xf9[\xfe,"household_income_within_150_percent_median",true]',
        # ES256 in compact JSON, other member orders (RFC 9901 section 5 puts _sd first).
        b'{"alg":"ES256","typ":"dc+sd-jwt","kid":"\xfa{"_sd":[\xff,\xff,\xff,\xff],"iss":"https://"',
        b'"cnf":{"jwk":{"kty":"EC","crv":"P-256","x":\xff,"y":\xff}}}\xfa@\xf9{"alg":"ES256",'
        b'"typ":"kb+jwt"}\xfa{"nonce":\xff,"aud":"https://","iat":17,"sd_hash":\xfc}\xfa@',
        # Residency.
        b'\xf9[\xfe,"birth_date","19\xf9[\xfe,"birth_date","20\xf9[\xfe,"resident_since","20',
        b'\xf9[\xfe,"age_over_14",true]\xf9[\xfe,"age_over_18",true]\xf9[\xfe,"age_over_65",false]',
        b'\xf9[\xfe,"age_over_65",true]\xf9[\xfe,"age_over_19",false]\xf9[\xfe,"locality","',
        b'-gu"]\xf9[\xfe,"region","' + "서울특별시".encode() + b'"]\xf9[\xfe,"region","Busan"]',
        b'\xf9[\xfe,"region","Seoul"]',
        b'\xf9[\xfe,"address",{"_sd":[\xfd\x05,\xff,\xff]}]',
        b'\xf9[\xfe,"given_name","',
        b'"]\xf9[\xfe,"family_name","',
        b'"]\xf9[\xfe,"age_over_19",true]',
        # A whole presentation skeleton as civic.sdjwtvc and civic.sdjwt write it.
        b'\x01{"alg":"EdDSA","typ":"dc+sd-jwt","kid":\xff}\xfa{"iss":"https://",'
        b'"iat":17,"exp":17,"nbf":17,"vct":"urn:civic:vct:residency:1","status":{"status_list":'
        b'{"idx":,"uri":"https://"}},"_sd":[\xff,\xfd\x01,\xff,\xfd\x02,\xff,\xfd\x03,\xff,\xfd'
        b'\x04,\xff,\xff],"_sd_alg":"sha-256","cnf":{"jwk":{"kty":"OKP","crv":"Ed25519","x":\xff'
        b'}}}\xfa@\xf9{"alg":"EdDSA","typ":"kb+jwt"}\xfa',
        b'{"iat":17,"aud":"https://","nonce":\xfe,"sd_hash":\xfc}\xfa@',
    )
)

# --- skeleton ---------------------------------------------------------------------------------

_MODE_TEXT: Final = 0x00
_MODE_SD_JWT: Final = 0x01

# Bytes 0xF5-0xFF never occur in UTF-8 (RFC 3629 section 1), so JSON text leaves them free.
_SEP_ELEMENT: Final = 0xF9
_SEP_PART: Final = 0xFA
_MARK_SD_HASH: Final = 0xFC
_MARK_DIGEST_OF: Final = 0xFD
_MARK_16: Final = 0xFE
_MARK_32: Final = 0xFF
_MARK_SIZES: Final = {_MARK_32: 32, _MARK_16: 16}
_SPECIAL_BYTE: Final = re.compile(rb"[\xf5-\xff]")
"""Separators, markers and reserved bytes: everything a skeleton's literal text is not."""
_NOT_UTF8_RE: Final = re.compile(rb"[\xf5-\xff]")
# A JSON string literal holding exactly base64url(32 bytes) or base64url(16 bytes).
_RANDOM_STRING_RE: Final = re.compile(rb'"([A-Za-z0-9_-]{43}|[A-Za-z0-9_-]{22})"')

_VARINT_MAX_BYTES: Final = 3  # 2**21 - 1 is above any length or index a packing can hold


class _NotStructured(Exception):
    """The input is not an SD-JWT this packer can split; TEXT mode carries it instead."""


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("ascii")).digest()


def _sd_hash_input(elements: list[str]) -> str:
    # RFC 9901 section 4.3.1: everything before the KB-JWT, up to and including the last "~".
    return "~".join(elements[:-1]) + "~"


_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")


def _b64url(data: bytes) -> bytes:
    """``b64url_encode(data).encode("ascii")`` without the detours through str and base64's
    wrappers: unpacking encodes a value this way for every marker in the skeleton."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _b64url_part(part: str) -> bytes:
    try:
        return b64url_decode(part)
    except MalformedError:
        raise _NotStructured from None


class _Packer:
    """Builds the SD_JWT skeleton and tail of one presentation.

    Digests are recomputed rather than sent where the packed data already determines them:
    a SHA-256 digest (RFC 9901 section 4.2.3) equal to that of another disclosure element
    becomes a reference to that element, and a KB-JWT ``sd_hash`` (section 4.3.1) equal to
    the hash of the presentation before it becomes a bare marker. An element cannot contain
    its own digest, nor (SHA-256 being preimage resistant) depend on itself through others, so
    the references form an acyclic graph that :func:`unpack` resolves in dependency order.
    """

    def __init__(self, text: str) -> None:
        if not text.isascii():  # base64url, "." and "~" only
            raise _NotStructured
        self.elements = text.split("~")
        self.skeleton = bytearray((_MODE_SD_JWT,))
        self.tail = bytearray()
        self.disclosures_with_digest: dict[bytes, list[int]] = {}
        for index, element in enumerate(self.elements):
            if "." not in element:
                self.disclosures_with_digest.setdefault(_sha256(element), []).append(index)
        self.sd_hash: bytes | None = None
        if len(self.elements) > 1 and "." in self.elements[-1]:
            self.sd_hash = _sha256(_sd_hash_input(self.elements))

    def build(self) -> tuple[bytes, bytes]:
        for index, element in enumerate(self.elements):
            if index:
                self.skeleton.append(_SEP_ELEMENT)
            parts = element.split(".")
            if len(parts) == 1:
                self.segment(index, _b64url_part(element))
            elif len(parts) == 3:
                header, payload, signature = (_b64url_part(p) for p in parts)
                self.segment(index, header)
                self.skeleton.append(_SEP_PART)
                self.segment(index, payload)
                self.skeleton.append(_SEP_PART)
                _put_varint(self.skeleton, len(signature))
                self.tail += signature
            else:
                raise _NotStructured
        return bytes(self.skeleton), bytes(self.tail)

    def segment(self, index: int, segment: bytes) -> None:
        """Append a segment with its random base64url string literals marked.

        Only canonical base64url is replaced, so unmarking re-encodes the identical text."""
        if _NOT_UTF8_RE.search(segment):
            raise _NotStructured
        last = 0
        for match in _RANDOM_STRING_RE.finditer(segment):
            try:
                raw = b64url_decode(match.group(1))
            except MalformedError:
                continue
            self.skeleton += segment[last : match.start()]
            self.mark(index, raw)
            last = match.end()
        self.skeleton += segment[last:]

    def mark(self, index: int, raw: bytes) -> None:
        if raw == self.sd_hash and index == len(self.elements) - 1:
            self.skeleton.append(_MARK_SD_HASH)
            return
        for referenced in self.disclosures_with_digest.get(raw, ()):
            if referenced != index:
                self.skeleton.append(_MARK_DIGEST_OF)
                _put_varint(self.skeleton, referenced)
                return
        self.skeleton.append(_MARK_32 if len(raw) == 32 else _MARK_16)
        self.tail += raw


def _deflate(skeleton: bytes) -> bytes:
    compressor = zlib.compressobj(
        level=9,
        method=zlib.DEFLATED,
        wbits=-15,
        memLevel=9,
        zdict=_PRESET_DICTIONARY_V1,
    )
    return compressor.compress(skeleton) + compressor.flush()


def pack(presentation: str) -> str:
    """Pack text, usually an SD-JWT (+KB) presentation, into alphanumeric QR text.

    Lossless for any text: ``unpack(pack(t)) == t``. Raises ``MalformedError`` with
    ``MALFORMED_UTF8`` for a string that has no UTF-8 form (lone surrogates) and with
    ``INPUT_TOO_LARGE`` when the text or its packing is over the bounds :func:`unpack` keeps.
    """
    try:
        utf8 = presentation.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedError(ReasonCode.MALFORMED_UTF8, "text has no UTF-8 form") from None
    if len(utf8) > MAX_TEXT_BYTES:
        raise MalformedError(ReasonCode.INPUT_TOO_LARGE, "text too large to pack")
    bodies: list[bytes] = []
    if len(utf8) < MAX_SKELETON_BYTES:
        bodies.append(_deflate(bytes((_MODE_TEXT,)) + utf8))
    try:
        skeleton, tail = _Packer(presentation).build()
    except _NotStructured:
        pass
    else:
        if len(skeleton) <= MAX_SKELETON_BYTES:
            bodies.append(_deflate(skeleton) + tail)
    # Only what unpack accepts back: its bounds are pack's bounds.
    packed = [PACKED_PREFIX + b45encode(body) for body in bodies]
    packed = [text for text in packed if len(text) <= MAX_PACKED_CHARS]
    if not packed:
        raise MalformedError(ReasonCode.INPUT_TOO_LARGE, "text too large to pack")
    return min(packed, key=len)


# --- unpack -----------------------------------------------------------------------------------


def _malformed(detail: str) -> MalformedError:
    return MalformedError(ReasonCode.MALFORMED_QR_PAYLOAD, detail)


_SD_HASH_REF: Final = -1
# A parsed segment: literal bytes, or the index of the element whose digest goes there
# (_SD_HASH_REF for the sd_hash of everything before the last element).
_Pieces = list[bytes | int]


class _Unpacker:
    """Bounds-checked parser of one SD_JWT skeleton and tail, then resolver of references."""

    def __init__(self, skeleton: bytes, tail: bytes) -> None:
        self.skeleton = skeleton
        self.pos = 1  # after the mode byte
        self.tail = tail
        self.tail_pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.skeleton):
            raise _malformed("truncated skeleton")
        value = self.skeleton[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        value = 0
        for index in range(_VARINT_MAX_BYTES):
            byte = self.byte()
            value |= (byte & 0x7F) << (7 * index)
            if not byte & 0x80:
                if byte == 0 and index > 0:
                    raise _malformed("non-minimal varint")
                return value
        raise _malformed("varint too long")

    def tail_bytes(self, length: int) -> bytes:
        if length > len(self.tail) - self.tail_pos:
            raise _malformed("truncated tail")
        value = self.tail[self.tail_pos : self.tail_pos + length]
        self.tail_pos += length
        return value

    def segment(self) -> tuple[_Pieces, int | None]:
        """Read one segment up to its separator, which is consumed and returned (None at end)."""
        pieces: _Pieces = []
        literal = bytearray()
        skeleton = self.skeleton
        while True:
            # Literal bytes run until the next marker or separator (0xF5 and above): copied
            # as one slice, not byte by byte (this is most of a verifier's unpacking time).
            special = _SPECIAL_BYTE.search(skeleton, self.pos)
            if special is None:
                literal += skeleton[self.pos :]
                self.pos = len(skeleton)
                pieces.append(bytes(literal))
                return pieces, None
            at = special.start()
            literal += skeleton[self.pos : at]
            byte = skeleton[at]
            self.pos = at + 1
            if byte in (_SEP_ELEMENT, _SEP_PART):
                pieces.append(bytes(literal))
                return pieces, byte
            if byte in _MARK_SIZES:
                literal += b'"%s"' % _b64url(self.tail_bytes(_MARK_SIZES[byte]))
            elif byte in (_MARK_DIGEST_OF, _MARK_SD_HASH):
                pieces.append(bytes(literal))
                literal.clear()
                pieces.append(self.varint() if byte == _MARK_DIGEST_OF else _SD_HASH_REF)
            else:
                raise _malformed("reserved byte in skeleton")

    def parse(self) -> tuple[list[list[_Pieces]], list[bytes | None]]:
        """The segments and signature (None for a disclosure) of every element."""
        segments: list[list[_Pieces]] = []
        signatures: list[bytes | None] = []
        while True:
            first, separator = self.segment()
            if separator == _SEP_PART:
                second, separator = self.segment()
                if separator != _SEP_PART:
                    raise _malformed("JWS without a signature")
                segments.append([first, second])
                signatures.append(self.tail_bytes(self.varint()))
                separator = self.byte() if self.pos < len(self.skeleton) else None
                if separator not in (_SEP_ELEMENT, None):
                    raise _malformed("data after a JWS signature")
            else:
                segments.append([first])
                signatures.append(None)
            if separator is None:
                break
        if self.tail_pos != len(self.tail):
            raise _malformed("trailing data after the last value")
        return segments, signatures

    def unpack(self) -> str:
        segments, signatures = self.parse()
        count = len(segments)
        # What each element's digests depend on: the disclosures it refers to, and for the
        # sd_hash of a KB-JWT everything before it.
        dependencies: list[set[int]] = [set() for _ in range(count)]
        for index, element_segments in enumerate(segments):
            for pieces in element_segments:
                for piece in pieces:
                    if isinstance(piece, bytes):
                        continue
                    if piece == _SD_HASH_REF:
                        if index != count - 1 or signatures[index] is None or count < 2:
                            raise _malformed("sd_hash marker outside a key binding JWT")
                        dependencies[index].update(range(count - 1))
                    elif piece < count and piece != index and signatures[piece] is None:
                        dependencies[index].add(piece)
                    else:
                        raise _malformed("digest marker pointing at no other disclosure")
        elements = [""] * count
        # Each digest is computed once: a skeleton full of references to one long element
        # must not cost a hash of that element per reference.
        digests: dict[int, bytes] = {}

        def digest(reference: int) -> bytes:
            if reference not in digests:
                source = elements[reference] if reference >= 0 else _sd_hash_input(elements)
                digests[reference] = _sha256(source)
            return digests[reference]

        size = count - 1  # the "~" separators
        for index in _dependency_order(dependencies):
            parts: list[bytes] = []
            for pieces in segments[index]:
                text = bytearray()
                for piece in pieces:
                    if isinstance(piece, bytes):
                        text += piece
                    else:
                        text += b'"%s"' % _b64url(digest(piece))
                    if size + len(text) > MAX_TEXT_BYTES:
                        raise MalformedError(
                            ReasonCode.INPUT_TOO_LARGE, "packed text unpacks too far"
                        )
                parts.append(bytes(text))
            signature = signatures[index]
            if signature is not None:
                parts.append(signature)
            elements[index] = b".".join([_b64url(part) for part in parts]).decode("ascii")
            size += len(elements[index])
            if size > MAX_TEXT_BYTES:
                raise MalformedError(ReasonCode.INPUT_TOO_LARGE, "packed text unpacks too far")
        return "~".join(elements)


def _dependency_order(dependencies: list[set[int]]) -> list[int]:
    """Indices ordered so that each comes after all it depends on (Kahn's algorithm)."""
    waiting = [len(d) for d in dependencies]
    dependents: list[list[int]] = [[] for _ in dependencies]
    for index, needs in enumerate(dependencies):
        for needed in needs:
            dependents[needed].append(index)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    order: list[int] = []
    while ready:
        index = ready.pop()
        order.append(index)
        for dependent in dependents[index]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                ready.append(dependent)
    if len(order) != len(dependencies):
        raise _malformed("digest references form a cycle")
    return order


def _inflate(body: bytes) -> tuple[bytes, bytes]:
    inflater = zlib.decompressobj(wbits=-15, zdict=_PRESET_DICTIONARY_V1)
    try:
        skeleton = inflater.decompress(body, MAX_SKELETON_BYTES + 1)
    except zlib.error:
        raise _malformed("invalid DEFLATE stream") from None
    if len(skeleton) > MAX_SKELETON_BYTES:
        raise MalformedError(ReasonCode.INPUT_TOO_LARGE, "packed data inflates too far")
    if not inflater.eof:
        raise _malformed("truncated DEFLATE stream")
    return skeleton, inflater.unused_data


def unpack(text: str) -> str:
    """Invert :func:`pack` byte for byte, accepting nothing that :func:`pack` cannot produce
    in form (a different but valid DEFLATE encoding of the same skeleton is accepted).

    Raises ``MalformedError``: ``QR_UNSUPPORTED_VERSION`` for a packed text of another
    version, ``INPUT_TOO_LARGE`` above the size bounds, ``MALFORMED_QR_PAYLOAD`` for anything
    else that is wrong.
    """
    if len(text) > MAX_PACKED_CHARS:
        raise MalformedError(ReasonCode.INPUT_TOO_LARGE, "packed text too long")
    if not text.startswith(PACKED_PREFIX):
        if is_packed(text):
            raise MalformedError(ReasonCode.QR_UNSUPPORTED_VERSION, "unsupported packing version")
        raise _malformed("missing packing prefix")
    skeleton, tail = _inflate(b45decode(text[len(PACKED_PREFIX) :]))
    if not skeleton:
        raise _malformed("empty skeleton")
    mode = skeleton[0]
    if mode == _MODE_TEXT:
        if tail:
            raise _malformed("trailing data after the DEFLATE stream")
        try:
            return utf8_decode(skeleton[1:])
        except MalformedError:
            raise _malformed("text is not UTF-8") from None
    if mode != _MODE_SD_JWT:
        raise _malformed("unknown packing mode")
    return _Unpacker(skeleton, tail).unpack()


def is_packed(text: str) -> bool:
    """Whether ``text`` claims to be packed (of any version), as opposed to a raw SD-JWT.

    A raw SD-JWT starts with the base64url of ``{"`` (``eyJ``), never with ``CW<n>:``."""
    return _PACKED_PREFIX_RE.match(text) is not None


# --- rendering (qrcode) -----------------------------------------------------------------------

_ERROR_CORRECTION: Final = {
    "L": qrcode.constants.ERROR_CORRECT_L,
    "M": qrcode.constants.ERROR_CORRECT_M,
    "Q": qrcode.constants.ERROR_CORRECT_Q,
    "H": qrcode.constants.ERROR_CORRECT_H,
}
_QR_ALPHANUMERIC: Final = frozenset(_B45_ALPHABET)


def _qr_code(text: str, error_correction: ErrorCorrection, border: int = 4) -> Any:
    """A fitted ``qrcode.QRCode`` holding ``text`` as one segment.

    Text drawn only from the alphanumeric set (every packed text) goes in alphanumeric mode;
    anything else goes whole in byte mode as UTF-8, which a reader returns byte for byte.
    qrcode's own optimiser is bypassed so the mode never depends on its chunking heuristics.
    """
    level = _ERROR_CORRECTION.get(error_correction)
    if level is None:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "error correction must be L, M, Q or H")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedError(ReasonCode.MALFORMED_UTF8, "text has no UTF-8 form") from None
    if _QR_ALPHANUMERIC.issuperset(text):
        segment = qrcode.util.QRData(data, mode=qrcode.util.MODE_ALPHA_NUM, check_data=False)
    else:
        segment = qrcode.util.QRData(data, mode=qrcode.util.MODE_8BIT_BYTE, check_data=False)
    code = qrcode.QRCode(error_correction=level, border=border)
    code.add_data(segment)
    # qrcode signals a version above 40 as DataOverflowError or, from its version setter, as
    # ValueError; nothing else in best_fit raises either.
    try:
        code.best_fit()
    except (qrcode.exceptions.DataOverflowError, ValueError):
        raise UsageError(
            ReasonCode.QR_TOO_LARGE, "text does not fit in a version 40 QR code"
        ) from None
    return code


def qr_version(text: str, error_correction: ErrorCorrection = "M") -> int:
    """The smallest QR version (1-40) that holds ``text``; ``UsageError(QR_TOO_LARGE)`` beyond."""
    return int(_qr_code(text, error_correction).version)


def _modules(text: str, error_correction: ErrorCorrection, border: int) -> list[list[bool]]:
    code = _qr_code(text, error_correction, border)
    code.make(fit=False)
    return [[bool(module) for module in row] for row in code.get_matrix()]


def render_png(
    text: str, *, box_size: int = 8, border: int = 4, error_correction: ErrorCorrection = "M"
) -> bytes:
    """A black-on-white PNG of the QR code for ``text``; ``border`` is the quiet zone in modules
    (ISO/IEC 18004 asks for 4)."""
    if not 1 <= box_size <= 100 or not 0 <= border <= 100:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "box size or border out of range")
    matrix = _modules(text, error_correction, border)
    side = len(matrix)
    pixels = bytes(0 if dark else 255 for row in matrix for dark in row)
    image = Image.frombytes("L", (side, side), pixels)
    image = image.resize((side * box_size, side * box_size), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.convert("1", dither=Image.Dither.NONE).save(out, format="PNG", optimize=True)
    return out.getvalue()


# Index: upper module dark (1) + lower module dark (2).
_HALF_BLOCKS_INK_DARK: Final = (" ", "\u2580", "\u2584", "\u2588")
_HALF_BLOCKS_INK_LIGHT: Final = ("\u2588", "\u2584", "\u2580", " ")


def render_terminal(
    text: str, *, error_correction: ErrorCorrection = "M", light_background: bool = False
) -> str:
    """The QR code as lines of half-block characters, two module rows per line.

    A terminal draws characters in its foreground colour, so on the usual dark background the
    light modules are drawn (``light_background=False``) and the dark ones left blank; pass
    ``light_background=True`` for a dark-on-light terminal. The quiet zone is included.
    """
    matrix = _modules(text, error_correction, border=4)
    if len(matrix) % 2:
        matrix.append([False] * len(matrix[0]))
    blocks = _HALF_BLOCKS_INK_DARK if light_background else _HALF_BLOCKS_INK_LIGHT
    lines = (
        "".join(blocks[upper + 2 * lower] for upper, lower in zip(top, bottom, strict=True))
        for top, bottom in _pairs(matrix)
    )
    return "\n".join(lines) + "\n"


def _pairs(rows: list[list[bool]]) -> Iterator[tuple[list[bool], list[bool]]]:
    for index in range(0, len(rows), 2):
        yield rows[index], rows[index + 1]


# --- reading (zxing-cpp) ----------------------------------------------------------------------

_QR_ONLY: Final = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)


def decode_png(png: bytes) -> str:
    """The text of the one QR code in a PNG image.

    Raises ``MalformedError``: ``QR_NOT_FOUND`` when no QR code can be read, ``INPUT_TOO_LARGE``
    for oversized images, ``MALFORMED_INPUT`` for data that is not a PNG image and
    ``MALFORMED_QR_PAYLOAD`` for several different QR codes or content that is not UTF-8.
    """
    if len(png) > MAX_PNG_BYTES:
        raise MalformedError(ReasonCode.INPUT_TOO_LARGE, "image file too large")
    try:
        with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
            if image.width * image.height > MAX_PNG_PIXELS:
                raise MalformedError(ReasonCode.INPUT_TOO_LARGE, "image has too many pixels")
            grey = image.convert("L")
    except MalformedError:
        raise
    except Image.DecompressionBombError:
        raise MalformedError(ReasonCode.INPUT_TOO_LARGE, "image has too many pixels") from None
    except Exception:  # Pillow's decoders raise many unrelated types on bad input
        raise MalformedError(ReasonCode.MALFORMED_INPUT, "not a readable PNG image") from None
    found = zxingcpp.read_barcodes(grey, formats=_QR_ONLY)
    contents = {bytes(barcode.bytes) for barcode in found if barcode.valid}
    if not contents:
        raise MalformedError(ReasonCode.QR_NOT_FOUND, "no QR code found in the image")
    if len(contents) > 1:
        raise _malformed("more than one QR code in the image")
    try:
        return utf8_decode(contents.pop())
    except MalformedError:
        raise _malformed("QR code content is not UTF-8") from None
