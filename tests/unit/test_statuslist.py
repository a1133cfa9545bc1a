"""Token Status List (draft-ietf-oauth-status-list): byte array, JSON/CBOR lists, JWT tokens."""

from __future__ import annotations

import json
import random
import re
import tracemalloc
import zlib
from functools import cache
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from civic.clock import FixedClock
from civic.encoding import b64url_encode, json_dumps
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError
from civic.jose import PrivateKey, parse_jws, public_key_from_jwk, sign_jws, sign_jwt
from civic.statuslist import (
    Status,
    StatusList,
    StatusReference,
    VerifiedStatusList,
    parse_status_claim,
    sign_status_list_token,
    status_of,
    verify_status_list_token,
)
from tests.vectors import load_json, vectors_path

ED = PrivateKey.from_ed25519_seed(bytes(range(32)))
ED_OTHER = PrivateKey.from_ed25519_seed(bytes(32))
EC = PrivateKey.generate("ES256")
URI = "https://status.example.go.kr/lists/7"
T0 = 1_750_000_000

LIST_NAMES = ["1bit_16", "2bit_12", "1bit_long", "2bit_long", "4bit_long", "8bit_long"]


# --- vector helpers -------------------------------------------------------------------------


@cache
def _expectations() -> dict[str, Any]:
    value: dict[str, Any] = load_json("status_list", "status_list_expectations.json")
    return value


def _example(name: str) -> str:
    return vectors_path("status_list", name).read_text(encoding="utf-8")


def _unwrap(text: str) -> str:
    """The example files are wrapped at 68 columns; none of their values contains whitespace."""
    return re.sub(r"\s+", "", text)


def _json_from_md(text: str) -> Any:
    return json.loads(_unwrap(text[text.index("{") :]))


def _cbor_from_md(text: str) -> bytes:
    if "encoded:" in text:
        text = text.split("encoded:", 1)[1]
    return bytes.fromhex(_unwrap(text))


@cache
def _expected_values(name: str) -> bytes:
    entry = _expectations()["lists"][name]
    if "statuses" in entry:
        return bytes(entry["statuses"])
    values = bytearray([entry["default_status"]]) * entry["size"]
    for index, status in entry["nonzero"].items():
        values[int(index)] = status
    return bytes(values)


def _example_files(name: str, suffix: str) -> list[str]:
    files = [f for f in _expectations()["lists"][name]["example_files"] if f.endswith(suffix)]
    assert files, f"no {suffix} example for {name}"
    return files


def _kid12_private() -> PrivateKey:
    jwk = {k: v for k, v in _expectations()["key"].items() if k != "comment"}
    return PrivateKey.from_jwk(jwk)


def _kid12_public() -> Any:
    jwk = {k: v for k, v in _expectations()["key"].items() if k not in ("comment", "d")}
    return public_key_from_jwk(jwk)


def _raw_token() -> str:
    return _unwrap(_example("examples/status_list_jwt_raw.md"))


# --- the draft's example lists --------------------------------------------------------------


@pytest.mark.vectors
@pytest.mark.parametrize("name", LIST_NAMES)
def test_json_examples_decode_to_expected_statuses_at_every_index(name: str) -> None:
    entry = _expectations()["lists"][name]
    expected = _expected_values(name)
    for path in _example_files(name, "_json.md"):
        obj = _json_from_md(_example(path))
        assert obj["lst"] == entry["json_lst_unwrapped"]
        decoded = StatusList.decode(obj)
        assert decoded.bits == entry["bits"]
        assert decoded.size == entry["size"]
        assert decoded.values() == expected
        # values() is the bulk path; get() is what verifiers call: check it everywhere too.
        get = decoded.get
        assert all(get(i) == expected[i] for i in range(decoded.size))


@pytest.mark.vectors
@pytest.mark.parametrize("name", LIST_NAMES)
def test_cbor_examples_decode_to_expected_statuses(name: str) -> None:
    entry = _expectations()["lists"][name]
    for path in _example_files(name, "_cbor.md"):
        raw = _cbor_from_md(_example(path))
        assert raw.hex() == entry["cbor_hex_unwrapped"]
        obj = cbor2.loads(raw)
        assert set(obj) == {"bits", "lst"}
        assert isinstance(obj["lst"], bytes)
        decoded = StatusList.from_compressed(obj["lst"], obj["bits"])
        assert decoded.bits == entry["bits"]
        assert decoded.values() == _expected_values(name)


@pytest.mark.vectors
@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("1bit_16", "examples/status_list_encoding_json.md"),
        ("2bit_12", "examples/status_list_encoding2_json.md"),
    ],
)
def test_small_examples_encode_byte_for_byte(name: str, path: str) -> None:
    entry = _expectations()["lists"][name]
    status_list = StatusList(entry["size"], entry["bits"])
    for index, status in enumerate(entry["statuses"]):
        status_list.set(index, status)
    text = _example(path)
    printed = re.search(r"byte_array = \[([^\]]*)\]", text)
    assert printed is not None
    assert status_list.to_bytes() == bytes(int(b, 16) for b in printed.group(1).split(","))
    assert status_list.to_bytes().hex() == entry["byte_array_hex"]
    assert status_list.encode() == _json_from_md(text)


@pytest.mark.vectors
@pytest.mark.parametrize("name", ["1bit_long", "2bit_long", "4bit_long", "8bit_long"])
def test_long_examples_rebuilt_from_expectations_match_the_decoded_vector(name: str) -> None:
    entry = _expectations()["lists"][name]
    rebuilt = StatusList(entry["size"], entry["bits"])
    for index, status in entry["nonzero"].items():
        rebuilt.set(int(index), status)
    vector = StatusList.decode({"bits": entry["bits"], "lst": entry["json_lst_unwrapped"]})
    assert rebuilt == vector
    assert StatusList.decode(rebuilt.encode()) == vector


# --- the draft's example token --------------------------------------------------------------


@pytest.mark.vectors
def test_raw_example_token_verifies_with_kid_12_key_and_matches_pretty_form() -> None:
    token = _raw_token()
    assert token == _expectations()["tokens"]["status_list_jwt_raw"]["compact_jwt"]
    pretty = _example("examples/status_list_jwt.md")
    header_text, claims_text = pretty.split("\n.\n")
    pretty_header, pretty_claims = json.loads(header_text), json.loads(claims_text)
    iat = pretty_claims["iat"]

    verified = verify_status_list_token(
        token, key=_kid12_public(), expected_uri=pretty_claims["sub"], now=FixedClock(iat)
    )
    assert verified.uri == pretty_claims["sub"]
    assert (verified.iat, verified.exp, verified.ttl) == (
        pretty_claims["iat"],
        pretty_claims["exp"],
        pretty_claims["ttl"],
    )
    assert verified.status_list == StatusList.decode(pretty_claims["status_list"])
    assert verified.status_list.values() == _expected_values("1bit_16")

    jws = parse_jws(token)
    assert jws.header == pretty_header
    # The pretty form omits only the iss claim the signed token carries.
    raw_claims = jws.payload_json()
    assert raw_claims.pop("iss") == "https://example.com"
    assert raw_claims == pretty_claims

    # The draft's referenced-token example points at index 0 of this list: INVALID.
    reference = StatusReference(0, pretty_claims["sub"])
    assert status_of(verified, reference) is Status.INVALID


@pytest.mark.vectors
def test_raw_example_token_time_window_and_subject() -> None:
    token, key = _raw_token(), _kid12_public()
    claims = parse_jws(token).payload_json()
    sub, exp = claims["sub"], claims["exp"]
    verify_status_list_token(token, key=key, expected_uri=sub, now=FixedClock(exp + 59))
    with pytest.raises(VerificationError) as err:
        verify_status_list_token(token, key=key, expected_uri=sub, now=FixedClock(exp + 60))
    assert err.value.reason is ReasonCode.STATUS_LIST_EXPIRED
    with pytest.raises(VerificationError) as err:
        verify_status_list_token(
            token, key=key, expected_uri=sub + "0", now=FixedClock(claims["iat"])
        )
    assert err.value.reason is ReasonCode.STATUS_LIST_SUBJECT_MISMATCH
    with pytest.raises(VerificationError) as err:
        verify_status_list_token(
            token, key=key, expected_uri=sub, now=FixedClock(claims["iat"] - 61)
        )
    assert err.value.reason is ReasonCode.IAT_IN_FUTURE


@pytest.mark.vectors
def test_kid_12_private_key_signs_tokens_the_public_key_verifies() -> None:
    status_list = StatusList(16, 1)
    status_list.set(3, Status.INVALID)
    token = sign_status_list_token(
        status_list, subject_uri=URI, signer=_kid12_private(), kid="12", now=FixedClock(T0)
    )
    verified = verify_status_list_token(
        token, key=_kid12_public(), expected_uri=URI, now=FixedClock(T0)
    )
    assert verified.status_list == status_list


# --- sign / verify --------------------------------------------------------------------------


@pytest.mark.parametrize("signer", [ED, EC], ids=["EdDSA", "ES256"])
def test_sign_verify_round_trip(signer: PrivateKey) -> None:
    status_list = StatusList(1024, 2)
    status_list.set(5, Status.SUSPENDED)
    status_list.set(1023, Status.INVALID)
    token = sign_status_list_token(
        status_list,
        subject_uri=URI,
        signer=signer,
        kid="agency-key-1",
        now=FixedClock(T0),
        ttl=3600,
        lifetime=86400,
    )
    jws = parse_jws(token)
    assert jws.header == {"alg": signer.alg, "typ": "statuslist+jwt", "kid": "agency-key-1"}
    claims = jws.payload_json()
    assert claims == {
        "sub": URI,
        "iat": T0,
        "exp": T0 + 86400,
        "ttl": 3600,
        "status_list": status_list.encode(),
    }
    verified = verify_status_list_token(
        token, key=signer.public_key, expected_uri=URI, now=FixedClock(T0 + 100)
    )
    assert verified == VerifiedStatusList(status_list, URI, T0, T0 + 86400, 3600)
    assert status_of(verified, StatusReference(5, URI)) is Status.SUSPENDED
    assert status_of(verified, StatusReference(1023, URI)) is Status.INVALID
    assert status_of(verified, StatusReference(6, URI)) is Status.VALID


def test_token_without_exp_and_ttl() -> None:
    token = sign_status_list_token(
        StatusList(8, 1), subject_uri=URI, signer=ED, kid="k", now=FixedClock(T0)
    )
    claims = parse_jws(token).payload_json()
    assert "exp" not in claims
    assert "ttl" not in claims
    verified = verify_status_list_token(
        token, key=ED.public_key, expected_uri=URI, now=FixedClock(T0 + 10**9)
    )
    assert (verified.exp, verified.ttl) == (None, None)


def _token(claims: dict[str, Any], *, typ: str = "statuslist+jwt", signer: Any = ED) -> str:
    return sign_jwt({"typ": typ, "kid": "k"}, claims, signer)


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": URI,
        "iat": T0,
        "exp": T0 + 3600,
        "ttl": 300,
        "status_list": StatusList(16, 1).encode(),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not _DROP}


_DROP = object()


def _verify(token: Any, **kwargs: Any) -> VerifiedStatusList:
    options: dict[str, Any] = {"key": ED.public_key, "expected_uri": URI, "now": FixedClock(T0)}
    options.update(kwargs)
    return verify_status_list_token(token, **options)


def test_well_formed_helper_token_verifies() -> None:
    assert _verify(_token(_claims())).uri == URI


@pytest.mark.parametrize(
    ("token_kwargs", "verify_kwargs", "reason"),
    [
        ({"typ": "JWT"}, {}, ReasonCode.TYP_MISMATCH),
        ({"typ": "statuslist+cwt"}, {}, ReasonCode.TYP_MISMATCH),
        ({}, {"key": ED_OTHER.public_key}, ReasonCode.STATUS_LIST_SIGNATURE_INVALID),
        ({}, {"key": EC.public_key}, ReasonCode.ALG_KEY_MISMATCH),
        ({}, {"expected_uri": URI + "/"}, ReasonCode.STATUS_LIST_SUBJECT_MISMATCH),
        ({}, {"now": FixedClock(T0 + 3600 + 60)}, ReasonCode.STATUS_LIST_EXPIRED),
        ({}, {"now": FixedClock(T0 - 61)}, ReasonCode.IAT_IN_FUTURE),
    ],
)
def test_token_rejections(
    token_kwargs: dict[str, Any], verify_kwargs: dict[str, Any], reason: ReasonCode
) -> None:
    with pytest.raises(VerificationError) as err:
        _verify(_token(_claims(), **token_kwargs), **verify_kwargs)
    assert err.value.reason is reason


def test_tampered_lst_breaks_the_signature() -> None:
    token = _token(_claims())
    header, _, signature = token.split(".")
    revoked = StatusList(16, 1)
    revoked.set(0, Status.INVALID)
    forged_payload = b64url_encode(json_dumps(_claims(status_list=revoked.encode())).encode())
    with pytest.raises(VerificationError) as err:
        _verify(f"{header}.{forged_payload}.{signature}")
    assert err.value.reason is ReasonCode.STATUS_LIST_SIGNATURE_INVALID


def test_nbf_in_the_future_is_rejected() -> None:
    with pytest.raises(VerificationError) as err:
        _verify(_token(_claims(nbf=T0 + 61)))
    assert err.value.reason is ReasonCode.NOT_YET_VALID
    assert _verify(_token(_claims(nbf=T0 + 59))).iat == T0


@pytest.mark.parametrize(
    "overrides",
    [
        {"sub": _DROP},
        {"sub": 7},
        {"iat": _DROP},
        {"iat": 1.5},
        {"iat": True},
        {"iat": "1750000000"},
        {"iat": -1},
        {"exp": "soon"},
        {"exp": 1.0e10},
        {"nbf": False},
        {"ttl": 0},
        {"ttl": -5},
        {"ttl": True},
        {"ttl": 1.5},
        {"status_list": _DROP},
        {"status_list": "eNrbuRgAAhcBXQ"},
        {"status_list": {"bits": 3, "lst": "eNrbuRgAAhcBXQ"}},
        {"status_list": {"bits": 1, "lst": "eNrbuRgAAhcBXR"}},
    ],
    ids=repr,
)
def test_malformed_claims(overrides: dict[str, Any]) -> None:
    with pytest.raises(MalformedError) as err:
        _verify(_token(_claims(**overrides)))
    assert err.value.reason is ReasonCode.STATUS_LIST_MALFORMED


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "a.b.c.d",
        b"not-a-str",
        None,
        # A well-signed JWS whose payload is not a JSON object.
        sign_jws({"typ": "statuslist+jwt"}, b"[1,2]", ED),
        sign_jws({"typ": "statuslist+jwt"}, b'{"sub":"x","sub":"y"}', ED),
        sign_jws({"typ": "statuslist+jwt"}, b"\xff", ED),
    ],
    ids=repr,
)
def test_unparseable_tokens(token: Any) -> None:
    with pytest.raises(MalformedError) as err:
        _verify(token)
    assert err.value.reason is ReasonCode.STATUS_LIST_MALFORMED


def test_token_size_cap() -> None:
    with pytest.raises(MalformedError) as err:
        _verify("a" * (64 * 1024 + 1))
    assert err.value.reason is ReasonCode.STATUS_LIST_TOO_LARGE


def test_list_size_cap_applies_inside_tokens() -> None:
    token = _token(_claims(status_list=StatusList(1 << 16, 1).encode()))
    assert _verify(token, max_size_bytes=8192).status_list.size == 1 << 16
    with pytest.raises(MalformedError) as err:
        _verify(token, max_size_bytes=8191)
    assert err.value.reason is ReasonCode.STATUS_LIST_TOO_LARGE


def test_signing_refuses_bad_arguments() -> None:
    status_list = StatusList(8, 1)
    for kwargs in (
        {"subject_uri": "http://example.com/list"},
        {"subject_uri": ""},
        {"kid": ""},
        {"ttl": 0},
        {"lifetime": -1},
        {"ttl": True},
    ):
        options: dict[str, Any] = {"subject_uri": URI, "signer": ED, "kid": "k"}
        options.update(kwargs)
        with pytest.raises(UsageError):
            sign_status_list_token(status_list, now=FixedClock(T0), **options)


def test_signing_refuses_a_token_no_verifier_would_accept() -> None:
    incompressible = StatusList.from_bytes(random.Random(7).randbytes(60_000), 8)
    with pytest.raises(UsageError) as err:
        sign_status_list_token(
            incompressible, subject_uri=URI, signer=ED, kid="k", now=FixedClock(T0)
        )
    assert err.value.reason is ReasonCode.STATUS_LIST_TOO_LARGE


# --- StatusList decoding: strictness --------------------------------------------------------


def _lst(data: bytes) -> str:
    return b64url_encode(data)


def _decode_error(obj: Any, **kwargs: Any) -> ReasonCode:
    with pytest.raises(MalformedError) as err:
        StatusList.decode(obj, **kwargs)
    return err.value.reason


def test_zip_bomb_is_capped() -> None:
    bomb = zlib.compress(bytes(1 << 20), 9)
    assert len(bomb) < 2048
    reason = _decode_error({"bits": 1, "lst": _lst(bomb)}, max_size_bytes=1024)
    assert reason is ReasonCode.STATUS_LIST_TOO_LARGE


def test_zip_bomb_never_inflates_past_the_cap() -> None:
    compressor = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    bomb = b"".join(compressor.compress(chunk) for _ in range(64)) + compressor.flush()
    tracemalloc.start()
    try:
        with pytest.raises(MalformedError) as err:
            StatusList.from_compressed(bomb, 1, max_size_bytes=1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.reason is ReasonCode.STATUS_LIST_TOO_LARGE
    assert peak < 1 << 20  # the 64 MiB payload was never materialised


def test_cap_is_inclusive() -> None:
    data = zlib.compress(bytes(1024), 9)
    assert StatusList.decode({"bits": 2, "lst": _lst(data)}, max_size_bytes=1024).size == 4096
    reason = _decode_error({"bits": 2, "lst": _lst(data)}, max_size_bytes=1023)
    assert reason is ReasonCode.STATUS_LIST_TOO_LARGE


def test_default_cap_refuses_a_very_large_list() -> None:
    data = zlib.compress(bytes(4 * 1024 * 1024 + 1), 9)
    assert _decode_error({"bits": 8, "lst": _lst(data)}) is ReasonCode.STATUS_LIST_TOO_LARGE


def test_overlong_lst_is_refused_before_decoding() -> None:
    reason = _decode_error({"bits": 1, "lst": "A" * 4000}, max_size_bytes=1024)
    assert reason is ReasonCode.STATUS_LIST_TOO_LARGE


def test_nonpositive_cap_is_a_usage_error() -> None:
    data = _lst(zlib.compress(bytes(4)))
    for cap in (0, -1):
        with pytest.raises(UsageError):
            StatusList.decode({"bits": 1, "lst": data}, max_size_bytes=cap)


def _deflate(data: bytes, wbits: int, zdict: bytes | None = None) -> bytes:
    compressor = (
        zlib.compressobj(9, zlib.DEFLATED, wbits, zdict=zdict)
        if zdict is not None
        else zlib.compressobj(9, zlib.DEFLATED, wbits)
    )
    return compressor.compress(data) + compressor.flush()


GOOD = zlib.compress(b"\xb9\xa3", 9)


@pytest.mark.parametrize(
    "obj",
    [
        {"bits": 3, "lst": _lst(GOOD)},
        {"bits": 0, "lst": _lst(GOOD)},
        {"bits": 16, "lst": _lst(GOOD)},
        {"bits": True, "lst": _lst(GOOD)},
        {"bits": 1.0, "lst": _lst(GOOD)},
        {"bits": "1", "lst": _lst(GOOD)},
        {"lst": _lst(GOOD)},
        {"bits": 1},
        {"bits": 1, "lst": GOOD},
        {"bits": 1, "lst": None},
        {"bits": 1, "lst": _lst(GOOD), "aggregation_uri": 5},
        # Non-canonical base64url: the last character carries non-zero unused bits.
        {"bits": 1, "lst": "eNrbuRgAAhcBXR"},
        {"bits": 1, "lst": _lst(GOOD) + "="},
        {"bits": 1, "lst": "eNrbuRgAAhcBXQ=="},
        {"bits": 1, "lst": "eNrbuRgAAhcB+Q"},
        {"bits": 1, "lst": "eNrb uRgAAhcBXQ"},
        # Raw DEFLATE (no RFC 1950 header) and gzip framing are not ZLIB.
        {"bits": 1, "lst": _lst(_deflate(b"\xb9\xa3", -15))},
        {"bits": 1, "lst": _lst(_deflate(b"\xb9\xa3", 31))},
        # Trailing data after the ZLIB stream, a truncated stream, a bad Adler-32.
        {"bits": 1, "lst": _lst(GOOD + b"\x00")},
        {"bits": 1, "lst": _lst(GOOD + GOOD)},
        {"bits": 1, "lst": _lst(GOOD[:-1])},
        {"bits": 1, "lst": _lst(GOOD[:-4] + bytes(4))},
        {"bits": 1, "lst": _lst(GOOD[:2])},
        # A preset dictionary (FDICT) is not part of the format.
        {"bits": 1, "lst": _lst(_deflate(b"\xb9\xa3", 15, zdict=b"\xb9\xa3\xb9\xa3"))},
        # An empty byte array holds no status at all.
        {"bits": 1, "lst": _lst(zlib.compress(b"", 9))},
        {"bits": 1, "lst": ""},
        [1, "x"],
        "eNrbuRgAAhcBXQ",
        None,
    ],
    ids=repr,
)
def test_decode_rejects(obj: Any) -> None:
    assert _decode_error(obj) is ReasonCode.STATUS_LIST_MALFORMED


def test_decode_ignores_aggregation_uri_and_unknown_members() -> None:
    plain = StatusList.decode({"bits": 1, "lst": _lst(GOOD)})
    extended = StatusList.decode(
        {"bits": 1, "lst": _lst(GOOD), "aggregation_uri": "https://example.com/agg", "x": 1}
    )
    assert extended == plain
    assert plain.to_bytes() == b"\xb9\xa3"


def test_decode_accepts_smaller_windows_and_any_level() -> None:
    data = bytes(range(256)) * 8
    for wbits in (9, 12, 15):
        for level in (0, 1, 6, 9):
            compressor = zlib.compressobj(level, zlib.DEFLATED, wbits)
            lst = _lst(compressor.compress(data) + compressor.flush())
            assert StatusList.decode({"bits": 8, "lst": lst}).to_bytes() == data


def test_from_compressed_checks_its_arguments() -> None:
    with pytest.raises(MalformedError) as err:
        StatusList.from_compressed(GOOD, 3)
    assert err.value.reason is ReasonCode.STATUS_LIST_MALFORMED
    with pytest.raises(MalformedError) as err:
        StatusList.from_compressed("eNrbuRgAAhcBXQ", 1)  # type: ignore[arg-type]
    assert err.value.reason is ReasonCode.STATUS_LIST_MALFORMED


# --- StatusList: building and reading -------------------------------------------------------


def test_bit_order_matches_section_4_1() -> None:
    # Entry i sits at bit (i*bits) mod 8 of byte floor(i*bits/8), from the least significant bit.
    one = StatusList(16, 1)
    one.set(0, 1)
    one.set(9, 1)
    assert one.to_bytes() == b"\x01\x02"
    two = StatusList(8, 2)
    two.set(1, 3)
    two.set(6, 2)
    assert two.to_bytes() == bytes([0b0000_1100, 0b0010_0000])
    four = StatusList(4, 4)
    four.set(1, 0xC)
    four.set(2, 0x3)
    assert four.to_bytes() == b"\xc0\x03"
    eight = StatusList(2, 8)
    eight.set(1, 0xAB)
    assert eight.to_bytes() == b"\x00\xab"


def test_set_overwrites_only_its_own_bits() -> None:
    status_list = StatusList(4, 2)
    for index in range(4):
        status_list.set(index, 3)
    status_list.set(2, 1)
    assert [status_list.get(i) for i in range(4)] == [3, 3, 1, 3]
    status_list.set(2, 0)
    assert status_list.to_bytes() == bytes([0b1100_1111])


def test_size_and_capacity() -> None:
    status_list = StatusList(12, 1)
    assert len(status_list) == 12
    assert len(status_list.to_bytes()) == 2
    with pytest.raises(VerificationError) as err:
        status_list.get(12)
    assert err.value.reason is ReasonCode.STATUS_INDEX_OUT_OF_RANGE
    # A decoded list cannot know the issuer's count: it spans the whole byte array.
    decoded = StatusList.decode(status_list.encode())
    assert decoded.size == 16
    assert decoded.get(15) == 0


@pytest.mark.parametrize("index", [-1, 16, 10**30, True, 1.0, "0", None])
def test_get_out_of_range(index: Any) -> None:
    with pytest.raises(VerificationError) as err:
        StatusList(16, 1).get(index)
    assert err.value.reason is ReasonCode.STATUS_INDEX_OUT_OF_RANGE


@pytest.mark.parametrize(
    ("bits", "index", "status"),
    [
        *[(1, 0, 2), (2, 0, 4), (4, 0, 16), (8, 0, 256), (2, 0, -1), (2, 0, True), (2, 0, 1.0)],
        *[(2, 16, 1), (2, -1, 1), (2, False, 1)],
    ],
)
def test_set_refuses_values_and_indices_that_do_not_fit(bits: int, index: Any, status: Any) -> None:
    with pytest.raises(UsageError):
        StatusList(16, bits).set(index, status)


@pytest.mark.parametrize(("size", "bits"), [(0, 1), (-8, 1), (8, 3), (8, 0), (8, True), (1.5, 1)])
def test_constructor_refuses_bad_shapes(size: Any, bits: Any) -> None:
    with pytest.raises(UsageError):
        StatusList(size, bits)


def test_repr_is_short() -> None:
    assert repr(StatusList(1 << 20, 2)) == "StatusList(size=1048576, bits=2)"


def test_encode_is_deterministic() -> None:
    rng = random.Random(3)
    indices = rng.sample(range(1 << 17), 5000)
    forward, backward = StatusList(1 << 17, 2), StatusList(1 << 17, 2)
    for index in indices:
        forward.set(index, 1 + index % 2)
    for index in reversed(indices):
        backward.set(index, 1 + index % 2)
    assert forward.encode() == forward.encode() == backward.encode()
    assert forward.compressed() == backward.compressed()


def test_herd_privacy_sized_list_round_trips() -> None:
    # 2^17 entries of 2 bits, as the issuer keeps them. Encoding speed is measured by
    # `make bench` (bench/results/statuslist.json), not here.
    status_list = StatusList(1 << 17, 2)
    rng = random.Random(11)
    for index in rng.sample(range(1 << 17), (1 << 17) // 10):
        status_list.set(index, rng.choice((1, 2)))
    encoded = status_list.encode()
    assert StatusList.decode(encoded) == status_list


# --- Referenced Token status claim ----------------------------------------------------------


def test_status_claim_round_trip_and_spec_example() -> None:
    reference = StatusReference(0, "https://example.com/statuslists/1")
    claim = reference.to_claim()
    assert claim == {"status_list": {"idx": 0, "uri": "https://example.com/statuslists/1"}}
    assert parse_status_claim(claim) == reference
    assert parse_status_claim(json.loads(json.dumps(claim))) == reference


def test_status_claim_ignores_other_members() -> None:
    claim = {
        "status_list": {"idx": 42, "uri": URI, "extra": True},
        "other_mechanism": {"x": 1},
    }
    assert parse_status_claim(claim) == StatusReference(42, URI)


def test_http_loopback_only_when_asked() -> None:
    for uri in ("http://127.0.0.1:8080/status/1", "http://localhost/s", "http://[::1]:9/s"):
        claim = {"status_list": {"idx": 1, "uri": uri}}
        with pytest.raises(MalformedError) as err:
            parse_status_claim(claim)
        assert err.value.reason is ReasonCode.STATUS_CLAIM_MALFORMED
        assert parse_status_claim(claim, unsafe_allow_http_loopback=True).uri == uri
    with pytest.raises(MalformedError):
        parse_status_claim(
            {"status_list": {"idx": 1, "uri": "http://example.com/s"}},
            unsafe_allow_http_loopback=True,
        )


@pytest.mark.parametrize(
    "claim",
    [
        None,
        [],
        {},
        {"status_list": None},
        {"status_list": [0, URI]},
        {"status_list": {"uri": URI}},
        {"status_list": {"idx": 0}},
        {"status_list": {"idx": -1, "uri": URI}},
        {"status_list": {"idx": True, "uri": URI}},
        {"status_list": {"idx": 0.0, "uri": URI}},
        {"status_list": {"idx": "0", "uri": URI}},
        {"status_list": {"idx": 0, "uri": 5}},
        {"status_list": {"idx": 0, "uri": ""}},
        {"status_list": {"idx": 0, "uri": "example.com/statuslists/1"}},
        {"status_list": {"idx": 0, "uri": "http://example.com/statuslists/1"}},
        {"status_list": {"idx": 0, "uri": "HTTPS://example.com/statuslists/1"}},
        {"status_list": {"idx": 0, "uri": "ftp://example.com/statuslists/1"}},
        {"status_list": {"idx": 0, "uri": "https:///statuslists/1"}},
        {"status_list": {"idx": 0, "uri": "https://user:pw@example.com/statuslists/1"}},
        {"status_list": {"idx": 0, "uri": "https://example.com/statuslists/1#frag"}},
        {"status_list": {"idx": 0, "uri": "https://example.com/status lists/1"}},
        {"status_list": {"idx": 0, "uri": "https://example.com/상태/1"}},
        {"status_list": {"idx": 0, "uri": "https://example.com:99999/s"}},
        {"status_list": {"idx": 0, "uri": "https://[::1/s"}},
        {"status_list": {"idx": 0, "uri": "https://example.com/" + "a" * 2048}},
    ],
    ids=repr,
)
def test_status_claim_rejects(claim: Any) -> None:
    with pytest.raises(MalformedError) as err:
        parse_status_claim(claim)
    assert err.value.reason is ReasonCode.STATUS_CLAIM_MALFORMED


@pytest.mark.parametrize(("index", "uri"), [(-1, URI), (True, URI), (0, "http://x.org/s")])
def test_status_reference_refuses_bad_values(index: Any, uri: Any) -> None:
    with pytest.raises(UsageError):
        StatusReference(index, uri)


# --- status_of ------------------------------------------------------------------------------


def _verified(status_list: StatusList) -> VerifiedStatusList:
    return VerifiedStatusList(status_list, URI, T0, None, None)


def test_status_of_maps_every_4_bit_value() -> None:
    status_list = StatusList(16, 4)
    for value in range(16):
        status_list.set(value, value)
    verified = _verified(status_list)
    expected = {0: Status.VALID, 1: Status.INVALID, 2: Status.SUSPENDED}
    expected |= dict.fromkeys((3, 0x0C, 0x0D, 0x0E, 0x0F), Status.APPLICATION_SPECIFIC)
    for value in range(16):
        reference = StatusReference(value, URI)
        if value in expected:
            assert status_of(verified, reference) is expected[value]
        else:
            with pytest.raises(VerificationError) as err:
                status_of(verified, reference)
            assert err.value.reason is ReasonCode.STATUS_VALUE_UNKNOWN


def test_status_of_checks_uri_and_index() -> None:
    verified = _verified(StatusList(16, 2))
    with pytest.raises(VerificationError) as err:
        status_of(verified, StatusReference(0, URI + "x"))
    assert err.value.reason is ReasonCode.STATUS_LIST_SUBJECT_MISMATCH
    with pytest.raises(VerificationError) as err:
        status_of(verified, StatusReference(16, URI))
    assert err.value.reason is ReasonCode.STATUS_INDEX_OUT_OF_RANGE


# --- properties -----------------------------------------------------------------------------

bits_strategy = st.sampled_from([1, 2, 4, 8])


@st.composite
def lists_with_writes(draw: st.DrawFn) -> tuple[int, int, list[tuple[int, int]]]:
    bits = draw(bits_strategy)
    size = draw(st.integers(min_value=1, max_value=3000))
    writes = draw(
        st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=size - 1),
                st.integers(min_value=0, max_value=(1 << bits) - 1),
            ),
            max_size=200,
        )
    )
    return bits, size, writes


@given(lists_with_writes())
def test_set_get_matches_a_plain_list(case: tuple[int, int, list[tuple[int, int]]]) -> None:
    bits, size, writes = case
    status_list, model = StatusList(size, bits), [0] * size
    for index, value in writes:
        status_list.set(index, value)
        model[index] = value
    assert [status_list.get(i) for i in range(size)] == model
    assert list(status_list.values()) == model


@given(lists_with_writes())
def test_encode_decode_round_trip(case: tuple[int, int, list[tuple[int, int]]]) -> None:
    bits, size, writes = case
    status_list = StatusList(size, bits)
    for index, value in writes:
        status_list.set(index, value)
    decoded = StatusList.decode(json.loads(json.dumps(status_list.encode())))
    assert decoded.bits == bits
    assert decoded.to_bytes() == status_list.to_bytes()
    assert decoded.size == len(status_list.to_bytes()) * 8 // bits >= size
    values = decoded.values()
    assert values[:size] == status_list.values()
    assert not any(values[size:])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
lst_values = (
    st.text(max_size=60)
    | st.binary(max_size=40).map(b64url_encode)
    | st.binary(max_size=200).map(lambda b: b64url_encode(zlib.compress(b)))
    | st.binary(max_size=200).map(lambda b: b64url_encode(zlib.compress(b)[:-1]))
)


@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {"bits": st.sampled_from([1, 2, 3, 4, 8, True, 1.0, "1"]) | json_values},
            optional={"lst": lst_values | json_values, "aggregation_uri": json_values},
        ),
    )
)
def test_decode_only_raises_civic_errors(obj: Any) -> None:
    try:
        decoded = StatusList.decode(obj, max_size_bytes=150)
    except CivicError as exc:
        assert isinstance(exc, MalformedError)
    else:
        assert decoded.bits in (1, 2, 4, 8)
        assert 0 < len(decoded.to_bytes()) <= 150


@given(json_values)
def test_parse_status_claim_only_raises_civic_errors(obj: Any) -> None:
    for claim in (obj, {"status_list": obj}, {"status_list": {"idx": obj, "uri": obj}}):
        try:
            parse_status_claim(claim)
        except CivicError as exc:
            assert exc.reason is ReasonCode.STATUS_CLAIM_MALFORMED
