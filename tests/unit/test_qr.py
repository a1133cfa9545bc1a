"""Tests for civic.qr: base45 (RFC 9285), the CW1 packing, QR rendering and reading."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import struct
import zlib
from typing import Any

import pytest
import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey
from PIL import Image

from civic import qr
from civic.encoding import b64url_encode, json_dumps
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError
from tests.vectors import load_json

B45_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


# --- building realistic presentations (no dependency on the SD-JWT module) ---------------------


def fixed_bytes(label: str, n: int) -> bytes:
    """Deterministic stand-in for random bytes, so failures reproduce."""
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return out[:n]


def sha256_b64url(text: str) -> str:
    return b64url_encode(hashlib.sha256(text.encode("ascii")).digest())


def compact_jws(key: SigningKey, header: dict[str, Any], payload: dict[str, Any]) -> str:
    signing_input = (
        b64url_encode(json_dumps(header).encode())
        + "."
        + b64url_encode(json_dumps(payload).encode())
    )
    signature = key.sign(signing_input.encode("ascii")).signature
    return signing_input + "." + b64url_encode(signature)


def disclosure(label: str, name: str, value: Any) -> str:
    salt = b64url_encode(fixed_bytes(f"salt/{label}", 16))
    return b64url_encode(json_dumps([salt, name, value]).encode())


def residency_presentation(*, decoys: int = 3) -> str:
    """An Ed25519 SD-JWT VC residency credential laid out as civic.sdjwtvc issues it (every
    subject claim disclosable, the address recursively, decoys among the digests), presenting
    given_name, family_name, age_over_19 and address.region with a KB-JWT."""
    issuer = SigningKey(fixed_bytes("issuer", 32))
    holder = SigningKey(fixed_bytes("holder", 32))
    region = disclosure("region", "region", "Seoul")
    locality = disclosure("locality", "locality", "Jongno-gu")
    address_digests = [sha256_b64url(region), sha256_b64url(locality)]
    address_digests.append(b64url_encode(fixed_bytes("address-decoy", 32)))
    address = disclosure("address", "address", {"_sd": sorted(address_digests)})
    claims: dict[str, Any] = {
        "given_name": "길동",
        "family_name": "홍",
        "birth_date": "1990-03-15",
        "resident_since": "2015-06-01",
        "age_over_14": True,
        "age_over_18": True,
        "age_over_19": True,
        "age_over_65": False,
    }
    disclosures = {name: disclosure(name, name, value) for name, value in claims.items()}
    digests = [sha256_b64url(d) for d in [*disclosures.values(), address]]
    digests += [b64url_encode(fixed_bytes(f"decoy/{i}", 32)) for i in range(decoys)]
    payload = {
        "iss": "https://jongno.seoul.civic.example",
        "iat": 1767225600,
        "exp": 1798761600,
        "vct": "urn:civic:vct:residency:1",
        "status": {
            "status_list": {"idx": 48213, "uri": "https://jongno.seoul.civic.example/status/1"}
        },
        "_sd": sorted(digests),
        "_sd_alg": "sha-256",
        "cnf": {
            "jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(bytes(holder.verify_key))}
        },
    }
    header = {"alg": "EdDSA", "typ": "dc+sd-jwt", "kid": b64url_encode(fixed_bytes("kid", 32))}
    shown = [disclosures["given_name"], disclosures["family_name"], disclosures["age_over_19"]]
    issuer_jws = compact_jws(issuer, header, payload)
    sd_jwt = "~".join([issuer_jws, *shown, region, address, ""])
    kb_payload = {
        "iat": 1767312000,
        "aud": "https://counter.jongno.seoul.civic.example",
        "nonce": b64url_encode(fixed_bytes("nonce", 16)),
        "sd_hash": sha256_b64url(sd_jwt),
    }
    return sd_jwt + compact_jws(holder, {"alg": "EdDSA", "typ": "kb+jwt"}, kb_payload)


def raw_deflate(data: bytes) -> bytes:
    """DEFLATE without the preset dictionary: such a stream never refers into the dictionary,
    so the unpacker (which has it) inflates it to the same bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def packed_body(skeleton: bytes, tail: bytes = b"") -> str:
    return qr.PACKED_PREFIX + qr.b45encode(raw_deflate(skeleton) + tail)


def reason_of(excinfo: pytest.ExceptionInfo[CivicError]) -> ReasonCode:
    return excinfo.value.reason


# --- base45 (RFC 9285) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plain", "encoded"),
    [
        (b"AB", "BB8"),
        (b"Hello!!", "%69 VD92EX0"),
        (b"base-45", "UJCLQE7W581"),
        (b"ietf!", "QED8WEX0"),
        (b"", ""),
        (b"\xff\xff", "FGW"),
    ],
)
def test_base45_rfc9285_examples(plain: bytes, encoded: str) -> None:
    assert qr.b45encode(plain) == encoded
    assert qr.b45decode(encoded) == plain


@pytest.mark.parametrize(
    "text",
    [
        "GGW",  # 65536: more than 16 bits (RFC 9285 section 6)
        "ZZZ",
        ":::",
        "ZZ",  # a final pair above 255
        "A",  # a single dangling character
        "BB8A",
        "bb8",  # lowercase is outside the alphabet
        "BB8\n",
        "BB=",
        "BB\u00c9",
    ],
)
def test_base45_rejects_invalid(text: str) -> None:
    with pytest.raises(MalformedError) as excinfo:
        qr.b45decode(text)
    assert excinfo.value.reason == ReasonCode.MALFORMED_QR_PAYLOAD


@given(st.binary(max_size=300))
def test_base45_round_trip(data: bytes) -> None:
    encoded = qr.b45encode(data)
    assert set(encoded) <= set(B45_ALPHABET)
    assert len(encoded) == 3 * (len(data) // 2) + 2 * (len(data) % 2)
    assert qr.b45decode(encoded) == data


@given(st.text(alphabet=B45_ALPHABET, max_size=60))
def test_base45_decode_is_canonical(text: str) -> None:
    try:
        data = qr.b45decode(text)
    except MalformedError as exc:
        assert exc.reason == ReasonCode.MALFORMED_QR_PAYLOAD
    else:
        assert qr.b45encode(data) == text


# --- pack / unpack round trips ---------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.text(max_size=12)
    | st.binary(min_size=32, max_size=32).map(b64url_encode)
    | st.binary(min_size=16, max_size=16).map(b64url_encode)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)


@st.composite
def sd_jwt_presentations(draw: st.DrawFn) -> str:
    """SD-JWT(+KB)-shaped strings: JSON parts with random base64url strings, disclosures whose
    digests appear in the payload and in other disclosures, right and wrong sd_hash values."""
    dump = draw(
        st.sampled_from([json_dumps, json.dumps, lambda v: json.dumps(v, ensure_ascii=False)])
    )

    def b64_json(value: Any) -> str:
        return b64url_encode(dump(value).encode())

    disclosures: list[str] = []
    for _ in range(draw(st.integers(min_value=0, max_value=5))):
        salt = b64url_encode(draw(st.binary(min_size=16, max_size=16)))
        value = draw(json_values)
        if disclosures and draw(st.booleans()):
            # Recursive disclosure: the value carries the digests of earlier-built disclosures.
            value = {"_sd": [sha256_b64url(d) for d in disclosures]}
        if draw(st.booleans()):
            disclosures.append(b64_json([salt, draw(st.text(max_size=10)), value]))
        else:
            disclosures.append(b64_json([salt, value]))  # an array element disclosure
    order = draw(st.permutations(disclosures))
    digests = [sha256_b64url(d) for d in disclosures if draw(st.booleans())]
    digests += [
        b64url_encode(d) for d in draw(st.lists(st.binary(min_size=32, max_size=32), max_size=3))
    ]
    payload = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4))
    payload["_sd"] = draw(st.permutations(digests))
    header = {"alg": draw(st.sampled_from(["EdDSA", "ES256"])), "typ": "dc+sd-jwt"}
    signature = draw(st.binary(max_size=80))
    issuer_jws = f"{b64_json(header)}.{b64_json(payload)}.{b64url_encode(signature)}"
    text = "~".join([issuer_jws, *order]) + "~"
    binding = draw(st.sampled_from(["none", "right", "wrong"]))
    if binding == "none":
        return text
    sd_hash = sha256_b64url(text) if binding == "right" else sha256_b64url(text + "x")
    kb_payload = {"iat": 1767312000, "aud": draw(st.text(max_size=20)), "sd_hash": sd_hash}
    kb_signature = b64url_encode(draw(st.binary(min_size=64, max_size=64)))
    return (
        f"{text}{b64_json({'alg': 'EdDSA', 'typ': 'kb+jwt'})}.{b64_json(kb_payload)}.{kb_signature}"
    )


@given(st.text(max_size=400))
def test_pack_round_trips_any_text(text: str) -> None:
    packed = qr.pack(text)
    assert qr.is_packed(packed)
    assert set(packed) <= set(B45_ALPHABET)
    assert qr.unpack(packed) == text


@given(st.text(alphabet=B64URL_ALPHABET + ".~", max_size=200))
def test_pack_round_trips_sd_jwt_alphabet_noise(text: str) -> None:
    assert qr.unpack(qr.pack(text)) == text


@given(sd_jwt_presentations())
def test_pack_round_trips_sd_jwt_presentations(presentation: str) -> None:
    # The generated strings take the structured path, not the TEXT fallback.
    qr._Packer(presentation).build()
    assert qr.unpack(qr.pack(presentation)) == presentation


@pytest.mark.parametrize("decoys", [0, 3, 12])
def test_pack_round_trips_realistic_presentation(decoys: int) -> None:
    presentation = residency_presentation(decoys=decoys)
    assert qr.unpack(qr.pack(presentation)) == presentation


def test_pack_round_trips_rfc9901_and_sd_jwt_vc_examples() -> None:
    examples = [
        *load_json("sd_jwt", "sd_jwt_spec_section5_example.json").values(),
        *load_json("sd_jwt", "sd_jwt_vc_section2_3_example.json").values(),
    ]
    presentations = [value for value in examples if isinstance(value, str) and "~" in value]
    assert len(presentations) >= 4
    for presentation in presentations:
        packed = qr.pack(presentation)
        assert qr.unpack(packed) == presentation
        assert len(packed) < len(presentation)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "~",
        "~~~",
        "..",
        "a.b.c",
        "eyJ9.eyJ9.",
        "AAAA~",
        "not an SD-JWT at all",
        '"' + "A" * 43 + '"',
        "\x00\U0010ffff",
        "안녕하세요~",
        "AB",  # non-canonical base64url (a trailing bit set): must stay byte-exact
    ],
)
def test_pack_round_trips_edge_cases(text: str) -> None:
    assert qr.unpack(qr.pack(text)) == text


def test_pack_keeps_json_bytes_that_are_not_canonical_base64url() -> None:
    # A 43-character string whose last character carries non-zero unused bits must not be
    # turned into raw bytes: re-encoding would change it.
    non_canonical = "A" * 42 + "B"
    payload = b64url_encode(json_dumps({"_sd": [non_canonical]}).encode())
    text = f"{b64url_encode(b'{}')}.{payload}.{b64url_encode(bytes(64))}~"
    assert qr.unpack(qr.pack(text)) == text


def test_pack_rejects_text_without_utf8_form() -> None:
    with pytest.raises(MalformedError) as excinfo:
        qr.pack("lone \ud800 surrogate")
    assert excinfo.value.reason == ReasonCode.MALFORMED_UTF8


def test_pack_rejects_oversized_text() -> None:
    with pytest.raises(MalformedError) as excinfo:
        qr.pack("€" * (qr.MAX_SKELETON_BYTES // 3 + 1))
    assert excinfo.value.reason == ReasonCode.INPUT_TOO_LARGE


def test_pack_is_much_smaller_than_the_compact_serialization() -> None:
    presentation = residency_presentation()
    packed = qr.pack(presentation)
    # The random parts that cannot be recomputed (undisclosed digests, signatures, salts, keys)
    # are about 600 bytes, 900 base45 characters; the JSON around them must cost little.
    assert len(packed) < 0.55 * len(presentation)


def test_qr_size_regression_for_a_residency_presentation() -> None:
    presentation = residency_presentation()
    packed = qr.pack(presentation)
    packed_version = qr.qr_version(packed, "M")
    naive_version = qr.qr_version(presentation, "M")
    assert packed_version <= 25
    assert naive_version - packed_version >= 10


# A CW1 text packed when the format was frozen (decoder-side golden vector): every future
# version of unpack must still read it, whatever zlib version packs new texts.
GOLDEN_CW1 = (
    "CW1:EK4ZZJ0SM3$UZ$U7E8Y2LUE29BJFYCNEOPFIW57R0V1K55GGG0ASE43+P:*H.%7-567APS-K%KNV94UA"
    "G8 K-E3MCMAIG%H0U3RJAGVWDKYCKMDR2IJ0W/B9Z*UEAK$1A.*R0GJ8J33A3PXFME31MP2QRD-M .16AAAA"
    "H220SHK:LV90BD-F7/E*.Q.$71FO 40IN3%JU.LGQ-M8ITE120V4R-HKUGD9GZJJMU1 $3WBS%-O/+6P-4WG"
    "N$0HH 9QE3R76Q.C+P2%-T%O07.HH+L5RR5UDK3EUMFY.4G.QI9BOG1K:SE4RBZB$POB66R:L74BQ+O18IJG"
    "5GK4TB1L0R-89V*CB0TL*C4B0X$04I6457G77AFI9C3YXCQ HDNO1$NSZHWHAOZPOI1K-G.STL/5$PO.F1 F"
    "O6UITKFH2G:Y5N-A62VU8C8 HXTUWDEOZT%ETVUCM*VWGL-:LT-7QRI0AONUT5CQRUO%S9E$0O5K7/KAHNP4"
    "W3T8O3PKYULOBVR4YDH/0W1YC/84X*M4TA$P0V.F2KJ I3BVM70"
)


def small_presentation() -> str:
    issuer = SigningKey(fixed_bytes("golden-issuer", 32))
    holder = SigningKey(fixed_bytes("golden-holder", 32))
    given = disclosure("golden", "given_name", "길동")
    region = disclosure("golden-region", "region", "Seoul")
    address = disclosure("golden-address", "address", {"_sd": [sha256_b64url(region)]})
    payload = {
        "iss": "https://jongno.seoul.civic.example",
        "iat": 1767225600,
        "exp": 1798761600,
        "vct": "urn:civic:vct:residency:1",
        "cnf": {
            "jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(bytes(holder.verify_key))}
        },
        "_sd": sorted(
            [
                sha256_b64url(given),
                sha256_b64url(address),
                b64url_encode(fixed_bytes("golden-decoy", 32)),
            ]
        ),
        "_sd_alg": "sha-256",
    }
    header = {"alg": "EdDSA", "typ": "dc+sd-jwt", "kid": "jongno-2026"}
    # The address disclosure follows the region one it refers to: references go both ways.
    sd_jwt = f"{compact_jws(issuer, header, payload)}~{given}~{region}~{address}~"
    kb_payload = {
        "iat": 1767312000,
        "aud": "https://counter.jongno.seoul.civic.example",
        "nonce": b64url_encode(fixed_bytes("golden-nonce", 16)),
        "sd_hash": sha256_b64url(sd_jwt),
    }
    return sd_jwt + compact_jws(holder, {"alg": "EdDSA", "typ": "kb+jwt"}, kb_payload)


def test_unpack_reads_the_frozen_cw1_golden_vector() -> None:
    assert qr.unpack(GOLDEN_CW1) == small_presentation()


# --- strict unpacking ----------------------------------------------------------------------


def test_is_packed_tells_packed_from_raw() -> None:
    presentation = residency_presentation()
    assert not qr.is_packed(presentation)
    assert qr.is_packed(qr.pack(presentation))
    assert qr.is_packed("CW2:ABC")
    assert not qr.is_packed("cw1:ABC")
    assert not qr.is_packed("CW:ABC")
    assert not qr.is_packed("")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("CW2:BB8", ReasonCode.QR_UNSUPPORTED_VERSION),
        ("CW10:BB8", ReasonCode.QR_UNSUPPORTED_VERSION),
        ("", ReasonCode.MALFORMED_QR_PAYLOAD),
        ("eyJhbGciOiJFZERTQSJ9.e30.~", ReasonCode.MALFORMED_QR_PAYLOAD),
        ("cw1:BB8", ReasonCode.MALFORMED_QR_PAYLOAD),
        ("CW1:", ReasonCode.MALFORMED_QR_PAYLOAD),
        ("CW1:bb8", ReasonCode.MALFORMED_QR_PAYLOAD),
        ("CW1:GGW", ReasonCode.MALFORMED_QR_PAYLOAD),
        ("CW1:" + qr.b45encode(b"\xff\xff\xff"), ReasonCode.MALFORMED_QR_PAYLOAD),
    ],
)
def test_unpack_rejects_bad_envelopes(text: str, reason: ReasonCode) -> None:
    with pytest.raises(MalformedError) as excinfo:
        qr.unpack(text)
    assert excinfo.value.reason == reason


def test_unpack_rejects_truncated_and_extended_packings() -> None:
    presentation = residency_presentation()
    body = qr.b45decode(qr.pack(presentation)[len(qr.PACKED_PREFIX) :])
    text_body = qr.b45decode(qr.pack("plain text, not an SD-JWT")[len(qr.PACKED_PREFIX) :])
    for damaged in (body[:-1], body[:-33], body[:40], body + b"\x00", text_body + b"\x00"):
        with pytest.raises(MalformedError) as excinfo:
            qr.unpack(qr.PACKED_PREFIX + qr.b45encode(damaged))
        assert excinfo.value.reason == ReasonCode.MALFORMED_QR_PAYLOAD
    packed = qr.pack(presentation)
    for damaged_text in (packed[:-1], packed[:-3], packed + " "):
        with pytest.raises(MalformedError):
            qr.unpack(damaged_text)


def test_unpack_caps_decompression_bombs() -> None:
    bomb = packed_body(b"\x00" + b"A" * (qr.MAX_SKELETON_BYTES + 1))
    assert len(bomb) < 1000
    with pytest.raises(MalformedError) as excinfo:
        qr.unpack(bomb)
    assert excinfo.value.reason == ReasonCode.INPUT_TOO_LARGE


def test_unpack_caps_the_unpacked_size() -> None:
    # Each two-byte digest reference stands for 45 characters of JSON.
    references = packed_body(b"\x01[" + b"\xfd\x01," * 4000 + b"]\xf9[]")
    with pytest.raises(MalformedError) as excinfo:
        qr.unpack(references)
    assert excinfo.value.reason == ReasonCode.INPUT_TOO_LARGE


def test_pack_round_trips_large_texts_within_the_bounds() -> None:
    large = b64url_encode(fixed_bytes("large", 45_000))
    assert qr.unpack(qr.pack(large)) == large
    with pytest.raises(MalformedError) as excinfo:
        qr.pack("A" * (qr.MAX_TEXT_BYTES + 4))
    assert excinfo.value.reason == ReasonCode.INPUT_TOO_LARGE


def test_unpack_rejects_overlong_text() -> None:
    with pytest.raises(MalformedError) as excinfo:
        qr.unpack("CW1:" + "0" * (qr.MAX_PACKED_CHARS + 1))
    assert excinfo.value.reason == ReasonCode.INPUT_TOO_LARGE


def test_unpack_follows_the_documented_grammar() -> None:
    salt = fixed_bytes("grammar-salt", 16)
    signature = fixed_bytes("grammar-signature", 64)
    disclosure_json = b'[\xfe,"a",1]'
    skeleton = b"\x01{}\xfa" + b'{"_sd":[\xfd\x01]}' + b"\xfa@" + b"\xf9" + disclosure_json
    decoded = qr.unpack(packed_body(skeleton, signature + salt))
    d = b64url_encode(b'["' + b64url_encode(salt).encode() + b'","a",1]')
    payload = b64url_encode(b'{"_sd":["' + sha256_b64url(d).encode() + b'"]}')
    assert decoded == f"{b64url_encode(b'{}')}.{payload}.{b64url_encode(signature)}~{d}"
    assert qr.unpack(packed_body(b"\x00caf\xc3\xa9")) == "café"
    # A reference to an earlier disclosure, and the sd_hash of everything before a KB-JWT.
    first = b64url_encode(b"[]")
    second = b64url_encode(b'["' + sha256_b64url(first).encode() + b'"]')
    prefix = f"{first}~{second}~"
    kb_payload = b64url_encode(b'{"sd_hash":"' + sha256_b64url(prefix).encode() + b'"}')
    skeleton = b'\x01[]\xf9[\xfd\x00]\xf9{}\xfa{"sd_hash":\xfc}\xfa\x00'
    assert qr.unpack(packed_body(skeleton)) == f"{prefix}{b64url_encode(b'{}')}.{kb_payload}."


@pytest.mark.parametrize(
    ("skeleton", "tail"),
    [
        (b"", b""),  # no mode
        (b"\x02abc", b""),  # unknown mode
        (b"\x00\xc3", b""),  # TEXT that is not UTF-8
        (b"\x00abc", b"x"),  # TEXT with a tail
        (b"\x01[\xff]", b""),  # marker without its tail bytes
        (b"\x01[\xfe]", bytes(15)),
        (b"\x01[\xfe]", bytes(17)),  # tail left over
        (b"\x01[\xf5]", b""),  # reserved byte
        (b"\x01[\xfb]", b""),
        (b"\x01{}\xfa{}", b""),  # JWS without a signature
        (b"\x01{}\xfa{}\xfa", b""),
        (b"\x01{}\xfa{}\xfa\x00x", b""),  # data after the signature
        (b"\x01{}\xfa{}\xfa\x80\x00", b""),  # non-minimal varint
        (b"\x01{}\xfa{}\xfa\x80\x80\x80\x01", b""),  # varint too long
        (b"\x01{}\xfa{}\xfa\x02", b"\x00"),  # signature cut short
        (b"\x01{}\xfa{}\xfa.\xfa{}\xfa\x00", b""),  # a JWS with four parts
        (b"\x01[\xfd\x00]", b""),  # digest of itself
        (b"\x01[\xfd\x01]", b""),  # digest of a missing element
        (b"\x01[\xfd\x01]\xf9[\xfd\x00]", b""),  # a cycle
        (b"\x01[\xfd\x01]\xf9[\xfd\x02]\xf9[\xfd\x00]", b""),
        (b"\x01[\xfd\x81\x00]\xf9[]", b""),  # non-minimal varint index
        (b"\x01[\xfd\x01]\xf9{}\xfa{}\xfa\x00", b""),  # digest of a JWS
        (b"\x01[\xfd", b""),  # digest marker without its index
        (b"\x01[\xfc]\xf9{}\xfa{}\xfa\x00", b""),  # sd_hash outside the last element
        (b"\x01[]\xf9[\xfc]", b""),  # sd_hash in a disclosure
        (b"\x01{}\xfa{}\xfa\x00\xf9{\xfc}\xfa{}\xfa\x00\xf9[]", b""),  # not in the last
        (b"\x01{\xfc}\xfa{}\xfa\x00", b""),  # sd_hash with nothing before it
    ],
)
def test_unpack_rejects_malformed_skeletons(skeleton: bytes, tail: bytes) -> None:
    with pytest.raises(MalformedError) as excinfo:
        qr.unpack(packed_body(skeleton, tail))
    assert excinfo.value.reason == ReasonCode.MALFORMED_QR_PAYLOAD


def _unpack_or_civic_error(text: str) -> None:
    try:
        result = qr.unpack(text)
    except CivicError:
        return
    assert qr.unpack(qr.pack(result)) == result


@given(st.text(max_size=200))
def test_unpack_never_leaks_on_any_text(text: str) -> None:
    _unpack_or_civic_error(text)
    _unpack_or_civic_error(qr.PACKED_PREFIX + text)


@given(st.binary(max_size=200))
def test_unpack_never_leaks_on_any_body(body: bytes) -> None:
    _unpack_or_civic_error(qr.PACKED_PREFIX + qr.b45encode(body))


skeleton_bytes = st.lists(
    st.sampled_from([0x00, 0x01, 0x02, 0x40, 0x80, 0xF5, 0xF9, 0xFA, 0xFC, 0xFD, 0xFE, 0xFF])
    | st.sampled_from(list(b'{}[]",:ab')),
    max_size=40,
).map(bytes)


@given(st.sampled_from([b"\x00", b"\x01"]), skeleton_bytes, st.binary(max_size=120))
def test_unpack_never_leaks_on_any_skeleton(mode: bytes, skeleton: bytes, tail: bytes) -> None:
    _unpack_or_civic_error(packed_body(mode + skeleton, tail))


# --- rendering and reading -------------------------------------------------------------------


def test_qr_version_uses_alphanumeric_mode_for_packed_text() -> None:
    # ISO/IEC 18004 Table 7, version 1-M: 20 alphanumeric characters, but only 14 bytes.
    assert qr.qr_version("CW1:" + "A" * 16, "M") == 1
    assert qr.qr_version("cw1:" + "a" * 16, "M") == 2
    packed = qr.pack(residency_presentation())
    assert qr.qr_version(packed, "M") < qr.qr_version(packed.lower(), "M")


def test_qr_version_depends_on_error_correction() -> None:
    packed = qr.pack(residency_presentation())
    versions = [qr.qr_version(packed, level) for level in ("L", "M", "Q", "H")]
    assert versions == sorted(versions)
    assert versions[0] < versions[-1]


def test_qr_too_large() -> None:
    # Version 40-L holds 4,296 alphanumeric characters.
    assert qr.qr_version("A" * 4296, "L") == 40
    with pytest.raises(UsageError) as excinfo:
        qr.qr_version("A" * 4297, "L")
    assert excinfo.value.reason == ReasonCode.QR_TOO_LARGE
    with pytest.raises(UsageError):
        qr.render_png("A" * 4297, error_correction="L")


def test_rendering_rejects_bad_arguments() -> None:
    with pytest.raises(UsageError):
        qr.qr_version("A", "X")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        qr.render_png("A", box_size=0)
    with pytest.raises(UsageError):
        qr.render_png("A", border=-1)


def test_png_round_trip_of_a_packed_presentation() -> None:
    presentation = residency_presentation()
    packed = qr.pack(presentation)
    png = qr.render_png(packed)
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        side = (4 * qr.qr_version(packed) + 17 + 2 * 4) * 8
        assert image.size == (side, side)
    scanned = qr.decode_png(png)
    assert scanned == packed
    assert qr.unpack(scanned) == presentation


@pytest.mark.parametrize(
    "text", ["https://issuer.example/offer?x=1", "홍길동 ~ résumé", "HELLO WORLD 123"]
)
def test_png_round_trip_of_plain_text(text: str) -> None:
    assert qr.decode_png(qr.render_png(text, box_size=4)) == text


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_decode_png_without_a_qr_code() -> None:
    with pytest.raises(MalformedError) as excinfo:
        qr.decode_png(_png(Image.new("L", (200, 200), 255)))
    assert excinfo.value.reason == ReasonCode.QR_NOT_FOUND


def test_decode_png_with_two_different_qr_codes() -> None:
    left = Image.open(io.BytesIO(qr.render_png("FIRST", box_size=6)))
    right = Image.open(io.BytesIO(qr.render_png("SECOND", box_size=6)))
    both = Image.new("L", (left.width + right.width, max(left.height, right.height)), 255)
    both.paste(left.convert("L"), (0, 0))
    both.paste(right.convert("L"), (left.width, 0))
    with pytest.raises(MalformedError) as excinfo:
        qr.decode_png(_png(both))
    assert excinfo.value.reason == ReasonCode.MALFORMED_QR_PAYLOAD


def _png_without_pixels(width: int, height: int) -> bytes:
    """A PNG whose header claims a size and whose image data is empty: cheap to build, and
    only a decoder that trusts the header before looking at the pixels accepts it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def test_decode_png_rejects_huge_and_non_png_images() -> None:
    for width, height in ((7_000, 7_000), (20_000, 20_000)):
        with pytest.raises(MalformedError) as excinfo:
            qr.decode_png(_png_without_pixels(width, height))
        assert excinfo.value.reason == ReasonCode.INPUT_TOO_LARGE
    gif = io.BytesIO()
    Image.new("L", (10, 10), 255).save(gif, format="GIF")
    for not_png in (b"", b"not an image", gif.getvalue(), _png_without_pixels(10, 10)):
        with pytest.raises(MalformedError) as excinfo:
            qr.decode_png(not_png)
        assert excinfo.value.reason == ReasonCode.MALFORMED_INPUT


@settings(max_examples=30)
@given(st.binary(max_size=300))
def test_decode_png_never_leaks_on_any_bytes(data: bytes) -> None:
    for candidate in (data, b"\x89PNG\r\n\x1a\n" + data):
        with contextlib.suppress(CivicError):
            qr.decode_png(candidate)


def _terminal_to_png(rendered: str, *, light_background: bool) -> bytes:
    """Rebuild the module grid from half-block characters (ink drawn in the foreground)."""
    ink_of = {" ": (False, False), "\u2580": (True, False), "\u2584": (False, True)}
    ink_of["\u2588"] = (True, True)
    rows: list[list[bool]] = [[], []]
    grid: list[list[bool]] = []
    for line in rendered.splitlines():
        rows = [[], []]
        for char in line:
            upper, lower = ink_of[char]
            rows[0].append(upper)
            rows[1].append(lower)
        grid += rows
    # Ink is dark on a light background and light on a dark one.
    dark = [[ink if light_background else not ink for ink in row] for row in grid]
    image = Image.new("L", (len(dark[0]), len(dark)), 255)
    image.putdata([0 if module else 255 for row in dark for module in row])
    return _png(image.resize((image.width * 6, image.height * 6), Image.Resampling.NEAREST))


@pytest.mark.parametrize("light_background", [False, True])
def test_render_terminal_is_readable(light_background: bool) -> None:
    packed = qr.pack(small_presentation())
    rendered = qr.render_terminal(packed, light_background=light_background)
    lines = rendered.splitlines()
    side = 4 * qr.qr_version(packed) + 17 + 8
    assert len(lines) == (side + 1) // 2
    assert {len(line) for line in lines} == {side}
    png = _terminal_to_png(rendered, light_background=light_background)
    # Read without trying the inverted image, so a wrong polarity would fail here.
    with Image.open(io.BytesIO(png)) as image:
        found = zxingcpp.read_barcodes(image.convert("L"), try_invert=False)
    assert [bytes(barcode.bytes).decode() for barcode in found] == [packed]
