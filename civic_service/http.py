"""uvicorn's HTTP protocol as both services serve it: each answer in one ``send``, Nagle off.

uvicorn writes a response's head and body separately: two system calls and two TCP segments for
every answer of a few hundred bytes. :class:`CoalescingHTTPProtocol` is uvicorn's own protocol
(httptools when installed, else h11) over a transport that joins what is written in one turn
of the event loop into one ``send``; the bytes and their order are the same.

It also sets ``TCP_NODELAY`` on every connection. asyncio turns Nagle's algorithm off only on
connections whose listening socket says ``IPPROTO_TCP``, and the socket uvicorn binds for
``--workers`` is created with protocol 0: a response written in two pieces then waited for
the client's delayed ACK of the first (up to 40 ms on Linux; measured with ``bench.verifier``).
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from uvicorn.protocols.http.h11_impl import H11Protocol as _UvicornProtocol
else:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _UvicornProtocol
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol as _UvicornProtocol


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _CoalescingTransport:
    """A transport whose writes wait for the end of the current event loop turn, then leave
    together in one write of the real transport; everything else is the real transport's."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending = []
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHTTPProtocol(_UvicornProtocol):
    """uvicorn's HTTP protocol writing each response's head and body in one ``send``, with
    Nagle's algorithm off."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        proxy = _CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(cast("asyncio.Transport", proxy))
