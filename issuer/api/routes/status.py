"""Status List Tokens (draft-ietf-oauth-status-list section 5.1, 8.1): ``GET /status/{list}``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from civic.errors import CivicError
from civic.jose import Signer
from civic_service.openapi import error_responses
from issuer import db
from issuer.api.deps import ContextDep
from issuer.statuslists import MEDIA_TYPE

router = APIRouter()


@router.get(
    "/status/{list_id}",
    response_class=Response,
    responses={
        200: {
            "description": "A Status List Token",
            "content": {MEDIA_TYPE: {"schema": {"type": "string"}}},
        },
        **error_responses(404, 503),
    },
)
def status_list(list_id: str, context: ContextDep) -> Response:
    if not list_id.isdigit() or len(list_id) > 18:
        return JSONResponse({"error": "not_found", "detail": "no such status list"}, 404)
    now = context.now()

    def signer_for_lists() -> tuple[Signer, str]:
        signer = context.signer_for_lists(now)
        return signer, signer.kid

    try:
        with db.read_transaction(context.engine) as connection:
            token = context.status_publisher.token(
                connection, int(list_id), signer_for_lists=signer_for_lists, now=now
            )
    except CivicError as error:
        return JSONResponse(
            {"error": error.reason.value, "detail": "status lists cannot be signed right now"},
            503,
            headers={"Cache-Control": "no-store"},
        )
    if token is None:
        return JSONResponse({"error": "not_found", "detail": "no such status list"}, 404)
    return Response(
        token,
        media_type=MEDIA_TYPE,
        headers={"Cache-Control": f"max-age={context.status_publisher.ttl}"},
    )
