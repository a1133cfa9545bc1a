"""The agency admin API: offers and issued credentials (Bearer API keys, scoped to vcts)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query

from civic_service.openapi import error_responses
from issuer.admin import create_offer, get_credential, list_credentials, set_credential_status
from issuer.api.deps import ContextDep, PrincipalDep
from issuer.api.models import CredentialList, CredentialRecord, OfferCreate, OfferCreated

router = APIRouter(prefix="/admin", responses=error_responses(401, 403))


class StatusAction(StrEnum):
    revoke = "revoke"
    suspend = "suspend"
    reinstate = "reinstate"


@router.post(
    "/offers",
    status_code=201,
    response_model=OfferCreated,
    responses=error_responses(400, 413, 503),
)
def post_offer(body: OfferCreate, principal: PrincipalDep, context: ContextDep) -> dict[str, Any]:
    created = create_offer(
        context, principal, vct=body.vct, claims=body.claims, evidence=body.evidence
    )
    return created.to_json()


@router.get("/credentials", response_model=CredentialList, responses=error_responses(400))
def get_credentials(
    principal: PrincipalDep,
    context: ContextDep,
    vct: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    return list_credentials(context, principal, vct=vct, limit=limit, offset=offset)


@router.get(
    "/credentials/{credential_id}", response_model=CredentialRecord, responses=error_responses(404)
)
def get_one_credential(
    credential_id: str, principal: PrincipalDep, context: ContextDep
) -> dict[str, Any]:
    return get_credential(context, principal, credential_id)


@router.post(
    "/credentials/{credential_id}/{action}",
    response_model=CredentialRecord,
    responses=error_responses(400, 404, 409, 413),
)
def change_credential_status(
    credential_id: str, action: StatusAction, principal: PrincipalDep, context: ContextDep
) -> dict[str, Any]:
    return set_credential_status(context, principal, credential_id, action.value)
