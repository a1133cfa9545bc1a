"""Strategies: random input, and structure-aware mutations of a valid input.

Byte- and character-level mutations (:func:`mutated_text`, :func:`mutated_bytes`) keep most of a
valid input so that the parser gets past its first checks; JSON-tree mutations
(:func:`mutated_json`) change one member or element at a time so that, re-signed, the input
passes the signature and reaches the semantic checks behind it.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from hypothesis import strategies as st

from civic.encoding import MAX_JSON_DEPTH

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# Characters that mean something to at least one parser here, and some that must never pass.
_SPECIAL_CHARS = [
    *'.~=+/-_:# \n\r\t\x00\x7f{}[]",\\%@',
    "\u2014",  # the em dash of note signature lines
    "\u00e9",
    "\ud55c",  # Hangul
    "\ud800",  # a lone surrogate: not encodable as UTF-8
    "\ufeff",
    "\U0001f600",
]

TEXT_CHARS = st.one_of(
    st.sampled_from(_SPECIAL_CHARS), st.sampled_from(B64URL), st.characters(codec="utf-8")
)
# Bytes are mutated as Latin-1 text: one character per byte value.
BYTE_CHARS = st.one_of(
    st.sampled_from([c for c in _SPECIAL_CHARS if ord(c) < 256]),
    st.sampled_from(B64URL),
    st.characters(min_codepoint=0, max_codepoint=255),
)

_OPS = ("replace", "insert", "delete", "duplicate", "truncate", "swap", "drop", "repeat", "bit")


@st.composite
def _mutate(draw: st.DrawFn, valid: str, chars: st.SearchStrategy[str], seps: str) -> str:
    text = valid
    for _ in range(draw(st.integers(1, 4), label="mutations")):
        op = draw(st.sampled_from(_OPS), label="op")
        n = len(text)
        if op in ("swap", "drop", "repeat") and seps:
            sep = draw(st.sampled_from(seps))
            parts = text.split(sep)
            if len(parts) < 2:
                continue
            i = draw(st.integers(0, len(parts) - 1))
            j = draw(st.integers(0, len(parts) - 1))
            if op == "swap":
                parts[i], parts[j] = parts[j], parts[i]
            elif op == "drop":
                del parts[i]
            else:
                parts.insert(i, parts[j])
            text = sep.join(parts)
            continue
        if n == 0 or op == "insert":
            at = draw(st.integers(0, n))
            text = text[:at] + draw(st.text(chars, min_size=1, max_size=8)) + text[at:]
            continue
        at = draw(st.integers(0, n - 1))
        if op == "replace":
            text = text[:at] + draw(chars) + text[at + 1 :]
        elif op == "bit":
            flipped = ord(text[at]) ^ (1 << draw(st.integers(0, 7)))
            text = text[:at] + chr(flipped) + text[at + 1 :]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 16)) :]
        elif op == "duplicate":
            text = text[:at] + text[at : at + draw(st.integers(1, 32))] + text[at:]
        else:  # truncate
            text = text[:at]
    return text


def mutated_text(valid: str, seps: str = ".~\n") -> st.SearchStrategy[str]:
    """``valid`` with one to four edits: characters, ranges, or whole ``seps``-split segments."""
    return _mutate(valid, TEXT_CHARS, seps)


def mutated_bytes(valid: bytes, seps: str = "\n ") -> st.SearchStrategy[bytes]:
    return _mutate(valid.decode("latin-1"), BYTE_CHARS, seps).map(
        lambda text: text.encode("latin-1")
    )


def any_text(max_size: int = 400) -> st.SearchStrategy[str]:
    return st.text(TEXT_CHARS, max_size=max_size)


def any_bytes(max_size: int = 400) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=max_size) | st.text(BYTE_CHARS, max_size=max_size).map(
        lambda text: text.encode("latin-1")
    )


# --- JSON -----------------------------------------------------------------------------------


def _deep(depth: int) -> Any:
    """Arrays nested past the parsers' depth limit (a fresh object each time: it gets mutated)."""
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


SCALARS = st.one_of(
    st.sampled_from(
        [None, True, False, 0, 1, -1, 2**31, 2**53 + 1, 2**63, 2**64, -(2**63), 10**30]
    ),
    st.sampled_from([0.5, -0.0, 1e308, -1e-308, 1.0]),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "x", "https://", "http://127.0.0.1/", "did:key:z", "\u0000", "\ud800"]),
    st.text(TEXT_CHARS, max_size=20),
)


@cache
def json_values(keys: tuple[str, ...] = ()) -> st.SearchStrategy[Any]:
    """Any JSON value, with object keys drawn partly from ``keys`` (the valid input's)."""
    key = st.sampled_from(list(keys)) | st.text(max_size=8) if keys else st.text(max_size=8)
    values = st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(key, inner, max_size=4),
        max_leaves=12,
    )
    deep = st.builds(_deep, st.sampled_from([MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 150]))
    # Too deep only now and then: past the depth limit nothing else gets looked at.
    return st.integers(0, 24).flatmap(lambda n: deep if n == 24 else values)


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if len(path) > 12:  # not into the deeply nested values above
        return found
    if isinstance(value, dict):
        for name, child in value.items():
            found.extend(_nodes(child, (*path, name)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.extend(_nodes(child, (*path, index)))
    return found


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value).union(*(_keys(child) for child in value.values()))
    if isinstance(value, list):
        return set().union(*(_keys(child) for child in value))
    return set()


def mutated_json(valid: Any) -> st.SearchStrategy[Any]:
    """``valid`` with one to three nodes replaced, retyped, removed, duplicated or added to."""
    keys = tuple(sorted(_keys(valid))) or ("x",)
    return _mutated_json(
        valid, keys, json_values(keys), st.sampled_from(keys) | st.text(max_size=6)
    )


@st.composite
def _mutated_json(
    draw: st.DrawFn,
    valid: Any,
    keys: tuple[str, ...],
    values: st.SearchStrategy[Any],
    names: st.SearchStrategy[str],
) -> Any:
    root = [copy.deepcopy(valid)]  # a holder, so that the root itself can be replaced
    for _ in range(draw(_COUNTS, label="json mutations")):
        nodes = _nodes(root[0])
        # The root itself only now and then: most parsers stop at once on a non-object.
        if len(nodes) > 1 and draw(st.integers(0, 9), label="below root") < 9:
            nodes = nodes[1:]
        path = draw(st.sampled_from(nodes), label="path")
        parent: Any = root
        for step in (0, *path[:-1]) if path else ():
            parent = parent[step]
        slot = path[-1] if path else 0
        node = parent[slot]
        op = draw(_JSON_OPS, label="json op")
        if op == "replace":
            parent[slot] = draw(values)
        elif op == "retype":
            retyped = (str(node)[:40], [node], {"_": node}, None, len(str(node)))
            parent[slot] = retyped[draw(st.integers(0, len(retyped) - 1))]
        elif op == "delete" and path:
            del parent[slot]
        elif op == "add" and isinstance(node, dict):
            node[draw(names)] = draw(values)
        elif op == "add" and isinstance(node, list):
            node.insert(draw(st.integers(0, len(node))), draw(values))
        elif op == "wrap" and isinstance(node, list) and node:
            node.append(copy.deepcopy(node[draw(st.integers(0, len(node) - 1))]))
        else:
            parent[slot] = draw(values)
    return root[0]


_COUNTS = st.integers(1, 3)
_JSON_OPS = st.sampled_from(["replace", "retype", "delete", "add", "wrap"])
