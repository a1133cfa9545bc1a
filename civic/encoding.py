"""Strict encodings shared by every parser in the core.

- base64url without padding (RFC 7515 section 2, RFC 4648 section 5), canonical only: a string
  whose unused trailing bits are not zero decodes to the same bytes as another string, so it
  is rejected (two encodings of one signature must not both verify).
- standard base64 with padding (RFC 4648 section 4), canonical only, for signed notes and the
  Merkle test data.
- JSON (RFC 8259) parsed strictly: duplicate member names are rejected (RFC 7515 section 5.2
  allows a JWS parser to reject them, and SD-JWT relies on unambiguous objects), as are NaN,
  Infinity, numbers too large for a double (``1e400`` would be infinity), invalid UTF-8 and
  the unpaired surrogates of ``\\ud800`` escapes (no UTF-8 form: RFC 8259 section 8.2, RFC 7493
  section 2.1), and nesting deeper than a fixed bound.

The ``*_py`` functions define this behaviour. Where the optional C accelerator
``civic._speedups`` was built (setup.py), :func:`b64url_decode` and :func:`json_loads` are its
versions of them, which tests hold to the same values, reason codes and details; setting
``CIVIC_PURE_PYTHON=1`` before import keeps the pure-Python ones.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib
import json
import math
import os
import re
from collections.abc import Callable
from itertools import accumulate
from types import ModuleType
from typing import Any

from civic.errors import MalformedError, ReasonCode, UsageError

_URL_TO_STD = bytes.maketrans(b"-_+/=", b"+/***")
_B64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Last characters whose unused low bits are zero: 4 bits when len % 4 == 2, 2 when it is 3.
_CANONICAL_LAST = (b"", b"", _B64URL_ALPHABET[::16], _B64URL_ALPHABET[::4])
_PAD = (b"", b"", b"==", b"=")

MAX_JSON_DEPTH = 64
MAX_JSON_DEPTH_LIMIT = 512
"""The deepest ``max_depth`` a caller may ask for: parsers recurse once per level, and 512
levels stay well inside the interpreter's recursion limit."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode_py(text: str | bytes) -> bytes:
    """Decode unpadded base64url, rejecting padding, foreign characters and non-canonical tails."""
    if isinstance(text, str):
        try:
            data = text.encode("ascii")
        except UnicodeEncodeError:
            raise MalformedError(ReasonCode.MALFORMED_BASE64, "non-ASCII base64url") from None
    else:
        data = text
    rem = len(data) % 4
    if rem == 1:
        raise MalformedError(ReasonCode.MALFORMED_BASE64, "impossible base64url length")
    try:
        # The translation also turns '+', '/' and '=' into '*', which strict mode rejects with
        # every other character outside the alphabet: one pass over the input checks them all.
        raw = binascii.a2b_base64(data.translate(_URL_TO_STD) + _PAD[rem], strict_mode=True)
    except (binascii.Error, ValueError):
        raise MalformedError(
            ReasonCode.MALFORMED_BASE64, "character outside base64url alphabet"
        ) from None
    # The last character carries 4 (rem 2) or 2 (rem 3) unused low bits that must be zero.
    if rem and data[-1] not in _CANONICAL_LAST[rem]:
        raise MalformedError(ReasonCode.MALFORMED_BASE64, "non-canonical base64url")
    return raw


def b64std_encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64std_decode(text: str) -> bytes:
    """Decode padded standard base64, canonical only (re-encoding must give the input back)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedError(ReasonCode.MALFORMED_BASE64, "invalid standard base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise MalformedError(ReasonCode.MALFORMED_BASE64, "non-canonical standard base64")
    return raw


def utf8_decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedError(ReasonCode.MALFORMED_UTF8, "invalid UTF-8") from None


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise MalformedError(ReasonCode.DUPLICATE_JSON_MEMBER, "duplicate JSON member name")
    return obj


def _reject_constant(name: str) -> Any:
    raise MalformedError(ReasonCode.MALFORMED_JSON, f"non-standard JSON constant {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise MalformedError(ReasonCode.NUMBER_OUT_OF_RANGE, "JSON number too large")
    return value


_STRICT_DECODER = json.JSONDecoder(
    object_pairs_hook=_reject_duplicates,
    parse_constant=_reject_constant,
    parse_float=_finite_float,
)
# Set by JSONDecoder.__init__ but absent from the type stubs.
_SCAN: Callable[[str, int], tuple[Any, int]] = _STRICT_DECODER.scan_once  # type: ignore[attr-defined]
_JSON_WHITESPACE = " \t\n\r"


# Strings as a lexer reads them, in malformed text too: a quote, escaped pairs, up to the next
# quote or the end. What is left between them is what brackets nest by.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nesting_exceeds(text: str, limit: int) -> bool:
    """Whether the brackets outside strings nest deeper than ``limit``, counted over the
    whole text, malformed or not (each opening bracket +1, each closing one -1)."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0) > limit


_SURROGATE = re.compile(r"[\ud800-\udfff]|\\u[dD][89abcdefABCDEF]")


def _has_unpaired_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            strings: Any = (node,)
        elif isinstance(node, dict):
            strings = node.keys()
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
            continue
        else:
            continue
        for text in strings:
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    return True
    return False


def json_loads_py(data: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON strictly. Raises :class:`MalformedError` with a precise reason code.

    Checks, in this order: UTF-8; nesting deeper than ``max_depth`` (clamped to 0 to
    ``MAX_JSON_DEPTH_LIMIT``), over the whole text so that the answer does not depend on how
    far a parser got; then the grammar, duplicate names, constants and number ranges as met;
    trailing data; unpaired surrogates.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedError(ReasonCode.MALFORMED_UTF8, "invalid UTF-8") from None
        # Strict UTF-8 decoding refuses encoded surrogates: only escapes can produce one.
        may_hold_surrogate = "\\u" in text
    else:
        text = data
        may_hold_surrogate = "\\u" in text or not text.isascii()
    max_depth = min(max(max_depth, 0), MAX_JSON_DEPTH_LIMIT)
    # Nesting needs one bracket per level: most inputs have too few to need the scan.
    if (
        len(text) > max_depth
        and text.count("[") + text.count("{") > max_depth
        and nesting_exceeds(text, max_depth)
    ):
        raise MalformedError(ReasonCode.NESTING_TOO_DEEP, "JSON nested too deeply")
    # The decoder's C scanner is called directly: the Python wrappers around it cost more than
    # the scan itself for the small documents on the verification hot path.
    start = (
        0 if text[:1] not in _JSON_WHITESPACE else len(text) - len(text.lstrip(_JSON_WHITESPACE))
    )
    try:
        value, end = _SCAN(text, start)
    except MalformedError:
        raise
    except RecursionError:  # only from a caller already deep in its own stack
        raise MalformedError(ReasonCode.NESTING_TOO_DEEP, "JSON nested too deeply") from None
    except StopIteration:
        raise MalformedError(ReasonCode.MALFORMED_JSON, "invalid JSON") from None
    except ValueError as exc:  # JSONDecodeError, and int() over the digit limit
        if "digits" in str(exc):
            raise MalformedError(ReasonCode.NUMBER_OUT_OF_RANGE, "JSON number too large") from None
        raise MalformedError(ReasonCode.MALFORMED_JSON, "invalid JSON") from None
    if end != len(text) and text[end:].strip(_JSON_WHITESPACE):
        raise MalformedError(ReasonCode.MALFORMED_JSON, "trailing data after JSON")
    # A "\\ud800" escape decodes to a string that has no UTF-8 form: it would break every
    # encoder downstream (HTTP responses, databases, logs). Valid pairs decode to one character.
    if (
        may_hold_surrogate
        and _SURROGATE.search(text) is not None
        and _has_unpaired_surrogate(value)
    ):
        raise MalformedError(ReasonCode.MALFORMED_UTF8, "unpaired surrogate in a JSON string")
    return value


def _load_speedups() -> ModuleType | None:
    if os.environ.get("CIVIC_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        return importlib.import_module("civic._speedups")
    except ImportError:  # built without a C compiler: the pure-Python decoders serve
        return None


speedups = _load_speedups()
"""The C accelerator when built and not disabled, else ``None``."""

b64url_decode: Callable[[str | bytes], bytes] = b64url_decode_py
json_loads: Callable[..., Any] = json_loads_py
if speedups is not None:
    speedups.configure(MalformedError, ReasonCode, hashlib.sha256)
    b64url_decode = speedups.b64url_decode
    json_loads = speedups.json_loads


def json_loads_object(data: str | bytes, *, what: str = "JSON value") -> dict[str, Any]:
    """Parse JSON that must be an object."""
    value = json_loads(data)
    if not isinstance(value, dict):
        raise MalformedError(ReasonCode.MALFORMED_JSON, f"{what} is not a JSON object")
    return value


def _dumps(value: Any, *, sort_keys: bool) -> str:
    try:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys, allow_nan=False
        )
    except ValueError as exc:
        # NaN and infinities would come out as NaN / Infinity, which no strict parser (this
        # module's included) reads back: a credential carrying one would verify nowhere.
        if "JSON compliant" not in str(exc):
            raise
        raise UsageError(
            ReasonCode.NUMBER_OUT_OF_RANGE, "NaN and infinite numbers have no JSON form"
        ) from None


def json_dumps(value: Any) -> str:
    """Compact JSON as it goes on the wire; non-ASCII kept as UTF-8 (Korean names stay short)."""
    return _dumps(value, sort_keys=False)


def json_dumps_canonical(value: Any) -> str:
    """Sorted-key compact JSON, for hashes that must not depend on member order (RFC 7638)."""
    return _dumps(value, sort_keys=True)
