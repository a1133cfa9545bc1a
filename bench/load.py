"""Bounded loopback load (issue 8, "Load"): each service for a fixed time, every answer counted.

``python -m bench load [--seconds 60] [--concurrency 16] [--max-units N]`` runs, one after the
other on 127.0.0.1:

- ``verifier``: the verifier service as ``bench.verifier`` serves it (two uvicorn processes,
  see :func:`bench.verifier.full_verifier`), ``POST /verify`` with valid presentations under
  the ``bar-entry`` policy. Replays are refused, so every body is fresh: a pool is built
  beforehand, each body with its own nonce (issued by the verifier's replay store) and KB-JWT.
  Expected: 200 with ``"result": "valid"``.
- ``issuer``: ``civic-issuer serve --workers 2`` (see :mod:`bench.issuer`), whole wallet flows
  (token, nonce, credential with its key proof) over offers created beforehand. Expected: 200
  for each of the three requests, and a credential that verifies under the issuer's key
  (checked after the run, outside the timed window).

CONCURRENCY threads, each with one kept-alive ``http.client`` connection, run units (one
verification, one flow) back to back until the time is up or the pool is used up (a count
cap). Every response is counted by endpoint and status, every unit by verdict; an error is any
answer other than the expected one, a 4xx or 5xx, a timeout or a connection error. The pool is
sized from a short warm-up's rate (twice what the time should need), so that it runs out only
when the count cap says so. Latencies: p50, p90, p99 and max of the unit (a verification, a
whole flow) and of single requests. The report (bench/results/load.json) also records the
machine's load average before and after each run and the git commit.

The verifier's presentations are good for about five minutes after they are built (the nonce's
ttl, the KB-JWT's maximum age): building the pool and running must fit in that, which limits
``--seconds`` to a few minutes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from bench.harness import write_report
from bench.issuer import (
    HttpError,
    IssuerUnderTest,
    prepare_offers,
    registry_and_issuer,
    serving,
    wallet_flow,
)
from bench.verifier import full_verifier
from civic.clock import system_clock
from civic.encoding import json_loads_object
from civic.errors import CivicError
from civic.jose import public_key_from_jwk
from civic.sdjwtvc import verify_credential
from tests.services.verifier_deploy import API_KEY

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 60.0
CONCURRENCY = 16
WORKERS = 2
TIMEOUT = 10.0
WARMUP_SECONDS = 3.0
POOL_MARGIN = 2.0
SERVICES = ("verifier", "issuer")

J = TypeVar("J")


class Unexpected(HttpError):
    """An answer other than the expected one; ``kind`` says which way."""

    def __init__(self, kind: str, verdict: str | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.verdict = verdict


@dataclass
class Tally:
    """What one run saw, filled by every thread under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    by_status: Counter[str] = field(default_factory=Counter)
    by_verdict: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    unit_latencies: list[float] = field(default_factory=list)
    request_latencies: list[float] = field(default_factory=list)
    outcomes: list[Any] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.by_status.values()) + self.errors["timeout"] + self.errors["connection"]


class Connection:
    """One kept-alive connection (``http.client``) that counts every answer in ``tally``; it
    is a :class:`bench.issuer.WalletClient`, so :func:`bench.issuer.wallet_flow` drives it."""

    def __init__(self, base_url: str, tally: Tally) -> None:
        parts = urlsplit(base_url)
        self._connection = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=TIMEOUT
        )
        self._tally = tally

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        """The body of a 200 answer; :class:`Unexpected` for anything else."""
        started = time.perf_counter()
        try:
            self._connection.request("POST", path, body=body, headers=headers)
            response = self._connection.getresponse()
            content = response.read()
        except TimeoutError:
            self._connection.close()  # reconnects on the next request
            raise Unexpected("timeout") from None
        except (OSError, http.client.HTTPException):
            self._connection.close()
            raise Unexpected("connection") from None
        elapsed = time.perf_counter() - started
        with self._tally.lock:
            self._tally.by_status[f"{path} {response.status}"] += 1
            self._tally.request_latencies.append(elapsed)
        if response.status != 200:
            raise Unexpected(f"status {response.status}")
        return content

    def close(self) -> None:
        self._connection.close()


@dataclass
class Service(Generic[J]):
    """A service under load: its URL, a builder of ``count`` fresh jobs, and one unit of work
    (returns the verdict of an expected answer, raises :class:`Unexpected` otherwise)."""

    name: str
    url: str
    jobs: Callable[[int], list[J]]
    unit: Callable[[Connection, J], tuple[str, Any]]
    unit_name: str
    expected: str
    """The verdict of a unit whose answers were all the expected ones."""
    check: Callable[[Tally], None] = lambda _tally: None
    """Run after the load, outside the timed window: may move verdicts to errors."""


def drive(
    service: Service[J], jobs: Sequence[J], *, seconds: float, concurrency: int
) -> tuple[Tally, float, bool]:
    """Run ``service.unit`` over ``jobs`` on ``concurrency`` threads until ``seconds`` have
    passed or the jobs are used up; returns the tally, the duration and whether the jobs ran
    out first."""
    tally = Tally()
    pending = iter(jobs)
    ran_out = threading.Event()
    started = time.perf_counter()
    deadline = started + seconds

    def run() -> None:
        connection = Connection(service.url, tally)
        try:
            while time.perf_counter() < deadline:
                with tally.lock:
                    job = next(pending, None)
                if job is None:
                    ran_out.set()
                    return
                begun = time.perf_counter()
                try:
                    verdict, outcome = service.unit(connection, job)
                except Unexpected as error:
                    kind = error.kind
                    if error.verdict is not None:
                        with tally.lock:
                            tally.by_verdict[error.verdict] += 1
                except (CivicError, KeyError, IndexError, TypeError, ValueError):
                    kind = "unexpected answer"
                else:
                    elapsed = time.perf_counter() - begun
                    with tally.lock:
                        tally.by_verdict[verdict] += 1
                        tally.unit_latencies.append(elapsed)
                        tally.outcomes.append(outcome)
                    continue
                with tally.lock:
                    tally.errors[kind] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally, time.perf_counter() - started, ran_out.is_set()


def _percentiles(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)

    def at(fraction: float) -> float | None:
        if not ordered:
            return None
        return round(1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 2)

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": at(1.0)}


def load(
    service: Service[J], *, seconds: float, concurrency: int, max_units: int | None
) -> dict[str, Any]:
    """Warm up, build the pool, run for ``seconds``, check, and summarise the run."""
    warmup = 20 * concurrency if max_units is None else max(concurrency, max_units // 5)
    # Twice: the first run pays for cold starts (connections, caches, status lists), the
    # second gives the rate that sizes the pool.
    cold, _, _ = drive(
        service, service.jobs(warmup), seconds=WARMUP_SECONDS, concurrency=concurrency
    )
    service.check(cold)
    warm, warm_seconds, _ = drive(
        service, service.jobs(warmup), seconds=WARMUP_SECONDS, concurrency=concurrency
    )
    service.check(warm)
    warm_rate = len(warm.unit_latencies) / warm_seconds
    wanted = int(warm_rate * seconds * POOL_MARGIN) + 10 * concurrency
    pool = service.jobs(min(wanted, max_units) if max_units is not None else wanted)
    load_before = os.getloadavg()
    tally, duration, ran_out = drive(service, pool, seconds=seconds, concurrency=concurrency)
    load_after = os.getloadavg()
    service.check(tally)
    ok = tally.by_verdict[service.expected]
    errors = sum(tally.errors.values())
    return {
        "unit": service.unit_name,
        "workers": WORKERS,
        "concurrency": concurrency,
        "seconds_asked": seconds,
        "duration_s": round(duration, 2),
        "stopped_by": "count cap (pool used up)" if ran_out else "time",
        "pool": len(pool),
        "warmup": {
            "units_as_expected": cold.by_verdict[service.expected]
            + warm.by_verdict[service.expected],
            "errors_by_kind": dict(cold.errors + warm.errors),
            "rate_per_s": round(warm_rate, 1),
        },
        "units": ok + errors,
        "units_as_expected": ok,
        "requests": tally.requests,
        "errors": errors,
        "errors_by_kind": dict(tally.errors),
        "by_status": dict(sorted(tally.by_status.items())),
        "by_verdict": dict(sorted(tally.by_verdict.items())),
        "units_per_s": round(ok / duration, 1),
        "requests_per_s": round(tally.requests / duration, 1),
        "latency_ms": _percentiles(tally.unit_latencies),
        "request_latency_ms": _percentiles(tally.request_latencies),
        "load_average": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in load_after],
        },
    }


# --- the services ----------------------------------------------------------------------------


def verifier_service(stack: ExitStack, workdir: Path) -> Service[bytes]:
    verifier = full_verifier(stack, workdir)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}

    def jobs(count: int) -> list[bytes]:
        return [body.encode() for body in verifier.bodies(count)]

    def verify(connection: Connection, body: bytes) -> tuple[str, Any]:
        verdict = json_loads_object(connection.post("/verify", body, headers))
        result = f"{verdict.get('result')}" + (
            f" {verdict['reason']}" if verdict.get("reason") else ""
        )
        if result != "valid":
            raise Unexpected(f"verdict {result}", result)
        return "valid", None

    return Service("verifier", verifier.server.url, jobs, verify, "verification", "valid")


def issuer_service(stack: ExitStack, workdir: Path) -> Service[tuple[str, str]]:
    issuer: IssuerUnderTest = stack.enter_context(registry_and_issuer(workdir))
    stack.enter_context(serving(issuer, WORKERS))
    public_key = public_key_from_jwk(
        json_loads_object(next((issuer.data_dir / "keys").glob("*.pub.jwk")).read_text())
    )

    def flow(connection: Connection, offer: tuple[str, str]) -> tuple[str, Any]:
        return "credential", wallet_flow(connection, issuer.url, *offer)

    def check(tally: Tally) -> None:
        """Every credential delivered verifies under the issuer's key."""
        now = system_clock()
        for credential in tally.outcomes:
            tally.by_verdict["credential"] -= 1
            try:
                verify_credential(credential, public_key, key_binding=None, now=lambda: now)
            except CivicError as error:
                tally.by_verdict[f"credential not verifying: {error.reason.value}"] += 1
                tally.errors[f"credential not verifying: {error.reason.value}"] += 1
            else:
                tally.by_verdict["credential verified"] += 1
        tally.by_verdict += Counter()  # drops the zero counts

    return Service(
        "issuer",
        issuer.url,
        lambda count: prepare_offers(issuer, count),
        flow,
        "flow (token, nonce, credential)",
        "credential verified",
        check,
    )


BUILDERS: dict[str, Callable[[ExitStack, Path], Service[Any]]] = {
    "verifier": verifier_service,
    "issuer": issuer_service,
}


def run(
    services: Sequence[str] = SERVICES,
    *,
    seconds: float = SECONDS,
    concurrency: int = CONCURRENCY,
    max_units: int | None = None,
) -> dict[str, Any]:
    """Each service in turn, started and stopped on its own; the results by service."""
    results: dict[str, Any] = {}
    for name in services:
        with tempfile.TemporaryDirectory(prefix=f"bench-load-{name}-") as tmp, ExitStack() as stack:
            service = BUILDERS[name](stack, Path(tmp))
            results[name] = load(
                service, seconds=seconds, concurrency=concurrency, max_units=max_units
            )
    return results


def _git(*args: str) -> str:
    done = subprocess.run(  # noqa: S603 -- fixed arguments
        ["git", *args],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench load", description=__doc__)
    parser.add_argument("--seconds", type=float, default=SECONDS, help="per service")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="connections")
    parser.add_argument("--max-units", type=int, default=None, help="count cap per service")
    parser.add_argument("--service", action="append", choices=SERVICES, help="(repeat)")
    args = parser.parse_args(argv)
    before = os.getloadavg()
    results = run(
        args.service or SERVICES,
        seconds=args.seconds,
        concurrency=args.concurrency,
        max_units=args.max_units,
    )
    report = {
        "what": (
            f"bounded loopback load: each service for {args.seconds:g} s, {WORKERS} worker "
            f"processes, {args.concurrency} kept-alive connections (threads, http.client, "
            "closed loop); every answer counted; errors = any answer other than the expected "
            "one, 4xx/5xx, timeouts, connection errors"
        ),
        "git_commit": _git("rev-parse", "HEAD"),
        "uncommitted_changes_in_services": bool(
            _git("status", "--porcelain", "--", "civic", "issuer", "verifier", "registry")
        ),
        "load_average": {
            "before": [round(x, 2) for x in before],
            "after": [round(x, 2) for x in os.getloadavg()],
        },
        "results": results,
        "notes": [
            "one machine: the load generator (one Python process, 16 threads) shares the cores "
            "with the servers and with whatever else runs; the load averages say how busy it was",
            "verifier latency is one POST /verify; issuer latency is one whole flow of three "
            "requests (request_latency_ms has the single requests)",
        ],
    }
    path = write_report("load", report)
    for name, result in results.items():
        print(
            f"{name}: {result['units_as_expected']} x {result['unit']} in {result['duration_s']} s "
            f"({result['units_per_s']}/s), {result['errors']} errors, "
            f"p50 {result['latency_ms']['p50']} ms, p99 {result['latency_ms']['p99']} ms, "
            f"load {result['load_average']['before'][0]} -> {result['load_average']['after'][0]}"
        )
    print(f"written {path}")
    print(json.dumps({k: v["errors_by_kind"] for k, v in results.items()}))


if __name__ == "__main__":
    main()
