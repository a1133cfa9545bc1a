"""Types of the optional C accelerator (civic/_speedups.c)."""

from collections.abc import Callable, Sequence
from typing import Any

from civic.errors import MalformedError, ReasonCode, VerificationError

def configure(
    error: type[MalformedError], reasons: type[ReasonCode], sha256: Callable[..., Any]
) -> None: ...
def configure_disclosures(
    disclosure: type[tuple[Any, ...]],
    reserved: frozenset[str],
    verification_error: type[VerificationError],
) -> None: ...
def b64url_decode(text: str | bytes, /) -> bytes: ...
def json_loads(data: str | bytes, max_depth: int = 64) -> Any: ...
def parse_disclosures(parts: Sequence[str], /) -> tuple[Any, ...]: ...
def resolve_disclosures(
    payload: dict[str, Any], disclosures: tuple[Any, ...], /
) -> tuple[dict[str, Any], list[tuple[str | int, ...]], list[str]]: ...
