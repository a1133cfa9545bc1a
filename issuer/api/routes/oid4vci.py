"""OpenID4VCI 1.0 endpoints: metadata, offer by reference, token, nonce, credential."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from issuer.api.deps import BodyDep, ContextDep, FlowDep
from issuer.oid4vci import authorization_server_metadata, issuer_metadata

router = APIRouter()

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@router.get("/.well-known/openid-credential-issuer")
def credential_issuer_metadata(context: ContextDep) -> JSONResponse:
    return JSONResponse(issuer_metadata(context.profile))


@router.get("/.well-known/oauth-authorization-server")
def oauth_metadata(context: ContextDep) -> JSONResponse:
    return JSONResponse(authorization_server_metadata(context.profile))


@router.get("/offers/{ref}")
def credential_offer(ref: str, flow: FlowDep) -> JSONResponse:
    offer = flow.offer_document(ref)
    if offer is None:
        return JSONResponse(
            {"error": "not_found", "detail": "no such offer, or it was used or expired"},
            404,
            headers=NO_STORE,
        )
    return JSONResponse(offer, headers=NO_STORE)


@router.post("/token")
def token(request: Request, body: BodyDep, flow: FlowDep) -> JSONResponse:
    answer = flow.token(body, request.headers.get("content-type"))
    return JSONResponse(answer, headers=NO_STORE)


@router.post("/nonce")
def nonce(flow: FlowDep) -> JSONResponse:
    return JSONResponse({"c_nonce": flow.nonce()}, headers=NO_STORE)


@router.post("/credential")
def credential(request: Request, body: BodyDep, flow: FlowDep) -> JSONResponse:
    answer = flow.credential(
        request.headers.get("authorization"), body, request.headers.get("content-type")
    )
    return JSONResponse(answer, headers=NO_STORE)
