"""The issuer's FastAPI application (issue 4).

Routes live in :mod:`issuer.api.routes` (OpenID4VCI endpoints, status lists, admin API), their
dependencies and models in :mod:`issuer.api.deps` / :mod:`issuer.api.models`, the logic in
:mod:`issuer.issuance`, :mod:`issuer.admin` and :mod:`issuer.statuslists`. This module wires them:

- :func:`build_context` assembles the shared :class:`~issuer.issuance.IssuerContext` (engine,
  key store, registry accreditation, status list publisher, clock, randomness);
- :func:`create_app` adds the edge: a body-size limit answered with 413 before any route reads
  a byte more, request logging by route *template* (offer references in paths are bearer
  secrets), and one error shape per audience: OAuth errors (``{"error",
  "error_description"}``, ``Cache-Control: no-store``, ``WWW-Authenticate`` on 401/403) for the
  OpenID4VCI endpoints, ``{"error", "detail"}`` for the rest. Unexpected exceptions are caught
  at the edge and logged by type and stack only, never with their message (which could quote
  a claim), and answered with a bare 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from civic.clock import Clock, RandomBytes, system_clock, system_random
from civic.encoding import json_dumps, json_loads_object
from civic.errors import CivicError, ReasonCode
from civic_service.config import SettingsError
from civic_service.db import is_outage
from issuer import db
from issuer.admin import AdminError, authenticate
from issuer.api.routes import admin as admin_routes
from issuer.api.routes import oid4vci as oid4vci_routes
from issuer.api.routes import status as status_routes
from issuer.issuance import IssuanceFlow, IssuerContext, purge_expired
from issuer.keys import KeyStore
from issuer.oid4vci import IssuerProfile, OAuthError, configurations_for
from issuer.settings import IssuerRuntime
from issuer.statuslists import StatusListPublisher
from issuer.trust import Accreditation, RegistryTrust, TrustSource
from registry.client import HttpLogSource, log_config_from_json

log = logging.getLogger("issuer.app")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PURGE_INTERVAL = 60.0


def build_context(
    runtime: IssuerRuntime,
    *,
    trust: TrustSource,
    now: Clock = system_clock,
    random: RandomBytes = system_random,
    engine: Engine | None = None,
) -> IssuerContext:
    settings = runtime.settings
    if engine is None:
        engine = db.create_engine(runtime.database_url, schema=settings.database_schema)
    return IssuerContext(
        runtime=runtime,
        engine=engine,
        keys=KeyStore(engine, settings.keys_dir(), passphrase=runtime.key_passphrase),
        accreditation=Accreditation(
            trust, runtime.issuer_url, status_base_url=runtime.status_base_url
        ),
        profile=IssuerProfile(
            issuer_url=runtime.issuer_url,
            names=(settings.name_en, settings.name_ko),
            configurations=configurations_for(runtime.vcts),
            batch_size=settings.batch_size,
        ),
        status_publisher=StatusListPublisher(
            issuer_url=runtime.issuer_url,
            ttl=settings.status_list_ttl,
            lifetime=settings.status_list_lifetime,
        ),
        now=now,
        random=random,
    )


def registry_trust(runtime: IssuerRuntime) -> RegistryTrust:
    """Trust synced from ``registry_url`` with the relying-party ``trust-config.json``."""
    settings = runtime.settings
    path = settings.trust_config_path()
    try:
        config = log_config_from_json(json_loads_object(path.read_bytes(), what="trust config"))
    except OSError:
        raise SettingsError(
            f"trust config {path} is missing (copy the registry's trust-config.json)"
        ) from None
    except CivicError as error:
        raise SettingsError(f"trust config {path}: {error.detail}") from None
    return RegistryTrust(
        HttpLogSource(settings.registry_url),
        config,
        refresh_interval=settings.trust_refresh_seconds,
        max_age=settings.trust_max_age_seconds,
    )


# --- middleware ----------------------------------------------------------------------------


ADMIN_PREFIX = admin_routes.router.prefix + "/"


class EdgeMiddleware:
    """Body-size limit (413) and privacy-safe request logging.

    The whole body is read here, at most ``limit`` bytes, then replayed to the app: a request
    that declares or sends more is refused before any route sees it.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _reply(self, send: Send, status: int, body: dict[str, str]) -> None:
        payload = json_dumps(body).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode("ascii")),
                    (b"cache-control", b"no-store"),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        too_large = {
            "error": "invalid_request",
            "error_description": f"the request body is larger than {self.limit} bytes",
        }
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            log.info("%s %s -> 413", scope.get("method"), "(body too large)")
            await self._reply(send, 413, too_large)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > self.limit:
                log.info("%s %s -> 413", scope.get("method"), "(body too large)")
                await self._reply(send, 413, too_large)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        status = 500
        started_response = False

        async def watch(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = int(message["status"])
                started_response = True
            await send(message)

        try:
            await self.app(scope, replay, watch)
        except Exception as error:
            if is_outage(error):
                # The database is down or restarting: a clean 503 the client may retry; the
                # pool replaces dead connections once it is back (pre-ping).
                log.warning("database unavailable: %s", type(error).__name__)
                if not started_response:
                    status = 503
                    await self._reply(
                        send,
                        503,
                        {
                            "error": ReasonCode.SERVICE_UNAVAILABLE.value,
                            "detail": "the database is unavailable; try again shortly",
                        },
                    )
                return
            # Caught here, inside Starlette's error middleware, so that no server log prints
            # the exception message (which could quote a claim): type and stack only.
            log.error("unhandled %s\n%s", type(error).__name__, _frames(error))
            if not started_response:
                status = 500
                await self._reply(send, 500, {"error": "server_error", "detail": "internal error"})
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "(no route)"
            log.info(
                "%s %s -> %d (%.1f ms)",
                scope.get("method"),
                template,
                status,
                (time.perf_counter() - started) * 1000,
            )


def _frames(error: BaseException) -> str:
    """Where an exception came from: file, line, function; no message, no source text."""
    return "\n".join(
        f"  {frame.filename}:{frame.lineno} in {frame.name}"
        for frame in traceback.extract_tb(error.__traceback__)
    )


def _oauth_response(error: OAuthError) -> JSONResponse:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    challenge = error.www_authenticate()
    if challenge is not None:
        headers["WWW-Authenticate"] = challenge
    return JSONResponse(error.body(), error.status, headers=headers)


def _status_for(error: CivicError) -> int:
    if error.reason == ReasonCode.NOT_FOUND:
        return 404
    if error.reason == ReasonCode.UNAUTHORIZED:
        return 401
    if error.reason == ReasonCode.INPUT_TOO_LARGE:
        return 413
    return 400


def create_app(
    context: IssuerContext,
    *,
    purge_interval: float = PURGE_INTERVAL,
    create_tables: bool = True,
) -> FastAPI:
    """The issuer app over ``context``; tables are created (if missing) at startup."""
    flow = IssuanceFlow(context)

    def purge() -> None:
        with db.write_transaction(context.engine) as connection:
            purge_expired(connection, context.now())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if create_tables:
            await run_in_threadpool(db.create_schema, context.engine)
        # Open the key files now: a wrong passphrase stops the start, not the first request.
        await run_in_threadpool(context.keys.signers)

        async def purge_forever() -> None:
            while True:
                await asyncio.sleep(purge_interval)
                try:
                    await run_in_threadpool(purge)
                except Exception as error:  # the next round may succeed; never crash the app
                    log.warning("purge failed: %s", type(error).__name__)

        async def sync_trust_forever(trust: RegistryTrust) -> None:
            # Ahead of the requests: the wallet's endpoints run on the event loop (SQLite), and
            # a registry sync there would hold up every request of this worker meanwhile.
            margin = trust.refresh_interval // 2
            while True:
                try:
                    await run_in_threadpool(trust.refresh_ahead, context.now(), margin=margin)
                except Exception as error:  # never crash the app; requests sync if need be
                    log.warning("registry sync failed: %s", type(error).__name__)
                await asyncio.sleep(max(1, trust.refresh_interval // 4))

        tasks = [asyncio.create_task(purge_forever())]
        source = context.accreditation.source
        if isinstance(source, RegistryTrust):
            tasks.append(asyncio.create_task(sync_trust_forever(source)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="civic-issuer", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.context = context
    app.state.flow = flow
    # The wallet's hot endpoints first: routes are matched in order.
    app.router.routes.extend(oid4vci_routes.wallet_routes)
    app.include_router(oid4vci_routes.router)
    app.include_router(status_routes.router)
    app.include_router(admin_routes.router)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(OAuthError)
    async def oauth_error(_request: Request, error: OAuthError) -> JSONResponse:
        log.info("oauth error %s (%s)", error.error, error.reason.value)
        return _oauth_response(error)

    @app.exception_handler(AdminError)
    async def admin_error(_request: Request, error: AdminError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer realm="admin"'} if error.status == 401 else None
        return JSONResponse(
            {"error": error.error, "detail": error.detail}, error.status, headers=headers
        )

    @app.exception_handler(CivicError)
    async def civic_error(_request: Request, error: CivicError) -> JSONResponse:
        log.info("request refused: %s", error.reason.value)
        return JSONResponse(
            {"error": error.reason.value, "detail": error.detail}, _status_for(error)
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # The admin API checks the API key before it answers anything about a request. FastAPI
        # decodes a JSON body before it runs the route's dependencies, so a body that is not
        # JSON lands here unauthenticated: the key is checked now (401 before 400).
        if request.url.path.startswith(ADMIN_PREFIX):
            try:
                await run_in_threadpool(
                    authenticate, context.engine, request.headers.get("authorization")
                )
            except AdminError as refused:
                return await admin_error(request, refused)
        # Name the parameters only: their values may be personal data.
        names = sorted({str(item.get("loc", ("?",))[-1]) for item in error.errors()})
        return JSONResponse(
            {"error": "invalid_request", "detail": f"invalid parameters: {', '.join(names)}"}, 400
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        name = "not_found" if error.status_code == 404 else "invalid_request"
        return JSONResponse({"error": name, "detail": str(error.detail)}, error.status_code)

    app.add_middleware(EdgeMiddleware, limit=context.runtime.settings.max_body_bytes)
    return app
