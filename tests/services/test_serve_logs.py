"""``civic-verifier serve`` and ``civic-issuer serve``, run for real with two workers, write
their own INFO lines on stderr (uvicorn's logging config knew only its own loggers, so the
verifier's one audit line per verdict and the issuer's request lines were dropped), and those
lines hold no claim value."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.issuer import StdlibClient, prepare_offers, registry_and_issuer, serving, wallet_flow
from civic.qr import pack
from tests.services.registry_harness import ROOT, wait_for
from tests.services.verifier_deploy import STAFF, Deployment

# The example residency claims the test credentials carry.
CLAIM_VALUES = ("서연", "김", "1998-03-15", "Mapo-gu")


def test_verifier_serve_logs_one_line_per_verdict_without_claim_values(tmp_path: Path) -> None:
    deployment = Deployment.create(tmp_path / "verifier", now=int(time.time()))
    log = tmp_path / "serve.log"
    command = [sys.executable, "-c", "from verifier.cli import app; app()", "serve"]
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 -- our own CLI, fixed arguments
            [*command, "--workers", "2"],
            cwd=ROOT,
            env=deployment.env(CIVIC_VERIFIER_PORT=str(deployment.port)),
            stdout=subprocess.DEVNULL,  # uvicorn's access lines; the audit goes to stderr
            stderr=output,
        )

    def ready() -> bool:
        assert process.poll() is None, log.read_text()[-2000:]
        try:
            return httpx.get(deployment.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    city = deployment.city
    try:
        wait_for(ready, 60, "civic-verifier serve")
        results = []
        with httpx.Client(base_url=deployment.url, headers=STAFF, timeout=10) as client:
            nonce = client.post("/challenges").json()["nonce"]
            # Name and birth date disclosed on purpose: no line may repeat them.
            text = pack(
                city.present(
                    city.issue(),
                    [("age_over_19",), ("given_name",), ("family_name",), ("birthdate",)],
                    nonce=nonce,
                    at=int(time.time()),
                )
            )
            for _ in range(2):  # valid, then the same nonce again: invalid
                body = {"policy": "bar-entry", "nonce": nonce, "presentation": text}
                verdict = client.post("/verify", json=body).json()
                results.append((verdict["result"], verdict.get("reason")))
        assert results == [("valid", None), ("invalid", "kb_jwt_nonce_reused")]
        wait_for(lambda: log.read_text().count("verdict ") >= 2, 10, "the verdict lines")
    finally:
        process.terminate()
        process.wait(timeout=20)
        deployment.close()
    lines = [line for line in log.read_text().splitlines() if "verdict " in line]
    assert len(lines) == 2, lines
    assert "verdict valid kind=offline policy=bar-entry reasons=-" in lines[0]
    assert "verdict invalid kind=offline policy=bar-entry reasons=kb_jwt_nonce_reused" in lines[1]
    assert all(line.startswith("INFO:") for line in lines)
    text = log.read_text()
    for value in CLAIM_VALUES:
        assert value not in text


def test_issuer_serve_logs_its_requests_without_claim_values(tmp_path: Path) -> None:
    with registry_and_issuer(tmp_path) as issuer:
        (code, tx_code) = prepare_offers(issuer, 1)[0]
        with serving(issuer, 2):
            client = StdlibClient(issuer.url)
            try:
                credential = wallet_flow(client, issuer.url, code, tx_code)
            finally:
                client.close()
            log = issuer.data_dir / "serve.log"
            wait_for(lambda: "POST /credential -> 200" in log.read_text(), 10, "request lines")
    assert credential.count("~") > 4
    text = log.read_text()
    assert "POST /token -> 200" in text and "POST /nonce -> 200" in text
    assert "delivered 1 credential(s)" in text
    for value in CLAIM_VALUES:
        assert value not in text
