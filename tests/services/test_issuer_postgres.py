"""The issuer on PostgreSQL: two processes allocating status indices at once never collide.

Needs ``CIVIC_TEST_POSTGRES_URL`` (CI sets it; ``.ci/run``). Each run works in a schema of its
own and drops it afterwards.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text

from civic.clock import FixedClock
from civic.credentials import RESIDENCY_VCT, get_type
from civic.jose import PrivateKey, sign_jwt
from issuer import db
from issuer.oid4vci import PRE_AUTHORIZED_GRANT, PROOF_TYP
from issuer.testing import LocalIssuer

POSTGRES_URL = os.environ.get("CIVIC_TEST_POSTGRES_URL")
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL,
    reason="CIVIC_TEST_POSTGRES_URL is not set: these tests need a PostgreSQL server"
    " (CI sets it, e.g. postgresql://postgres@127.0.0.1:5432/test)",
)

WORKER = r"""
import json, sys, time
from pathlib import Path
from issuer import db
from issuer.statuslists import insert_with_fresh_index

url, schema, tag, count, go = sys.argv[1:6]
engine = db.create_engine(url, schema=schema)
db.create_schema(engine)
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.002)
out = []
for n in range(int(count)):
    row = {
        "credential_id": f"{tag}-{n}", "offer_id": tag, "vct": "urn:civic:vct:residency:1",
        "kid": "k", "status": 0, "holder_thumbprint": "t", "issued_at": 1, "expires_at": 2,
        "status_changed_at": None,
    }
    allocation = db.run_driver_write(
        engine, lambda t: insert_with_fresh_index(t, row, list_size=512, now=1)
    )
    out.append([allocation.list_id, allocation.index])
print(json.dumps(out), flush=True)
"""


@pytest.fixture
def schema() -> Iterator[str]:
    assert POSTGRES_URL is not None
    name = f"issuer_test_{secrets.token_hex(6)}"
    yield name
    engine = db.create_engine(POSTGRES_URL)
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    engine.dispose()


def test_two_processes_never_hand_out_the_same_index(schema: str, tmp_path: Path) -> None:
    assert POSTGRES_URL is not None
    go = tmp_path / "go"
    per_process = 400
    workers = [
        subprocess.Popen(  # noqa: S603 (this interpreter and a fixed script)
            [sys.executable, "-c", WORKER, POSTGRES_URL, schema, tag, str(per_process), str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    go.touch()  # both start allocating at the same moment
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err
        results.append([tuple(pair) for pair in json.loads(out.strip().splitlines()[-1])])
    everything = results[0] + results[1]
    assert len(everything) == 2 * per_process
    assert len(set(everything)) == len(everything), "an index was handed out twice"
    # 512-entry lists closing at half full: the processes raced through several lists.
    assert len({list_id for list_id, _ in everything}) >= 3
    engine = db.create_engine(POSTGRES_URL, schema=schema)
    with engine.connect() as connection:
        stored = connection.execute(
            select(db.credentials.c.status_list_id, db.credentials.c.status_index)
        ).all()
        lists = connection.execute(select(func.count()).select_from(db.status_lists)).scalar_one()
    engine.dispose()
    assert sorted((int(a), int(b)) for a, b in stored) == sorted(everything)
    assert lists == len({list_id for list_id, _ in everything})


def test_the_whole_flow_on_postgresql(schema: str, tmp_path: Path) -> None:
    clock = FixedClock(1_800_000_000)
    with (
        LocalIssuer(
            tmp_path / "issuer", now=clock, database_url=POSTGRES_URL, database_schema=schema
        ) as issuer,
        httpx.Client(base_url=issuer.url, timeout=30) as http,
    ):
        body = {"vct": RESIDENCY_VCT, "claims": get_type(RESIDENCY_VCT).example_claims()}
        offer = http.post(
            "/admin/offers", json=body, headers={"Authorization": f"Bearer {issuer.admin_key}"}
        ).json()
        document = http.get(offer["credential_offer_url"]).json()
        code = document["grants"][PRE_AUTHORIZED_GRANT]["pre-authorized_code"]
        form = {
            "grant_type": PRE_AUTHORIZED_GRANT,
            "pre-authorized_code": code,
            "tx_code": offer["tx_code"],
        }
        token = http.post("/token", data=form).json()["access_token"]
        nonce = http.post("/nonce").json()["c_nonce"]
        keys = [PrivateKey.generate(), PrivateKey.generate("ES256")]
        proofs = [
            sign_jwt(
                {"typ": PROOF_TYP, "jwk": k.public_key.to_jwk()},
                {"aud": issuer.url, "iat": clock(), "nonce": nonce},
                k,
            )
            for k in keys
        ]
        response = http.post(
            "/credential",
            json={"credential_configuration_id": "residency", "proofs": {"jwt": proofs}},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        assert len(response.json()["credentials"]) == 2
        # The nonce is spent on PostgreSQL too.
        again = http.post(
            "/credential",
            json={"credential_configuration_id": "residency", "proofs": {"jwt": proofs}},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert again.status_code == 401
        assert http.get("/status/1").status_code == 200
        with issuer.context.engine.connect() as connection:
            claims = connection.execute(select(db.offers.c.claims)).scalars().all()
        assert claims == [None]
