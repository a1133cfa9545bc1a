"""FastAPI dependencies: the shared issuer context and flow, the admin principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from issuer.admin import ApiPrincipal, authenticate
from issuer.issuance import IssuanceFlow, IssuerContext

# Async on purpose: FastAPI runs a plain ``def`` dependency in the thread pool, a hop that costs
# more than these attribute lookups.


async def get_context(request: Request) -> IssuerContext:
    context = request.app.state.context
    assert isinstance(context, IssuerContext)
    return context


async def get_flow(request: Request) -> IssuanceFlow:
    flow = request.app.state.flow
    assert isinstance(flow, IssuanceFlow)
    return flow


def admin_principal(
    request: Request, context: Annotated[IssuerContext, Depends(get_context)]
) -> ApiPrincipal:
    return authenticate(context.engine, request.headers.get("authorization"))


ContextDep = Annotated[IssuerContext, Depends(get_context)]
FlowDep = Annotated[IssuanceFlow, Depends(get_flow)]
PrincipalDep = Annotated[ApiPrincipal, Depends(admin_principal)]
