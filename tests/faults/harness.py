"""Fault-injection helpers: services as real subprocesses that a test may SIGKILL.

- :class:`ServiceProcess`: a command-line service (``civic-issuer serve``) on a fixed
  loopback port, started, polled until it answers (bounded), killed with SIGKILL or stopped;
  forked by a :class:`Launcher` that imported the app once (a start then costs a fork, not
  the seconds of imports a loaded machine takes).
- :func:`deploy_issuer`: an issuer data directory as an agency sets one up (``civic-issuer
  init --accredit`` against a registry service, the registry's trust config, a staff API key),
  on SQLite in the data directory or in a PostgreSQL schema of its own.
- :class:`PostgresCluster`: the local cluster behind ``CIVIC_TEST_POSTGRES_URL`` (found by its
  port in ``pg_lsclusters``), to restart under load and to leave running whatever happens.

Registry pieces come from :mod:`tests.services.registry_harness`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from civic.credentials import RESIDENCY_VCT
from civic.encoding import json_loads_object
from civic.jose import PublicKey, public_key_from_jwk
from issuer import db as issuer_db
from issuer.cli import app as issuer_cli
from issuer.testing import free_loopback_port
from tests.services.registry_harness import ROOT, RegistryFiles, wait_for

POSTGRES_URL = os.environ.get("CIVIC_TEST_POSTGRES_URL")
NEEDS_POSTGRES = (
    "CIVIC_TEST_POSTGRES_URL is not set: this fault test needs a PostgreSQL server"
    " (CI sets it, e.g. postgresql://postgres@127.0.0.1:5432/test)"
)
START_TIMEOUT = 60.0


# The launcher: imports a command-line app once, then forks a child per start that runs
# the command exactly as the console script would. Under load, importing the services takes
# several seconds; a fork takes milliseconds, and the child is a process of its own, killed
# with SIGKILL like any other. Protocol on stdin/stdout, one JSON document per line.
_LAUNCHER = r"""
import importlib, json, os, sys
module, attribute = sys.argv[1:3]
command = getattr(importlib.import_module(module), attribute)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    if "reap" in request:
        _, status = os.waitpid(request["reap"], 0)
        print(json.dumps({"status": status}), flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            null = os.open(os.devnull, os.O_RDONLY)
            log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.environ.clear()
            os.environ.update(request["env"])
            command(request["args"], prog_name=request["prog"])
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        finally:
            os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
"""


class Launcher:
    """Starts a typer app's commands in forked children of one pre-imported interpreter."""

    def __init__(self, module: str, attribute: str = "app") -> None:
        self._process = subprocess.Popen(  # noqa: S603 (this interpreter, fixed script)
            [sys.executable, "-c", _LAUNCHER, module, attribute],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lock = threading.Lock()
        assert self._call(None) == {"ready": True}

    def _call(self, request: dict[str, Any] | None) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        with self._lock:
            if request is not None:
                self._process.stdin.write(json.dumps(request) + "\n")
                self._process.stdin.flush()
            line = self._process.stdout.readline()
        if not line:
            raise AssertionError("the launcher exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def spawn(self, args: Sequence[str], *, prog: str, env: Mapping[str, str], log: Path) -> int:
        answer = self._call({"args": list(args), "prog": prog, "env": dict(env), "log": str(log)})
        return int(answer["pid"])

    def reap(self, pid: int) -> int:
        return int(self._call({"reap": pid})["status"])

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=30)
        if self._process.stdout is not None:
            self._process.stdout.close()


class ServiceProcess:
    """A service command (``serve ...`` of a typer app) as a process on ``url``'s port.

    :meth:`start` forks it from ``launcher`` and polls ``/healthz`` until it answers
    (bounded); :meth:`kill` sends SIGKILL, :meth:`stop` SIGTERM (SIGKILL after a while).
    """

    def __init__(
        self,
        launcher: Launcher,
        args: Sequence[str],
        *,
        prog: str,
        url: str,
        env: Mapping[str, str],
        log: Path,
    ) -> None:
        self.launcher = launcher
        self.args = list(args)
        self.prog = prog
        self.url = url
        self.env = dict(env)
        self.log = log
        self.pid: int | None = None
        self.starts = 0
        self.start_seconds: list[float] = []

    def start(self) -> ServiceProcess:
        began = time.monotonic()
        self.pid = self.launcher.spawn(self.args, prog=self.prog, env=self.env, log=self.log)
        self.starts += 1

        def ready() -> bool:
            assert self.pid is not None
            if not _alive(self.pid):
                raise AssertionError(f"the service exited: {self.log.read_text()[-3000:]}")
            try:
                return httpx.get(self.url + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, START_TIMEOUT, f"{self.url} to answer")
        self.start_seconds.append(round(time.monotonic() - began, 2))
        return self

    def _end(self, sig: signal.Signals) -> None:
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        os.kill(pid, sig)
        if sig != signal.SIGKILL:
            deadline = time.monotonic() + 40
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.launcher.reap(pid)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, requests in flight are cut off."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)


def _alive(pid: int) -> bool:
    """False once the process has exited (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- the issuer --------------------------------------------------------------------------------


@dataclass
class IssuerDeployment:
    data_dir: Path
    port: int
    registry_url: str
    api_key: str
    public_keys: dict[str, PublicKey]
    database_url: str | None = None
    database_schema: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "CIVIC_ISSUER_DATA_DIR": str(self.data_dir),
            "CIVIC_ISSUER_ISSUER_URL": self.url,
            "CIVIC_ISSUER_REGISTRY_URL": self.registry_url,
        }
        env.pop("DATABASE_URL", None)
        if self.database_url is not None:
            env["CIVIC_ISSUER_DATABASE_URL"] = self.database_url
        if self.database_schema is not None:
            env["CIVIC_ISSUER_DATABASE_SCHEMA"] = self.database_schema
        return env

    def process(self, launcher: Launcher) -> ServiceProcess:
        """``civic-issuer serve`` (one worker) on the deployment's port."""
        return ServiceProcess(
            launcher,
            ["serve", "--port", str(self.port), "--workers", "1"],
            prog="civic-issuer",
            url=self.url,
            env=self.env(),
            log=self.data_dir / "serve.log",
        )

    def engine(self) -> Engine:
        """An engine on the issuer's database, for the test's own reads."""
        url = self.database_url or f"sqlite:///{self.data_dir / 'issuer.sqlite3'}"
        return issuer_db.create_engine(url, schema=self.database_schema)


def deploy_issuer(
    data_dir: Path,
    registry: RegistryFiles,
    registry_url: str,
    *,
    database_url: str | None = None,
    database_schema: str | None = None,
) -> IssuerDeployment:
    """``civic-issuer init --accredit`` (the registry accredits the key), the trust config,
    and a staff API key for residency credentials."""
    port = free_loopback_port()
    deployment = IssuerDeployment(
        data_dir, port, registry_url, "", {}, database_url, database_schema
    )
    env = {k: v for k, v in deployment.env().items() if k.startswith("CIVIC_ISSUER_")}
    governance: list[str] = []
    for path in sorted(registry.data_dir.glob("governance-key-*.jwk")):
        governance += ["--governance-key", str(path)]
    runner = CliRunner()
    init = runner.invoke(
        issuer_cli,
        [
            "init",
            "--accredit",
            "--registry-token-file",
            str(registry.data_dir / "admin.token"),
            *governance,
            "--json",
        ],
        env=env,
    )
    assert init.exit_code == 0, init.output
    public = json_loads_object(Path(json_loads_object(init.stdout)["public_jwk_file"]).read_text())
    key = public_key_from_jwk(public)
    deployment.public_keys[key.thumbprint()] = key
    wait_for(
        lambda: httpx.get(registry_url + "/checkpoint", timeout=5).status_code == 200,
        30,
        "the registry's checkpoint",
    )
    shutil.copy(registry.data_dir / "trust-config.json", data_dir / "trust-config.json")
    created = runner.invoke(
        issuer_cli,
        ["create-api-key", "--vct", RESIDENCY_VCT, "--label", "faults", "--json"],
        env=env,
    )
    assert created.exit_code == 0, created.output
    deployment.api_key = str(json_loads_object(created.stdout)["api_key"])
    return deployment


# --- PostgreSQL --------------------------------------------------------------------------------


@contextmanager
def postgres_schema(prefix: str) -> Iterator[tuple[str, str]]:
    """A fresh schema name on ``CIVIC_TEST_POSTGRES_URL``, dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip(NEEDS_POSTGRES)
    name = f"{prefix}_{secrets.token_hex(6)}"
    try:
        yield POSTGRES_URL, name
    finally:
        engine = issuer_db.create_engine(POSTGRES_URL)
        try:
            with engine.begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        finally:
            engine.dispose()


class PostgresCluster:
    """The Debian cluster serving ``url`` (matched by port), controlled with pg_ctlcluster."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 5432
        self.version, self.name = self._find()

    def _find(self) -> tuple[str, str]:
        if shutil.which("pg_lsclusters") is None or shutil.which("pg_ctlcluster") is None:
            pytest.skip("pg_ctlcluster is not installed: cannot restart PostgreSQL")
        listing = subprocess.run(
            ["pg_lsclusters", "--no-header"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        for line in listing.splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2] == str(self.port):
                return fields[0], fields[1]
        pytest.skip(f"no local cluster listens on port {self.port}: cannot restart it")

    def _ctl(self, action: str) -> None:
        subprocess.run(  # noqa: S603 (fixed command)
            [  # noqa: S607
                "pg_ctlcluster",
                "--skip-systemctl-redirect",
                self.version,
                self.name,
                action,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def ready(self) -> bool:
        result = subprocess.run(  # noqa: S603 (fixed command)
            ["pg_isready", "-q", "-h", self.host, "-p", str(self.port)],  # noqa: S607
            check=False,
            timeout=30,
        )
        return result.returncode == 0

    def stop(self) -> None:
        self._ctl("stop")

    def start(self) -> None:
        if not self.ready():
            self._ctl("start")
        wait_for(self.ready, 60, "PostgreSQL to accept connections")

    def ensure_running(self) -> None:
        """Start the cluster if it is down, and wait until it answers (for ``finally``)."""
        deadline = time.monotonic() + 60
        while not self.ready() and time.monotonic() < deadline:
            try:
                self._ctl("start")
            except subprocess.CalledProcessError:
                time.sleep(0.5)  # "already running" while it is still starting up
        wait_for(self.ready, 60, "PostgreSQL to accept connections")
