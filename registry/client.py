"""HTTP clients of the registry (docs/registry.md, "HTTP API of the registry").

- :class:`HttpLogSource` implements the ``LogSource`` protocol of ``civic.logsync`` with httpx:
  the signed checkpoint note, entries as leaf bytes (``json_dumps_canonical`` of each entry,
  which is how the log hashes them; the sync recomputes the root, so a log that serves other
  bytes fails there), and consistency proofs. Every response is size-bounded and parsed
  strictly; a network failure or an unusable answer raises ``log_unavailable``.
- :class:`RegistryClient` appends signed entries with the admin token (``POST /entries``) and
  turns the registry's ``{"error", "detail"}`` answers back into :class:`CivicError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from civic.checkpoint import CosignatureVerifier
from civic.encoding import b64std_decode, json_dumps, json_dumps_canonical, json_loads_object
from civic.errors import CivicError, MalformedError, ReasonCode, VerificationError
from civic.logsync import LogConfig
from civic.note import MAX_NOTE_BYTES, NoteVerifier
from civic.trust import GovernanceConfig

MAX_RESPONSE_BYTES = 32 << 20
"""Upper bound on one JSON answer: a page of 1000 entries with a few signatures each."""

PAGE_SIZE = 1000
DEFAULT_TIMEOUT = 10.0


class RegistryHttpError(VerificationError):
    """The registry answered with an error; ``reason`` is its reason code when it gave one."""

    def __init__(self, reason: ReasonCode, detail: str, status: int) -> None:
        super().__init__(reason, detail)
        self.status = status


def _unavailable(detail: str) -> VerificationError:
    return VerificationError(ReasonCode.LOG_UNAVAILABLE, detail)


class _Http:
    """Shared request plumbing: base URL, owned or borrowed client, bounded bodies."""

    def __init__(
        self, base_url: str, client: httpx.Client | None, timeout: float, headers: dict[str, str]
    ) -> None:
        self._base = base_url.rstrip("/")
        self._owned = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout)
        self._headers = headers

    def close(self) -> None:
        if self._owned:
            self._client.close()

    @contextmanager
    def _request(
        self, method: str, path: str, *, params: Mapping[str, int] | None = None, body: bytes = b""
    ) -> Iterator[httpx.Response]:
        headers = dict(self._headers)
        if body:
            headers["Content-Type"] = "application/json"
        try:
            with self._client.stream(
                method,
                self._base + path,
                params=dict(params) if params else None,
                content=body or None,
                headers=headers,
            ) as response:
                yield response
        except httpx.HTTPError as error:
            raise _unavailable(f"{method} {path}: {type(error).__name__}") from None

    def _read(self, response: httpx.Response, limit: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in response.iter_bytes():
                total += len(chunk)
                if total > limit:
                    raise _unavailable(f"answer larger than {limit} bytes")
                chunks.append(chunk)
        except httpx.HTTPError as error:
            raise _unavailable(f"reading the answer: {type(error).__name__}") from None
        return b"".join(chunks)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, int] | None = None,
        body: bytes = b"",
        limit: int = MAX_RESPONSE_BYTES,
        expect: int = 200,
    ) -> bytes:
        with self._request(method, path, params=params, body=body) as response:
            data = self._read(response, limit)
            if response.status_code != expect:
                raise _error_from(response.status_code, data)
            return data

    def _json(self, path: str, params: Mapping[str, int]) -> dict[str, Any]:
        data = self._call("GET", path, params=params)
        try:
            return json_loads_object(data, what="registry answer")
        except MalformedError as error:
            raise _unavailable(f"{path}: {error.detail}") from None


def _error_from(status: int, data: bytes) -> RegistryHttpError:
    """The registry's ``{"error", "detail"}`` as an exception (or log_unavailable)."""
    try:
        body = json_loads_object(data)
        reason = ReasonCode(str(body.get("error")))
        detail = body.get("detail")
    except (CivicError, ValueError):
        return RegistryHttpError(ReasonCode.LOG_UNAVAILABLE, f"HTTP {status}", status)
    return RegistryHttpError(reason, detail if isinstance(detail, str) else "", status)


def _hashes(value: object, what: str) -> list[bytes]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _unavailable(f"{what} is not a list of base64 strings")
    try:
        return [b64std_decode(item) for item in value]
    except MalformedError:
        raise MalformedError(ReasonCode.MALFORMED_PROOF, f"{what} has bad base64") from None


class HttpLogSource(_Http):
    """``civic.logsync.LogSource`` over the registry's HTTP API."""

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.Client | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(base_url, client, timeout, {})

    def __enter__(self) -> HttpLogSource:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def checkpoint(self) -> bytes:
        return self._call("GET", "/checkpoint", limit=MAX_NOTE_BYTES)

    def entries(self, start: int, end: int) -> list[bytes]:
        """Leaf bytes of entries ``[start, end)``, fetched in pages."""
        leaves: list[bytes] = []
        position = start
        while position < end:
            page = self._json(
                "/entries", {"start": position, "end": min(end, position + PAGE_SIZE)}
            )
            items = page.get("entries")
            if page.get("start") != position or not isinstance(items, list) or not items:
                raise _unavailable(f"the log returned no entries from index {position}")
            if len(items) > end - position:
                raise _unavailable("the log returned more entries than asked for")
            for item in items:
                if not isinstance(item, dict):
                    raise _unavailable("an entry is not a JSON object")
                leaves.append(json_dumps_canonical(item).encode("utf-8"))
            position += len(items)
        return leaves

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        answer = self._json("/proof/consistency", {"old": old, "new": new})
        if answer.get("old") != old or answer.get("new") != new:
            raise _unavailable("consistency proof for other sizes than asked")
        return _hashes(answer.get("proof"), "consistency proof")

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        answer = self._json("/proof/inclusion", {"index": index, "size": size})
        if answer.get("index") != index or answer.get("size") != size:
            raise _unavailable("inclusion proof for another leaf than asked")
        return _hashes(answer.get("proof"), "inclusion proof")


@dataclass(frozen=True)
class AppendResult:
    index: int
    leaf_hash: bytes


class RegistryClient(_Http):
    """Admin client: ``POST /entries`` with the Bearer token. Its repr never shows the token."""

    def __init__(
        self,
        base_url: str,
        admin_token: str,
        *,
        client: httpx.Client | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(base_url, client, timeout, {"Authorization": f"Bearer {admin_token}"})

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RegistryClient({self._base!r})"

    def append(self, entry: Mapping[str, Any]) -> AppendResult:
        """Append a signed entry; raises :class:`RegistryHttpError` with the registry's reason."""
        data = self._call("POST", "/entries", body=json_dumps(entry).encode(), expect=201)
        try:
            answer = json_loads_object(data, what="registry answer")
            index = answer["index"]
            leaf_hash = b64std_decode(answer["leaf_hash"])
        except (CivicError, KeyError, TypeError):
            raise _unavailable("the registry's append answer is malformed") from None
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise _unavailable("the registry's append answer has no index")
        return AppendResult(index, leaf_hash)


def log_config_from_json(document: Mapping[str, Any]) -> LogConfig:
    """A relying party's :class:`LogConfig` from its JSON form (``trust-config.json``):

    ``{"origin", "log_vkey", "witnesses": [<cosignature vkey>...], "witness_quorum",
    "governance": {"quorum", "keys"}}``.
    """
    expected = {"origin", "log_vkey", "witnesses", "witness_quorum", "governance"}
    if set(document) != expected:
        raise MalformedError(
            ReasonCode.MALFORMED_INPUT, f"trust config has exactly {', '.join(sorted(expected))}"
        )
    origin, log_vkey, witnesses = document["origin"], document["log_vkey"], document["witnesses"]
    quorum = document["witness_quorum"]
    if not isinstance(origin, str) or not isinstance(log_vkey, str):
        raise MalformedError(ReasonCode.MALFORMED_INPUT, "origin and log_vkey are strings")
    if not isinstance(witnesses, list) or not all(isinstance(w, str) for w in witnesses):
        raise MalformedError(ReasonCode.MALFORMED_INPUT, "witnesses is a list of vkeys")
    if type(quorum) is not int:
        raise MalformedError(ReasonCode.MALFORMED_INPUT, "witness_quorum is an integer")
    return LogConfig(
        origin=origin,
        log_verifier=NoteVerifier.from_vkey(log_vkey),
        witnesses=tuple(CosignatureVerifier.from_vkey(vkey) for vkey in witnesses),
        witness_quorum=quorum,
        governance=GovernanceConfig.from_json(document["governance"]),
    )
