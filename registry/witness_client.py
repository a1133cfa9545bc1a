"""The log's side of C2SP tlog-witness ``add-checkpoint`` (docs/registry.md, "Witness").

:func:`request_cosignature` (and :func:`arequest_cosignature` for asyncio callers) posts the
checkpoint with a consistency proof from the size the log believes the witness last cosigned.
On 409 Conflict the witness answers with its actual size (``text/x.tlog.size``); the client then
retries once from that size, with a proof from ``consistency_proof(size)`` (not needed when the
size is 0 or the checkpoint's own size). A witness reporting a size above the checkpoint's has
cosigned a larger tree than the log is now publishing: that is never retried.

The answer is the witness's cosignature line(s). Given the witness's ``CosignatureVerifier``,
only lines by that key are kept and each is verified over the checkpoint (a bad line attached to
the checkpoint would make every verifier configured with this witness reject it); without one,
the lines are only parsed. Failures raise :class:`WitnessRequestError` (``witness_unavailable``
for transport errors and 5xx, ``witness_rejected`` for other refusals, with the HTTP status),
:class:`civic.witness.WitnessSizeConflict` when the sizes cannot be reconciled, or the
:mod:`civic.checkpoint` cosignature errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

import httpx

from civic.checkpoint import CosignatureVerifier, parse_checkpoint
from civic.errors import CivicError, ReasonCode
from civic.note import parse_unverified_note
from civic.witness import (
    TLOG_SIZE_CONTENT_TYPE,
    WitnessSizeConflict,
    encode_add_checkpoint_request,
    parse_cosignature_lines,
    parse_tlog_size,
    verify_witness_response,
)

MAX_RESPONSE_BYTES = 64 * 1024
DEFAULT_TIMEOUT = 10.0

ConsistencyProof = Callable[[int], Sequence[bytes]]
"""``consistency_proof(old_size)``: the log's proof from ``old_size`` to the checkpoint's size."""


class WitnessRequestError(CivicError):
    """The witness could not be asked or refused; ``status_code`` is its HTTP status if any."""

    def __init__(self, reason: ReasonCode, detail: str, status_code: int | None = None) -> None:
        super().__init__(reason, detail)
        self.status_code = status_code


@dataclass(frozen=True)
class _Attempt:
    old_size: int
    body: bytes


@dataclass(frozen=True)
class _Plan:
    """What one request needs: the endpoint, the note, its text and size."""

    endpoint: str
    note: bytes
    text: str
    size: int
    witness: CosignatureVerifier | None
    consistency_proof: ConsistencyProof | None

    def attempt(self, old_size: int, proof: Sequence[bytes]) -> _Attempt:
        return _Attempt(old_size, encode_add_checkpoint_request(old_size, proof, self.note))

    def _conflict_size(self, sent: int, content_type: str, body: bytes) -> int:
        """The witness's size from a 409 answer; refuses answers no retry can fix."""
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != TLOG_SIZE_CONTENT_TYPE:
            raise WitnessRequestError(
                ReasonCode.WITNESS_REJECTED, "409 without a text/x.tlog.size body", 409
            )
        try:
            current = parse_tlog_size(body)
        except CivicError:
            raise WitnessRequestError(
                ReasonCode.WITNESS_REJECTED, "409 with a malformed size", 409
            ) from None
        if current == sent:
            raise WitnessRequestError(
                ReasonCode.WITNESS_REJECTED, "409 naming the old size that was sent", 409
            )
        if current > self.size:
            raise WitnessSizeConflict(
                current, "the witness has cosigned a larger tree than this checkpoint"
            )
        return current

    def retry(self, sent: _Attempt, content_type: str, body: bytes) -> _Attempt:
        """The one retry after a 409: from the witness's size, with a proof from there."""
        current = self._conflict_size(sent.old_size, content_type, body)
        if current in (0, self.size):
            return self.attempt(current, ())
        if self.consistency_proof is None:
            raise WitnessSizeConflict(current, "a proof from the witness's size is needed")
        return self.attempt(current, self.consistency_proof(current))

    def give_up(self, sent: _Attempt, content_type: str, body: bytes) -> NoReturn:
        current = self._conflict_size(sent.old_size, content_type, body)
        raise WitnessSizeConflict(current, "the witness moved again during the retry")

    def result(self, status: int, body: bytes) -> list[str]:
        if status != 200:
            reason = (
                ReasonCode.WITNESS_UNAVAILABLE if status >= 500 else ReasonCode.WITNESS_REJECTED
            )
            raise WitnessRequestError(reason, f"witness answered HTTP {status}", status)
        if self.witness is not None:
            return verify_witness_response(body, self.text, self.witness)
        return [signature.line() for signature in parse_cosignature_lines(body)]


def _plan(
    url: str,
    signed_checkpoint: bytes,
    witness: CosignatureVerifier | None,
    consistency_proof: ConsistencyProof | None,
) -> _Plan:
    text = parse_unverified_note(signed_checkpoint).text
    size = parse_checkpoint(text).size
    endpoint = url.rstrip("/") + "/add-checkpoint"
    return _Plan(endpoint, signed_checkpoint, text, size, witness, consistency_proof)


def _unavailable(error: httpx.HTTPError) -> WitnessRequestError:
    # The exception text can carry the URL; the class names the failure well enough.
    return WitnessRequestError(
        ReasonCode.WITNESS_UNAVAILABLE, f"cannot reach the witness ({type(error).__name__})"
    )


def _too_large() -> WitnessRequestError:
    return WitnessRequestError(ReasonCode.WITNESS_REJECTED, "witness response too large")


def _post_with_timeout(
    client: httpx.Client, plan: _Plan, attempt: _Attempt, timeout: float
) -> tuple[int, str, bytes]:
    with client.stream(
        "POST",
        plan.endpoint,
        content=attempt.body,
        headers={"content-type": "text/plain"},
        timeout=timeout,
    ) as response:
        data = bytearray()
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) > MAX_RESPONSE_BYTES:
                raise _too_large()
        return response.status_code, response.headers.get("content-type", ""), bytes(data)


async def _apost_with_timeout(
    client: httpx.AsyncClient, plan: _Plan, attempt: _Attempt, timeout: float
) -> tuple[int, str, bytes]:
    async with client.stream(
        "POST",
        plan.endpoint,
        content=attempt.body,
        headers={"content-type": "text/plain"},
        timeout=timeout,
    ) as response:
        data = bytearray()
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > MAX_RESPONSE_BYTES:
                raise _too_large()
        return response.status_code, response.headers.get("content-type", ""), bytes(data)


def request_cosignature(
    url: str,
    old_size: int,
    proof: Sequence[bytes],
    signed_checkpoint: bytes,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    witness: CosignatureVerifier | None = None,
    consistency_proof: ConsistencyProof | None = None,
    client: httpx.Client | None = None,
) -> list[str]:
    """Ask the witness at ``url`` (its submission prefix) to cosign ``signed_checkpoint``.

    ``proof`` goes from ``old_size`` to the checkpoint's size. Returns the cosignature lines
    (``"— <name> <base64>\\n"``), ready for :func:`civic.witness.attach_cosignatures`. Pass
    ``client`` to reuse connections (the spec recommends keep-alive); ``timeout`` then applies
    per request all the same.
    """
    plan = _plan(url, signed_checkpoint, witness, consistency_proof)
    own = client is None
    http = client if client is not None else httpx.Client()

    def send(attempt: _Attempt) -> tuple[int, str, bytes]:
        try:
            return _post_with_timeout(http, plan, attempt, timeout)
        except httpx.HTTPError as error:
            raise _unavailable(error) from None

    try:
        attempt = plan.attempt(old_size, proof)
        status, content_type, body = send(attempt)
        if status == 409:
            attempt = plan.retry(attempt, content_type, body)
            status, content_type, body = send(attempt)
            if status == 409:
                plan.give_up(attempt, content_type, body)
        return plan.result(status, body)
    finally:
        if own:
            http.close()


async def arequest_cosignature(
    url: str,
    old_size: int,
    proof: Sequence[bytes],
    signed_checkpoint: bytes,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    witness: CosignatureVerifier | None = None,
    consistency_proof: ConsistencyProof | None = None,
    client: httpx.AsyncClient | None = None,
) -> list[str]:
    """:func:`request_cosignature` for asyncio (``consistency_proof`` stays synchronous)."""
    plan = _plan(url, signed_checkpoint, witness, consistency_proof)
    own = client is None
    http = client if client is not None else httpx.AsyncClient()

    async def send(attempt: _Attempt) -> tuple[int, str, bytes]:
        try:
            return await _apost_with_timeout(http, plan, attempt, timeout)
        except httpx.HTTPError as error:
            raise _unavailable(error) from None

    try:
        attempt = plan.attempt(old_size, proof)
        status, content_type, body = await send(attempt)
        if status == 409:
            attempt = plan.retry(attempt, content_type, body)
            status, content_type, body = await send(attempt)
            if status == 409:
                plan.give_up(attempt, content_type, body)
        return plan.result(status, body)
    finally:
        if own:
            await http.aclose()
