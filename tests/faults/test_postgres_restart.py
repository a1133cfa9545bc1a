"""PostgreSQL stopped and started again under load: the services recover without a restart.

The issuer (``civic-issuer serve``), the verifier (``uvicorn verifier.server:app``) and the
registry (``civic-registry serve``) run as processes on PostgreSQL, each in a schema of its
own. Clients keep a bounded load on all three (full OpenID4VCI flows, status lists,
presentation requests, registry appends and reads) while the cluster behind
``CIVIC_TEST_POSTGRES_URL`` is stopped (``pg_ctlcluster stop``: connections are cut) and,
once every kind of request has been tried against the dead database, started again.

- before the outage every request succeeds;
- during it a request either succeeds (it needed no database) or is answered 503 with a JSON
  reason code, within the client's timeout: never a 500, never a hang, never a dropped
  connection; every service is seen answering 503 (the outage was really observed);
- once PostgreSQL answers again, every request succeeds, from the same service processes:
  stale pooled connections are replaced, not served from.

PostgreSQL is left running whatever happens (``finally``: started and waited for).
Skipped when ``CIVIC_TEST_POSTGRES_URL`` is not set or its cluster cannot be controlled here.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from civic.credentials import RESIDENCY_VCT, get_type
from civic.encoding import json_dumps
from civic.jose import PrivateKey, sign_jwt
from issuer.oid4vci import PRE_AUTHORIZED_GRANT, PROOF_TYP
from tests.faults.harness import (
    NEEDS_POSTGRES,
    POSTGRES_URL,
    IssuerDeployment,
    Launcher,
    PostgresCluster,
    ServiceProcess,
    deploy_issuer,
    postgres_schema,
)
from tests.services.registry_harness import (
    RegistryFiles,
    free_port,
    init_registry,
    issuer_key_add,
    wait_for,
)
from tests.services.verifier_deploy import STAFF, Deployment, VerifierProcess

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(not POSTGRES_URL, reason=NEEDS_POSTGRES),
]

CLIENT_TIMEOUT = 20.0
"""A request not answered within this is a hang."""
PHASE_TIMEOUT = 60.0
ROUNDS = 3
"""Completed rounds of every probe before the outage and after recovery."""
OUTAGE_ATTEMPTS = 2
"""Rounds of every probe against the stopped database."""


@dataclass
class Outcome:
    phase: str
    probe: str
    path: str
    status: int  # 0: no answer (timeout, connection cut)
    body: str


@dataclass
class Load:
    phase: str = "before"
    outcomes: list[Outcome] = field(default_factory=list)
    rounds: dict[tuple[str, str], int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, phase: str, probe: str) -> int:
        with self.lock:
            return self.rounds.get((phase, probe), 0)


class Refused(Exception):
    """A non-success answer: the round ends here (it is recorded)."""


class Probe:
    """One kind of request sequence against one service; each call is one round."""

    def __init__(self, name: str, base_url: str, load: Load) -> None:
        self.name = name
        self.load = load
        self.http = httpx.Client(base_url=base_url, timeout=CLIENT_TIMEOUT)
        self.phase = "before"

    def call(self, method: str, path: str, *ok: int, **kwargs: Any) -> httpx.Response:
        started = self.load.phase
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            self._record(started, path, 0, type(error).__name__)
            raise Refused from None
        self._record(started, path, response.status_code, response.text[:300])
        if response.status_code not in ok:
            raise Refused
        return response

    def _record(self, started: str, path: str, status: int, body: str) -> None:
        # A request that began in one phase and ended in another belongs to neither.
        phase = started if self.load.phase == started else "transition"
        # The route, not the offer reference or request id in it.
        route = "/".join(
            "{id}" if len(part) > 16 else part for part in urlsplit(path).path.split("/")
        )
        with self.load.lock:
            self.load.outcomes.append(Outcome(phase, self.name, route, status, body))

    def round(self) -> None:
        raise NotImplementedError

    def run(self, stop: threading.Event) -> None:
        with self.http:
            while not stop.is_set():
                self.phase = self.load.phase
                try:
                    self.round()
                except Refused:
                    time.sleep(0.05)  # a refused round is retried, not hammered
                    continue
                with self.load.lock:
                    key = (self.phase, self.name)
                    self.load.rounds[key] = self.load.rounds.get(key, 0) + 1


class IssuanceProbe(Probe):
    """The agency's offer and a wallet's whole flow; then the status list."""

    def __init__(self, deployment: IssuerDeployment, load: Load) -> None:
        super().__init__("issuer", deployment.url, load)
        self.deployment = deployment
        self.claims = get_type(RESIDENCY_VCT).example_claims()

    def round(self) -> None:
        staff = {"Authorization": f"Bearer {self.deployment.api_key}"}
        offer = self.call(
            "POST",
            "/admin/offers",
            201,
            json={"vct": RESIDENCY_VCT, "claims": self.claims},
            headers=staff,
        ).json()
        document = self.call("GET", offer["credential_offer_url"], 200).json()
        form = {
            "grant_type": PRE_AUTHORIZED_GRANT,
            "pre-authorized_code": document["grants"][PRE_AUTHORIZED_GRANT]["pre-authorized_code"],
            "tx_code": offer["tx_code"],
        }
        token = self.call("POST", "/token", 200, data=form).json()["access_token"]
        nonce = self.call("POST", "/nonce", 200).json()["c_nonce"]
        holder = PrivateKey.generate("EdDSA")
        proof = sign_jwt(
            {"typ": PROOF_TYP, "jwk": holder.public_key.to_jwk()},
            {"aud": self.deployment.url, "iat": int(time.time()), "nonce": nonce},
            holder,
        )
        self.call(
            "POST",
            "/credential",
            200,
            json={"credential_configuration_id": "residency", "proofs": {"jwt": [proof]}},
            headers={"Authorization": f"Bearer {token}"},
        )
        self.call("GET", "/status/1", 200)
        self.call("GET", "/admin/credentials", 200, params={"limit": 5}, headers=staff)


class VerifierProbe(Probe):
    """Staff create an OpenID4VP request and read its status; the wallet fetches it."""

    def round(self) -> None:
        created = self.call("POST", "/requests", 201, json={"policy": "bar-entry"}, headers=STAFF)
        request_id = created.json()["id"]
        self.call("GET", f"/requests/{request_id}", 200, headers=STAFF)
        self.call("GET", f"/requests/{request_id}/object", 200)
        self.call("POST", "/challenges", 201, headers=STAFF)


class RegistryProbe(Probe):
    """An accreditation event appended, then the log read back."""

    def __init__(self, files: RegistryFiles, base_url: str, load: Load) -> None:
        super().__init__("registry", base_url, load)
        self.files = files
        self.made = 0

    def round(self) -> None:
        self.made += 1
        entry = issuer_key_add(self.files, kid=f"pg-restart-{self.made}")
        self.call(
            "POST",
            "/entries",
            201,
            content=json_dumps(entry.to_json()),
            headers={
                "Authorization": f"Bearer {self.files.admin_token}",
                "Content-Type": "application/json",
            },
        )
        size = self.call("GET", "/healthz", 200).json()["size"]
        self.call("GET", "/entries", 200, params={"start": max(0, size - 3), "end": size})
        self.call("GET", "/checkpoint", 200)


def _wait_rounds(load: Load, phase: str, probes: list[Probe], rounds: int) -> None:
    wait_for(
        lambda: all(load.count(phase, probe.name) >= rounds for probe in probes),
        PHASE_TIMEOUT,
        f"{rounds} rounds of every probe ({phase})",
    )


def _outage_attempts(load: Load, probe: str) -> int:
    with load.lock:
        return sum(1 for o in load.outcomes if o.phase == "outage" and o.probe == probe)


def _is_clean_refusal(outcome: Outcome) -> bool:
    """503 with a JSON body naming a reason code."""
    if outcome.status != 503:
        return False
    try:
        body = httpx.Response(200, content=outcome.body.encode()).json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), str) and bool(body["error"])


def test_postgresql_restart_under_load(tmp_path: Path) -> None:
    cluster = PostgresCluster(POSTGRES_URL or "")
    with ExitStack() as stack:
        database, issuer_schema = stack.enter_context(postgres_schema("faults_pg_issuer"))
        _, registry_schema = stack.enter_context(postgres_schema("faults_pg_registry"))
        _, verifier_schema = stack.enter_context(postgres_schema("faults_pg_verifier"))
        stack.callback(cluster.ensure_running)  # runs before the schemas are dropped

        files = init_registry(tmp_path / "registry")
        registry_port = free_port()
        registry = ServiceProcess(
            stack.enter_context(Launcher("registry.cli")),
            ["serve", "--data-dir", str(files.data_dir), "--port", str(registry_port)],
            prog="civic-registry",
            url=f"http://127.0.0.1:{registry_port}",
            env={
                **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
                "DATABASE_URL": database,
                "CIVIC_REGISTRY_DATABASE_SCHEMA": registry_schema,
            },
            log=tmp_path / "registry.log",
        )
        registry.start()
        stack.callback(registry.stop)

        issuer_deployment = deploy_issuer(
            tmp_path / "issuer",
            files,
            registry.url,
            database_url=database,
            database_schema=issuer_schema,
        )
        issuer = issuer_deployment.process(stack.enter_context(Launcher("issuer.cli")))
        issuer.start()
        stack.callback(issuer.stop)

        verifier_deployment = Deployment.create(tmp_path / "verifier", now=int(time.time()))
        stack.callback(verifier_deployment.close)
        verifier = stack.enter_context(
            VerifierProcess(
                verifier_deployment.port,
                verifier_deployment.env(
                    CIVIC_VERIFIER_DATABASE_URL=database,
                    CIVIC_VERIFIER_DATABASE_SCHEMA=verifier_schema,
                ),
                tmp_path / "verifier.log",
            )
        )

        load = Load()
        probes: list[Probe] = [
            IssuanceProbe(issuer_deployment, load),
            VerifierProbe("verifier", verifier.url, load),
            RegistryProbe(files, registry.url, load),
        ]
        stop = threading.Event()
        threads = [threading.Thread(target=p.run, args=(stop,), daemon=True) for p in probes]
        for thread in threads:
            thread.start()
        try:
            _wait_rounds(load, "before", probes, ROUNDS)
            load.phase = "stopping"
            cluster.stop()
            load.phase = "outage"  # the server is down from here on
            wait_for(
                lambda: all(_outage_attempts(load, p.name) >= OUTAGE_ATTEMPTS for p in probes),
                PHASE_TIMEOUT,
                "requests against the stopped database",
            )
            load.phase = "restarting"
            cluster.start()
            load.phase = "after"
            _wait_rounds(load, "after", probes, ROUNDS)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=2 * CLIENT_TIMEOUT)
        for server in (registry, issuer):
            assert server.pid is not None and server.starts == 1, "a service was restarted"

    outcomes = load.outcomes
    bad_before = [o for o in outcomes if o.phase == "before" and not 200 <= o.status < 300]
    assert not bad_before, bad_before
    during = [o for o in outcomes if o.phase not in ("before", "after")]
    unclean = [o for o in during if not (200 <= o.status < 300 or _is_clean_refusal(o))]
    assert not unclean, unclean
    for probe in probes:
        # Each round starts with a write, which a stopped database must refuse.
        refused = [o for o in during if o.probe == probe.name and o.phase == "outage"]
        assert any(o.status == 503 for o in refused), f"{probe.name} never saw the outage"
    bad_after = [o for o in outcomes if o.phase == "after" and not 200 <= o.status < 300]
    assert not bad_after, bad_after
    summary = {
        phase: sum(1 for o in outcomes if o.phase == phase)
        for phase in ("before", "stopping", "outage", "restarting", "after", "transition")
    }
    summary["refused_503"] = sum(1 for o in during if o.status == 503)
    print(f"postgresql restart summary (requests per phase): {summary}")
