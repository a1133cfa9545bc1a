"""TCP_NODELAY on every connection the verifier's uvicorn workers accept.

uvicorn's protocols write a response as two segments, its head and then its body. asyncio
turns Nagle's algorithm off only on connections whose socket says ``IPPROTO_TCP``, and the
listening socket uvicorn binds for ``--workers`` is created with protocol 0; the body then
waits for the client to acknowledge the head, which a client delays by up to 40 ms (Linux's
delayed ACK): every response of a multi-worker verifier took 40 ms more (measured with
``bench.verifier``). :class:`NoDelayHTTPProtocol` is uvicorn's own HTTP protocol (httptools when
installed, else h11) that sets ``TCP_NODELAY`` itself; ``civic-verifier serve`` uses it.

:data:`LOG_CONFIG` is uvicorn's logging config plus the ``civic.verifier`` loggers at INFO on
stderr: uvicorn configures only its own loggers, so the audit line of every verdict (reason
codes and identifiers, never a claim value) was dropped under ``civic-verifier serve``.
"""

from __future__ import annotations

import asyncio
import copy
import socket
from typing import TYPE_CHECKING, Any

from uvicorn.config import LOGGING_CONFIG

if TYPE_CHECKING:
    from uvicorn.protocols.http.h11_impl import H11Protocol as _UvicornProtocol
else:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _UvicornProtocol
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol as _UvicornProtocol

PROTOCOL = "verifier.serving:NoDelayHTTPProtocol"
"""What to give uvicorn as ``http``: an import string, so that each worker imports it."""

LOG_CONFIG: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
"""What to give uvicorn as ``log_config`` (each worker process applies it)."""
LOG_CONFIG["loggers"]["civic.verifier"] = {
    "handlers": ["default"],
    "level": "INFO",
    "propagate": False,
}


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayHTTPProtocol(_UvicornProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)
