"""The registry's HTTP API (docs/registry.md, "HTTP API of the registry").

FastAPI routes over the sequencer, the SQL node store and the publisher:

- ``POST /entries`` (admin Bearer token, body at most ``max_body_bytes``): 201
  ``{"index", "leaf_hash"}`` once the entry is committed; 4xx with the reason code and nothing
  appended when the entry fails validation against the trust state;
- ``GET /entries?start=&end=`` (at most 1000 per page), ``GET /checkpoint`` (the signed note
  with its cosignatures), ``GET /proof/inclusion``, ``GET /proof/consistency``: O(log n) node
  reads, no tree recomputation;
- ``GET /trust/issuers/{issuer}/keys``: the issuer's key events with inclusion proofs against
  the checkpoint served by ``GET /checkpoint``;
- ``GET /healthz``.

Errors are ``{"error": <reason code>, "detail": ...}``. The admin token is kept only as its
SHA-256 and compared in constant time. Details never carry secrets; entries carry no personal
data by construction (docs/registry.md, "Entries").
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from civic.clock import Clock, system_clock
from civic.encoding import b64std_encode, json_loads_object
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError
from civic.merkle import MerkleTree
from civic_service.openapi import error_responses
from registry.db import create_engine, create_schema
from registry.publisher import Publisher
from registry.sequencer import Appended, Sequencer
from registry.settings import RegistryRuntime
from registry.store import SqlNodeStore, read_entries, read_size, read_subject_entries

log = logging.getLogger("registry.app")

MAX_PAGE = 1000
ISSUER_KEY_EVENTS = ("issuer.key.add", "issuer.key.retire", "issuer.key.revoke")

_CONFLICTS = {ReasonCode.REGISTRY_ENTRY_DUPLICATE, ReasonCode.DUPLICATE_KID}


def status_for(error: CivicError) -> int:
    if error.reason == ReasonCode.INPUT_TOO_LARGE:
        return 413
    if error.reason == ReasonCode.UNAUTHORIZED:
        return 401
    if error.reason == ReasonCode.NOT_FOUND:
        return 404
    if error.reason == ReasonCode.LOG_UNAVAILABLE:
        return 503
    if error.reason in _CONFLICTS:
        return 409
    if isinstance(error, VerificationError):
        return 422
    return 400


def error_response(reason: ReasonCode | str, detail: str, status: int) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": str(reason), "detail": detail}, status, headers=headers)


class _TooLarge(MalformedError):
    def __init__(self, limit: int) -> None:
        super().__init__(ReasonCode.INPUT_TOO_LARGE, f"request body over {limit} bytes")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise _TooLarge(limit)
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise _TooLarge(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        # The client went away mid-request: answered (to no one) with a reason, not a traceback.
        raise MalformedError(ReasonCode.MALFORMED_INPUT, "the client disconnected") from None
    return b"".join(chunks)


def _b64_list(hashes: list[bytes]) -> list[str]:
    return [b64std_encode(value) for value in hashes]


def create_app(
    runtime: RegistryRuntime, *, now: Clock = system_clock, publish_in_background: bool = True
) -> FastAPI:
    """The registry app; the schema is created and the publisher started at startup."""
    settings = runtime.settings
    engine = create_engine(runtime.database_url, schema=settings.database_schema)
    publisher = Publisher(
        engine,
        runtime.log_signer,
        runtime.origin,
        runtime.witnesses,
        quorum=runtime.witness_quorum,
        witness_timeout=settings.witness_timeout,
        republish_interval=settings.republish_interval,
        now=now,
    )

    def appended(_entry: Appended) -> None:
        publisher.notify()

    sequencer = Sequencer(engine, runtime.governance, now=now, on_append=appended)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(create_schema, engine)
        # Fold the stored log once so that the first append does not pay for it.
        await run_in_threadpool(sequencer.trust_state)
        if publish_in_background:
            publisher.start()
        else:
            await run_in_threadpool(publisher.publish)
        try:
            yield
        finally:
            publisher.stop()
            engine.dispose()

    app = FastAPI(
        title="civic-registry",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        responses=error_responses(400, 503),
    )
    app.state.sequencer = sequencer
    app.state.publisher = publisher
    app.state.engine = engine

    @app.exception_handler(CivicError)
    async def civic_error(_request: Request, error: CivicError) -> JSONResponse:
        return error_response(error.reason, error.detail, status_for(error))

    @app.exception_handler(SQLAlchemyError)
    async def database_error(_request: Request, error: SQLAlchemyError) -> JSONResponse:
        # The driver's message may quote the URL or SQL: log the class, answer with a reason.
        log.error("database error: %s", type(error).__name__)
        return error_response(ReasonCode.LOG_UNAVAILABLE, "the log database is unavailable", 503)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        # Name the parameters only: their values may be anything a caller sent.
        names = sorted({str(item.get("loc", ("?",))[-1]) for item in error.errors()})
        return error_response(
            ReasonCode.MALFORMED_INPUT, f"invalid parameters: {', '.join(names)}", 400
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        reason = ReasonCode.NOT_FOUND if error.status_code == 404 else ReasonCode.MALFORMED_INPUT
        return error_response(reason, str(error.detail), error.status_code)

    def require_admin(request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not runtime.admin_token_matches(token.strip()):
            raise UsageError(ReasonCode.UNAUTHORIZED, "a valid admin Bearer token is required")

    @app.post("/entries", status_code=201, responses=error_responses(401, 409, 413, 422))
    async def post_entry(request: Request) -> JSONResponse:
        require_admin(request)
        body = await _read_body(request, settings.max_body_bytes)
        result = await run_in_threadpool(sequencer.append, body)
        log.info("appended entry %d", result.index)
        return JSONResponse(
            {"index": result.index, "leaf_hash": b64std_encode(result.leaf_hash)}, 201
        )

    @app.get("/entries")
    def get_entries(
        start: Annotated[int, Query(ge=0)], end: Annotated[int, Query(ge=0)]
    ) -> Response:
        if end < start:
            raise UsageError(ReasonCode.INDEX_OUT_OF_RANGE, "end must not be below start")
        with engine.connect() as connection, connection.begin():
            size = read_size(connection)
            if start > size:
                raise UsageError(ReasonCode.INDEX_OUT_OF_RANGE, f"start beyond the size {size}")
            stored = read_entries(connection, start, min(end, size, start + MAX_PAGE))
        # Leaves are canonical JSON objects already: splice them instead of re-encoding.
        leaves = b",".join(entry.leaf for entry in stored)
        body = b'{"start":%d,"entries":[%s]}' % (start, leaves)
        return Response(body, media_type="application/json")

    @app.get("/checkpoint")
    def get_checkpoint() -> Response:
        latest = publisher.latest()
        if latest is None:
            return error_response(ReasonCode.LOG_UNAVAILABLE, "no checkpoint published yet", 503)
        return PlainTextResponse(latest.note, headers={"Cache-Control": "no-cache"})

    @app.get("/proof/inclusion")
    def inclusion_proof(
        index: Annotated[int, Query(ge=0)], size: Annotated[int, Query(ge=1)]
    ) -> dict[str, Any]:
        with engine.connect() as connection, connection.begin():
            proof = MerkleTree(SqlNodeStore(connection)).inclusion_proof(index, size)
        return {"index": index, "size": size, "proof": _b64_list(proof)}

    @app.get("/proof/consistency")
    def consistency_proof(
        old: Annotated[int, Query(ge=1)], new: Annotated[int, Query(ge=1)]
    ) -> dict[str, Any]:
        with engine.connect() as connection, connection.begin():
            proof = MerkleTree(SqlNodeStore(connection)).consistency_proof(old, new)
        return {"old": old, "new": new, "proof": _b64_list(proof)}

    @app.get("/trust/issuers/{issuer:path}/keys", responses=error_responses(404))
    def issuer_keys(issuer: str) -> Response:
        latest = publisher.latest()
        if latest is None:
            raise VerificationError(ReasonCode.LOG_UNAVAILABLE, "no checkpoint published yet")
        with engine.connect() as connection, connection.begin():
            stored = read_subject_entries(connection, issuer, latest.size)
            items: list[dict[str, Any]] = []
            tree = MerkleTree(SqlNodeStore(connection))
            for entry in stored:
                document = json_loads_object(entry.leaf)
                event = document.get("event")
                if not isinstance(event, dict) or event.get("type") not in ISSUER_KEY_EVENTS:
                    continue
                items.append(
                    {
                        "index": entry.index,
                        "leaf_hash": b64std_encode(entry.leaf_hash),
                        "entry": document,
                        "proof": _b64_list(tree.inclusion_proof(entry.index, latest.size)),
                    }
                )
        if not items:
            return error_response(
                ReasonCode.ISSUER_UNKNOWN, "no key events for this issuer at the checkpoint", 404
            )
        return JSONResponse(
            {"issuer": issuer, "size": latest.size, "checkpoint": latest.note, "entries": items}
        )

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        with engine.connect() as connection, connection.begin():
            return {"status": "ok", "size": read_size(connection)}

    return app
