"""Strict encodings shared by every parser in the core.

- base64url without padding (RFC 7515 section 2, RFC 4648 section 5), canonical only: a string
  whose unused trailing bits are not zero decodes to the same bytes as another string, so it
  is rejected (two encodings of one signature must not both verify).
- standard base64 with padding (RFC 4648 section 4), canonical only, for signed notes and the
  Merkle test data.
- JSON (RFC 8259) parsed strictly: duplicate member names are rejected (RFC 7515 section 5.2
  allows a JWS parser to reject them, and SD-JWT relies on unambiguous objects), as are NaN,
  Infinity, invalid UTF-8 and nesting deeper than a fixed bound.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from civic.errors import MalformedError, ReasonCode

_B64URL_CHARS = re.compile(r"[A-Za-z0-9_-]*")
_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_VALUE = {c: i for i, c in enumerate(_B64URL_ALPHABET)}
_PAD = ("", "", "==", "=")

MAX_JSON_DEPTH = 64


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    """Decode unpadded base64url, rejecting padding, foreign characters and non-canonical tails."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedError(ReasonCode.MALFORMED_BASE64, "non-ASCII base64url") from None
    if not _B64URL_CHARS.fullmatch(text):
        raise MalformedError(ReasonCode.MALFORMED_BASE64, "character outside base64url alphabet")
    rem = len(text) % 4
    if rem == 1:
        raise MalformedError(ReasonCode.MALFORMED_BASE64, "impossible base64url length")
    if rem:
        # The last character carries 4 (rem 2) or 2 (rem 3) unused low bits that must be zero.
        unused_mask = 0x0F if rem == 2 else 0x03
        if _B64URL_VALUE[text[-1]] & unused_mask:
            raise MalformedError(ReasonCode.MALFORMED_BASE64, "non-canonical base64url")
    try:
        return base64.urlsafe_b64decode(text + _PAD[rem])
    except (binascii.Error, ValueError):  # pragma: no cover - excluded by the checks above
        raise MalformedError(ReasonCode.MALFORMED_BASE64, "undecodable base64url") from None


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


_STRICT_DECODER = json.JSONDecoder(
    object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
)


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node  # type: ignore[assignment]
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def json_loads(data: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON strictly. Raises :class:`MalformedError` with a precise reason code."""
    text = utf8_decode(data) if isinstance(data, bytes) else data
    try:
        value = _STRICT_DECODER.decode(text)
    except MalformedError:
        raise
    except RecursionError:
        raise MalformedError(ReasonCode.NESTING_TOO_DEEP, "JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and int() over the digit limit
        if "digits" in str(exc):
            raise MalformedError(ReasonCode.NUMBER_OUT_OF_RANGE, "JSON number too large") from None
        raise MalformedError(ReasonCode.MALFORMED_JSON, "invalid JSON") from None
    if isinstance(value, dict | list) and _depth_exceeds(value, max_depth):
        raise MalformedError(ReasonCode.NESTING_TOO_DEEP, "JSON nested too deeply")
    return value


def json_loads_object(data: str | bytes, *, what: str = "JSON value") -> dict[str, Any]:
    """Parse JSON that must be an object."""
    value = json_loads(data)
    if not isinstance(value, dict):
        raise MalformedError(ReasonCode.MALFORMED_JSON, f"{what} is not a JSON object")
    return value


def json_dumps(value: Any) -> str:
    """Compact JSON as it goes on the wire; non-ASCII kept as UTF-8 (Korean names stay short)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def json_dumps_canonical(value: Any) -> str:
    """Sorted-key compact JSON, for hashes that must not depend on member order (RFC 7638)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
