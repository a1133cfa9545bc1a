"""The verifier service over real HTTP on 127.0.0.1: OpenID4VP requests and responses, offline
verification, staff authentication, size limits, status lists, trust, audit log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select

import verifier.replay
from civic.clock import FixedClock
from civic.credentials import RESIDENCY_VCT, VACCINATION_VCT, YOUTH_ALLOWANCE_VCT
from civic.encoding import b64std_decode, b64std_encode, json_dumps
from civic.qr import decode_png, pack, render_png
from tests.services.registry_harness import wait_for
from tests.services.verifier_deploy import STAFF, AppServer, Deployment, Wallet
from tests.unit.verifier_city import CLIENT_ID, ISSUER
from verifier.app import Services, build_services, create_app
from verifier.db import audit_table
from verifier.settings import load_runtime
from verifier.status import HttpStatusFetcher


@dataclass
class Running:
    deployment: Deployment
    services: Services
    client: httpx.Client
    clock: FixedClock
    wallet: Wallet

    @property
    def url(self) -> str:
        return self.deployment.url

    def post_request(self, policy: str = "bar-entry") -> dict[str, Any]:
        answer = self.client.post(f"{self.url}/requests", json={"policy": policy}, headers=STAFF)
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        return created

    def challenge(self) -> str:
        answer = self.client.post(f"{self.url}/challenges", headers=STAFF)
        assert answer.status_code == 201, answer.text
        nonce: str = answer.json()["nonce"]
        return nonce

    def verify(self, body: dict[str, Any]) -> httpx.Response:
        return self.client.post(f"{self.url}/verify", json=body, headers=STAFF)


def _start(tmp_path: Path, **settings: Any) -> Iterator[Running]:
    deployment = Deployment.create(tmp_path / "verifier")
    clock = FixedClock(deployment.city.now)
    runtime = load_runtime(deployment.settings(**settings))
    services = build_services(runtime, now=clock)
    city = deployment.city
    wallet = Wallet(
        city,
        {vct: city.issue(vct) for vct in (RESIDENCY_VCT, YOUTH_ALLOWANCE_VCT, VACCINATION_VCT)},
    )
    with AppServer(create_app(services), deployment.port), httpx.Client(timeout=10) as client:
        yield Running(deployment, services, client, clock, wallet)
    deployment.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    yield from _start(tmp_path)


# --- OpenID4VP -------------------------------------------------------------------------------


def test_online_presentation_end_to_end(running: Running) -> None:
    created = running.post_request("youth-allowance-counter")
    request_uri = created["request_uri"]
    assert request_uri == f"{running.url}/requests/{created['id']}/object"
    assert created["uri"] == "openid4vp://?" + urlencode(
        {"client_id": CLIENT_ID, "request_uri": request_uri}
    )
    assert decode_png(b64std_decode(created["qr_png"])) == created["uri"]

    request = running.wallet.request_object(running.client, request_uri)
    assert request["client_id"] == CLIENT_ID
    assert request["response_type"] == "vp_token"
    assert request["response_mode"] == "direct_post"
    assert request["response_uri"] == f"{running.url}/responses/{created['id']}"
    assert request["aud"] == "https://self-issued.me/v2"
    assert len(request["nonce"]) >= 43  # 256 random bits, base64url
    assert len(request["state"]) >= 22
    assert request["exp"] == created["expires_at"]
    assert (
        request["dcql_query"]
        == running.services.runtime.policies["youth-allowance-counter"].dcql_json()
    )

    status = running.client.get(f"{running.url}/requests/{created['id']}", headers=STAFF).json()
    assert (status["status"], status["verdict"]) == ("pending", None)

    answer = running.wallet.respond(running.client, request)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"result": "valid"}

    status = running.client.get(f"{running.url}/requests/{created['id']}", headers=STAFF).json()
    assert status["status"] == "answered"
    verdict = status["verdict"]
    assert verdict["result"] == "valid"
    assert verdict["checkpoint_size"] == len(running.deployment.city.entries)
    claims = {
        (c["query"], tuple(claim["path"])): claim["value"]
        for c in verdict["credentials"]
        for claim in c["claims"]
    }
    assert claims == {
        ("residency", ("address", "region")): "Seoul",
        ("residency", ("age_over_19",)): True,
        ("youth_allowance", ("allowance_status",)): "active",
        ("youth_allowance", ("eligibility", "age_19_to_34")): True,
    }

    # Accepted once: a replayed response, and a late wallet fetch, are refused.
    again = running.wallet.respond(running.client, request)
    assert (again.status_code, again.json()["error"]) == (409, "request_already_answered")
    late = running.client.get(request_uri)
    assert (late.status_code, late.json()["error"]) == (409, "request_already_answered")


def test_requests_expire(running: Running) -> None:
    created = running.post_request()
    request = running.wallet.request_object(running.client, created["request_uri"])
    running.clock.advance(running.services.runtime.settings.request_ttl + 1)
    answer = running.wallet.respond(running.client, request)
    assert (answer.status_code, answer.json()["error"]) == (410, "request_expired")
    assert running.client.get(created["request_uri"]).status_code == 410
    status = running.client.get(f"{running.url}/requests/{created['id']}", headers=STAFF).json()
    assert status["status"] == "expired"


def test_a_tampered_response_is_an_invalid_verdict(running: Running) -> None:
    created = running.post_request()
    request = running.wallet.request_object(running.client, created["request_uri"])
    vp_token = running.wallet.vp_token(request)
    presentation = vp_token["residency"][0]
    vp_token["residency"] = [presentation[:-3] + ("AAA" if presentation[-3:] != "AAA" else "BBB")]
    answer = running.client.post(
        request["response_uri"], data={"vp_token": json_dumps(vp_token), "state": request["state"]}
    )
    assert answer.json() == {"result": "invalid"}
    verdict = running.client.get(f"{running.url}/requests/{created['id']}", headers=STAFF).json()
    assert verdict["verdict"]["reason"] == "kb_jwt_signature_invalid"
    assert verdict["verdict"]["credentials"][0]["claims"] == []


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        ({"state": "x"}, "malformed_vp_token"),
        ({"vp_token": "{not json", "state": "STATE"}, "malformed_vp_token"),
        ({"vp_token": "{}", "state": "wrong"}, "malformed_vp_token"),
        ({"error": "access_denied", "state": "STATE"}, "malformed_vp_token"),
    ],
)
def test_malformed_direct_post_leaves_the_request_open(
    running: Running, form: dict[str, str], reason: str
) -> None:
    created = running.post_request()
    request = running.wallet.request_object(running.client, created["request_uri"])
    form = {k: request["state"] if v == "STATE" else v for k, v in form.items()}
    answer = running.client.post(request["response_uri"], data=form)
    assert (answer.status_code, answer.json()["error"]) == (400, reason)
    assert running.wallet.respond(running.client, request).json() == {"result": "valid"}


def test_a_policy_beyond_the_accreditation_is_refused(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "nosy.yaml").write_text(
        "id: nosy\ncredentials:\n  - id: residency\n    vct: urn:civic:vct:residency:1\n"
        "    claims:\n      - path: [birth_date]\n"
    )
    for running in _start(tmp_path, policies_dir=policies):
        answer = running.client.post(
            f"{running.url}/requests", json={"policy": "nosy"}, headers=STAFF
        )
        assert (answer.status_code, answer.json()["error"]) == (
            409,
            "verifier_claims_not_accredited",
        )


def test_unknown_request_and_policy(running: Running) -> None:
    assert running.client.get(f"{running.url}/requests/nope/object").status_code == 404
    assert running.client.post(f"{running.url}/responses/nope", data={}).status_code == 404
    answer = running.client.post(f"{running.url}/requests", json={"policy": "x"}, headers=STAFF)
    assert (answer.status_code, answer.json()["error"]) == (404, "not_found")


# --- offline verification ------------------------------------------------------------------------


def test_offline_qr_text_and_replay_to_the_same_counter(running: Running) -> None:
    city = running.deployment.city
    nonce = running.challenge()
    text = pack(city.present(city.issue(), nonce=nonce, at=city.now))
    first = running.verify({"policy": "bar-entry", "nonce": nonce, "presentation": text})
    assert first.status_code == 200
    verdict = first.json()
    assert verdict["result"] == "valid"
    assert [c["name"] for c in verdict["checks"]][:3] == ["trust", "presentations", "parse"]
    assert verdict["credentials"][0]["claims"][0]["value"] is True
    replay = running.verify({"policy": "bar-entry", "nonce": nonce, "presentation": text}).json()
    assert (replay["result"], replay["reason"]) == ("invalid", "kb_jwt_nonce_reused")


def test_middleware_added_to_the_app_sees_verify_too(tmp_path: Path) -> None:
    # POST /verify skips FastAPI's stack only while the app has no middleware of its own.
    deployment = Deployment.create(tmp_path / "verifier")
    services = build_services(
        load_runtime(deployment.settings()), now=FixedClock(deployment.city.now)
    )
    app = create_app(services)
    seen: list[str] = []

    @app.middleware("http")
    async def tracing(request: Any, call_next: Any) -> Any:
        seen.append(request.url.path)
        return await call_next(request)

    with AppServer(app, deployment.port), httpx.Client(timeout=10) as client:
        nonce = client.post(f"{deployment.url}/challenges", headers=STAFF).json()["nonce"]
        body = {"policy": "bar-entry", "nonce": nonce, "presentation": "garbage"}
        answer = client.post(f"{deployment.url}/verify", json=body, headers=STAFF)
    deployment.close()
    assert (answer.status_code, answer.json()["result"]) == (200, "invalid")
    assert seen == ["/challenges", "/verify"]


def test_one_presentation_sent_many_times_at_once_is_valid_once(running: Running) -> None:
    city = running.deployment.city
    nonce = running.challenge()
    text = pack(city.present(city.issue(), nonce=nonce, at=city.now))
    body = {"policy": "bar-entry", "nonce": nonce, "presentation": text}
    with ThreadPoolExecutor(12) as pool:
        verdicts = list(pool.map(lambda _: running.verify(body).json(), range(24)))
    assert [v["result"] for v in verdicts].count("valid") == 1
    assert all(
        (v["result"], v["reason"]) == ("invalid", "kb_jwt_nonce_reused")
        for v in verdicts
        if v["result"] != "valid"
    )
    with running.services.engine.connect() as connection:
        rows = connection.execute(select(audit_table.c.result)).scalars().all()
    assert sorted(rows) == ["invalid"] * 23 + ["valid"]


@pytest.mark.parametrize("status_cached", [False, True])
def test_a_failing_nonce_store_never_gives_valid(
    running: Running, monkeypatch: pytest.MonkeyPatch, status_cached: bool
) -> None:
    city = running.deployment.city
    if status_cached:  # verifications then run on the event loop: the other path
        nonce = running.challenge()
        text = city.present(city.issue(), nonce=nonce, at=city.now)
        body = {"policy": "bar-entry", "nonce": nonce, "presentation": text}
        assert running.verify(body).json()["result"] == "valid"

    def broken(*_args: Any) -> str:
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(verifier.replay, "_spend", broken)
    nonce = running.challenge()
    text = city.present(city.issue(), nonce=nonce, at=city.now)
    verdict = running.verify({"policy": "bar-entry", "nonce": nonce, "presentation": text}).json()
    assert (verdict["result"], verdict["reason"]) == ("invalid", "malformed_input")


def test_offline_qr_image(running: Running) -> None:
    city = running.deployment.city
    nonce = running.challenge()
    png = render_png(pack(city.present(city.issue(), nonce=nonce, at=city.now)))
    verdict = running.verify(
        {"policy": "bar-entry", "nonce": nonce, "image_png": b64std_encode(png)}
    ).json()
    assert verdict["result"] == "valid"
    blank = running.verify(
        {"policy": "bar-entry", "nonce": nonce, "image_png": b64std_encode(render_png("hello"))}
    ).json()
    assert (blank["result"], blank["reason"]) == ("invalid", "malformed_sd_jwt")
    not_png = running.verify(
        {"policy": "bar-entry", "nonce": nonce, "image_png": b64std_encode(b"GIF89a")}
    ).json()
    assert (not_png["result"], not_png["reason"]) == ("invalid", "malformed_input")


def test_a_nonce_this_verifier_never_issued(running: Running) -> None:
    city = running.deployment.city
    nonce = "made-up-by-the-holder-0000"
    text = city.present(city.issue(), nonce=nonce, at=city.now)
    verdict = running.verify({"policy": "bar-entry", "nonce": nonce, "presentation": text}).json()
    assert (verdict["result"], verdict["reason"]) == ("invalid", "nonce_unknown")


def test_two_credentials_offline(running: Running) -> None:
    city = running.deployment.city
    nonce = running.challenge()
    texts = [
        city.present(city.issue(RESIDENCY_VCT), [("address", "region"), ("age_over_19",)],
                     nonce=nonce, at=city.now),
        city.present(city.issue(YOUTH_ALLOWANCE_VCT),
                     [("allowance_status",), ("eligibility", "age_19_to_34")],
                     nonce=nonce, at=city.now),
    ]  # fmt: skip
    body = {"policy": "youth-allowance-counter", "nonce": nonce, "presentations": texts}
    assert running.verify(body).json()["result"] == "valid"


@pytest.mark.parametrize(
    "presentation",
    ["", "garbage", "CW1:" + "%" * 40, "a.b.c~d~", "eyJ" * 50_000, "~" * 2000],
)
def test_malformed_presentations_are_invalid_never_500(running: Running, presentation: str) -> None:
    nonce = running.challenge()
    answer = running.verify({"policy": "bar-entry", "nonce": nonce, "presentation": presentation})
    assert answer.status_code == 200, answer.text
    verdict = answer.json()
    assert verdict["result"] == "invalid"
    assert verdict["reason"] in {
        "malformed_sd_jwt",
        "malformed_qr_payload",
        "malformed_base64",
        "malformed_jws",
        "malformed_disclosure",
        "input_too_large",
    }


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"not json", 400, "malformed_json"),
        (b"[]", 400, "malformed_json"),
        (b'{"policy": "bar-entry", "nonce": "short"}', 400, "malformed_input"),
        (b'{"policy": "bar-entry", "nonce": "0123456789abcdef", "presentation": 5}', 200, None),
        (b'{"policy": "bar-entry", "nonce": "0123456789abcdef"}', 200, None),
    ],
)
def test_bad_request_bodies(running: Running, body: bytes, status: int, reason: str | None) -> None:
    answer = running.client.post(
        f"{running.url}/verify", content=body, headers={**STAFF, "Content-Type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    if reason is not None:
        assert answer.json()["error"] in {reason, "malformed_input"}
    else:
        assert answer.json()["result"] == "invalid"


def test_oversized_bodies_get_413(running: Running) -> None:
    limit = running.services.runtime.settings.max_body_bytes
    huge = b"x" * (limit + 1)
    for path, headers in (("/verify", STAFF), ("/responses/any", {})):
        answer = running.client.post(running.url + path, content=huge, headers=headers)
        assert (answer.status_code, answer.json()["error"]) == (413, "input_too_large")

    def chunks() -> Iterator[bytes]:
        for _ in range(limit // 4096 + 2):
            yield b"x" * 4096

    streamed = running.client.post(running.url + "/verify", content=chunks(), headers=STAFF)
    assert streamed.status_code == 413


def test_staff_endpoints_need_the_api_key(running: Running) -> None:
    for method, path in (
        ("GET", "/policies"),
        ("POST", "/requests"),
        ("GET", "/requests/x"),
        ("POST", "/challenges"),
        ("POST", "/verify"),
    ):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            answer = running.client.request(method, running.url + path, headers=headers, json={})
            assert (answer.status_code, answer.json()["error"]) == (401, "unauthorized"), path
    policies = running.client.get(running.url + "/policies", headers=STAFF).json()
    assert sorted(p["id"] for p in policies) == ["bar-entry", "pharmacy", "youth-allowance-counter"]


# --- status lists and trust ----------------------------------------------------------------------


def test_status_list_is_fetched_once_per_ttl_and_revocation_shows(running: Running) -> None:
    city = running.deployment.city
    status = running.deployment.status
    hits = status.hits
    for _ in range(3):
        nonce = running.challenge()
        text = city.present(city.issue(), nonce=nonce, at=city.now)
        body = {"policy": "bar-entry", "nonce": nonce, "presentation": text}
        assert running.verify(body).json()["result"] == "valid"
    assert status.hits - hits <= 1  # cached for the token's ttl
    city.status_lists[city.status_uri].set(7, 1)
    status.publish(city)
    running.clock.advance(301)
    nonce = running.challenge()
    text = city.present(
        city.issue(status_index=7, issued_at=city.now), nonce=nonce, at=city.now + 301
    )
    verdict = running.verify({"policy": "bar-entry", "nonce": nonce, "presentation": text}).json()
    assert (verdict["result"], verdict["reason"]) == ("invalid", "status_invalid")


def test_status_cache_is_read_without_fetching(running: Running) -> None:
    fetcher = running.services.status
    assert isinstance(fetcher, HttpStatusFetcher)
    uri = running.deployment.city.status_uri
    assert fetcher.cached(uri) is None
    hits = running.deployment.status.hits
    token = fetcher.fetch(uri)
    assert fetcher.cached(uri) == token
    assert running.deployment.status.hits == hits + 1
    running.clock.advance(301)  # past the token's ttl
    assert fetcher.cached(uri) is None
    assert running.deployment.status.hits == hits + 1


def test_unreachable_status_list_is_undetermined(running: Running) -> None:
    running.deployment.status.failing = True
    city = running.deployment.city
    nonce = running.challenge()
    text = city.present(city.issue(), nonce=nonce, at=city.now)
    verdict = running.verify({"policy": "bar-entry", "nonce": nonce, "presentation": text}).json()
    assert (verdict["result"], verdict["reason"]) == ("undetermined", "status_list_unavailable")


def test_stale_bundle_makes_every_verdict_undetermined(tmp_path: Path) -> None:
    for running in _start(tmp_path, trust_max_age=10):
        health = running.client.get(running.url + "/healthz").json()
        assert health["trust"]["stale"] is True
        city = running.deployment.city
        nonce = running.challenge()
        text = city.present(city.issue(), nonce=nonce, at=city.now)
        body = {"policy": "bar-entry", "nonce": nonce, "presentation": text}
        verdict = running.verify(body).json()
        assert (verdict["result"], verdict["reason"]) == ("undetermined", "trust_stale")


def test_background_sync_from_a_log(tmp_path: Path) -> None:
    deployment = Deployment.create(tmp_path / "verifier")
    city = deployment.city
    log, config = city.memory_log()
    (deployment.data_dir / "trust-config.json").write_text(
        json_dumps(city.trust_config_json(config))
    )
    runtime = load_runtime(deployment.settings(trust_bundle_file=None, sync_interval=0.1))
    services = build_services(runtime, now=FixedClock(city.now))
    app = create_app(services, sync_source=log)
    with AppServer(app, deployment.port), httpx.Client(timeout=10) as client:
        wait_for(
            lambda: (
                client.get(deployment.url + "/healthz").json()["trust"]["checkpoint_size"]
                == len(city.entries)
            ),
            10,
            "the first sync",
        )
        assert client.get(deployment.url + "/healthz").json()["trust"]["stale"] is False
    deployment.close()


# --- audit ---------------------------------------------------------------------------------------


def test_audit_log_has_reasons_and_no_claim_values(running: Running) -> None:
    city = running.deployment.city
    nonce = running.challenge()
    good = city.present(city.issue(), [("age_over_19",), ("given_name",)], nonce=nonce, at=city.now)
    running.verify({"policy": "bar-entry", "nonce": nonce, "presentation": good})
    running.verify({"policy": "bar-entry", "nonce": nonce, "presentation": good})
    running.verify({"policy": "bar-entry", "nonce": nonce, "presentation": "garbage"})
    with running.services.engine.connect() as connection:
        rows = connection.execute(select(audit_table).order_by(audit_table.c.id)).all()
    assert [(r.kind, r.result, r.reasons) for r in rows] == [
        ("offline", "valid", ""),
        ("offline", "invalid", "kb_jwt_nonce_reused"),
        ("offline", "invalid", "malformed_sd_jwt"),
    ]
    assert rows[0].vct == RESIDENCY_VCT and rows[0].issuer == ISSUER
    assert rows[0].checkpoint_size == len(city.entries)
    dump = json_dumps([list(map(str, row)) for row in rows])
    for value in ("서연", "김", "1998-03-15", "Mapo-gu", "True"):
        assert value not in dump


def test_every_offline_verdict_is_logged_without_claim_values(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    city = running.deployment.city
    caplog.set_level(logging.INFO, logger="civic.verifier")
    nonces = [running.challenge() for _ in range(3)]
    bodies = [
        {"policy": "bar-entry", "nonce": nonces[0], "presentation": 5},
        {"policy": "bar-entry", "nonce": nonces[1], "presentation": pack(
            city.present(city.issue(), [("age_over_19",), ("given_name",)], nonce=nonces[1],
                         at=city.now))},
        {"policy": "bar-entry", "nonce": nonces[2], "presentation": pack(
            city.present(city.issue(), nonce=nonces[2], at=city.now))},
    ]  # fmt: skip
    results = [running.verify(body).json()["result"] for body in bodies]
    assert results == ["invalid", "valid", "valid"]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("verdict ")]
    assert [line.split()[1] for line in lines] == results
    for value in ("서연", "김", "1998-03-15", "Mapo-gu"):
        assert all(value not in line for line in lines)
