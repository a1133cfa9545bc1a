"""A verifier deployment for service tests: data directory, status list server, wallet.

Everything runs for real on 127.0.0.1: the verifier (uvicorn in a thread, or ``uvicorn
verifier.server:app`` in a subprocess), an HTTP server publishing the agency's Status List
Tokens, and a wallet that fetches the signed request object, checks it against the registry's
accreditation, presents exactly the DCQL claims and posts the direct_post response.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from civic.credentials import RESIDENCY_VCT, VACCINATION_VCT, YOUTH_ALLOWANCE_VCT
from civic.encoding import json_dumps
from civic.jose import verify_jws
from civic_service.config import token_sha256_hex, write_private_file
from tests.services.registry_harness import ROOT, free_port, stop_process, wait_for
from tests.unit.verifier_city import CLIENT_ID, City
from verifier.settings import VerifierSettings

API_KEY = "staff-key-for-tests-0123456789abcdef"
ALLOWED = [
    {"vct": RESIDENCY_VCT, "claims": [["age_over_19"], ["address", "region"]]},
    {"vct": YOUTH_ALLOWANCE_VCT, "claims": [["allowance_status"], ["eligibility"]]},
    {"vct": VACCINATION_VCT, "claims": [["vaccination", "dn"]]},
]


class StatusServer:
    """Serves ``tokens[path]``; ``failing`` makes every answer a 503."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.failing = False
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits += 1
                token = owner.tokens.get(self.path)
                if owner.failing or token is None:
                    self.send_response(503 if owner.failing else 404)
                    self.end_headers()
                    return
                body = token.encode("ascii")
                self.send_response(200)
                self.send_header("Content-Type", "application/statuslist+jwt")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}/status"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def publish(self, city: City) -> None:
        self.tokens["/status/1"] = city.status_token()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Deployment:
    """A city whose agency publishes status lists on ``status``, and a verifier data dir."""

    data_dir: Path
    status: StatusServer
    city: City
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def create(cls, data_dir: Path, *, now: int | None = None, witness_age: int = 30) -> Deployment:
        status = StatusServer()
        city = City(status_base=status.base, **({"now": now} if now is not None else {}))
        city.accredit_verifier(ALLOWED)
        status.publish(city)
        deployment = cls(data_dir, status, city)
        deployment.write_files(witness_age=witness_age)
        return deployment

    def write_files(self, *, witness_age: int = 30) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        jwk = {**self.city.verifier_key.export_private_jwk(), "kid": "v-1"}
        key_file = self.data_dir / "verifier.jwk"
        if key_file.exists():
            key_file.unlink()
        write_private_file(key_file, json_dumps(jwk))
        (self.data_dir / "api-key.sha256").write_text(token_sha256_hex(API_KEY))
        bundle, config = self.city.bundle(witness_time=self.city.now - witness_age)
        (self.data_dir / "trust-config.json").write_text(
            json_dumps(self.city.trust_config_json(config))
        )
        (self.data_dir / "bundle.json").write_text(json_dumps(bundle))

    def settings(self, **overrides: Any) -> VerifierSettings:
        values: dict[str, Any] = {
            "data_dir": self.data_dir,
            "database_url": f"sqlite:///{self.data_dir / 'verifier.sqlite3'}",
            "redis_url": None,
            "client_id": CLIENT_ID,
            "public_url": self.url,
            "trust_bundle_file": self.data_dir / "bundle.json",
            "trust_max_age": 3600,
            "port": self.port,
        }
        values.update(overrides)
        return VerifierSettings(**values)

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of a ``verifier.server`` process for this deployment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CIVIC_VERIFIER_")}
        env.pop("DATABASE_URL", None)
        env.pop("CIVIC_REDIS_URL", None)
        env.update(
            CIVIC_VERIFIER_DATA_DIR=str(self.data_dir),
            CIVIC_VERIFIER_CLIENT_ID=CLIENT_ID,
            CIVIC_VERIFIER_PUBLIC_URL=self.url,
            CIVIC_VERIFIER_TRUST_BUNDLE_FILE=str(self.data_dir / "bundle.json"),
            CIVIC_VERIFIER_DATABASE_URL=f"sqlite:///{self.data_dir / 'verifier.sqlite3'}",
        )
        env.update(overrides)
        return env

    def close(self) -> None:
        self.status.close()


class AppServer:
    """uvicorn serving ``app`` in a thread on a chosen loopback port."""

    def __init__(self, app: FastAPI, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> AppServer:
        self._thread.start()
        wait_for(lambda: self._server.started, 15, "the verifier to start")
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)


class VerifierProcess:
    """``uvicorn verifier.server:app`` in a subprocess (a replica)."""

    def __init__(self, port: int, env: Mapping[str, str], log_file: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._port = port
        self._env = dict(env)
        self._log = log_file
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> VerifierProcess:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "verifier.server:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self._port),
            "--log-level",
            "warning",
        ]
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 -- our own module, fixed arguments
                command, cwd=ROOT, env=self._env, stdout=log, stderr=subprocess.STDOUT
            )

        def ready() -> bool:
            assert self._process is not None
            if self._process.poll() is not None:
                raise AssertionError(f"verifier exited: {self._log.read_text()[-3000:]}")
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 30, "the verifier process to answer")
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._process is not None:
            stop_process(self._process)


STAFF = {"Authorization": f"Bearer {API_KEY}"}


class Wallet:
    """The holder's side of OpenID4VP 1.0 for the city's credentials."""

    def __init__(self, city: City, credentials: Mapping[str, str]) -> None:
        self.city = city
        self.credentials = dict(credentials)  # vct -> issued SD-JWT VC

    def request_object(self, client: httpx.Client, request_uri: str) -> dict[str, Any]:
        answer = client.get(request_uri)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/oauth-authz-req+jwt")
        accredited = self.city.state.verifier(CLIENT_ID)
        assert accredited is not None
        jws = verify_jws(answer.text, accredited.public_key, typ="oauth-authz-req+jwt")
        assert jws.header["kid"] == accredited.kid
        return jws.payload_json()

    def vp_token(self, request: Mapping[str, Any]) -> dict[str, list[str]]:
        token: dict[str, list[str]] = {}
        for query in request["dcql_query"]["credentials"]:
            (vct,) = query["meta"]["vct_values"]
            paths = [tuple(claim["path"]) for claim in query.get("claims", [])]
            token[query["id"]] = [
                self.city.present(
                    self.credentials[vct],
                    paths,
                    nonce=request["nonce"],
                    audience=request["client_id"],
                    at=self.city.now,
                )
            ]
        return token

    def respond(self, client: httpx.Client, request: Mapping[str, Any]) -> httpx.Response:
        form = {"vp_token": json_dumps(self.vp_token(request)), "state": request["state"]}
        return client.post(request["response_uri"], data=form)
