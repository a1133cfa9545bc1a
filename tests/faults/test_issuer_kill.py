"""kill -9 the issuer during a bulk issuance, 20 times; nothing lost, doubled or reused.

The issuer has no bulk command: a bulk issuance is the agency creating offers through the
admin API while wallets run whole OpenID4VCI flows (offer document, token, nonce, credential
with one to three proofs: a batch) concurrently against ``civic-issuer serve``, a real
subprocess. After a seeded random number of delivered credentials (and a short random delay,
so requests of every kind are in flight) the process gets SIGKILL and is started again on the
same data (SQLite file in the data directory, or a PostgreSQL schema). The wallets then pick
up where they were, as a wallet would: a request whose answer never came is asked again.

What a client learns, per request, is one of: an answer (it knows the outcome), or a cut
connection (in doubt: the server may or may not have committed). The invariants, checked on
the database and through the admin API and the status lists after the last restart:

1. every credential a wallet received (200) is recorded exactly once, for its offer, with
   the status index its status claim names and the key it is bound to; it verifies;
2. status indices (list, index) are unique over every credential ever recorded;
3. per offer, all or nothing: an offer is ``delivered`` exactly when credentials are recorded
   for it, and then its claims are gone and its credentials are exactly those of ONE
   credential request: the one whose 200 the wallet got, or, if it got none, one that was in
   doubt (cut by a kill) and whose retry found the token spent (401): the only case where
   records exist that no wallet holds;
4. an offer whose token request was in doubt and whose retry found the code spent is left at
   ``token_issued`` with nothing recorded (fails closed: the agency makes a new offer);
5. every offer the admin API acknowledged (201) exists; offers it did not acknowledge exist
   at most as many times as creations were in doubt, and unused;
6. status changes the admin API acknowledged hold in the database and in the signed status
   list; in-doubt ones are either applied or not; every other credential is valid there.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from civic.credentials import RESIDENCY_VCT, get_type
from civic.jose import PrivateKey, sign_jwt
from civic.sdjwtvc import verify_credential
from civic.statuslist import Status, parse_status_claim, verify_status_list_token
from issuer import db
from issuer.oid4vci import PRE_AUTHORIZED_GRANT, PROOF_TYP
from registry.app import create_app as create_registry_app
from registry.settings import RegistrySettings
from registry.settings import load_runtime as load_registry_runtime
from tests.faults.harness import (
    NEEDS_POSTGRES,
    POSTGRES_URL,
    IssuerDeployment,
    Launcher,
    ServiceProcess,
    deploy_issuer,
    postgres_schema,
)
from tests.services.registry_harness import ThreadServer, init_registry, wait_for

pytestmark = pytest.mark.faults

KILLS = 20
WALLETS = 3
SEED = 8_2026
MAX_CREDENTIALS_BEFORE_KILL = 5
MAX_BATCH = 3
CYCLE_TIMEOUT = 60.0
FINAL_FRESH_FLOWS = 4
STATUS_CHANGE_RATE = 0.25
STATUS_ACTIONS = {"revoke": "revoked", "suspend": "suspended"}
STATUS_VALUES = {"valid": Status.VALID, "revoked": Status.INVALID, "suspended": Status.SUSPENDED}


class Cut(Exception):
    """The connection broke before an answer: the server was killed (outcome unknown)."""


class Unexpected(AssertionError):
    """An answer the protocol does not allow at this point."""


@dataclass
class Received:
    thumbprint: str
    list_id: int
    index: int
    credential: str


@dataclass
class Flow:
    offer_id: str
    offer_url: str
    tx_code: str
    code: str | None = None
    token: str | None = None
    token_in_doubt: bool = False
    in_doubt_batches: list[frozenset[str]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    outcome: str = "open"  # open, received, lost_token, lost_delivery


@dataclass
class Ledger:
    """What the clients know, shared by their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    flows: dict[str, Flow] = field(default_factory=dict)
    pending: list[Flow] = field(default_factory=list)
    offers_in_doubt: int = 0
    status_acked: dict[tuple[int, int], str] = field(default_factory=dict)
    status_in_doubt: dict[tuple[int, int], str] = field(default_factory=dict)
    cycle_credentials: int = 0
    errors: list[str] = field(default_factory=list)

    def take(self) -> Flow | None:
        with self.lock:
            return self.pending.pop(0) if self.pending else None

    def give_back(self, flow: Flow) -> None:
        with self.lock:
            self.pending.insert(0, flow)


def _post(http: httpx.Client, path: str, **kwargs: Any) -> httpx.Response:
    try:
        return http.post(path, **kwargs)
    except httpx.TransportError:
        raise Cut from None


def _get(http: httpx.Client, path: str, **kwargs: Any) -> httpx.Response:
    try:
        return http.get(path, **kwargs)
    except httpx.TransportError:
        raise Cut from None


def _answer(response: httpx.Response, *expected: int) -> dict[str, Any]:
    if response.status_code not in expected:
        raise Unexpected(f"{response.request.url.path} -> {response.status_code}: {response.text}")
    body: dict[str, Any] = response.json()
    return body


class Wallet:
    """Runs flows one step at a time; a :class:`Cut` leaves the flow resumable."""

    def __init__(self, deployment: IssuerDeployment, ledger: Ledger, rng: random.Random) -> None:
        self.deployment = deployment
        self.ledger = ledger
        self.rng = rng

    def advance(self, http: httpx.Client, flow: Flow) -> None:
        if flow.code is None:
            document = _answer(_get(http, flow.offer_url), 200)
            flow.code = document["grants"][PRE_AUTHORIZED_GRANT]["pre-authorized_code"]
        if flow.token is None:
            self._token(http, flow)
            if flow.outcome != "open":
                return
        self._credential(http, flow)

    def _token(self, http: httpx.Client, flow: Flow) -> None:
        assert flow.code is not None
        form = {
            "grant_type": PRE_AUTHORIZED_GRANT,
            "pre-authorized_code": flow.code,
            "tx_code": flow.tx_code,
        }
        try:
            response = _post(http, "/token", data=form)
        except Cut:
            flow.token_in_doubt = True
            raise
        if response.status_code == 400 and flow.token_in_doubt:
            # The lost exchange had committed: the code is spent, the token never arrived.
            assert response.json()["error"] == "invalid_grant", response.text
            flow.outcome = "lost_token"
            return
        flow.token = _answer(response, 200)["access_token"]

    def _credential(self, http: httpx.Client, flow: Flow) -> None:
        assert flow.token is not None
        nonce = _answer(_post(http, "/nonce"), 200)["c_nonce"]
        holders = [PrivateKey.generate("EdDSA") for _ in range(self.rng.randint(1, MAX_BATCH))]
        proofs = [
            sign_jwt(
                {"typ": PROOF_TYP, "jwk": holder.public_key.to_jwk()},
                {"aud": self.deployment.url, "iat": int(time.time()), "nonce": nonce},
                holder,
            )
            for holder in holders
        ]
        thumbprints = [holder.public_key.thumbprint() for holder in holders]
        try:
            response = _post(
                http,
                "/credential",
                json={"credential_configuration_id": "residency", "proofs": {"jwt": proofs}},
                headers={"Authorization": f"Bearer {flow.token}"},
            )
        except Cut:
            flow.in_doubt_batches.append(frozenset(thumbprints))
            raise
        if response.status_code == 401 and flow.in_doubt_batches:
            # A lost delivery had committed: the token is spent.
            assert response.json()["error"] == "invalid_token", response.text
            flow.outcome = "lost_delivery"
            return
        issued = _answer(response, 200)["credentials"]
        assert len(issued) == len(holders)
        for item, thumbprint in zip(issued, thumbprints, strict=True):
            credential = item["credential"]
            claims = _verified_claims(self.deployment, credential)
            assert claims["cnf"]["jwk"] is not None
            reference = parse_status_claim(claims["status"], unsafe_allow_http_loopback=True)
            list_id = int(reference.uri.rsplit("/", 1)[1])
            flow.received.append(Received(thumbprint, list_id, reference.index, credential))
        flow.outcome = "received"
        with self.ledger.lock:
            self.ledger.cycle_credentials += len(issued)

    def run(self, stop: threading.Event) -> None:
        with httpx.Client(base_url=self.deployment.url, timeout=30) as http:
            while not stop.is_set():
                flow = self.ledger.take()
                if flow is None:
                    time.sleep(0.005)  # the agency is still creating offers
                    continue
                try:
                    self.advance(http, flow)
                except Cut:
                    self.ledger.give_back(flow)
                    return
                except Exception as error:  # reported by the test, not swallowed
                    with self.ledger.lock:
                        self.ledger.errors.append(f"flow {flow.offer_id}: {error!r}")
                    return
                if flow.outcome == "open":
                    self.ledger.give_back(flow)


def _verified_claims(deployment: IssuerDeployment, credential: str) -> dict[str, Any]:
    for key in deployment.public_keys.values():
        verified = verify_credential(credential, key, key_binding=None)
        return dict(verified.claims)
    raise AssertionError("no issuer key")


class Agency:
    """Creates offers through the admin API and changes the status of delivered credentials."""

    def __init__(
        self,
        deployment: IssuerDeployment,
        ledger: Ledger,
        rng: random.Random,
        engine: Engine | None,
    ) -> None:
        self.deployment = deployment
        self.ledger = ledger
        self.rng = rng
        self.engine = engine
        self.claims = get_type(RESIDENCY_VCT).example_claims()
        self.headers = {"Authorization": f"Bearer {deployment.api_key}"}

    def create_offer(self, http: httpx.Client) -> None:
        try:
            response = _post(
                http,
                "/admin/offers",
                json={"vct": RESIDENCY_VCT, "claims": self.claims},
                headers=self.headers,
            )
        except Cut:
            with self.ledger.lock:
                self.ledger.offers_in_doubt += 1
            raise
        offer = _answer(response, 201)
        flow = Flow(offer["offer_id"], offer["credential_offer_url"], offer["tx_code"])
        with self.ledger.lock:
            self.ledger.flows[flow.offer_id] = flow
            self.ledger.pending.append(flow)

    def change_status(self, http: httpx.Client) -> None:
        with self.ledger.lock:
            changed = self.ledger.status_acked.keys() | self.ledger.status_in_doubt.keys()
            candidates = [
                (item.list_id, item.index)
                for flow in self.ledger.flows.values()
                for item in flow.received
                if (item.list_id, item.index) not in changed
            ]
        if not candidates:
            return
        assert self.engine is not None
        entry = self.rng.choice(sorted(candidates))
        action = self.rng.choice(sorted(STATUS_ACTIONS))
        with db.read_transaction(self.engine) as connection:
            credential_id = connection.execute(
                select(db.credentials.c.credential_id).where(
                    db.credentials.c.status_list_id == entry[0],
                    db.credentials.c.status_index == entry[1],
                )
            ).scalar_one()
        try:
            response = _post(
                http, f"/admin/credentials/{credential_id}/{action}", headers=self.headers
            )
        except Cut:
            with self.ledger.lock:
                self.ledger.status_in_doubt[entry] = STATUS_ACTIONS[action]
            raise
        assert _answer(response, 200)["status"] == STATUS_ACTIONS[action]
        with self.ledger.lock:
            self.ledger.status_acked[entry] = STATUS_ACTIONS[action]

    def run(self, stop: threading.Event) -> None:
        with httpx.Client(base_url=self.deployment.url, timeout=30) as http:
            while not stop.is_set():
                try:
                    if self.rng.random() < STATUS_CHANGE_RATE:
                        self.change_status(http)
                    with self.ledger.lock:
                        backlog = len(self.ledger.pending)
                    if backlog < 2 * WALLETS:
                        self.create_offer(http)
                    else:
                        time.sleep(0.005)
                except Cut:
                    return
                except Exception as error:
                    with self.ledger.lock:
                        self.ledger.errors.append(f"agency: {error!r}")
                    return


def _run_cycle(
    deployment: IssuerDeployment,
    server: ServiceProcess,
    ledger: Ledger,
    rng: random.Random,
    engine: Engine,
    *,
    kill_after: int | None,
) -> None:
    """Serve, load, and (``kill_after`` credentials later) SIGKILL; or, with None, start a
    few fresh flows, finish every open flow and leave the server running."""
    server.start()
    if kill_after is None:
        _fresh_flows(deployment, ledger, FINAL_FRESH_FLOWS)
    ledger.cycle_credentials = 0
    stop = threading.Event()
    wallets = [Wallet(deployment, ledger, random.Random(rng.random())) for _ in range(WALLETS)]
    threads = [threading.Thread(target=w.run, args=(stop,), daemon=True) for w in wallets]
    if kill_after is not None:
        agency = Agency(deployment, ledger, random.Random(rng.random()), engine)
        threads.append(threading.Thread(target=agency.run, args=(stop,), daemon=True))
    for thread in threads:
        thread.start()
    try:
        if kill_after is None:
            wait_for(
                lambda: all(f.outcome != "open" for f in ledger.flows.values()) or ledger.errors,
                CYCLE_TIMEOUT,
                "the open flows to finish",
            )
        else:
            wait_for(
                lambda: ledger.cycle_credentials >= kill_after or ledger.errors,
                CYCLE_TIMEOUT,
                f"{kill_after} credentials",
            )
            time.sleep(rng.uniform(0, 0.05))  # lands the kill at varying points of a request
            server.kill()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=CYCLE_TIMEOUT)
        if kill_after is not None or ledger.errors:
            server.stop()
    assert not ledger.errors, ledger.errors


def _fresh_flows(deployment: IssuerDeployment, ledger: Ledger, count: int) -> None:
    agency = Agency(deployment, ledger, random.Random(SEED), engine=None)
    with httpx.Client(base_url=deployment.url, timeout=30) as http:
        for _ in range(count):
            agency.create_offer(http)


def _all_records(deployment: IssuerDeployment) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {deployment.api_key}"}
    with httpx.Client(base_url=deployment.url, timeout=30) as http:
        while True:
            page = http.get(
                "/admin/credentials", params={"limit": 500, "offset": len(records)}, headers=headers
            ).json()
            records += page["credentials"]
            if len(records) >= page["total"]:
                return records


def _check(deployment: IssuerDeployment, ledger: Ledger, engine: Engine) -> dict[str, int]:
    flows = ledger.flows
    with db.read_transaction(engine) as connection:
        offers = {row.offer_id: row for row in connection.execute(select(db.offers)).all()}
        rows = connection.execute(select(db.credentials)).all()

    # 2. status indices unique over every record; credential ids too.
    entries = Counter((int(row.status_list_id), int(row.status_index)) for row in rows)
    assert max(entries.values(), default=1) == 1, "a status index was handed out twice"
    assert len({row.credential_id for row in rows}) == len(rows)
    by_entry = {(int(row.status_list_id), int(row.status_index)): row for row in rows}
    by_offer: dict[str, set[str]] = {}
    for row in rows:
        assert row.offer_id in offers, "a credential record without its offer"
        by_offer.setdefault(row.offer_id, set()).add(row.holder_thumbprint)

    # 1. every received credential is recorded exactly once, as issued.
    received = [item for flow in flows.values() for item in flow.received]
    for holder in flows.values():
        for item in holder.received:
            record = by_entry.get((item.list_id, item.index))
            assert record is not None, "a delivered credential is not recorded"
            assert record.offer_id == holder.offer_id
            assert record.holder_thumbprint == item.thumbprint

    # 3, 4: per offer, all or nothing, and exactly one credential request's worth.
    counts: Counter[str] = Counter()
    for offer_id, offer in offers.items():
        known = flows.get(offer_id)
        recorded = by_offer.get(offer_id, set())
        assert (offer.state == "delivered") == bool(recorded), offer.state
        if offer.state == "delivered":
            assert offer.claims is None and offer.delivered_at is not None
        if known is None:
            # 5. created, but the 201 was lost: unused.
            assert offer.state == "offered" and not recorded
            counts["offers_unacknowledged"] += 1
            continue
        counts[known.outcome] += 1
        if known.outcome == "received":
            assert recorded == {item.thumbprint for item in known.received}
        elif known.outcome == "lost_delivery":
            assert recorded in known.in_doubt_batches, "records that match no request"
        elif known.outcome == "lost_token":
            assert offer.state == "token_issued" and not recorded
        else:
            raise AssertionError(f"flow left {known.outcome}")
    # 5. every acknowledged offer exists.
    assert set(flows) <= set(offers), "an acknowledged offer is missing"
    assert counts["offers_unacknowledged"] <= ledger.offers_in_doubt

    # 1 (again) through the admin API: one record per received credential.
    records = _all_records(deployment)
    assert len(records) == len(rows)
    listed = Counter((r["status_list"]["uri"], r["status_list"]["idx"]) for r in records)
    for item in received:
        assert listed[(f"{deployment.url}/status/{item.list_id}", item.index)] == 1

    # 6. statuses: in the database and in the signed status lists.
    key = next(iter(deployment.public_keys.values()))
    tokens: dict[int, Any] = {}
    with httpx.Client(base_url=deployment.url, timeout=30) as http:
        for list_id in sorted({entry[0] for entry in by_entry}):
            response = http.get(f"/status/{list_id}")
            assert response.status_code == 200, response.text
            tokens[list_id] = verify_status_list_token(
                response.text, key=key, expected_uri=f"{deployment.url}/status/{list_id}"
            ).status_list
    for entry, row in by_entry.items():
        allowed = {Status.VALID}
        if entry in ledger.status_acked:
            allowed = {STATUS_VALUES[ledger.status_acked[entry]]}
        elif entry in ledger.status_in_doubt:
            allowed = {Status.VALID, STATUS_VALUES[ledger.status_in_doubt[entry]]}
        assert Status(int(row.status)) in allowed
        assert tokens[entry[0]].get(entry[1]) == Status(int(row.status))
    counts["credentials_received"] = len(received)
    counts["records"] = len(rows)
    counts["status_changes_acked"] = len(ledger.status_acked)
    counts["status_changes_in_doubt"] = len(ledger.status_in_doubt)
    return dict(counts)


def _kill_repeatedly(deployment: IssuerDeployment, tmp_path: Path) -> dict[str, int]:
    rng = random.Random(SEED)
    ledger = Ledger()
    launcher = Launcher("issuer.cli")
    server = deployment.process(launcher)
    engine = deployment.engine()
    try:
        for _ in range(KILLS):
            kill_after = rng.randint(0, MAX_CREDENTIALS_BEFORE_KILL)
            _run_cycle(deployment, server, ledger, rng, engine, kill_after=kill_after)
        # The last start: no kill; issuing continues, every open flow finishes.
        try:
            _run_cycle(deployment, server, ledger, rng, engine, kill_after=None)
            summary = _check(deployment, ledger, engine)
        finally:
            server.stop()
    finally:
        engine.dispose()
        launcher.close()
    summary["kills"] = KILLS
    summary["starts"] = server.starts
    (tmp_path / "summary.json").write_text(json.dumps(summary, sort_keys=True))
    print(f"issuer kill -9 summary: {summary}")
    return summary


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    files = init_registry(tmp_path / "registry")
    runtime = load_registry_runtime(RegistrySettings(data_dir=files.data_dir))
    with ThreadServer(create_registry_app(runtime)) as server:
        yield files, server.url


def _assert_exercised(summary: dict[str, int]) -> None:
    assert summary["kills"] == KILLS
    assert summary["credentials_received"] > 0
    assert summary["records"] >= summary["credentials_received"]


def test_kill_9_during_bulk_issuance_on_sqlite(tmp_path: Path, registry: tuple[Any, str]) -> None:
    files, url = registry
    deployment = deploy_issuer(tmp_path / "issuer", files, url)
    _assert_exercised(_kill_repeatedly(deployment, tmp_path))


@pytest.mark.skipif(not POSTGRES_URL, reason=NEEDS_POSTGRES)
def test_kill_9_during_bulk_issuance_on_postgresql(
    tmp_path: Path, registry: tuple[Any, str]
) -> None:
    files, url = registry
    with postgres_schema("faults_issuer") as (database_url, schema):
        deployment = deploy_issuer(
            tmp_path / "issuer", files, url, database_url=database_url, database_schema=schema
        )
        _assert_exercised(_kill_repeatedly(deployment, tmp_path))
