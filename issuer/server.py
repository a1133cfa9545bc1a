"""Serving the issuer over HTTP: one process, or several sharing one socket (issue 4, "CLI").

``civic-issuer serve --workers N`` binds the listening socket once and starts ``N`` worker
processes (``spawn``), each building its own :class:`~issuer.issuance.IssuerContext` (engine,
key store, registry trust) and running uvicorn on the shared socket; the kernel spreads the
connections. Workers share state only through the database, as replicas on PostgreSQL do.

The socket is created with ``IPPROTO_TCP`` on purpose: asyncio switches Nagle's algorithm off
(``TCP_NODELAY``) only on connections accepted from a socket that names its protocol, and
uvicorn's own multi-worker socket does not, so every response written in two pieces would wait
for the peer's delayed ACK (up to 40 ms on Linux).

Each worker speaks HTTP through uvicorn's own protocol (httptools), with one change: what it
writes in one turn of the event loop leaves in one ``send``
(:class:`civic_service.http.CoalescingHTTPProtocol`, which civic-verifier serve uses too).
uvicorn writes a response's head and body separately, two system calls and two TCP segments
for every answer of a few hundred bytes; the bytes and their order are the same.

If a worker dies, the others are stopped and the command fails: a supervisor (systemd, a
container runtime) restarts the whole service, rather than this process hiding a crash loop.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import signal
import socket
import threading
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import DefaultFormatter

from civic_service.http import CoalescingHTTPProtocol
from issuer.app import build_context, create_app, registry_trust
from issuer.settings import IssuerSettings, load_runtime

STOP_TIMEOUT = 30.0

LOG_CONFIG: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
"""uvicorn's logging config plus the issuer's own loggers at INFO on stderr (request lines by
route template, offers' progress by number; no claim value): uvicorn configures only its own
loggers, so these were dropped."""
LOG_CONFIG["formatters"]["issuer"] = {
    "()": "issuer.server.LevelPrefixFormatter",
    "fmt": "%(levelprefix)s %(message)s",
    "use_colors": None,
}
LOG_CONFIG["handlers"]["issuer"] = {
    "formatter": "issuer",
    "class": "logging.StreamHandler",
    "stream": "ext://sys.stderr",
}
LOG_CONFIG["loggers"]["issuer"] = {"handlers": ["issuer"], "level": "INFO", "propagate": False}


class LevelPrefixFormatter(DefaultFormatter):
    """uvicorn's default format, ``%(levelprefix)s %(message)s``, and the same lines, without
    the copy of every record that uvicorn's formatter makes when there are no colours: the
    issuer writes five lines per issuance."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        if self.use_colors:
            return super().formatMessage(record)
        return f"{record.levelname}:{' ' * (8 - len(record.levelname))} {record.message}"


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket (``port`` 0: any free port) whose connections get ``TCP_NODELAY``."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )[0]
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.set_inheritable(True)
    return sock


def run_worker(settings: IssuerSettings, sock: socket.socket) -> None:
    """Build the issuer from ``settings`` and serve it on ``sock`` until told to stop."""
    # No format of this process prints where a log call was made, or from which thread or
    # process: the logging module need not look them up for every record (its documented
    # optimisations).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    runtime = load_runtime(settings)
    context = build_context(runtime, trust=registry_trust(runtime))
    # The access log would print offer references (bearer secrets) in paths; the app logs
    # requests by route template instead.
    config = uvicorn.Config(
        create_app(context),
        access_log=False,
        log_config=LOG_CONFIG,
        http=CoalescingHTTPProtocol,
    )
    uvicorn.Server(config).run(sockets=[sock])


def serve(settings: IssuerSettings, *, workers: int = 1) -> int:
    """Serve on ``settings.host:settings.port``; returns the exit status."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    sock = listening_socket(settings.host, settings.port)
    if workers == 1:
        run_worker(settings, sock)
        return 0
    spawn = multiprocessing.get_context("spawn")
    processes = [
        spawn.Process(target=run_worker, args=(settings, sock), name=f"civic-issuer-{n}")
        for n in range(workers)
    ]
    stopping = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for process in processes:
            process.start()
        while not stopping.is_set() and all(process.is_alive() for process in processes):
            stopping.wait(0.5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        for process in processes:
            process.join(timeout=STOP_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join()
        sock.close()
    return 0 if stopping.is_set() else 1
