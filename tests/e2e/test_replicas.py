"""The replicated deployment of docs/deployment.md, started for real and checked end to end.

Topology (every service from its CLI's ``serve``, each a separate process on 127.0.0.1):

- the registry as two processes on one PostgreSQL schema, both publishing checkpoints to a
  witness (quorum 1);
- one agency's issuer as two processes on one PostgreSQL schema, sharing the signing key files
  and the identifier (the URL a load balancer would answer on);
- the counter service as two processes on one PostgreSQL schema with the replay cache in Redis,
  sharing the request-signing key; each syncs the registry through a different registry
  process.

Checks: concurrent appends through both registry processes give one log (contiguous indices,
one root, the same witnessed checkpoint from both, a from-scratch sync of each agreeing);
concurrent OpenID4VCI issuance through both issuer processes never hands out one status index
twice; a presentation accepted by one verifier replica is refused when replayed to the other,
offline (the KB-JWT nonce) and online (the OpenID4VP request). The strong contention tests of
each piece alone stay with the services (tests/services/test_issuer_postgres.py, whose small
lists force collisions, test_verifier_replicas.py, test_registry.py); here the lists have
the production minimum of 131,072 entries, so the issuance check is of the deployment, not a
stress test of the allocator.

Needs ``CIVIC_TEST_POSTGRES_URL`` and ``CIVIC_TEST_REDIS_URL`` (CI sets both, .ci/run). Each
run uses schemas and a Redis key prefix of its own and removes them afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from civic.credentials import RESIDENCY_VCT, get_type
from civic.encoding import b64url_decode, json_dumps, json_loads_object
from civic.jose import PrivateKey, public_key_from_jwk, sign_jwt, verify_jws
from civic.logsync import sync
from civic.merkle import leaf_hash, root_from_leaf_hashes
from civic.sdjwt import create_presentation
from civic_service.db import normalise_url
from demo.city import command, run_cli_json
from demo.processes import Service, Supervisor, clean_environment, free_port
from issuer.cli import app as issuer_app
from issuer.oid4vci import PRE_AUTHORIZED_GRANT, PROOF_TYP
from registry.client import HttpLogSource, log_config_from_json
from registry.witness.settings import write_signer_key
from tests.services.registry_harness import (
    ORIGIN,
    RegistryFiles,
    init_registry,
    issuer_key_add,
    post_entry,
    signed,
    wait_for,
)
from verifier.cli import app as verifier_app

POSTGRES_URL = os.environ.get("CIVIC_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("CIVIC_TEST_REDIS_URL")
CLIENT_ID = "counters.replicas.example"
YEAR = 365 * 86_400

pytestmark = pytest.mark.skipif(
    not (POSTGRES_URL and REDIS_URL),
    reason="the replicated deployment needs PostgreSQL and Redis: set CIVIC_TEST_POSTGRES_URL"
    " and CIVIC_TEST_REDIS_URL (CI sets both, e.g. postgresql://postgres@127.0.0.1:5432/test"
    " and redis://127.0.0.1:6379/0)",
)


@dataclass
class Deployment:
    files: RegistryFiles
    registries: list[Service]
    issuers: list[Service]
    verifiers: list[Service]
    issuer_url: str
    issuer_admin_key: str = field(repr=False)
    verifier_api_key: str = field(repr=False)
    verifier_public_jwk: dict[str, Any]
    log_size: int

    def staff(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.verifier_api_key}"}


def _cleanup(schemas: list[str], redis_prefix: str) -> None:
    assert POSTGRES_URL is not None and REDIS_URL is not None
    engine = create_engine(normalise_url(POSTGRES_URL))
    with engine.begin() as connection:
        for schema in schemas:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()
    from redis import Redis

    client = Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=redis_prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    assert POSTGRES_URL is not None and REDIS_URL is not None
    root = tmp_path_factory.mktemp("replicas")
    run = secrets.token_hex(5)
    schemas = {part: f"replicas_{run}_{part}" for part in ("registry", "issuer", "verifier")}
    redis_prefix = f"civic:replicas:{run}:"
    supervisor = Supervisor(root / "logs")
    try:
        yield _start(root, supervisor, schemas, redis_prefix)
    finally:
        supervisor.stop_all()
        _cleanup(list(schemas.values()), redis_prefix)


def _start(
    root: Path, supervisor: Supervisor, schemas: dict[str, str], redis_prefix: str
) -> Deployment:
    assert POSTGRES_URL is not None and REDIS_URL is not None
    files = init_registry(root / "registry")
    witness_key = root / "witness" / "witness.key"
    witness_vkey = write_signer_key(witness_key, "witness.test/replicas")
    files.write_trust_config([witness_vkey], 1)
    witness_url = f"http://127.0.0.1:{free_port()}"
    registry_urls = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    issuer_ports = [free_port() for _ in range(2)]
    verifier_ports = [free_port() for _ in range(2)]
    # Both issuer replicas answer for one identifier, as behind a load balancer; here it is
    # the first replica's address, and the test reaches each replica on its own port.
    issuer_url = f"http://127.0.0.1:{issuer_ports[0]}"
    verifier_public = f"http://127.0.0.1:{verifier_ports[0]}"

    issuer_dir = root / "issuer"
    issuer_env = {
        "DATABASE_URL": POSTGRES_URL,
        "CIVIC_ISSUER_DATABASE_SCHEMA": schemas["issuer"],
        "CIVIC_ISSUER_VCTS": json_dumps([RESIDENCY_VCT]),
        "CIVIC_ISSUER_NAME_EN": "Replicated district office",
    }
    created = run_cli_json(
        issuer_app, ["init", "--data-dir", str(issuer_dir), "--issuer-url", issuer_url], issuer_env
    )
    shutil.copy(files.data_dir / "trust-config.json", issuer_dir / "trust-config.json")
    staff = run_cli_json(
        issuer_app,
        [
            "create-api-key",
            "--vct",
            RESIDENCY_VCT,
            "--label",
            "staff",
            "--data-dir",
            str(issuer_dir),
        ],
        issuer_env,
    )
    verifier_dir = root / "verifier"
    verifier = run_cli_json(verifier_app, ["init", "--data-dir", str(verifier_dir)])
    shutil.copy(files.data_dir / "trust-config.json", verifier_dir / "trust-config.json")

    registry_cli = command("civic-registry", "registry.cli")
    services = [
        supervisor.start(
            "witness",
            [*registry_cli, "witness", "serve", "--port", witness_url.rsplit(":", 1)[1]],
            env=clean_environment(
                {
                    "CIVIC_WITNESS_KEY_FILE": str(witness_key),
                    "CIVIC_WITNESS_DATABASE_URL": f"sqlite:///{witness_key.parent}/state.sqlite3",
                    "CIVIC_WITNESS_LOGS": json_dumps({ORIGIN: files.log_vkey}),
                }
            ),
            url=witness_url,
            cwd=root,
        )
    ]
    registries = [
        supervisor.start(
            f"registry-{n}",
            [
                *registry_cli,
                "serve",
                "--data-dir",
                str(files.data_dir),
                "--port",
                url.rsplit(":", 1)[1],
            ],
            env=clean_environment(
                {
                    "DATABASE_URL": POSTGRES_URL,
                    "CIVIC_REGISTRY_DATABASE_SCHEMA": schemas["registry"],
                    "CIVIC_REGISTRY_WITNESSES": json_dumps(
                        [{"vkey": witness_vkey, "url": witness_url}]
                    ),
                    "CIVIC_REGISTRY_WITNESS_QUORUM": "1",
                    "CIVIC_REGISTRY_REPUBLISH_INTERVAL": "1",
                }
            ),
            url=url,
            cwd=root,
        )
        for n, url in enumerate(registry_urls)
    ]
    issuers = [
        supervisor.start(
            f"issuer-{n}",
            [
                *command("civic-issuer", "issuer.cli"),
                "serve",
                "--data-dir",
                str(issuer_dir),
                "--issuer-url",
                issuer_url,
                "--port",
                str(port),
            ],
            env=clean_environment(
                {
                    **issuer_env,
                    "CIVIC_ISSUER_REGISTRY_URL": registry_urls[n],
                    "CIVIC_ISSUER_TRUST_REFRESH_SECONDS": "1",
                }
            ),
            url=f"http://127.0.0.1:{port}",
            cwd=root,
        )
        for n, port in enumerate(issuer_ports)
    ]
    verifiers = [
        supervisor.start(
            f"verifier-{n}",
            [
                *command("civic-verifier", "verifier.cli"),
                "serve",
                "--data-dir",
                str(verifier_dir),
                "--port",
                str(port),
            ],
            env=clean_environment(
                {
                    "DATABASE_URL": POSTGRES_URL,
                    "CIVIC_VERIFIER_DATABASE_SCHEMA": schemas["verifier"],
                    "CIVIC_REDIS_URL": REDIS_URL,
                    "CIVIC_VERIFIER_REDIS_PREFIX": redis_prefix,
                    "CIVIC_VERIFIER_CLIENT_ID": CLIENT_ID,
                    "CIVIC_VERIFIER_PUBLIC_URL": verifier_public,
                    # Each counter replica syncs through a different registry process.
                    "CIVIC_VERIFIER_REGISTRY_URL": registry_urls[n],
                    "CIVIC_VERIFIER_SYNC_INTERVAL": "0.5",
                }
            ),
            url=f"http://127.0.0.1:{port}",
            cwd=root,
        )
        for n, port in enumerate(verifier_ports)
    ]
    supervisor.wait_ready([*services, *registries, *issuers, *verifiers], timeout=90)

    # The accreditations, appended at once through the two registry processes.
    now = int(time.time())
    issuer_entry = signed(
        files,
        "issuer.key.add",
        issuer=issuer_url,
        kid=created["kid"],
        jwk=json_loads_object(Path(created["public_jwk_file"]).read_bytes()),
        vct=[RESIDENCY_VCT],
        status_base_url=f"{issuer_url}/status",
        not_before=now - 60,
        not_after=now + YEAR,
    )
    verifier_entry = signed(
        files,
        "verifier.add",
        verifier=CLIENT_ID,
        kid=verifier["kid"],
        jwk=verifier["jwk"],
        purpose="Replicated counter",
        allowed=[{"vct": RESIDENCY_VCT, "claims": [["age_over_19"]]}],
        not_before=now - 60,
        not_after=now + YEAR,
    )
    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(
                lambda pair: post_entry(pair[0].url, files.admin_token, pair[1]),
                zip(registries, (issuer_entry, verifier_entry), strict=True),
            )
        )
    assert sorted(answer.json()["index"] for answer in answers) == [0, 1], [a.text for a in answers]
    deployment = Deployment(
        files=files,
        registries=registries,
        issuers=issuers,
        verifiers=verifiers,
        issuer_url=issuer_url,
        issuer_admin_key=staff["api_key"],
        verifier_api_key=(verifier_dir / "api.key").read_text().strip(),
        verifier_public_jwk=verifier["jwk"],
        log_size=2,
    )
    _wait_synced(deployment, 2)
    return deployment


def _witnessed_size(url: str) -> int:
    lines = httpx.get(url + "/checkpoint", timeout=10).text.split("\n")
    witnessed = any(line.startswith("\u2014 witness.test/replicas ") for line in lines)
    return int(lines[1]) if witnessed and len(lines) > 1 else -1


def _wait_synced(deployment: Deployment, size: int) -> None:
    """Both registry processes serve a witnessed checkpoint of ``size``; both verifier replicas
    synced it without an error."""
    for registry in deployment.registries:
        wait_for(lambda r=registry: _witnessed_size(r.url) >= size, 30, f"checkpoint {size}")

    def synced(url: str) -> bool:
        trust = httpx.get(url + "/healthz", timeout=10).json()["trust"]
        return bool(trust["checkpoint_size"] == size and trust["last_error"] is None)

    for verifier in deployment.verifiers:
        wait_for(lambda v=verifier: synced(v.url), 30, f"{verifier.name} to sync {size}")


# --- the registry ---------------------------------------------------------------------------


def test_concurrent_appends_through_two_registry_processes_make_one_log(
    deployment: Deployment,
) -> None:
    files, urls = deployment.files, [r.url for r in deployment.registries]
    per_thread, threads_per_process = 8, 2
    batches = [
        [issuer_key_add(files, kid=f"p{n}-{t}-{i}") for i in range(per_thread)]
        for n in range(len(urls))
        for t in range(threads_per_process)
    ]

    def append(batch_number: int) -> list[int]:
        url = urls[batch_number // threads_per_process]
        with httpx.Client(timeout=60) as client:
            indices = []
            for entry in batches[batch_number]:
                answer = client.post(
                    url + "/entries",
                    content=json_dumps(entry.to_json()),
                    headers={"Authorization": f"Bearer {files.admin_token}"},
                )
                assert answer.status_code == 201, answer.text
                indices.append(answer.json()["index"])
        return indices

    with ThreadPoolExecutor(len(batches)) as pool:
        indices = sorted(i for result in pool.map(append, range(len(batches))) for i in result)
    start, added = deployment.log_size, len(batches) * per_thread
    assert indices == list(range(start, start + added))
    size = start + added
    deployment.log_size = size
    _wait_synced(deployment, size)

    config = log_config_from_json(files.trust_config([_witness_vkey(files)], 1))
    roots, notes = [], []
    for url in urls:
        with HttpLogSource(url) as source:
            leaves = source.entries(0, size)
            snapshot = sync(source, config, None)
        assert snapshot.size == size
        assert snapshot.root_hash == root_from_leaf_hashes([leaf_hash(leaf) for leaf in leaves])
        roots.append(snapshot.root_hash)
        notes.append(httpx.get(url + "/checkpoint", timeout=10).text)
    # One log: the same root from each, and the very same witnessed checkpoint.
    assert roots[0] == roots[1]
    assert notes[0] == notes[1]


def _witness_vkey(files: RegistryFiles) -> str:
    config = json_loads_object((files.data_dir / "trust-config.json").read_bytes())
    vkey: str = config["witnesses"][0]
    return vkey


# --- the issuer -----------------------------------------------------------------------------


def _issue(
    deployment: Deployment, client: httpx.Client, number: int, copies: int
) -> tuple[list[str], PrivateKey]:
    """One OpenID4VCI pre-authorized flow, its steps spread over both issuer replicas."""
    replicas = [issuer.url for issuer in deployment.issuers]
    first, other = replicas[number % 2], replicas[(number + 1) % 2]
    claims = get_type(RESIDENCY_VCT).example_claims()
    offer = client.post(
        f"{first}/admin/offers",
        json={"vct": RESIDENCY_VCT, "claims": claims},
        headers={"Authorization": f"Bearer {deployment.issuer_admin_key}"},
    )
    assert offer.status_code == 201, offer.text
    reference = offer.json()["credential_offer_url"].rsplit("/", 1)[1]
    document = client.get(f"{other}/offers/{reference}").json()
    code = document["grants"][PRE_AUTHORIZED_GRANT]["pre-authorized_code"]
    token = client.post(
        f"{other}/token",
        data={
            "grant_type": PRE_AUTHORIZED_GRANT,
            "pre-authorized_code": code,
            "tx_code": offer.json()["tx_code"],
        },
    )
    assert token.status_code == 200, token.text
    nonce = client.post(f"{first}/nonce").json()["c_nonce"]
    keys = [PrivateKey.generate() for _ in range(copies)]
    proofs = [
        sign_jwt(
            {"typ": PROOF_TYP, "jwk": key.public_key.to_jwk()},
            {"aud": deployment.issuer_url, "iat": int(time.time()), "nonce": nonce},
            key,
        )
        for key in keys
    ]
    answer = client.post(
        f"{other}/credential",
        json={"credential_configuration_id": "residency", "proofs": {"jwt": proofs}},
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
    )
    assert answer.status_code == 200, answer.text
    return [item["credential"] for item in answer.json()["credentials"]], keys[0]


def _status_of(credential: str) -> tuple[str, int]:
    payload = json_loads_object(b64url_decode(credential.split("~", 1)[0].split(".")[1]))
    reference = payload["status"]["status_list"]
    return reference["uri"], reference["idx"]


def test_concurrent_issuance_across_two_issuers_never_reuses_a_status_index(
    deployment: Deployment,
) -> None:
    flows, copies = 24, 8

    def run(number: int) -> list[str]:
        with httpx.Client(timeout=60) as client:
            return _issue(deployment, client, number, copies)[0]

    with ThreadPoolExecutor(8) as pool:
        issued = [c for result in pool.map(run, range(flows)) for c in result]
    assert len(issued) == flows * copies
    statuses = [_status_of(credential) for credential in issued]
    assert len(set(statuses)) == len(statuses), "a status index was handed out twice"
    # What the agency's records hold, read through either replica, is the same set.
    for issuer in deployment.issuers:
        listed = httpx.get(
            f"{issuer.url}/admin/credentials?limit=500",
            headers={"Authorization": f"Bearer {deployment.issuer_admin_key}"},
            timeout=30,
        ).json()
        assert listed["total"] == len(issued)
        recorded = {
            (c["status_list"]["uri"], c["status_list"]["idx"]) for c in listed["credentials"]
        }
        assert recorded == set(statuses)


# --- the counter service --------------------------------------------------------------------


def test_a_presentation_replayed_to_the_other_verifier_replica_is_refused(
    deployment: Deployment,
) -> None:
    first, second = (verifier.url for verifier in deployment.verifiers)
    with httpx.Client(timeout=30) as client:
        (credential, *_), holder = _issue(deployment, client, 0, 2)

        # Offline: a challenge from one replica, the scan verified by the other, then replayed.
        challenge = client.post(first + "/challenges", headers=deployment.staff())
        assert challenge.status_code == 201, challenge.text
        nonce = challenge.json()["nonce"]
        presentation = create_presentation(
            credential, reveal=[("age_over_19",)], holder=holder, audience=CLIENT_ID, nonce=nonce
        )
        body = {"policy": "bar-entry", "nonce": nonce, "presentation": presentation}
        accepted = client.post(second + "/verify", json=body, headers=deployment.staff()).json()
        assert accepted["result"] == "valid", accepted
        replayed = client.post(first + "/verify", json=body, headers=deployment.staff()).json()
        assert (replayed["result"], replayed["reason"]) == ("invalid", "kb_jwt_nonce_reused")

        # Online: the request made at one replica, answered at the other, then replayed.
        (credential, *_), holder = _issue(deployment, client, 1, 2)
        created = client.post(
            first + "/requests", json={"policy": "bar-entry"}, headers=deployment.staff()
        )
        assert created.status_code == 201, created.text
        request_id = created.json()["id"]
        token = client.get(f"{second}/requests/{request_id}/object").text
        key = public_key_from_jwk(deployment.verifier_public_jwk)
        request = verify_jws(token, key, typ="oauth-authz-req+jwt").payload_json()
        assert request["client_id"] == CLIENT_ID
        (query,) = request["dcql_query"]["credentials"]
        vp_token = {
            query["id"]: [
                create_presentation(
                    credential,
                    reveal=[tuple(claim["path"]) for claim in query["claims"]],
                    holder=holder,
                    audience=CLIENT_ID,
                    nonce=request["nonce"],
                )
            ]
        }
        form = {"vp_token": json_dumps(vp_token), "state": request["state"]}
        answered = client.post(f"{second}/responses/{request_id}", data=form)
        assert answered.json() == {"result": "valid"}, answered.text
        again = client.post(f"{first}/responses/{request_id}", data=form)
        assert (again.status_code, again.json()["error"]) == (409, "request_already_answered")
        status = client.get(f"{first}/requests/{request_id}", headers=deployment.staff()).json()
        assert status["verdict"]["result"] == "valid"
