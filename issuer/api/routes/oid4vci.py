"""OpenID4VCI 1.0 endpoints: metadata, offer by reference, token, nonce, credential."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import Scope

from civic_service.openapi import error_responses
from issuer.api.deps import ContextDep, FlowDep
from issuer.issuance import IssuanceFlow
from issuer.oid4vci import authorization_server_metadata, issuer_metadata

router = APIRouter()

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


# Pure functions of the profile: async, so that FastAPI does not hand them to the thread pool.


@router.get("/.well-known/openid-credential-issuer")
async def credential_issuer_metadata(context: ContextDep) -> JSONResponse:
    return JSONResponse(issuer_metadata(context.profile))


@router.get("/.well-known/oauth-authorization-server")
async def oauth_metadata(context: ContextDep) -> JSONResponse:
    return JSONResponse(authorization_server_metadata(context.profile))


@router.get("/offers/{ref}", responses=error_responses(404))
async def credential_offer(ref: str, flow: FlowDep) -> JSONResponse:
    offer = await flow.run(lambda: flow.offer_document(ref))
    if offer is None:
        return JSONResponse(
            {"error": "not_found", "detail": "no such offer, or it was used or expired"},
            404,
            headers=NO_STORE,
        )
    return JSONResponse(offer, headers=NO_STORE)


# The wallet's endpoints (offer, token, nonce, credential) run on the event loop when the
# database is SQLite: their work is a few hundred microseconds of CPU and local file I/O, and
# handing it to the thread pool and back cost more than the work itself (thread switches and
# GIL hand-overs). On PostgreSQL, where a statement waits on the network, they use the pool
# (IssuanceFlow.run). Token, nonce and credential are plain Starlette routes (``wallet_routes``,
# mounted first by the app): they take no parameters FastAPI would parse, and its request
# handling (dependencies, telemetry, response checks) cost ~0.1 ms a request, a third of
# what the nonce endpoint costs in all. Errors still go through the app's exception handlers.


def _flow(request: Request) -> IssuanceFlow:
    flow = request.app.state.flow
    assert isinstance(flow, IssuanceFlow)
    return flow


async def token(request: Request) -> Response:
    flow = _flow(request)
    body = await request.body()
    content_type = request.headers.get("content-type")
    answer = await flow.run(lambda: flow.token(body, content_type))
    return JSONResponse(answer, headers=NO_STORE)


async def nonce(request: Request) -> Response:
    flow = _flow(request)
    value = await flow.run(flow.nonce)
    return JSONResponse({"c_nonce": value}, headers=NO_STORE)


async def credential(request: Request) -> Response:
    flow = _flow(request)
    body = await request.body()
    authorization = request.headers.get("authorization")
    content_type = request.headers.get("content-type")
    answer = await flow.credential_endpoint(authorization, body, content_type)
    return JSONResponse(answer, headers=NO_STORE)


class _NamedRoute(Route):
    """A Starlette route that puts itself in the scope as ``route``, as FastAPI's routes do:
    the app's request log prints that route's template, and "(no route)" without it."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


wallet_routes = [
    _NamedRoute("/token", token, methods=["POST"]),
    _NamedRoute("/nonce", nonce, methods=["POST"]),
    _NamedRoute("/credential", credential, methods=["POST"]),
]
