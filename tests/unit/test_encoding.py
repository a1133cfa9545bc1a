"""Strict base64 and JSON: every malformed input gets a CivicError with its reason code.

The decoder tests run twice: on the pure-Python references and on the C accelerator
civic._speedups (tests/speedups.py), which must behave the same.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

import civic.encoding
from civic.encoding import b64std_decode, b64std_encode, b64url_encode, json_dumps
from civic.errors import CivicError, MalformedError, ReasonCode
from tests.speedups import IMPLEMENTATIONS, bound


@pytest.fixture(scope="module", params=IMPLEMENTATIONS)
def encoding(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """civic.encoding with b64url_decode and json_loads bound to one implementation."""
    with bound(request.param):
        yield civic.encoding


@given(st.binary(max_size=200))
def test_b64url_round_trip_and_matches_stdlib(encoding: ModuleType, data: bytes) -> None:
    text = b64url_encode(data)
    assert "=" not in text
    assert text == base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert encoding.b64url_decode(text) == data


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("QQ==", "padding is not allowed in JOSE"),
        ("QR", "non-zero unused bits: decodes like 'QQ'"),
        ("QUJ", "non-zero unused bits: decodes like 'QUI'"),
        ("Q", "impossible length"),
        ("a+b/", "standard alphabet"),
        ("ab cd", "whitespace"),
        ("äb", "non-ASCII"),
    ],
)
def test_b64url_rejects_non_canonical(encoding: ModuleType, text: str, why: str) -> None:
    with pytest.raises(MalformedError) as info:
        encoding.b64url_decode(text)
    assert info.value.reason is ReasonCode.MALFORMED_BASE64, why


@given(st.text(max_size=40))
def test_b64url_decode_only_raises_civic_errors(encoding: ModuleType, text: str) -> None:
    try:
        decoded = encoding.b64url_decode(text)
    except CivicError as exc:
        assert exc.reason is ReasonCode.MALFORMED_BASE64
    else:
        assert b64url_encode(decoded) == text  # whatever decodes is canonical


@given(st.binary(max_size=100))
def test_b64std_round_trip(data: bytes) -> None:
    assert b64std_decode(b64std_encode(data)) == data


@pytest.mark.parametrize("text", ["QR==", "QQ", "QQ=", "Q Q==", "QQ==\n", "-_=="])
def test_b64std_rejects_non_canonical(text: str) -> None:
    with pytest.raises(MalformedError):
        b64std_decode(text)


def test_json_rejects_duplicate_members_at_any_depth(encoding: ModuleType) -> None:
    with pytest.raises(MalformedError) as info:
        encoding.json_loads('{"a":1,"a":2}')
    assert info.value.reason is ReasonCode.DUPLICATE_JSON_MEMBER
    with pytest.raises(MalformedError) as info:
        encoding.json_loads('{"x":[{"b":1,"b":1}]}')
    assert info.value.reason is ReasonCode.DUPLICATE_JSON_MEMBER


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("NaN", ReasonCode.MALFORMED_JSON),
        ('{"a": Infinity}', ReasonCode.MALFORMED_JSON),
        ("{", ReasonCode.MALFORMED_JSON),
        (b"\xff\xfe", ReasonCode.MALFORMED_UTF8),
        ("[" * 100 + "]" * 100, ReasonCode.NESTING_TOO_DEEP),
        ("[" * 100_000, ReasonCode.NESTING_TOO_DEEP),
        ("1" * 5000, ReasonCode.NUMBER_OUT_OF_RANGE),
        ("1e400", ReasonCode.NUMBER_OUT_OF_RANGE),
        ('{"exp": -1.5e999}', ReasonCode.NUMBER_OUT_OF_RANGE),
        ('"\\ud800"', ReasonCode.MALFORMED_UTF8),
        ('{"\\uDC00": 1}', ReasonCode.MALFORMED_UTF8),
        ('["ok", {"kid": "x\\udbff"}]', ReasonCode.MALFORMED_UTF8),
        ('["\ud800"]', ReasonCode.MALFORMED_UTF8),
    ],
)
def test_json_rejections_carry_reason(
    encoding: ModuleType, data: str | bytes, reason: ReasonCode
) -> None:
    with pytest.raises(MalformedError) as info:
        encoding.json_loads(data)
    assert info.value.reason is reason


def test_json_keeps_surrogate_pairs_and_tiny_floats(encoding: ModuleType) -> None:
    assert encoding.json_loads('["\\ud83d\\ude00", "\\\\ud800", 1e-400]') == [
        "\U0001f600",
        "\\ud800",
        0.0,
    ]


def test_json_object_required(encoding: ModuleType) -> None:
    with pytest.raises(MalformedError) as info:
        encoding.json_loads_object("[1]", what="header")
    assert "header" in info.value.detail


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )
)
def test_json_round_trip_matches_stdlib(encoding: ModuleType, value: object) -> None:
    assert encoding.json_loads(json_dumps(value)) == json.loads(json_dumps(value))


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_json_dumps_refuses_what_no_strict_parser_reads(number: float) -> None:
    for dumps in (json_dumps, civic.encoding.json_dumps_canonical):
        with pytest.raises(CivicError) as info:
            dumps({"dose": [1, number]})
        assert info.value.reason is ReasonCode.NUMBER_OUT_OF_RANGE
    with pytest.raises(ValueError, match="Circular"):  # other encoder errors stay what they are
        cycle: list[object] = []
        cycle.append(cycle)
        json_dumps(cycle)
