"""Issuer figures (issue 4, "Benchmark"), all from one run, side by side with ACA-Py 0.12.8.

1. Full issuance flows per second over HTTP: the wallet's token, nonce and credential requests
   (its key proof signed in between) against ``civic-issuer serve --workers 2`` on 127.0.0.1
   (SQLite in WAL mode; trust synced from a real registry service on loopback). The load
   generator is bounded in count and time: CONCURRENCY threads, each with a kept-alive
   connection running whole flows one after another, until FLOWS flows are done or
   FLOW_SECONDS have passed. It runs twice against the same server: with the standard
   library's ``http.client`` and with httpx, which costs the shared cores about three times
   as much CPU per flow as the issuer itself. Offers are created beforehand (staff work, not
   the wallet's flow). Rate, p50 and p99 of the flow latency, and the CPU per flow of the
   server processes and of the load generator (one machine: they share its cores).
2. The same flow in-process (``IssuanceFlow`` on SQLite, no HTTP): the issuer's own cost.
3. Bulk signing in-process: residency SD-JWT VCs (every personal claim disclosable, decoys,
   ``cnf`` from a fresh holder key, a status reference) signed with the issuer's registry-
   accredited key, one after another on one core.
4. The peer: ACA-Py 0.12.8's ``POST /wallet/sd-jwt/sign`` (no ledger, in-memory askar wallet,
   started by ``bench/peers/acapy.sh``), the same claims made selectively disclosable, driven
   by the same bounded thread pool (two requests in flight: it is one process and one event
   loop). If it does not install or start, the report says so.
"""

from __future__ import annotations

import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import httpx
from typer.testing import CliRunner

from bench.harness import ops_per_second, write_report
from civic.clock import system_clock
from civic.credentials import RESIDENCY_VCT, get_type
from civic.encoding import json_dumps, json_loads_object
from civic.errors import CivicError
from civic.jose import PrivateKey, public_key_from_jwk, sign_jwt
from civic.sdjwtvc import issue_credential, verify_credential
from civic.statuslist import StatusReference
from issuer import db
from issuer.admin import ApiPrincipal, create_offer
from issuer.app import build_context, registry_trust
from issuer.cli import app as issuer_cli
from issuer.issuance import IssuanceFlow, pre_authorized_code_for
from issuer.oid4vci import PRE_AUTHORIZED_GRANT, PROOF_TYP
from issuer.settings import IssuerSettings, load_runtime
from issuer.statuslists import MIN_LIST_SIZE, status_list_uri
from issuer.testing import free_loopback_port
from registry.app import create_app as create_registry_app
from registry.settings import RegistrySettings
from registry.settings import load_runtime as load_registry_runtime
from tests.services.registry_harness import ThreadServer, init_registry, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2
CONCURRENCY = 16
FLOWS = 4000
FLOW_SECONDS = 20.0
WARMUP_FLOWS = 40
IN_PROCESS_FLOWS = 300
ACAPY_SIGNS = 400
# ACA-Py is one process with one event loop, and a sign is CPU work on it: more requests in
# flight only queue (16 at once ran into client timeouts).
ACAPY_CONCURRENCY = 2
ACAPY_SECONDS = 20.0
ACAPY_INSTALL_SECONDS = 900.0
TARGET_FLOWS_PER_S = 500
TARGET_SIGN_RATIO = 5.0
REGISTERED = ("iss", "vct", "iat", "exp", "cnf", "status")
JSON = {"Content-Type": "application/json"}


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its live children (from /proc; 0 where unreadable)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(child) for child in children]
    except OSError:
        pass
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


# --- the issuer under test -------------------------------------------------------------------


@dataclass
class IssuerUnderTest:
    data_dir: Path
    url: str
    port: int
    registry_url: str

    def settings(self) -> IssuerSettings:
        return IssuerSettings(
            data_dir=self.data_dir, issuer_url=self.url, registry_url=self.registry_url
        )

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CIVIC_ISSUER_DATA_DIR": str(self.data_dir),
            "CIVIC_ISSUER_ISSUER_URL": self.url,
            "CIVIC_ISSUER_REGISTRY_URL": self.registry_url,
        }


@contextmanager
def registry_and_issuer(workdir: Path) -> Iterator[IssuerUnderTest]:
    """A registry service (thread) and an issuer data directory whose key it accredits."""
    files = init_registry(workdir / "registry")
    runtime = load_registry_runtime(RegistrySettings(data_dir=files.data_dir))
    with ThreadServer(create_registry_app(runtime)) as registry:
        port = free_loopback_port()
        issuer = IssuerUnderTest(workdir / "issuer", f"http://127.0.0.1:{port}", port, registry.url)
        governance: list[str] = []
        for path in sorted(files.data_dir.glob("governance-key-*.jwk")):
            governance += ["--governance-key", str(path)]
        result = CliRunner().invoke(
            issuer_cli,
            [
                "init",
                "--data-dir",
                str(issuer.data_dir),
                "--issuer-url",
                issuer.url,
                "--accredit",
                "--registry-token-file",
                str(files.data_dir / "admin.token"),
                *governance,
            ],
            env={"CIVIC_ISSUER_REGISTRY_URL": registry.url},
        )
        if result.exit_code != 0:
            raise RuntimeError(f"civic-issuer init failed: {result.output}")
        shutil.copy(files.data_dir / "trust-config.json", issuer.data_dir / "trust-config.json")
        yield issuer


def prepare_offers(issuer: IssuerUnderTest, count: int) -> list[tuple[str, str]]:
    """``count`` residency offers as ``(pre-authorized code, tx_code)``, made in-process."""
    runtime = load_runtime(issuer.settings())
    context = build_context(runtime, trust=registry_trust(runtime))
    db.create_schema(context.engine)
    principal = ApiPrincipal("bench", frozenset(runtime.vcts))
    claims = get_type(RESIDENCY_VCT).example_claims()
    offers = []
    for _ in range(count):
        offer = create_offer(context, principal, vct=RESIDENCY_VCT, claims=claims, render_qr=False)
        ref = offer.offer_url.rsplit("/", 1)[1]
        offers.append((pre_authorized_code_for(ref), offer.tx_code))
    context.engine.dispose()
    return offers


@contextmanager
def serving(issuer: IssuerUnderTest, workers: int) -> Iterator[subprocess.Popen[bytes]]:
    command = [
        sys.executable,
        "-c",
        "from issuer.cli import app; app()",
        "serve",
        "--port",
        str(issuer.port),
        "--workers",
        str(workers),
    ]
    log = (issuer.data_dir / "serve.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments)
        command, cwd=ROOT, env=issuer.env(), stdout=log, stderr=subprocess.STDOUT
    )

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError("civic-issuer serve exited: see serve.log")
        try:
            return httpx.get(issuer.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, 60, "civic-issuer serve to answer")
        yield process
    finally:
        stop_process(process, timeout=40)
        log.close()


# --- the wallet's side: one whole flow ---------------------------------------------------------


class HttpError(Exception):
    """A response other than 200, or no response."""


class WalletClient(Protocol):
    def post(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        """POST and return the body of a 200 answer (raise :class:`HttpError` otherwise)."""
        ...

    def close(self) -> None: ...


class HttpxClient:
    """httpx, as the wallet CLI and the tests use it: one kept-alive connection."""

    def __init__(self, base_url: str) -> None:
        self._client = httpx.Client(base_url=base_url, timeout=60)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        try:
            response = self._client.post(path, content=body, headers=headers)
        except httpx.HTTPError as error:
            raise HttpError(type(error).__name__) from None
        if response.status_code != 200:
            raise HttpError(str(response.status_code))
        return response.content

    def close(self) -> None:
        self._client.close()


class StdlibClient:
    """``http.client`` from the standard library: one kept-alive connection, about a quarter
    of httpx's CPU per request, so that less of the shared cores goes to the load itself."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self._connection = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=60
        )

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        try:
            self._connection.request("POST", path, body=body, headers=headers)
            response = self._connection.getresponse()
            content = response.read()
        except (OSError, http.client.HTTPException) as error:
            self._connection.close()
            raise HttpError(type(error).__name__) from None
        if response.status != 200:
            raise HttpError(str(response.status))
        return content

    def close(self) -> None:
        self._connection.close()


GENERATORS: dict[str, Callable[[str], WalletClient]] = {
    "stdlib_http_client": StdlibClient,
    "httpx": HttpxClient,
}


def _credential_request(proof: str) -> bytes:
    return json_dumps(
        {"credential_configuration_id": "residency", "proofs": {"jwt": [proof]}}
    ).encode()


def wallet_flow(client: WalletClient, issuer_url: str, code: str, tx_code: str) -> str:
    """Token, nonce, proof, credential; returns the credential (raises on any refusal)."""
    form = urlencode(
        {"grant_type": PRE_AUTHORIZED_GRANT, "pre-authorized_code": code, "tx_code": tx_code}
    ).encode()
    token = json_loads_object(
        client.post("/token", form, {"Content-Type": "application/x-www-form-urlencoded"})
    )
    nonce = json_loads_object(client.post("/nonce", b"", {}))
    holder = PrivateKey.generate("EdDSA")
    proof = sign_jwt(
        {"typ": PROOF_TYP, "alg": "EdDSA", "jwk": holder.public_key.to_jwk()},
        {"aud": issuer_url, "iat": system_clock(), "nonce": nonce["c_nonce"]},
        holder,
    )
    headers = {
        "Authorization": f"Bearer {token['access_token']}",
        "Content-Type": "application/json",
    }
    answer = json_loads_object(client.post("/credential", _credential_request(proof), headers))
    credential: str = answer["credentials"][0]["credential"]
    return credential


@dataclass
class LoadResult:
    done: int
    errors: int
    seconds: float
    latencies: list[float]
    last: Any

    def summary(self) -> dict[str, Any]:
        return {
            "completed": self.done,
            "errors": self.errors,
            "seconds": round(self.seconds, 2),
            "per_s": round(self.done / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(1000 * _percentile(self.latencies, 0.5), 1) if self.done else None,
            "p99_ms": round(1000 * _percentile(self.latencies, 0.99), 1) if self.done else None,
        }


def bounded_load(
    connect: Callable[[], WalletClient],
    jobs: list[Any],
    work: Callable[[WalletClient, Any], Any],
    *,
    concurrency: int,
    max_seconds: float,
) -> LoadResult:
    """Run ``work(client, job)`` for each job on ``concurrency`` threads, stopping early at
    ``max_seconds``; every thread keeps one connection alive."""
    pending = iter(jobs)
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]
    last: list[Any] = [None]
    started = time.perf_counter()
    deadline = started + max_seconds

    def run() -> None:
        client = connect()
        try:
            while time.perf_counter() < deadline:
                with lock:
                    job = next(pending, None)
                if job is None:
                    return
                begun = time.perf_counter()
                try:
                    outcome = work(client, job)
                except (HttpError, CivicError, KeyError, TypeError):
                    with lock:
                        errors[0] += 1
                    continue
                elapsed = time.perf_counter() - begun
                with lock:
                    latencies.append(elapsed)
                    last[0] = outcome
        finally:
            client.close()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return LoadResult(len(latencies), errors[0], seconds, latencies, last[0])


def http_flows(issuer: IssuerUnderTest) -> dict[str, Any]:
    """Full flows against one ``serve --workers 2``, once per load generator."""
    offers = prepare_offers(issuer, WARMUP_FLOWS + FLOWS * len(GENERATORS))
    public_key = public_key_from_jwk(
        json_loads_object(next((issuer.data_dir / "keys").glob("*.pub.jwk")).read_text())
    )
    out: dict[str, Any] = {"workers": WORKERS, "concurrency": CONCURRENCY, "requests_per_flow": 3}
    with serving(issuer, WORKERS) as process:

        def flow(client: WalletClient, offer: tuple[str, str]) -> str:
            return wallet_flow(client, issuer.url, *offer)

        # Warm-up: registry sync, key files and first connections in both workers.
        warm = bounded_load(
            lambda: StdlibClient(issuer.url),
            offers[:WARMUP_FLOWS],
            flow,
            concurrency=CONCURRENCY,
            max_seconds=60,
        )
        if warm.errors or warm.done != WARMUP_FLOWS:
            raise RuntimeError(f"warm-up flows failed ({warm.errors} errors)")
        for n, (name, make) in enumerate(GENERATORS.items()):
            batch = offers[WARMUP_FLOWS + n * FLOWS : WARMUP_FLOWS + (n + 1) * FLOWS]
            server_cpu, client_cpu = _cpu_seconds(process.pid), time.process_time()
            result = bounded_load(
                lambda make=make: make(issuer.url),  # type: ignore[misc]
                batch,
                flow,
                concurrency=CONCURRENCY,
                max_seconds=FLOW_SECONDS,
            )
            server_cpu = _cpu_seconds(process.pid) - server_cpu
            client_cpu = time.process_time() - client_cpu
            # The last credential must verify under the issuer's key: the flows were real.
            verify_credential(result.last, public_key, key_binding=None, now=system_clock)
            out[name] = {
                **result.summary(),
                "server_cpu_ms_per_flow": round(1000 * server_cpu / result.done, 2),
                "load_generator_cpu_ms_per_flow": round(1000 * client_cpu / result.done, 2),
            }
    return out


# --- in-process figures -----------------------------------------------------------------------


def in_process_flow(issuer: IssuerUnderTest) -> dict[str, Any]:
    """Token, nonce and credential through ``IssuanceFlow`` directly: no HTTP at all."""
    offers = prepare_offers(issuer, IN_PROCESS_FLOWS)
    runtime = load_runtime(issuer.settings())
    context = build_context(runtime, trust=registry_trust(runtime))
    flow = IssuanceFlow(context)
    holder = PrivateKey.generate("EdDSA")
    timings: list[float] = []
    cpu_timings: list[float] = []
    for code, tx_code in offers:
        body = (
            f"grant_type={PRE_AUTHORIZED_GRANT}&pre-authorized_code={code}&tx_code={tx_code}"
        ).encode()
        started, cpu_started = time.perf_counter(), time.process_time()
        token = flow.token(body, "application/x-www-form-urlencoded")["access_token"]
        nonce = flow.nonce()
        proof = sign_jwt(
            {"typ": PROOF_TYP, "alg": "EdDSA", "jwk": holder.public_key.to_jwk()},
            {"aud": issuer.url, "iat": system_clock(), "nonce": nonce},
            holder,
        )
        flow.credential(f"Bearer {token}", _credential_request(proof), "application/json")
        timings.append(time.perf_counter() - started)
        cpu_timings.append(time.process_time() - cpu_started)
    context.engine.dispose()
    return {
        "flows": len(timings),
        "median_ms": round(1000 * statistics.median(timings[len(timings) // 5 :]), 2),
        "median_cpu_ms": round(1000 * statistics.median(cpu_timings[len(cpu_timings) // 5 :]), 2),
        "note": "one flow at a time, so the wall time includes the delivery's WAL fsync;"
        " the wallet's proof signing (about 0.05 ms) is included",
    }


def bulk_signing(issuer: IssuerUnderTest) -> dict[str, Any]:
    runtime = load_runtime(issuer.settings())
    context = build_context(runtime, trust=registry_trust(runtime))
    now = system_clock()
    signer = context.signer_for(RESIDENCY_VCT, now)  # the registry check, once per batch
    claims = get_type(RESIDENCY_VCT).example_claims()
    holders = [PrivateKey.generate("EdDSA").public_key for _ in range(64)]
    position = [0]
    status_uri = status_list_uri(runtime.issuer_url, 1)

    def sign_one() -> str:
        position[0] += 1
        return issue_credential(
            issuer=runtime.issuer_url,
            vct=RESIDENCY_VCT,
            subject_claims=claims,
            signer=signer,
            kid=signer.kid,
            holder_key=holders[position[0] % len(holders)],
            lifetime=runtime.settings.credential_lifetime,
            status=StatusReference(position[0] % MIN_LIST_SIZE, status_uri).to_claim(),
            now=lambda: now,
        )

    results = ops_per_second({"civic_issue_credential": sign_one}, rounds=7)
    context.engine.dispose()
    return {
        **results["civic_issue_credential"],
        "alg": signer.alg,
        "credential_bytes": len(sign_one()),
        "disclosures": sign_one().count("~") - 1,
    }


# --- the peer: ACA-Py 0.12.8 -----------------------------------------------------------------


def _acapy_payload(did: str, holder: PrivateKey, now: int) -> dict[str, Any]:
    claims = get_type(RESIDENCY_VCT).example_claims()
    payload: dict[str, Any] = {
        "iss": did,
        "vct": RESIDENCY_VCT,
        "iat": now,
        "exp": now + 365 * 86400,
        "cnf": {"jwk": holder.public_key.to_jwk()},
        "status": {"status_list": {"idx": 5, "uri": "http://127.0.0.1/status/1"}},
        **claims,
    }
    # ACA-Py discloses every path not listed: list the registered claims and their members.
    non_sd: list[str] = []
    for name in REGISTERED:
        non_sd.append(name)
        value = payload[name]
        stack = [(name, value)]
        while stack:
            path, node = stack.pop()
            if isinstance(node, dict):
                for key, child in node.items():
                    non_sd.append(f"{path}.{key}")
                    stack.append((f"{path}.{key}", child))
    return {"did": did, "headers": {"typ": "dc+sd-jwt"}, "payload": payload, "non_sd_list": non_sd}


def acapy_signing(workdir: Path) -> dict[str, Any]:
    script = ROOT / "bench" / "peers" / "acapy.sh"
    bash = shutil.which("bash") or "/bin/bash"
    try:
        subprocess.run(  # noqa: S603 (our own script)
            [bash, str(script), "install"],
            cwd=ROOT,
            check=True,
            timeout=ACAPY_INSTALL_SECONDS,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
        return {"started": False, "error": f"install failed: {type(error).__name__}"}
    admin_port, port = free_loopback_port(), free_loopback_port()
    admin = f"http://127.0.0.1:{admin_port}"
    log_path = workdir / "acapy.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 (our own script)
            [bash, str(script), "start", str(admin_port), str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError("exited")
            try:
                return bool(httpx.get(admin + "/status/ready", timeout=1).json().get("ready"))
            except (httpx.HTTPError, ValueError):
                return False

        try:
            wait_for(ready, 90, "ACA-Py to start")
        except (AssertionError, RuntimeError):
            tail = log_path.read_text(errors="replace")[-500:]
            return {"started": False, "error": "did not start", "log_tail": tail}
        version = httpx.get(admin + "/status", timeout=10).json().get("version")
        created = httpx.post(
            admin + "/wallet/did/create",
            json={"method": "key", "options": {"key_type": "ed25519"}},
            timeout=30,
        )
        created.raise_for_status()
        did = created.json()["result"]["did"]
        body = _acapy_payload(did, PrivateKey.generate("EdDSA"), system_clock())
        probe = httpx.post(admin + "/wallet/sd-jwt/sign", json=body, timeout=60)
        probe.raise_for_status()
        sd_jwt: str = probe.json()

        request = json_dumps(body).encode()

        def sign(client: WalletClient, _job: int) -> int:
            return len(client.post("/wallet/sd-jwt/sign", request, JSON))

        cpu = _cpu_seconds(process.pid)
        result = bounded_load(
            lambda: StdlibClient(admin),
            list(range(ACAPY_SIGNS)),
            sign,
            concurrency=ACAPY_CONCURRENCY,
            max_seconds=ACAPY_SECONDS,
        )
        cpu = _cpu_seconds(process.pid) - cpu
        return {
            "started": True,
            "version": version,
            "endpoint": "POST /wallet/sd-jwt/sign",
            "wallet": "askar, in memory (--wallet-name :memory:), --no-ledger",
            "did": "did:key (Ed25519)",
            "disclosures": sd_jwt.count("~") - 1,
            **result.summary(),
            "concurrency": ACAPY_CONCURRENCY,
            "load_generator": "stdlib_http_client",
            "server_cpu_ms_per_sign": round(1000 * cpu / result.done, 1) if result.done else None,
        }
    finally:
        stop_process(process, timeout=30)


# --- the report ------------------------------------------------------------------------------


def main() -> None:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with registry_and_issuer(workdir) as issuer:
            flows = http_flows(issuer)
            in_process = in_process_flow(issuer)
            signing = bulk_signing(issuer)
        acapy = acapy_signing(workdir)
    acapy_rate = acapy.get("per_s") if acapy.get("started") else None
    sign_rate = signing["median_ops_per_s"]
    ratios: dict[str, float | None] = {
        "bulk_signing_vs_acapy_sign": round(sign_rate / acapy_rate, 1) if acapy_rate else None
    }
    for name in GENERATORS:
        rate = flows[name]["per_s"]
        ratios[f"http_flows_{name}_vs_acapy_sign"] = (
            round(rate / acapy_rate, 1) if acapy_rate else None
        )
    report = {
        "what": "issuer: full OpenID4VCI flows/s over HTTP (2 workers), in-process flow cost,"
        " bulk SD-JWT VC signing/s in-process; ACA-Py 0.12.8 sd-jwt/sign in the same run",
        "http_flows": flows,
        "in_process_flow": in_process,
        "bulk_signing": signing,
        "acapy": acapy,
        "ratios": ratios,
        "targets": {
            "http_flows.*.per_s": f">= {TARGET_FLOWS_PER_S}",
            "ratios.bulk_signing_vs_acapy_sign": f">= {TARGET_SIGN_RATIO}",
        },
        "machine_note": "load generator, both workers and the peer share this machine's cores;"
        " other work on the machine shows in the load averages",
        "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
    }
    path = write_report("issuer", report)
    for name in GENERATORS:
        result = flows[name]
        print(
            f"issuer flows over HTTP ({name}): {result['per_s']}/s (p50 {result['p50_ms']} ms,"
            f" p99 {result['p99_ms']} ms, {result['errors']} errors,"
            f" server {result['server_cpu_ms_per_flow']} ms CPU a flow)"
        )
    print(
        f"in-process flow {in_process['median_ms']} ms ({in_process['median_cpu_ms']} ms CPU);"
        f" bulk signing {sign_rate}/s; ACA-Py sd-jwt/sign {acapy_rate or acapy}/s"
    )
    print(f"written {path}")


if __name__ == "__main__":
    main()
