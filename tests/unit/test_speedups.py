"""The C accelerator civic._speedups gives what its pure-Python references give, for any input.

Each check runs one input through the reference (``civic.encoding.b64url_decode_py``,
``civic.encoding.json_loads_py``, ``civic.sdjwt.parse_disclosures_py`` with the pure decoders
bound under it, ``civic.sdjwt.resolve_disclosures_py``) and through the C version, from the same
stack depth, and compares the outcomes: the same value with the same types all the way down
(``True`` is not ``1``, ``1`` is not ``1.0``, ``-0.0`` is not ``0.0``, member order counts), or
the same exception class with the same reason code and detail. The inputs are JSON texts
(RFC 8259) written in many ways and then broken byte by byte, base64url strings (RFC 7515
section 2) of every length and tail, SD-JWT disclosures (RFC 9901 section 4.2) of every shape,
with those of issued credentials, and issued payloads with their disclosures, then tampered
with, for the disclosure resolver (RFC 9901 section 7.1 step 3).

Skipped where the extension is not loaded, except with ``CIVIC_REQUIRE_SPEEDUPS=1`` (CI), where
every test here fails saying it was not built.
"""

from __future__ import annotations

import json
import os
import random
import reprlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import civic.encoding
import civic.sdjwt
from civic.clock import FixedClock
from civic.encoding import (
    MAX_JSON_DEPTH,
    b64url_decode_py,
    b64url_encode,
    json_loads_py,
    speedups,
)
from civic.errors import CivicError, MalformedError, ReasonCode
from civic.jose import PrivateKey
from civic.sdjwt import (
    MAX_CLAIM_DEPTH,
    SD,
    Disclosure,
    disclosure_digest,
    issue_sd_jwt,
    parse_disclosures_py,
    parse_sd_jwt,
    resolve_disclosures_py,
)
from civic.sdjwtvc import issue_credential
from tests.speedups import NOT_LOADED, REQUIRED, bound, loaded_speedups
from tests.vectors import load_json

if speedups is None and not REQUIRED:
    pytest.skip(
        f"{NOT_LOADED}; the pure-Python decoders serve, and tests/unit/test_encoding.py covers "
        "them (set CIVIC_REQUIRE_SPEEDUPS=1 to make this a failure)",
        allow_module_level=True,
    )

C: Any = speedups
REPO = Path(__file__).resolve().parents[2]
PROPERTY = settings(max_examples=300, deadline=None)
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture(autouse=True, scope="module")
def _speedups_loaded() -> None:
    loaded_speedups()  # fails every test here where CIVIC_REQUIRE_SPEEDUPS=1 and it is absent


# --- outcomes --------------------------------------------------------------------------------

Outcome = tuple[Any, ...]


def shape(value: Any) -> tuple[Any, ...]:
    """A value flattened in pre-order, compared without recursion (resolved values nest deep):
    each container as its class and size, each scalar (member names too) as its class and repr,
    so that True is not 1, 1 is not 1.0, -0.0 is not 0.0 and member order counts."""
    tokens: list[Any] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            tokens.append((type(node), len(node)))
            for key, child in reversed(node.items()):
                stack += (child, key)
        elif isinstance(node, list | tuple):
            tokens.append((type(node), len(node)))
            stack.extend(reversed(node))
        else:
            tokens.append((type(node), repr(node)))
    return tuple(tokens)


class Shown:
    """A value carried for failure messages only: outcomes compare by :func:`shape`."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Shown)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return _short(self.value)


def assert_no_differences(differences: list[tuple[int, str]]) -> None:
    """Fail with the five shortest inputs (by length) on which the two versions differ."""
    differences.sort()
    assert not differences, f"{len(differences)} differ; the shortest:\n" + "\n".join(
        d for _, d in differences[:5]
    )


def outcome(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Outcome:
    try:
        value = function(*args, **kwargs)
    except CivicError as exc:
        return ("err", type(exc), exc.reason, exc.detail)
    except Exception as exc:  # not a CivicError: its class (messages are the runtime's own)
        return ("raised", type(exc))
    return ("ok", Shown(value), shape(value))


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 8, 300, 300, 12, 12


def _short(value: Any, limit: int = 300) -> str:
    text = _REPR.repr(value)  # bounded depth: a resolved value may nest hundreds of levels
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def _show(result: Outcome) -> str:
    return f"ok {result[1]!r}" if result[0] == "ok" else repr(result[1:])


def json_difference(data: str | bytes, **kwargs: Any) -> str | None:
    expected = outcome(json_loads_py, data, **kwargs)
    actual = outcome(C.json_loads, data, **kwargs)
    if actual == expected:
        return None
    arguments = "".join(f", {name}={value!r}" for name, value in kwargs.items())
    return f"json_loads({_short(data)}{arguments}): pure {_show(expected)} / C {_show(actual)}"


def b64url_difference(data: str | bytes) -> str | None:
    expected = outcome(b64url_decode_py, data)
    actual = outcome(C.b64url_decode, data)
    if actual == expected:
        return None
    return f"b64url_decode({_short(data)}): pure {_show(expected)} / C {_show(actual)}"


def disclosures_difference(parts: list[str]) -> str | None:
    # The reference runs on the pure decoders: in civic.sdjwt they are bound to the C ones.
    with bound("pure"):
        expected = outcome(parse_disclosures_py, parts)
    actual = outcome(C.parse_disclosures, parts)
    if actual == expected:
        return None
    return f"parse_disclosures({_short(parts)}): pure {_show(expected)} / C {_show(actual)}"


def test_outcomes_tell_apart_what_equality_conflates() -> None:
    # 1 == True == 1.0, -0.0 == 0.0, and dicts compare without order: outcomes do not.
    def same(a: Any, b: Any) -> bool:
        return outcome(lambda: a) == outcome(lambda: b)

    assert not same(1, True)
    assert not same(1, 1.0)
    assert not same(0.0, -0.0)
    assert not same([1], [True])
    assert not same({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert not same({"a": [{"b": 1}]}, {"a": [{"b": 1.0}]})
    assert same({"a": [{"b": 1}]}, {"a": [{"b": 1}]})
    assert outcome(json_loads_py, "[") != outcome(json_loads_py, "NaN")  # same reason, details


def assert_same_json(data: str | bytes, **kwargs: Any) -> None:
    difference = json_difference(data, **kwargs)
    assert difference is None, difference


def assert_same_json_forms(text: str, **kwargs: Any) -> None:
    """The text as str, and as its UTF-8 bytes (encoded surrogates where it holds any)."""
    assert_same_json(text, **kwargs)
    assert_same_json(text.encode("utf-8", "surrogatepass"), **kwargs)


def assert_same_b64url(data: str | bytes) -> None:
    difference = b64url_difference(data)
    assert difference is None, difference


def assert_same_disclosures(parts: list[str]) -> None:
    difference = disclosures_difference(parts)
    assert difference is None, difference


# --- writing JSON in many ways ---------------------------------------------------------------

JSON_WHITESPACE = " \t\n\r"
SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "/": "\\/",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def _u_escape(code: int, r: random.Random) -> str:
    return "\\u" + "".join(c.upper() if r.random() < 0.3 else c for c in f"{code:04x}")


def _escape(char: str, r: random.Random) -> str:
    short = SHORT_ESCAPES.get(char)
    if short is not None and r.random() < 0.6:
        return short
    code = ord(char)
    if code > 0xFFFF:  # a surrogate pair of escapes
        code -= 0x10000
        return _u_escape(0xD800 | code >> 10, r) + _u_escape(0xDC00 | code & 0x3FF, r)
    return _u_escape(code, r)


def _write_string(text: str, r: random.Random, ensure_ascii: bool) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        must = char in '"\\' or code < 0x20 or (ensure_ascii and code > 0x7E)
        out.append(_escape(char, r) if must or r.random() < 0.1 else char)
    out.append('"')
    return "".join(out)


def _write_number(value: int | float, r: random.Random) -> str:
    if isinstance(value, int):
        return "-0" if value == 0 and r.random() < 0.2 else str(value)
    form = r.choice(("{!r}", "{:e}", "{:E}", "{:.17g}", "{:.3e}"))
    return form.format(value)


def write_json(value: Any, r: random.Random, *, ensure_ascii: bool = False) -> str:
    """JSON text for a value, with random whitespace, escapes and number forms (some number
    forms round past the largest double: those texts are refused as out of range)."""

    def ws() -> str:
        return "".join(r.choice(JSON_WHITESPACE) for _ in range(r.choice((0, 0, 0, 1, 2))))

    def write(node: Any) -> str:
        if node is None:
            return "null"
        if node is True:
            return "true"
        if node is False:
            return "false"
        if isinstance(node, int | float):
            return _write_number(node, r)
        if isinstance(node, str):
            return _write_string(node, r, ensure_ascii)
        if isinstance(node, list):
            items = f"{ws()},{ws()}".join(write(item) for item in node)
            return f"[{ws()}{items}{ws()}]"
        members = f"{ws()},{ws()}".join(
            f"{_write_string(k, r, ensure_ascii)}{ws()}:{ws()}{write(v)}" for k, v in node.items()
        )
        return f"{{{ws()}{members}{ws()}}}"

    return ws() + write(value) + ws()


# --- breaking it -------------------------------------------------------------------------------

ASCII_POOL = '{}[]",:\\/ \t\n\r0123456789.eE+-abcdefABCDEFuntrlsINfiy_'
BYTE_POOL = (
    ASCII_POOL.encode("ascii")
    + bytes([0x00, 0x0B, 0x1F, 0x7F, 0x80, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xE0, 0xED, 0xEF])
    + bytes([0xF0, 0xF4, 0xF5, 0xFF])
)
SNIPPETS = [
    b"\\ud800",
    b"\\udc00",
    b"\\uDBFF\\uDFFF",
    b"\\ud83d\\ude00",
    b"\\ud83d\\u0041",
    b"\\ud83d\\ud83d",
    b"\\ud83d",
    b"\\u00e9",
    b"\\u0000",
    b"\\u12",
    b"\\x",
    b"\\",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"-0",
    b"01",
    b"1.",
    b".5",
    b"--1",
    b"1E+2",
    b'"a":1,"a":2,',
    b'"a":',
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xc0\xaf",
    b"\xe2\x82",
    b"\xf0\x9f\x98",
    b"\xef\xbb\xbf",
    b"[" * 70,
    b"]" * 70,
    b'{"a":' * 70,
    b"true",
    b"false",
    b"null",
    b"nul",
    b"9" * 30,
    b"1" * 4301,
]
CHAR_POOL = [
    *ASCII_POOL,
    "\x00",
    "\x1f",
    "\x7f",
    "\xa0",
    "\xe9",
    "\ud55c",
    "\u2028",
    "\ufeff",
    "\U0001f600",
    "\ud800",
    "\udbff",
    "\udc00",
    "\udfff",
    "\ud83d",
    "\ude00",
]


def mutate_bytes(data: bytes, r: random.Random) -> bytes:
    """One to four byte-level edits: insert, delete, replace, truncate, splice, duplicate."""
    for _ in range(r.randint(1, 4)):
        i = r.randint(0, len(data))
        j = r.randint(i, min(len(data), i + 8))
        op = r.randrange(7)
        if op == 0:
            data = data[:i] + bytes([r.choice(BYTE_POOL)]) + data[i:]
        elif op == 1:
            data = data[:i] + data[i + 1 :]
        elif op == 2:
            data = data[:i] + bytes([r.choice(BYTE_POOL)]) + data[i + 1 :]
        elif op == 3:
            data = data[:i]
        elif op == 4:
            data = data[:i] + r.choice(SNIPPETS) + data[i:]
        elif op == 5:
            data = data[:i] + r.choice(SNIPPETS) + data[j:]
        else:
            data = data[:j] + data[i:j] + data[j:]
    return data


def mutate_text(text: str, r: random.Random, pool: list[str] | str = CHAR_POOL) -> str:
    """One to four character-level edits, with raw surrogates and astral characters."""
    for _ in range(r.randint(1, 4)):
        i = r.randint(0, len(text))
        op = r.randrange(4)
        if op == 0:
            text = text[:i] + r.choice(pool) + text[i:]
        elif op == 1:
            text = text[:i] + text[i + 1 :]
        elif op == 2:
            text = text[:i] + r.choice(pool) + text[i + 1 :]
        else:
            text = text[:i]
    return text


# --- JSON: listed inputs ---------------------------------------------------------------------

JSON_CASES: list[str | bytes] = [
    # empty, whitespace, literals
    "",
    " ",
    " \t\n\r",
    "null",
    "true",
    "false",
    " \t\n\rtrue\r\n\t ",
    "nul",
    "tru",
    "fals",
    "nulll",
    "True",
    "None",
    "NaN",
    "Infinity",
    "-Infinity",
    "[NaN]",
    '{"a": Infinity}',
    "[-Infinity]",
    "-Inf",
    "-NaN",
    "NaNa",
    "Infinity1",
    "[1, NaN",
    "[NaN, 1e400]",
    "[1e400, NaN]",
    '{"a":1,"a":NaN}',
    # numbers
    "0",
    "-0",
    "0.0",
    "-0.0",
    "1e400",
    "-1e400",
    "1e-400",
    "-1e-400",
    "1E+2",
    "1e+2",
    "1E-2",
    "1.5e3",
    "01",
    "-01",
    "00",
    "1.",
    "1.e5",
    ".5",
    "-",
    "--1",
    "+1",
    "-.5",
    "1e",
    "1e+",
    "1E-",
    "1ee5",
    "1.5.5",
    "0x10",
    "1_000",
    "\u0661",
    "123456789012345678",
    "1234567890123456789",
    "-12345678901234567",
    "-123456789012345678",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "1" * 4300,
    "1" * 4301,
    "-" + "1" * 4300,
    "-" + "1" * 4301,
    "[" + "1" * 4301 + "]",
    "[" + "1" * 4301 + ", NaN]",
    "0." + "1" * 5000,
    "1e" + "9" * 30,
    "1e-" + "9" * 30,
    "0e999999",
    "1.7976931348623157e308",
    "1.7976931348623159e308",
    "-1.7976931348623159e308",
    "4.9e-324",
    "2e-324",
    "[1, 1.0, true, 1e0, 10E-1, -0, -0.0, 0e0, 0E-0]",
    # strings and escapes
    '"\\"\\\\\\/\\b\\f\\n\\r\\t"',
    '"\\u0041\\u00e9\\u00E9\\uD55C\\u2028"',
    '"\\u0000"',
    '"\\x41"',
    '"\\a"',
    '"\\U0041"',
    '"\\u12"',
    '"\\u12G4"',
    '"\\u"',
    '"\\',
    '"abc',
    '"\\u0041',
    '"\\u0041"',
    '"\\ud83d\\ude00"',
    '"\\uD83D\\uDE00"',
    '"\\ud800"',
    '"\\udc00"',
    '"\\udbff\\udfff"',
    '"\\ud800\\u0041"',
    '"\\ud800\\ud800"',
    '"\\ud800\\udc00\\udc00"',
    '"\\ud800\\"',
    '"\\ud800\\u',
    '"\\ud800\\u12"',
    '"\\ud800\\uZZZZ"',
    '"\\ud800\\uZZZZ',
    '"\\ud800\\x"',
    '"\\ud800\\n"',
    '"\\ud800\\udc0"',
    '"\\ud800\\udc00',
    '"\\ud800"x',
    '["\\ud800", NaN]',
    '["\\ud800" 1]',
    '["\\ud800"] x',
    '["\\ud800", 1e400]',
    '"\\\\ud800"',
    '"\\\\\\ud800"',
    '{"\\udc00": 1}',
    '["ok", {"kid": "x\\udbff"}]',
    # raw surrogates in str input
    '"\ud800"',
    '"\udc00"',
    '"\ud83d\ude00"',
    "\ud800",
    '["\ud800", 1e400]',
    '{"\udc00": 1}',
    '"\\ud83d\ude00"',
    '"\ud83d\\ude00"',
    '"\ud800\\n"',
    '"a\ud800',
    # control and other characters in strings
    '"\x00"',
    '"\x1f"',
    '"\x7f"',
    '"\t"',
    '"a\nb"',
    '"\u2028\u2029"',
    '"\ufeff"',
    '"\U0001f600"',
    '"\xe9\ud55c"',
    # UTF-8: invalid and valid
    b'"\xc0\x80"',
    b'"\xc0\xaf"',
    b'"\xe0\x80\xaf"',
    b'"\xed\xa0\x80"',
    b'"\xed\xbf\xbf"',
    b'"\xed\xa0\xbd\xed\xb8\x80"',
    b'"\xf4\x90\x80\x80"',
    b'"\xf5\x80\x80\x80"',
    b'"\xf8\x88\x80\x80\x80"',
    b'"\xe2\x82"',
    b'"\xe2\x82',
    b'"\xf0\x9f\x98"',
    b'"\x80"',
    b"\xff",
    b"\xfe\xff",
    b"\xef\xbb\xbf{}",
    b"[1] \xff",
    b"\xed\xa0\x80",
    b'"\xc3\xa9"',
    b'"\xf0\x9f\x98\x80"',
    b'"\xea\xb0\x80"',
    b'"\xf4\x8f\xbf\xbf"',
    # duplicate member names
    '{"a":1,"a":2}',
    '{"a":1,"b":2,"a":3}',
    '{"a":1, "a":2, "a":3}',
    '{"":1,"":2}',
    '{"a":{"b":1,"b":2}}',
    '{"x":[{"b":1,"b":1}]}',
    '{"a":{"b":1,"b":2},"a":1}',
    '{"a":1,"\\u0061":2}',
    '{"\\ud83d\\ude00":1,"\U0001f600":2}',
    '{"a":1,"a":2,}',
    '{"a":1,"a":2 "b":3}',
    '{"a":1,"a":2',
    '{"a":1,"a":2,"b":}',
    '{"a":1,"a":2,"b":NaN}',
    '{"a":1,"a":2,"b":1e400}',
    '{"a":1,"a":[1,]}',
    '{"a":1,"a":2}}',
    '{"a":1,"a":2} x',
    '{"a":1,"a":2} ',
    '{"a":1,"a":2}\n\t',
    '[{"a":1,"a":2}, NaN]',
    '[{"a":1,"a":2}] x',
    '{"a":"\\ud800","a":1}',
    '{"a":1,"a":"\\ud800"}',
    '{"\\ud800":1,"\\ud800":2}',
    '[{"a":1,"a":2}, "\\ud800"]',
    '["\\ud800", {"a":1,"a":2}]',
    '{"a":[1,2,],"a":1}',
    '{"a":NaN,"a":1}',
    # trailing data
    "1 ",
    "1\t\n\r ",
    "1 2",
    "[] []",
    "{}x",
    '"a""b"',
    "1,",
    "[1]]",
    "{}}",
    "null\x00",
    "1 \x0b",
    "1\x0c",
    "1\xa0",
    "\ufeff1",
    "\x0c1",
    "1 \ud800",
    # structure
    "[",
    "]",
    "{",
    "}",
    "[1,]",
    "[,1]",
    "[1 2]",
    "[1,,2]",
    '{"a"}',
    '{"a":}',
    '{"a" 1}',
    "{a:1}",
    "{'a':1}",
    '{"a":1,}',
    "{,}",
    '{"a":1 "b":2}',
    "[]",
    "{}",
    "[ ]",
    "{ }",
    "[\t\n\r]",
    "[[]]",
    '{"":{}}',
    '{"a":[{"b":[null,true,false]}]}',
    "[1,[2,[3,[4]]]]",
    "[1,\n2 ,\t3]",
    '{"b":1,"a":2,"c":{"z":1,"y":2}}',
    # nesting around the default bound of 64
    "[" * 64 + "]" * 64,
    "[" * 65 + "]" * 65,
    '{"a":' * 64 + "1" + "}" * 64,
    '{"a":' * 65 + "1" + "}" * 65,
    '[{"a":' * 32 + "[]" + "}]" * 32,
    '[{"a":' * 33 + "1" + "}]" * 33,
    "[" * 65 + "]" * 64,
    "[" * 65 + "]" * 65 + "x",
    "[" * 65 + "]" * 65 + " ",
    "[" * 65 + '"\\ud800"' + "]" * 65,
    "[" * 65 + "NaN" + "]" * 65,
    "[" * 65 + "1e400" + "]" * 65,
    "[" * 65 + '{"a":1,"a":2}' + "]" * 65,
    '["' + "[" * 100 + '"]',
    "[" * 100 + "]" * 100,
    "[" * 100_000,
]


def _case_id(case: str | bytes) -> str:
    return _short(case, 40)


@pytest.mark.parametrize("case", JSON_CASES, ids=_case_id)
def test_json_loads_same_on_listed_inputs(case: str | bytes) -> None:
    if isinstance(case, str):
        assert_same_json_forms(case)
    else:
        assert_same_json(case)
        assert_same_json(case.decode("utf-8", "surrogateescape"))  # raw surrogates in a str
        assert_same_json(case.decode("latin-1"))


def _nested(depth: int, kind: str, core: str = "1") -> str:
    if kind == "array":
        return "[" * depth + core + "]" * depth
    if kind == "object":
        return '{"k":' * depth + core + "}" * depth
    # alternating, starting with an array
    opens = "".join("[" if i % 2 == 0 else '{"k":' for i in range(depth))
    closes = "".join("]" if i % 2 == 0 else "}" for i in reversed(range(depth)))
    return opens + core + closes


@pytest.mark.parametrize("max_depth", [-100, -1, 0, 1, 2, 3, 10, 63, 64, 65, 200, 2**31])
def test_json_loads_same_with_max_depth(max_depth: int) -> None:
    near = min(max(max_depth, 0), 200)
    for depth in {0, 1, max(near - 1, 0), near, near + 1}:
        for kind in ("array", "object", "mixed"):
            for core in ("1", "[]", "{}", '"[[[[{{{{"', "NaN", '"\\ud800"', "1,"):
                text = _nested(depth, kind, core)
                assert_same_json(text, max_depth=max_depth)
                assert_same_json(text + " x", max_depth=max_depth)
                assert_same_json(text.encode(), max_depth=max_depth)
    assert_same_json('["[[[[[[", [[1]]]', max_depth=max_depth)
    assert_same_json("1", max_depth=max_depth)


def test_json_loads_max_depth_beyond_a_c_long() -> None:
    # Both clamp max_depth to 0 .. MAX_JSON_DEPTH_LIMIT, whatever the int.
    assert_same_json("[[]]", max_depth=2**63)
    assert_same_json("[[]]", max_depth=-(2**63) - 1)
    assert outcome(C.json_loads, "[[]]", max_depth=2**63)[0] == "ok"
    assert outcome(C.json_loads, "[" * 600 + "]" * 600, max_depth=2**63)[3] == (
        "JSON nested too deeply"
    )


@pytest.mark.parametrize("kind", ["array", "object", "mixed"])
@pytest.mark.parametrize("depth", [999, 1000, 2000, 20_000])
def test_json_loads_same_on_nesting_past_the_recursion_limit(kind: str, depth: int) -> None:
    for core in ("1", "NaN", '"\\ud800"', "1,", '{"a":1,"a":2}'):
        text = _nested(depth, kind, core)
        assert_same_json_forms(text)
        assert_same_json_forms(text + "x")  # a syntax error after the deep part
        assert_same_json_forms(text[:-1])  # one bracket short
        assert_same_json(text, max_depth=10**6)
    assert_same_json_forms("[" * depth)
    assert_same_json_forms('{"a":' * depth)


NESTING_FAMILIES: dict[str, tuple[str, Callable[[int], Any]]] = {
    # Inputs that are wrong in another way too: nesting deeper than max_depth is what both
    # report, checked over the whole text before anything else, so that the answer depends
    # neither on how far a parser got nor on the caller's stack depth.
    "arrays then trailing data": ('"[" * n + "]" * n + "x"', lambda n: "[" * n + "]" * n + "x"),
    "unclosed arrays": ('"[" * n', lambda n: "[" * n),
    "syntax error before the deep part": ('"[1 x" + "[" * n', lambda n: "[1 x" + "[" * n),
    "objects then trailing data": (
        "'{\"a\":' * n + '0' + '}' * n + 'x'",
        lambda n: '{"a":' * n + "0" + "}" * n + "x",
    ),
    "objects around a duplicate": (
        "'{\"a\":' * n + '{\"b\":1,\"b\":2}' + '}' * n",
        lambda n: '{"a":' * n + '{"b":1,"b":2}' + "}" * n,
    ),
    "a lone surrogate inside": (
        "'[' * n + '\"\\\\ud800\"' + ']' * n",
        lambda n: "[" * n + '"\\ud800"' + "]" * n,
    ),
    "a disclosure with a deep value then bad syntax": (
        "[b64url_encode(('[\"salt\", ' + '[' * n + ']' * n + ' x]').encode())]",
        lambda n: [b64url_encode(f'["salt", {"[" * n}{"]" * n} x]'.encode())],
    ),
}


EXTRA_LEVEL = {
    "syntax error before the deep part",
    "objects around a duplicate",
    "a disclosure with a deep value then bad syntax",
}


def _outcomes(family: str, n: int) -> tuple[Outcome, Outcome]:
    """The reference's outcome and the C version's."""
    data = NESTING_FAMILIES[family][1](n)
    if family.startswith("a disclosure"):
        return outcome(parse_disclosures_py, data), outcome(C.parse_disclosures, data)
    return outcome(json_loads_py, data), outcome(C.json_loads, data)


def _too_deep(result: Outcome) -> bool:
    return result[0] == "err" and result[3].endswith("nested too deeply")


def _from_a_deep_stack(frames: int, family: str, n: int) -> tuple[Outcome, Outcome]:
    return _outcomes(family, n) if frames == 0 else _from_a_deep_stack(frames - 1, family, n)


@pytest.mark.parametrize("family", list(NESTING_FAMILIES))
def test_same_refusal_past_max_depth(family: str) -> None:
    # Families with one more bracket around or inside the n nest n + 1 deep.
    extra = 1 if family in EXTRA_LEVEL else 0
    first_too_deep = MAX_JSON_DEPTH + 1 - extra
    for n in [*range(first_too_deep - 3, first_too_deep + 3), 500, 999, 5000]:
        expected, actual = _outcomes(family, n)
        assert actual == expected, f"n = {n}: pure {_show(expected)} / C {_show(actual)}"
        assert _too_deep(expected) == (n >= first_too_deep), f"n = {n}: {_show(expected)}"
        # The same answer with most of the interpreter's recursion limit already spent.
        deep = _from_a_deep_stack(700, family, n)
        assert deep == (expected, actual), f"n = {n} from a deep stack"


# --- JSON: generated inputs ------------------------------------------------------------------

TEXT_CHARS = st.one_of(
    st.characters(), st.sampled_from('"\\/\b\f\n\r\t\x00\x1f\x7f \xe9\ud55c\u2028\ufeff\U0001f600')
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**25), max_value=10**25),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(TEXT_CHARS, max_size=12),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(TEXT_CHARS, max_size=6), inner, max_size=4)
    ),
    max_leaves=16,
)
# Seeded, not st.randoms(): its draw per call makes writing a long text slow, and it favours 0.0.
RANDOMS = st.integers(min_value=0, max_value=2**64 - 1).map(random.Random)


@PROPERTY
@given(value=JSON_VALUES, r=RANDOMS, ensure_ascii=st.booleans())
def test_json_loads_same_on_values_written_in_many_ways(
    value: Any, r: random.Random, ensure_ascii: bool
) -> None:
    assert_same_json_forms(write_json(value, r, ensure_ascii=ensure_ascii))


@PROPERTY
@given(
    value=JSON_VALUES,
    ensure_ascii=st.booleans(),
    separators=st.sampled_from([(",", ":"), (", ", ": "), (" , ", " : ")]),
    indent=st.sampled_from([None, 0, 2, "\t", "\r\n"]),
)
def test_json_loads_same_on_json_dumps_forms(
    value: Any, ensure_ascii: bool, separators: tuple[str, str], indent: int | str | None
) -> None:
    text = json.dumps(value, ensure_ascii=ensure_ascii, separators=separators, indent=indent)
    assert_same_json_forms(text)


@PROPERTY
@given(value=JSON_VALUES, r=RANDOMS)
def test_json_loads_same_on_broken_texts(value: Any, r: random.Random) -> None:
    text = write_json(value, r, ensure_ascii=r.random() < 0.5)
    broken = mutate_bytes(text.encode("utf-8", "surrogatepass"), r)
    assert_same_json(broken)
    assert_same_json(broken.decode("utf-8", "surrogateescape"))
    assert_same_json_forms(mutate_text(text, r))


@PROPERTY
@given(
    text=st.text(
        st.one_of(st.sampled_from(CHAR_POOL), st.characters(categories=["Cs"]), st.characters()),
        max_size=40,
    )
)
def test_json_loads_same_on_random_text(text: str) -> None:
    assert_same_json_forms(text)


@PROPERTY
@given(data=st.binary(max_size=40) | st.lists(st.sampled_from(BYTE_POOL), max_size=40).map(bytes))
def test_json_loads_same_on_random_bytes(data: bytes) -> None:
    assert_same_json(data)


SWEEP_VALUES: list[Any] = [
    None,
    True,
    0,
    -1.5e-7,
    "str",
    [],
    {},
    [1, "a\u00e9\U0001f600", None, False, {"k": [2.5, {"x": "\n\\"}]}],
    {"iss": "https://mapo.seoul.example", "exp": 1_800_000_000, "cnf": {"jwk": {"x": "AAAA"}}},
    {"a": {"b": {"c": [[[["deep"]]]]}}, "_sd": ["digest1", "digest2"], "...": None},
]


def test_json_loads_same_on_a_seeded_mutation_sweep() -> None:
    r = random.Random(20261124)
    corpus = [
        case.encode("utf-8", "surrogatepass") if isinstance(case, str) else case
        for case in JSON_CASES
        if len(case) < 500
    ]
    corpus += [write_json(v, r).encode("utf-8") for v in SWEEP_VALUES for _ in range(5)]
    differences = []
    for _ in range(3000):
        broken = mutate_bytes(r.choice(corpus), r)
        for data in (broken, broken.decode("utf-8", "surrogateescape")):
            difference = json_difference(data)
            if difference is not None:
                differences.append((len(data), difference))
    assert_no_differences(differences)


# --- base64url -------------------------------------------------------------------------------

B64_EXTRA_STR = "+/=.~ \t\n\x00\x7f\xe9\ud800\U0001f600"
B64_EXTRA_BYTES = b"+/=.~ \t\n\x00\x7f\x80\xe9\xff"


def test_b64url_decode_same_on_every_string_of_up_to_two_characters() -> None:
    chars = B64URL + B64_EXTRA_STR
    byte_values = (B64URL.encode() + B64_EXTRA_BYTES).decode("latin-1")
    for first in ["", *chars]:
        for second in ["", *chars]:
            assert_same_b64url(first + second)
    for first in ["", *byte_values]:
        for second in ["", *byte_values]:
            assert_same_b64url((first + second).encode("latin-1"))


def test_b64url_decode_same_on_every_last_character() -> None:
    for prefix in ["", "Q", "QU", "QUJ", "QUJD", "QUJDR", "QUJDRA", "QUJDREU", "-_-_"]:
        for last in range(256):
            assert_same_b64url(prefix.encode() + bytes([last]))
            assert_same_b64url(prefix + chr(last))
        for last in ("\ud800", "\U0001f600", "\u0100", "\uffff"):
            assert_same_b64url(prefix + last)


@PROPERTY
@given(
    text=st.text(
        st.one_of(st.sampled_from(B64URL), st.sampled_from(B64_EXTRA_STR), st.characters()),
        max_size=40,
    )
)
def test_b64url_decode_same_on_random_text(text: str) -> None:
    assert_same_b64url(text)
    if text.isascii():
        assert_same_b64url(text.encode("ascii"))


@PROPERTY
@given(data=st.binary(max_size=64), r=RANDOMS)
def test_b64url_decode_same_on_encodings_and_their_variants(data: bytes, r: random.Random) -> None:
    text = b64url_encode(data)
    assert_same_b64url(text)
    assert_same_b64url(text.encode("ascii"))
    assert_same_b64url(mutate_text(text, r, B64URL + B64_EXTRA_STR))
    assert_same_b64url(text + "=" * r.randint(1, 3))
    assert_same_b64url(text[:-1])
    assert_same_b64url(data)  # raw bytes, mostly outside the alphabet


# --- SD-JWT disclosures ----------------------------------------------------------------------


def disclosure(content: Any) -> str:
    if not isinstance(content, str | bytes):
        content = json.dumps(content, ensure_ascii=False)
    raw = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
    return b64url_encode(raw)


def _non_canonical(encoded: str) -> str:
    assert len(encoded) % 4 in (2, 3)
    return encoded[:-1] + B64URL[B64URL.index(encoded[-1]) + 1]


GOOD_MEMBER = disclosure(["2GLC42sKQveCfGfryNRN9w", "given_name", "지민"])
GOOD_ELEMENT = disclosure(["lklxF5jMYlGTPUovMNIvCA", "KR"])
BAD_JSON = disclosure("not json")
BAD_NAME = disclosure(["s", "_sd", 1])

DISCLOSURE_CASES: list[list[str]] = [
    [],
    [GOOD_MEMBER],
    [GOOD_ELEMENT],
    [GOOD_MEMBER, GOOD_ELEMENT, GOOD_MEMBER],
    [disclosure(["s", "n", {"a": [1, 2.5, True, None, "x", -0.0, {"b": False}]}])],
    [disclosure('["s","n",1.0]')],
    [disclosure('["s","n",-0]')],
    [disclosure('["s","n",1E2]')],
    [disclosure(' [ "s" , "n" , true ] ')],
    [disclosure('["s","\\u00e9",1]')],
    [disclosure('["s","_sd"]')],
    [disclosure('["s","..."]')],
    [disclosure(["s", "\u2026", 1])],
    [disclosure(["", "", ""])],
    # wrong shapes
    [disclosure("[]")],
    [disclosure('["s"]')],
    [disclosure('["s","n",1,2]')],
    [disclosure('["s","n",1,2,3]')],
    [disclosure('{"s":1}')],
    [disclosure('"s"')],
    [disclosure("1")],
    [disclosure("null")],
    [disclosure('[1,"n",1]')],
    [disclosure("[null,2]")],
    [disclosure('[["s"],2]')],
    [disclosure('["s",1,1]')],
    [disclosure('["s",null,1]')],
    [disclosure('["s",["n"],1]')],
    [disclosure("[1,2,3]")],
    [BAD_NAME],
    [disclosure(["s", "...", 1])],
    # bad base64url and bad JSON inside
    [""],
    ["\xe9"],
    ["WyJzIiwxXQ\ud800"],
    ["!!!!"],
    ["a"],
    ["WyJzIiwxXQ="],
    ["WyJzIiwxXQ=="],
    ["WyJz Iiwx"],
    ["WyJz+Iwx"],
    [_non_canonical(disclosure('["s",1]'))],
    [BAD_JSON],
    [disclosure(b"\xff")],
    [disclosure(b'["s","n","\xed\xa0\x80"]')],
    [disclosure('["s","n",NaN]')],
    [disclosure('["s","n",1e400]')],
    [disclosure('["s","n",' + "1" * 4301 + "]")],
    [disclosure('["s",{"a":1,"a":2}]')],
    [disclosure('["s","\\ud800",1]')],
    [disclosure('["s","n",1] x')],
    [disclosure('["s","n",1],')],
    [disclosure('["s","n",' + "[" * 70 + "]" * 70 + "]")],
    [disclosure('["s","n",' + "[" * 70 + "]" * 70 + "] x")],
    [disclosure('["s","n",' + "[" * 2000 + "]" * 2000 + "]")],
    [disclosure('["s","n",' + "[" * 2000 + "]" * 2000 + "] x")],
    # good and bad mixed: the first error wins
    [GOOD_MEMBER, BAD_JSON, BAD_NAME],
    [GOOD_MEMBER, BAD_NAME, BAD_JSON],
    [BAD_NAME, "", "\xe9"],
    ["\xe9", ""],
    [GOOD_ELEMENT, "a", GOOD_MEMBER],
    [GOOD_MEMBER, GOOD_ELEMENT, disclosure('["s"]')],
]


@pytest.mark.parametrize("parts", DISCLOSURE_CASES, ids=_case_id)
def test_parse_disclosures_same_on_listed_inputs(parts: list[str]) -> None:
    assert_same_disclosures(parts)
    assert_same_disclosures(list(reversed(parts)))
    for part in parts:
        assert_same_disclosures([part])


def test_parse_disclosures_returns_disclosures_with_their_digests() -> None:
    parsed = C.parse_disclosures([GOOD_MEMBER, GOOD_ELEMENT])
    assert type(parsed) is tuple
    assert [type(d).__name__ for d in parsed] == ["Disclosure", "Disclosure"]
    assert parsed[0].name == "given_name" and parsed[1].name is None
    with bound("pure"):
        assert parsed == parse_disclosures_py([GOOD_MEMBER, GOOD_ELEMENT])


NAMES = st.one_of(
    st.text(TEXT_CHARS, max_size=10),
    st.sampled_from(["_sd", "...", "_sd_alg", "", "given_name", "\u2026"]),
    SCALARS.filter(lambda v: not isinstance(v, str)),
)
SALT_TEXT = st.text(st.sampled_from(B64URL), min_size=1, max_size=24)
SALTS = st.one_of(SALT_TEXT, SALT_TEXT, SALT_TEXT, JSON_VALUES)  # mostly strings


@st.composite
def disclosure_strings(draw: st.DrawFn) -> str:
    r = draw(RANDOMS)
    kind = draw(st.sampled_from(["member", "member", "element", "element", "other"]))
    if kind == "member":
        content: Any = [draw(SALTS), draw(NAMES), draw(JSON_VALUES)]
    elif kind == "element":
        content = [draw(SALTS), draw(JSON_VALUES)]
    else:
        content = draw(JSON_VALUES | st.lists(JSON_VALUES, max_size=5))
    raw = write_json(content, r, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    # Most stay intact, so that the checks behind the decoding are reached too.
    breakage = draw(st.sampled_from(["none"] * 6 + ["json", "base64url"]))
    if breakage == "json":
        raw = mutate_bytes(raw, r)
    encoded = b64url_encode(raw)
    if breakage == "base64url":
        encoded = mutate_text(encoded, r, B64URL + B64_EXTRA_STR)
    return encoded


@PROPERTY
@given(part=disclosure_strings())
def test_parse_disclosures_same_on_generated_disclosures(part: str) -> None:
    assert_same_disclosures([part])


@PROPERTY
@given(parts=st.lists(disclosure_strings(), min_size=2, max_size=3))
def test_parse_disclosures_same_on_lists_of_good_and_bad(parts: list[str]) -> None:
    assert_same_disclosures(parts)


SIGNER = PrivateKey.from_ed25519_seed(b"\x01" * 32)


def _issued_credentials() -> Iterator[str]:
    from bench.core_verify import CLAIMS, build

    for alg in ("EdDSA", "ES256"):
        presentation, _ = build(alg)
        yield presentation
    issuer = SIGNER
    holder = PrivateKey.from_ed25519_seed(b"\x02" * 32)
    subject = {
        **CLAIMS,
        "nationalities": ["KR", "JP"],
        "dependents": [{"given_name": "서연", "birth_date": "2015-06-01"}],
        "dose_number": 3,
        "score": 1.5,
        "note": None,
        "quote": 'a "quoted" \\ name\n',
    }
    yield issue_credential(
        issuer="https://mapo.seoul.example",
        vct="urn:civic:vct:residency:1",
        subject_claims=subject,
        signer=issuer,
        kid="mapo-1",
        holder_key=holder.public_key,
        lifetime=86_400,
        now=FixedClock(1_800_000_000),
    )
    yield issue_sd_jwt(
        {SD("a"): [SD(1), SD(True), SD(1.0), SD({SD("b"): [SD(None)]})], "c": [SD("x")]},
        issuer,
        header={"typ": "example+sd-jwt"},
        decoys=(0, 2),
    )


def test_parse_disclosures_same_on_issued_credentials() -> None:
    for issued in _issued_credentials():
        parts = issued.split("~")[1:-1]
        assert parts
        assert_same_disclosures(parts)
        assert outcome(C.parse_disclosures, parts)[0] == "ok"


@pytest.mark.vectors
def test_parse_disclosures_same_on_published_examples() -> None:
    for name, keys in [
        ("sd_jwt_spec_section5_example.json", ["sd_jwt_issuance", "presentation_sd_jwt_kb"]),
        ("sd_jwt_vc_section2_3_example.json", ["sd_jwt_issuance_figure7"]),
    ]:
        example = load_json("sd_jwt", name)
        listed = [item["disclosure"] for item in example["disclosures"]]
        assert listed
        assert_same_disclosures(listed)
        for key in keys:
            assert_same_disclosures(example[key].split("~")[1:-1])


def test_parse_disclosures_same_on_a_seeded_mutation_sweep() -> None:
    r = random.Random(4_2_9901)
    seeds = [part for parts in DISCLOSURE_CASES for part in parts if part.isascii()]
    differences = []
    for _ in range(1500):
        part = r.choice(seeds)
        if r.random() < 0.5:
            broken = mutate_text(part, r, B64URL + B64_EXTRA_STR)
        else:
            try:
                raw = b64url_decode_py(part)
            except MalformedError:
                raw = part.encode()
            broken = b64url_encode(mutate_bytes(raw, r))
        parts = [GOOD_MEMBER, broken] if r.random() < 0.3 else [broken]
        difference = disclosures_difference(parts)
        if difference is not None:
            differences.append((len(broken), difference))
    assert_no_differences(differences)


# --- SD-JWT disclosure resolution ---------------------------------------------------------


def resolve_difference(payload: dict[str, Any], disclosures: tuple[Disclosure, ...]) -> str | None:
    before = shape(payload)
    expected = outcome(resolve_disclosures_py, payload, disclosures)
    actual = outcome(C.resolve_disclosures, payload, disclosures)
    assert shape(payload) == before, "the payload was modified"
    if actual == expected:
        return None
    return (
        f"resolve_disclosures({_short(payload)}, {_short([d.encoded for d in disclosures])}): "
        f"pure {_show(expected)} / C {_show(actual)}"
    )


def assert_same_resolution(payload: dict[str, Any], disclosures: tuple[Disclosure, ...]) -> None:
    difference = resolve_difference(payload, disclosures)
    assert difference is None, difference


def _disclosed(*contents: list[Any]) -> tuple[tuple[Disclosure, ...], list[str]]:
    """Disclosures of the given arrays, and their digests."""
    parsed = parse_disclosures_py([disclosure(content) for content in contents])
    return parsed, [d.digest for d in parsed]


def _resolution_cases() -> Iterator[tuple[dict[str, Any], tuple[Disclosure, ...]]]:
    (member, other_member, element, nested), (dm, do, de, dn) = _disclosed(
        ["s1", "x", 1],
        ["s2", "x", {"deep": True}],
        ["s3", [1, 1.0, True]],
        ["s4", "n", {"_sd": ["unknown"], "k": [{"...": "unknown"}]}],
    )
    (holder,), (dh,) = _disclosed(["s5", "h", {"_sd": [dm]}])
    yield {}, ()
    yield {"_sd_alg": "sha-256", "iss": "x"}, ()
    yield {"_sd": None}, (member,)
    yield {"_sd": dm}, (member,)
    yield {"_sd": {"a": 1}}, (member,)
    yield {"_sd": [1]}, (member,)
    yield {"_sd": [None, dm]}, (member,)
    yield {"_sd": [dm, dm]}, (member,)
    yield {"_sd": [dm], "a": [{"...": dm}]}, (member,)
    yield {"_sd": [dm]}, (member, member)
    yield {"_sd": [dm, "decoy"]}, (member, element)
    yield {"_sd": [de]}, (element,)
    yield {"a": [{"...": dm}]}, (member,)
    yield {"a": [{"...": de}]}, (element,)
    yield {"a": [{"...": de}, {"...": "decoy"}, 5, {"...": "decoy2"}, [{"...": dn}]]}, (element,)
    yield {"a": [{"...": 1}]}, ()
    yield {"a": [{"...": de, "b": 1}]}, (element,)
    yield {"a": [{"...": "x", "...x": 1}]}, ()
    yield {"...": 1}, ()
    yield {"...": [1]}, ()
    yield {"a": {"...": {}}}, ()
    yield {"x": 0, "_sd": [dm]}, (member,)
    yield {"_sd": [dm], "x": 0}, (member,)
    yield {"_sd": [dm, do]}, (member, other_member)
    yield {"_sd": [dn], "n": None}, (nested,)
    yield {"_sd": [dn, dh]}, (nested, holder, member)
    yield {"_sd": [dh]}, (holder, member)
    yield {"_sd": [dh, dm]}, (holder, member)
    yield {"_sd": [dm], "a": {"_sd": [dm]}}, (member,)
    yield {"a": {"_sd": [dm]}, "_sd": [dm]}, (member,)
    yield {"a": [[{"...": de}]], "b": {"c": {"_sd": [dm, do]}}}, (element, member, other_member)
    yield {"a": [{"_sd": [dm]}, {"_sd": [do]}]}, (member, other_member)


def test_resolve_disclosures_same_on_listed_inputs() -> None:
    for payload, disclosures in _resolution_cases():
        assert_same_resolution(payload, disclosures)
        assert_same_resolution(payload, disclosures[::-1])


def _chain(length: int, kind: str) -> tuple[dict[str, Any], tuple[Disclosure, ...]]:
    """Recursive disclosures ``length`` deep: each one's value holds the digest of the next."""
    encoded: list[str] = []
    inner: Any = "leaf"
    for i in range(length):
        if kind == "object":
            encoded.append(disclosure([f"s{i}", "k", inner]))
            inner = {"_sd": [disclosure_digest(encoded[-1])]}
        else:
            encoded.append(disclosure([f"s{i}", inner]))
            inner = [{"...": disclosure_digest(encoded[-1])}]
    payload = inner if kind == "object" else {"a": inner}
    return payload, parse_disclosures_py(encoded)


@pytest.mark.parametrize("kind", ["object", "array"])
@pytest.mark.parametrize("length", [1, 50, 63, 64, 65, 66, 200, 600, 2000])
def test_resolve_disclosures_same_on_chains_of_recursive_disclosures(
    length: int, kind: str
) -> None:
    payload, disclosures = _chain(length, kind)
    assert_same_resolution(payload, disclosures)
    # Claims deeper than MAX_CLAIM_DEPTH are refused by both with a reason, never with a
    # RecursionError. The deepest container's claim path: n - 1 long for a chain of n object
    # disclosures (the payload at ()), n long for n array ones (the first array at ("a",)).
    deepest = length - 1 if kind == "object" else length
    result = outcome(resolve_disclosures_py, payload, disclosures)
    assert (result[0] == "err") == (deepest >= MAX_CLAIM_DEPTH)
    if result[0] == "err":
        assert result[2] is ReasonCode.NESTING_TOO_DEEP and result[3] == "claims nested too deeply"


CLAIM_KEYS = st.sampled_from(["a", "b", "c", "x", "n", "\ud55c", "k"])
CLAIMS = st.recursive(
    # Issuance writes UTF-8: no lone surrogates in these strings.
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(st.tuples(st.booleans(), inner), max_size=4)
        | st.dictionaries(st.tuples(st.booleans(), CLAIM_KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)


def _mark(node: Any) -> Any:
    """Claims drawn with a flag per member and element; flagged ones made disclosable."""
    if isinstance(node, dict):
        return {(SD(key) if flag else key): _mark(value) for (flag, key), value in node.items()}
    if isinstance(node, list):
        return [SD(_mark(item)) if flag else _mark(item) for flag, item in node]
    return node


def _containers(node: Any, found: list[Any]) -> list[Any]:
    if isinstance(node, dict | list):
        found.append(node)
        for child in node.values() if isinstance(node, dict) else node:
            _containers(child, found)
    return found


def _sd_list(node: dict[str, Any]) -> list[Any]:
    if not isinstance(node.get("_sd"), list):
        node["_sd"] = []
    digests: list[Any] = node["_sd"]
    return digests


def tamper(
    payload: dict[str, Any], disclosures: tuple[Disclosure, ...], r: random.Random
) -> tuple[dict[str, Any], tuple[Disclosure, ...]]:
    """One to three changes a resolver must notice or survive, on a copy of the payload."""
    payload = json.loads(json.dumps(payload))
    digests = [d.digest for d in disclosures] or ["no-such-digest"]
    parts = list(disclosures)
    for _ in range(r.randint(1, 3)):
        node = r.choice(_containers(payload, []))
        op = r.randrange(10)
        if op == 0 and parts:
            parts.remove(r.choice(parts))  # a holder's selection
        elif op == 1 and parts:
            parts.insert(r.randint(0, len(parts)), r.choice(parts))  # sent twice
        elif op == 2:
            parts.reverse()
        elif isinstance(node, list):
            item = r.choice(
                [{"...": r.choice(digests)}, {"...": r.choice(digests), "x": 1}, {"...": 7}, 1]
            )
            node.insert(r.randint(0, len(node)), item)
        elif op in (3, 4):
            _sd_list(node).append(r.choice(digests))  # moved, or appearing twice
        elif op == 5:
            node["_sd"] = r.choice([None, "x", {}, 1, [1], [None], [[]]])
        elif op == 6:
            node["..."] = r.choice([1, [], {}, r.choice(digests)])
        elif op == 7:
            named = [d.name for d in disclosures if d.name is not None]
            node[r.choice(named or ["x"])] = 0  # may collide with a disclosed name
        elif op == 8 and disclosures:
            (added,) = parse_disclosures_py(
                [disclosure([f"salt{r.random()}", r.choice(["x", "n", "a"]), node.copy()])]
            )
            parts.append(added)
            _sd_list(node).append(added.digest)
        else:
            node.pop(r.choice([*node, "_sd"]), None)
    return payload, tuple(parts)


@PROPERTY
@given(claims=CLAIMS.filter(lambda c: isinstance(c, dict)), r=RANDOMS)
def test_resolve_disclosures_same_on_issued_and_tampered_payloads(
    claims: dict[Any, Any], r: random.Random
) -> None:
    issued = issue_sd_jwt(
        _mark(claims), SIGNER, header={"typ": "example+sd-jwt"}, decoys=(0, 2), random=r.randbytes
    )
    parsed = parse_sd_jwt(issued)
    assert_same_resolution(parsed.payload, parsed.disclosures)
    assert_same_resolution(*tamper(parsed.payload, parsed.disclosures, r))


def test_resolve_disclosures_same_on_issued_credentials() -> None:
    for issued in _issued_credentials():
        parsed = parse_sd_jwt(issued)
        assert_same_resolution(parsed.payload, parsed.disclosures)
        assert outcome(C.resolve_disclosures, parsed.payload, parsed.disclosures)[0] == "ok"


# --- which implementation is loaded ----------------------------------------------------------


def test_the_extension_is_built_and_bound() -> None:
    assert C is not None, NOT_LOADED
    assert civic.encoding.b64url_decode is C.b64url_decode
    assert civic.encoding.json_loads is C.json_loads
    assert civic.sdjwt._parse_disclosures is C.parse_disclosures
    assert civic.sdjwt._resolve_disclosures is C.resolve_disclosures


_WHICH = (
    "import civic.encoding as e, civic.sdjwt as s, sys; "
    "print(e.speedups is None, e.json_loads is e.json_loads_py, "
    "e.b64url_decode is e.b64url_decode_py, s._parse_disclosures is s.parse_disclosures_py, "
    "s._resolve_disclosures is s.resolve_disclosures_py, 'civic._speedups' in sys.modules)"
)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("1", "True True True True True False"),
        ("0", "False False False False False True"),
        ("", "False False False False False True"),
    ],
)
def test_civic_pure_python_disables_the_accelerator(setting: str, expected: str) -> None:
    env = {**os.environ, "CIVIC_PURE_PYTHON": setting}
    result = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", _WHICH],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == expected.split()
