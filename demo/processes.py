"""Service processes for the city demo: start them, wait until they answer, always stop them.

Every service runs as its own process (its CLI's ``serve``, uvicorn on 127.0.0.1) in a process
group of its own, so that stopping it reaches anything it spawned and so that the terminal's
Ctrl-C reaches only the demo, which then stops the services in order. Three layers make sure
nothing outlives the demo:

- :meth:`Supervisor.stop_all` sends SIGTERM to every group, waits, then SIGKILLs what is left;
  the demo calls it in a ``finally``, with SIGINT/SIGTERM/SIGHUP turned into exceptions
  (:func:`signals_raise`) and ignored while it runs;
- on Linux each child asks the kernel for SIGTERM when the demo dies (``PR_SET_PDEATHSIG``),
  which covers a demo killed with SIGKILL;
- a child that finds its parent already gone before that request exits at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

import httpx

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT = 10.0


class DemoError(Exception):
    """A step of the demo failed; the message says which and why."""


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, for a service that binds it a few seconds later.

    Ports the kernel hands out by itself (``bind(0)``) come from the ephemeral range, where any
    outgoing connection made meanwhile (the demo polls every service) may take the port first;
    so pick below that range, at random, and fall back to the kernel's choice.
    """
    low, _high = _ephemeral_range()
    for _ in range(50):
        port = secrets.randbelow(max(1, low - 20_000)) + 20_000
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def _child_setup(parent: int) -> Callable[[], None]:
    """Run in the child between fork and exec: die with the demo (see the module doc)."""

    def setup() -> None:
        if _LIBC is not None:
            _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return setup


def clean_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The demo's environment without any civic or database configuration of the user's (a
    ``DATABASE_URL`` meant for something else must not reach a demo service), plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("CIVIC_") and name != "DATABASE_URL"
    }
    env.update(extra)
    return env


@dataclass
class Service:
    """One running service process."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes] = field(repr=False)
    health_path: str = "/healthz"

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Starts service processes and stops every one of them, whatever happens."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.services: list[Service] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        url: str,
        cwd: Path,
        health_path: str = "/healthz",
    ) -> Service:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log_file = log_path.open("ab")
        try:
            process = subprocess.Popen(  # noqa: S603 -- our own CLIs, arguments built here
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_child_setup(os.getpid()),  # noqa: PLW1509 -- no threads yet
            )
        except BaseException:
            log_file.close()
            raise
        service = Service(name, url, process, log_path, log_file, health_path)
        self.services.append(service)
        return service

    def wait_ready(self, services: Sequence[Service], timeout: float = 60.0) -> float:
        """Wait until every service answers its health path; seconds waited."""
        started = time.monotonic()
        pending = list(services)
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for service in list(pending):
                    if not service.running():
                        raise DemoError(
                            f"{service.name} exited with status {service.process.returncode}:\n"
                            f"{service.log_tail()}"
                        )
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(service.url + service.health_path).status_code == 200:
                            pending.remove(service)
                if not pending:
                    break
                if time.monotonic() - started > timeout:
                    names = ", ".join(service.name for service in pending)
                    raise DemoError(f"{names} did not answer within {timeout:.0f} s")
                time.sleep(0.1)
        return time.monotonic() - started

    def check_alive(self) -> None:
        for service in self.services:
            if not service.running():
                raise DemoError(
                    f"{service.name} stopped unexpectedly (status {service.process.returncode}):"
                    f"\n{service.log_tail()}"
                )

    def stop_all(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM every process group (newest first), then SIGKILL what is still there after
        ``timeout``. Returns how many services were stopped."""
        stopped = 0
        for service in reversed(self.services):
            if service.running():
                _signal_group(service.process, signal.SIGTERM)
                stopped += 1
        deadline = time.monotonic() + timeout
        for service in reversed(self.services):
            remaining = max(0.0, deadline - time.monotonic())
            try:
                service.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                _signal_group(service.process, signal.SIGKILL)
                service.process.wait(timeout=STOP_TIMEOUT)
            # The service's own children (if any) share its group: make sure none stay.
            _signal_group(service.process, signal.SIGKILL)
            service.log_file.close()
        self.services.clear()
        return stopped


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


class Interrupted(BaseException):
    """SIGTERM or SIGHUP arrived (SIGINT arrives as KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Inside: SIGTERM and SIGHUP raise :class:`Interrupted`, SIGINT KeyboardInterrupt."""
    previous = {
        signum: signal.signal(signum, handler)
        for signum, handler in (
            (signal.SIGINT, signal.default_int_handler),
            (signal.SIGTERM, _raise_interrupted),
            (signal.SIGHUP, _raise_interrupted),
        )
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Inside: a second Ctrl-C cannot cut the clean-up short."""
    previous = {
        signum: signal.signal(signum, signal.SIG_IGN)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
