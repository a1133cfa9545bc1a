"""Load the SD-JWT example specifications (YAML with the custom ``!sd`` tag) as civic SD markers,
and compute independently which claims a verifier should see after a holder's choice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from civic.sdjwt import SD, ClaimPath


class _SdLoader(yaml.SafeLoader):
    pass


def _construct_sd(loader: yaml.SafeLoader, node: yaml.Node) -> SD:
    if isinstance(node, yaml.ScalarNode):
        # Resolve the scalar as if untagged, so `!sd 10` stays an int and `!sd true` a bool;
        # a quoted scalar (`!sd "null"`) stays a string.
        plain = node.style is None
        node = yaml.ScalarNode(
            loader.resolve(yaml.ScalarNode, node.value, (plain, False)), node.value
        )
        return SD(loader.construct_object(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return SD(loader.construct_sequence(node, deep=True))
    assert isinstance(node, yaml.MappingNode)
    return SD(loader.construct_mapping(node, deep=True))


_SdLoader.add_constructor("!sd", _construct_sd)


def _string_keys(value: Any) -> Any:
    """YAML reads `18: x` with an int key; JSON object member names are always strings."""
    if isinstance(value, SD):
        return SD(_string_keys(value.value))
    if isinstance(value, dict):
        return {
            (SD(str(k.value)) if isinstance(k, SD) else str(k)): _string_keys(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_string_keys(v) for v in value]
    return value


def load_spec(path: Path) -> dict[str, Any]:
    loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_SdLoader)  # noqa: S506
    assert isinstance(loaded, dict)
    return {k: _string_keys(v) for k, v in loaded.items()}


def strip_sd(value: Any) -> Any:
    """The claims with every SD marker removed: what full disclosure reveals."""
    if isinstance(value, SD):
        return strip_sd(value.value)
    if isinstance(value, dict):
        return {strip_sd(k): strip_sd(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_sd(v) for v in value]
    return value


def strip_outer(value: Any) -> Any:
    return value.value if isinstance(value, SD) else value


def _chosen(flag: Any) -> bool:
    """A claim is chosen by ``true``, or by a structure that chooses something beneath it."""
    return flag is True or (isinstance(flag, dict | list) and bool(reveal_paths(flag)))


def reveal_paths(disclosed: Any, path: ClaimPath = ()) -> list[ClaimPath]:
    """Turn ``holder_disclosed_claims`` (true/false, nested) into claim paths."""
    if disclosed is True:
        return [path]
    if isinstance(disclosed, dict):
        return [p for k, v in disclosed.items() for p in reveal_paths(v, (*path, k))]
    if isinstance(disclosed, list):
        return [p for i, v in enumerate(disclosed) for p in reveal_paths(v, (*path, i))]
    return []


def expected_claims(claims: Any, disclosed: Any) -> Any:
    """What a verifier sees: plain claims always, SD claims only where the holder chose them;
    ``true`` on a claim reveals everything beneath it.

    An independent model of the semantics, checked against sd-jwt-python's own expectations.
    """
    if disclosed is True:
        return strip_sd(claims)
    if isinstance(claims, dict):
        out = {}
        choice = disclosed if isinstance(disclosed, dict) else {}
        for key, value in claims.items():
            name = key.value if isinstance(key, SD) else key
            flag = choice.get(name)
            if isinstance(key, SD) and not _chosen(flag):
                continue
            out[name] = expected_claims(value, flag)
        return out
    if isinstance(claims, list):
        choice = disclosed if isinstance(disclosed, list) else []
        items = []
        for i, item in enumerate(claims):
            flag = choice[i] if i < len(choice) else None
            if isinstance(item, SD) and not _chosen(flag):
                continue
            items.append(expected_claims(strip_outer(item), flag))
        return items
    return strip_sd(claims)
