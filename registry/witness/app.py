"""The witness HTTP service (C2SP tlog-witness; docs/registry.md, "Witness").

- ``POST /add-checkpoint``: the body is bounded (``max_body_bytes``, 413 beyond it, checked on
  ``Content-Length`` and again while streaming); the checks and their status codes are those of
  :mod:`civic.witness`; the new state is committed (:meth:`WitnessStore.advance`) before the
  cosignature lines are sent. A 409 answer is exactly ``<size>\\n`` with ``Content-Type:
  text/x.tlog.size``; other refusals are ``{"error": <reason code>, "detail": ...}``.
- ``GET /<lowercase hex SHA-256 of the origin>/checkpoint``: the latest cosigned checkpoint with
  the log signature(s) the witness verified and its own cosignature(s) ("Monitor Retrieval
  Mechanism"); 404 if the witness never cosigned that log.
- ``GET /healthz``: liveness.

Refusals are logged with the origin, the sizes and the reason code: a consistency failure on a
validly signed checkpoint is evidence of log misbehaviour (the spec invites logging it).
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from civic.checkpoint import Checkpoint
from civic.errors import CivicError, MalformedError, ReasonCode
from civic.witness import (
    TLOG_SIZE_CONTENT_TYPE,
    AddCheckpointRequest,
    LogState,
    WitnessSizeConflict,
    check_against_state,
    check_request_shape,
    cosignature_lines,
    encode_tlog_size,
    open_submitted_checkpoint,
    parse_add_checkpoint_request,
    status_for,
)
from civic_service.openapi import error_responses
from registry.witness.settings import WitnessConfig
from registry.witness.state import MAX_STORED_SIZE, WitnessStore

logger = logging.getLogger("registry.witness")

_ORIGIN_HASH = re.compile(r"[0-9a-f]{64}")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,20}")
_EVIDENCE = frozenset(
    {
        ReasonCode.LOG_FORK,
        ReasonCode.CONSISTENCY_PROOF_INVALID,
        ReasonCode.MALFORMED_PROOF,
        ReasonCode.LOG_ROLLBACK,
        ReasonCode.LOG_ROOT_MISMATCH,
    }
)


class BodyTooLarge(MalformedError):
    def __init__(self) -> None:
        super().__init__(ReasonCode.INPUT_TOO_LARGE, "request body too large")


class WitnessService:
    """add-checkpoint without HTTP: what the route runs in a worker thread."""

    def __init__(self, config: WitnessConfig, store: WitnessStore) -> None:
        self.config = config
        self.store = store

    def add_checkpoint(self, body: bytes) -> list[str]:
        """Check ``body``, commit the new state, return the cosignature lines. Raises CivicError."""
        request: AddCheckpointRequest | None = None
        checkpoint: Checkpoint | None = None
        try:
            request = parse_add_checkpoint_request(body, max_bytes=self.config.max_body_bytes)
            signed = open_submitted_checkpoint(request.checkpoint_note, self.config.logs)
            checkpoint = signed.checkpoint
            check_request_shape(request, checkpoint)
            if checkpoint.size > MAX_STORED_SIZE:
                raise MalformedError(
                    ReasonCode.MALFORMED_INPUT, "tree sizes from 2^63 are beyond this witness"
                )
            lines: list[str] = []
            checked_request, checked_checkpoint = request, checkpoint

            def decide(stored: LogState) -> tuple[LogState, str]:
                new_state = check_against_state(checked_request, checked_checkpoint, stored)
                # Signed inside the transaction so that the stored note carries exactly the
                # lines we answer with; if the commit fails they are never sent.
                lines[:] = cosignature_lines(signed.note.text, self.config.signers)
                log_lines = "".join(signature.line() for signature in signed.note.verified)
                return new_state, signed.note.text + "\n" + log_lines + "".join(lines)

            self.store.advance(checkpoint.origin, decide, self.config.now())
        except CivicError as error:
            _log_refusal(request, checkpoint, error)
            raise
        logger.info(
            "cosigned origin=%r size=%d old=%d",
            checkpoint.origin,
            checkpoint.size,
            request.old_size,
        )
        return lines

    def latest_checkpoint(self, hashed_origin: str) -> str | None:
        origin = self.config.origin_by_hash.get(hashed_origin)
        if origin is None:
            return None
        stored = self.store.get(origin)
        return stored.checkpoint if stored is not None else None


def _log_refusal(
    request: AddCheckpointRequest | None, checkpoint: Checkpoint | None, error: CivicError
) -> None:
    # Origins and sizes are public log data; the detail strings never echo input bytes.
    level = logging.WARNING if error.reason in _EVIDENCE else logging.INFO
    logger.log(
        level,
        "refused origin=%r old=%s size=%s reason=%s: %s",
        checkpoint.origin if checkpoint is not None else None,
        request.old_size if request is not None else None,
        checkpoint.size if checkpoint is not None else None,
        error.reason.value,
        error.detail,
    )


def _error_response(error: CivicError) -> Response:
    if isinstance(error, WitnessSizeConflict):
        # Set the header ourselves: Starlette would append "; charset=utf-8" to a text/* type.
        return Response(
            encode_tlog_size(error.current_size),
            status_code=409,
            headers={"content-type": TLOG_SIZE_CONTENT_TYPE},
        )
    return JSONResponse(
        {"error": error.reason.value, "detail": error.detail}, status_code=status_for(error)
    )


async def _read_bounded(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not _CONTENT_LENGTH.fullmatch(declared):
            raise MalformedError(ReasonCode.MALFORMED_INPUT, "invalid Content-Length")
        if int(declared) > limit:
            raise BodyTooLarge()
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise BodyTooLarge()
            chunks.append(chunk)
    except ClientDisconnect:
        # The log went away mid-request (crashed, killed): nobody reads the answer, but it
        # must not surface as an unhandled exception with a traceback.
        raise MalformedError(ReasonCode.MALFORMED_INPUT, "the client disconnected") from None
    return b"".join(chunks)


def create_app(config: WitnessConfig, store: WitnessStore) -> FastAPI:
    """The witness app over ``store`` (whose tables must exist; the caller owns its lifetime)."""
    service = WitnessService(config, store)
    app = FastAPI(title="Civic registry witness", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.witness = service

    @app.post(
        "/add-checkpoint",
        response_class=PlainTextResponse,
        responses={
            **error_responses(400, 403, 404, 413, 422),
            409: {
                "description": "Old size is not the size last cosigned: the current size",
                "content": {TLOG_SIZE_CONTENT_TYPE: {"schema": {"type": "string"}}},
            },
        },
    )
    async def add_checkpoint(request: Request) -> Response:
        try:
            body = await _read_bounded(request, config.max_body_bytes)
            lines = await run_in_threadpool(service.add_checkpoint, body)
        except CivicError as error:
            return _error_response(error)
        return PlainTextResponse("".join(lines))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/{hashed_origin}/checkpoint",
        response_class=PlainTextResponse,
        responses=error_responses(404),
    )
    def checkpoint(hashed_origin: str) -> Response:
        if not _ORIGIN_HASH.fullmatch(hashed_origin):
            return JSONResponse(
                {"error": ReasonCode.MALFORMED_INPUT.value, "detail": "bad origin hash"},
                status_code=404,
            )
        note = service.latest_checkpoint(hashed_origin)
        if note is None:
            return JSONResponse(
                {"error": ReasonCode.LOG_ORIGIN_UNKNOWN.value, "detail": "no cosigned checkpoint"},
                status_code=404,
            )
        return PlainTextResponse(note)

    return app
