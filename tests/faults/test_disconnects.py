"""A peer killed mid-request: the registry and the witness answer with a reason, no traceback.

Found by the registry kill test: when ``civic-registry serve`` was killed while posting a
checkpoint to its witness, the witness's body reader let Starlette's ``ClientDisconnect``
escape (an unhandled exception, logged with a traceback). The same reader shape served
``POST /entries`` in the registry.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from civic.errors import MalformedError, ReasonCode
from registry.app import _read_body
from registry.witness.app import _read_bounded

pytestmark = pytest.mark.faults


def _cut_request() -> Request:
    """A POST whose client sends part of the body and then disconnects."""
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"par', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-length", b"100")],
        "query_string": b"",
    }
    return Request(scope, receive)


def test_the_witness_reads_a_cut_body_as_malformed_input() -> None:
    with pytest.raises(MalformedError) as raised:
        asyncio.run(_read_bounded(_cut_request(), 1000))
    assert raised.value.reason is ReasonCode.MALFORMED_INPUT


def test_the_registry_reads_a_cut_body_as_malformed_input() -> None:
    with pytest.raises(MalformedError) as raised:
        asyncio.run(_read_body(_cut_request(), 1000))
    assert raised.value.reason is ReasonCode.MALFORMED_INPUT
