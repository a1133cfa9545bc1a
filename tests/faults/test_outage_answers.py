"""A database outage is answered 503 ``service_unavailable``; a database bug stays a 500.

Found by the PostgreSQL restart test: while the server was down, the issuer answered 500
``server_error`` (the driver's OperationalError reached its edge as an unknown exception) and
the verifier answered Starlette's bare 500 with a traceback in its log. Outages are now told
apart from bugs by :func:`civic_service.db.is_outage`. The end-to-end behaviour (real
PostgreSQL stopped and started under load) is ``test_postgres_restart.py``; these are the
pieces that need no server.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import psycopg
import pytest
from sqlalchemy import exc as sa_exc

from civic.encoding import json_loads_object
from civic_service.db import is_outage
from issuer.app import EdgeMiddleware

pytestmark = pytest.mark.faults


def _wrapped(error_class: type[sa_exc.DBAPIError], *, invalidated: bool = False) -> Exception:
    return error_class(
        "SELECT 1", {}, Exception("driver says no"), connection_invalidated=invalidated
    )


def test_outages_are_told_from_bugs() -> None:
    assert is_outage(_wrapped(sa_exc.OperationalError))
    assert is_outage(_wrapped(sa_exc.InterfaceError))
    assert is_outage(_wrapped(sa_exc.ProgrammingError, invalidated=True))
    assert is_outage(sa_exc.TimeoutError("the pool is exhausted"))
    # Unwrapped, as code on a raw pooled connection sees them.
    assert is_outage(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert is_outage(psycopg.errors.AdminShutdown("terminating connection"))
    assert is_outage(psycopg.InterfaceError("the connection is closed"))
    # Bugs and refused statements are not outages.
    assert not is_outage(_wrapped(sa_exc.IntegrityError))
    assert not is_outage(_wrapped(sa_exc.ProgrammingError))
    assert not is_outage(psycopg.errors.UniqueViolation("duplicate key"))
    assert not is_outage(ValueError("not a database error"))


def _through_the_issuer_edge(error: Exception) -> tuple[int, dict[str, Any]]:
    async def app(_scope: Any, _receive: Any, _send: Any) -> None:
        raise error

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {"type": "http", "method": "POST", "path": "/credential", "headers": []}
    asyncio.run(EdgeMiddleware(app, limit=1024)(scope, receive, send))
    start, body = sent
    return int(start["status"]), json_loads_object(body["body"])


def test_the_issuer_answers_an_outage_503_with_a_reason() -> None:
    status, body = _through_the_issuer_edge(psycopg.OperationalError("connection refused"))
    assert status == 503
    assert body["error"] == "service_unavailable"
    status, body = _through_the_issuer_edge(_wrapped(sa_exc.OperationalError))
    assert (status, body["error"]) == (503, "service_unavailable")


def test_the_issuer_still_answers_a_bug_500() -> None:
    status, body = _through_the_issuer_edge(_wrapped(sa_exc.IntegrityError))
    assert (status, body["error"]) == (500, "server_error")
