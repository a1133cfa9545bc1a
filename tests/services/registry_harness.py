"""Test harness for the registry service: data dirs, signed events, servers on 127.0.0.1.

Servers run for real: uvicorn in a thread (:class:`ThreadServer`, fast to start) or in a
subprocess (:class:`ProcessServer`, for restarts, crashes and concurrent processes), always on a
free loopback port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from typer.testing import CliRunner

from civic.encoding import json_dumps, json_loads_object
from civic.jose import PrivateKey, Signer
from civic.trust import SignedEntry, new_event, sign_event
from registry.cli import app as cli_app
from registry.witness.app import create_app as create_witness_app
from registry.witness.settings import load_config as load_witness_config
from registry.witness.settings import load_settings as load_witness_settings
from registry.witness.settings import write_signer_key
from registry.witness.state import WitnessStore

ORIGIN = "registry.test/seoul"
ISSUER = "https://district.example/issuer"
VCT = "https://credentials.example/residency"
STATUS_BASE = "https://district.example/status"
NOT_AFTER = 4_000_000_000
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RegistryFiles:
    """A data directory made by ``civic-registry init``."""

    data_dir: Path
    init_output: str

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    @property
    def log_vkey(self) -> str:
        return (self.data_dir / "log.vkey").read_text().strip()

    def governance_keys(self) -> list[tuple[str, Signer]]:
        keys: list[tuple[str, Signer]] = []
        for path in sorted(self.data_dir.glob("governance-key-*.jwk")):
            jwk = json_loads_object(path.read_text())
            kid = jwk.pop("kid")
            keys.append((kid, PrivateKey.from_jwk(jwk)))
        return keys

    def trust_config(self, witness_vkeys: Sequence[str] = (), quorum: int = 0) -> dict[str, Any]:
        config = json_loads_object((self.data_dir / "trust-config.json").read_text())
        config["witnesses"] = list(witness_vkeys)
        config["witness_quorum"] = quorum
        return config

    def write_trust_config(self, witness_vkeys: Sequence[str] = (), quorum: int = 0) -> Path:
        path = self.data_dir / "trust-config.json"
        path.write_text(json_dumps(self.trust_config(witness_vkeys, quorum)))
        return path


def init_registry(data_dir: Path, *args: str) -> RegistryFiles:
    result = CliRunner().invoke(
        cli_app, ["init", "--data-dir", str(data_dir), "--origin", ORIGIN, *args]
    )
    assert result.exit_code == 0, result.output
    return RegistryFiles(data_dir, result.stdout)


def issuer_key_add(
    files: RegistryFiles, *, kid: str = "key-1", issuer: str = ISSUER, jwk: Any = None
) -> SignedEntry:
    public = jwk if jwk is not None else PrivateKey.generate().public_key.to_jwk()
    event = new_event(
        "issuer.key.add",
        issuer=issuer,
        kid=kid,
        jwk=public,
        vct=[VCT],
        status_base_url=STATUS_BASE,
        not_before=0,
        not_after=NOT_AFTER,
    )
    return sign_event(event, files.governance_keys())


def signed(files: RegistryFiles, event_type: str, **members: Any) -> SignedEntry:
    return sign_event(new_event(event_type, **members), files.governance_keys())


def post_entry(
    base_url: str, token: str, entry: SignedEntry | Mapping[str, Any] | bytes
) -> httpx.Response:
    if isinstance(entry, SignedEntry):
        body = json_dumps(entry.to_json()).encode()
    elif isinstance(entry, bytes):
        body = entry
    else:
        body = json_dumps(entry).encode()
    return httpx.post(
        base_url + "/entries",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=30,
    )


def tree_size(base_url: str) -> int:
    size: int = httpx.get(base_url + "/healthz", timeout=10).json()["size"]
    return size


def wait_for(predicate: Any, timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop_process(process: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if ``process`` has not exited within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def checkpoint_size(base_url: str) -> int:
    response = httpx.get(base_url + "/checkpoint", timeout=10)
    if response.status_code != 200:
        return -1
    return int(response.text.split("\n")[1])


def wait_for_checkpoint(base_url: str, size: int, timeout: float = 15.0) -> str:
    wait_for(lambda: checkpoint_size(base_url) >= size, timeout, f"a checkpoint of size {size}")
    return httpx.get(base_url + "/checkpoint", timeout=10).text


class ThreadServer:
    """uvicorn serving ``app`` in a thread on a free loopback port."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self._thread.start()
        wait_for(lambda: self._server.started, 15, "the server to start")
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)


def witness_server(tmp_path: Path, log_vkey: str) -> tuple[ThreadServer, str]:
    """A witness service (``registry.witness``) for the test log; returns it and its vkey."""
    key_file = tmp_path / "witness.key"
    vkey = write_signer_key(key_file, "witness.test/w1")
    settings = load_witness_settings(
        key_file=key_file,
        database_url=f"sqlite:///{tmp_path / 'witness.sqlite3'}",
        logs={ORIGIN: log_vkey},
    )
    store = WitnessStore.open(settings.database_url.get_secret_value())
    return ThreadServer(create_witness_app(load_witness_config(settings), store)), vkey


class ProcessServer:
    """``civic-registry serve`` in a subprocess on a free loopback port."""

    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = {**os.environ, **(env or {})}
        self._process: subprocess.Popen[bytes] | None = None
        self._log = data_dir / f"serve-{self.port}.log"

    def start(self) -> ProcessServer:
        command = [
            sys.executable,
            "-m",
            "registry.cli",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
        ]
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 -- our own CLI, fixed arguments
                command, cwd=ROOT, env=self._env, stdout=log, stderr=subprocess.STDOUT
            )

        def ready() -> bool:
            assert self._process is not None
            if self._process.poll() is not None:
                raise AssertionError(f"server exited: {self._log.read_text()[-2000:]}")
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 30, "the registry process to answer")
        return self

    def kill(self) -> None:
        """SIGKILL: a crash, no graceful shutdown."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=15)
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)
            self._process = None

    def __enter__(self) -> ProcessServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
