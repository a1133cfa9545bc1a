"""OpenAPI declarations the services share: the body of every error answer.

Every service answers a refused request with ``{"error": <reason code>, "detail": <text>}``
(:class:`civic.errors.ReasonCode`). Routes declare the statuses they may answer with through
:func:`error_responses`, so that the OpenAPI document tells clients (and the schema fuzzing in
tests/fuzz) what an error looks like.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Missing or wrong credentials",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict with the current state",
    410: "Gone",
    413: "Request body too large",
    422: "Well-formed, but refused by a check",
    429: "Too many requests",
    503: "Temporarily unavailable",
}


class ErrorBody(BaseModel):
    """An error answer: a stable reason code and an operator-facing explanation."""

    error: str = Field(
        description="A reason code (civic.errors.ReasonCode), stable across releases"
    )
    detail: str = Field(description="What failed, for operators; never personal data")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or app: ``statuses`` answered with an :class:`ErrorBody`."""
    return {
        status: {"model": ErrorBody, "description": _DESCRIPTIONS.get(status, "Error")}
        for status in statuses
    }
