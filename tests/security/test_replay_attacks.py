"""Replay attacks on the verifier: presentations and OpenID4VP responses used twice, moved
between requests, channels, verifiers and replicas, or sent after their request expired.

The verifier runs for real on 127.0.0.1: in a thread on a fixed clock for single-verifier
attacks, and as two ``uvicorn verifier.server:app`` processes (replicas, on the real clock)
sharing one SQLite file; and, when ``CIVIC_TEST_REDIS_URL`` is set, two replicas (threads of
this process, each with its own services) sharing a Redis replay store.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from civic.clock import FixedClock
from civic.credentials import RESIDENCY_VCT
from civic.encoding import json_dumps
from civic.errors import ReasonCode
from tests.security import Attack
from tests.security.verifier_site import Site, no_5xx, running_site
from tests.services.registry_harness import free_port
from tests.services.verifier_deploy import STAFF, AppServer, Deployment, VerifierProcess, Wallet
from verifier.app import build_services, create_app
from verifier.settings import load_runtime

REDIS_URL = os.environ.get("CIVIC_TEST_REDIS_URL")

ATTACKS: tuple[Attack, ...] = (
    Attack("offline_presentation_replayed", ReasonCode.KB_JWT_NONCE_REUSED, "verifier",
           "a presentation (KB-JWT nonce) accepted once, shown again to the same verifier"),
    Attack("offline_presentation_replayed_across_sqlite_replicas", ReasonCode.KB_JWT_NONCE_REUSED,
           "verifier", "accepted by one replica, replayed to the other sharing the SQLite file"),
    Attack("offline_presentation_replayed_across_redis_replicas", ReasonCode.KB_JWT_NONCE_REUSED,
           "verifier", "accepted by one replica, replayed to another sharing a Redis replay store"),
    Attack("offline_presentation_raced_across_sqlite_replicas", ReasonCode.KB_JWT_NONCE_REUSED,
           "verifier", "one presentation sent 16 times at once, split over two replicas"),
    Attack("online_response_raced_across_replicas", ReasonCode.REQUEST_ALREADY_ANSWERED,
           "verifier", "one direct_post response sent 8 times at once, split over two replicas"),
    Attack("offline_presentation_replayed_after_restart", ReasonCode.KB_JWT_NONCE_REUSED,
           "verifier", "a presentation accepted before the verifier restarted, shown after it"),
    Attack("online_response_posted_twice", ReasonCode.REQUEST_ALREADY_ANSWERED, "verifier",
           "the wallet's direct_post response to a request sent a second time"),
    Attack("online_response_replayed_across_replicas", ReasonCode.REQUEST_ALREADY_ANSWERED,
           "verifier", "a response answered by one replica posted again to the other"),
    Attack("request_object_fetched_after_answer", ReasonCode.REQUEST_ALREADY_ANSWERED, "verifier",
           "fetching an answered request's object to answer it again"),
    Attack("response_to_expired_request", ReasonCode.REQUEST_EXPIRED, "verifier",
           "a response posted after the request's lifetime"),
    Attack("response_to_unknown_request", ReasonCode.NOT_FOUND, "verifier",
           "a response posted for a request id the verifier never created"),
    Attack("offline_presentation_with_unknown_nonce", ReasonCode.NONCE_UNKNOWN, "verifier",
           "a presentation bound to a nonce the holder made up, not one the verifier issued"),
    Attack("offline_presentation_after_challenge_expired", ReasonCode.NONCE_UNKNOWN, "verifier",
           "a presentation for a genuine challenge, shown after the challenge expired"),
    Attack("presentation_moved_to_another_request", ReasonCode.KB_JWT_NONCE_MISMATCH, "verifier",
           "a presentation made for request A posted as the response to request B"),
    Attack("online_presentation_replayed_offline", ReasonCode.KB_JWT_NONCE_REUSED, "verifier",
           "the presentation of an answered online request replayed at /verify with its nonce"),
    Attack("presentation_replayed_to_another_verifier", ReasonCode.KB_JWT_AUD_MISMATCH,
           "verifier", "a presentation made for another verifier (KB-JWT aud) shown here"),
)  # fmt: skip

BY_NAME = {attack.name: attack for attack in ATTACKS}


def _ids(*names: str) -> dict[str, Any]:
    return {"argvalues": [BY_NAME[n] for n in names], "ids": list(names)}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running_site(tmp_path_factory.mktemp("replay") / "verifier", history=False) as running:
        yield running


def _wallet(site: Site) -> Wallet:
    return Wallet(site.city, {RESIDENCY_VCT: site.city.issue()})


def _request(site: Site) -> tuple[str, dict[str, Any]]:
    created = site.post_request()
    assert created.status_code == 201, created.text
    request = _wallet(site).request_object(site.client, created.json()["request_uri"])
    return created.json()["id"], request


def _form(vp_token: dict[str, list[str]], request: dict[str, Any]) -> dict[str, str]:
    return {"vp_token": json_dumps(vp_token), "state": request["state"]}


def _post(site: Site, url: str, form: dict[str, str]) -> httpx.Response:
    return no_5xx(site.client.post(url, data=form))


# --- offline -----------------------------------------------------------------------------------


def _offline_replayed(site: Site) -> tuple[str, str]:
    nonce = site.challenge()
    text = site.city.present(site.city.issue(), nonce=nonce, at=site.clock())
    body = {"policy": "bar-entry", "nonce": nonce, "presentation": text}
    assert site.verify_body(body).json()["result"] == "valid"
    verdict = site.verify_body(body).json()
    return verdict["result"], verdict["reason"]


def _unknown_nonce(site: Site) -> tuple[str, str]:
    nonce = "made-up-by-the-holder-" + secrets.token_urlsafe(8)
    text = site.city.present(site.city.issue(), nonce=nonce, at=site.clock())
    verdict = site.verify_body({"policy": "bar-entry", "nonce": nonce, "presentation": text})
    return verdict.json()["result"], verdict.json()["reason"]


def _expired_challenge(site: Site) -> tuple[str, str]:
    nonce = site.challenge()
    start = site.clock.at
    try:
        site.clock.advance(site.services.runtime.settings.challenge_ttl + 1)
        text = site.city.present(site.city.issue(), nonce=nonce, at=site.clock())
        body = {"policy": "bar-entry", "nonce": nonce, "presentation": text}
        verdict = site.verify_body(body).json()
    finally:
        site.clock.at = start
    return verdict["result"], verdict["reason"]


def _other_verifier(site: Site) -> tuple[str, str]:
    nonce = site.challenge()
    text = site.city.present(
        site.city.issue(), nonce=nonce, at=site.clock(), audience="pharmacy.busan.example"
    )
    body = {"policy": "bar-entry", "nonce": nonce, "presentation": text}
    verdict = site.verify_body(body).json()
    return verdict["result"], verdict["reason"]


@pytest.mark.parametrize(
    "attack",
    **_ids(
        "offline_presentation_replayed",
        "offline_presentation_with_unknown_nonce",
        "offline_presentation_after_challenge_expired",
        "presentation_replayed_to_another_verifier",
    ),
)
def test_offline_replay(site: Site, attack: Attack) -> None:
    mount: dict[str, Callable[[Site], tuple[str, str]]] = {
        "offline_presentation_replayed": _offline_replayed,
        "offline_presentation_with_unknown_nonce": _unknown_nonce,
        "offline_presentation_after_challenge_expired": _expired_challenge,
        "presentation_replayed_to_another_verifier": _other_verifier,
    }
    assert mount[attack.name](site) == ("invalid", attack.code.value)


@pytest.mark.parametrize("attack", **_ids("offline_presentation_replayed_after_restart"))
def test_replay_after_restart(tmp_path: Path, attack: Attack) -> None:
    deployment = Deployment.create(tmp_path / "verifier")
    city = deployment.city
    clock = FixedClock(city.now)
    body: dict[str, Any] = {}
    verdicts = []
    try:
        for _ in range(2):  # the same data directory, a new process's services
            services = build_services(load_runtime(deployment.settings()), now=clock)
            with AppServer(create_app(services), deployment.port), httpx.Client() as client:
                if not body:
                    answer = no_5xx(client.post(deployment.url + "/challenges", headers=STAFF))
                    nonce = answer.json()["nonce"]
                    text = city.present(city.issue(), nonce=nonce, at=clock())
                    body = {"policy": "bar-entry", "nonce": nonce, "presentation": text}
                answer = no_5xx(client.post(deployment.url + "/verify", json=body, headers=STAFF))
                verdicts.append((answer.json()["result"], answer.json()["reason"]))
            clock.advance(5)
    finally:
        deployment.close()
    assert verdicts == [("valid", None), ("invalid", attack.code.value)]


# --- online (OpenID4VP direct_post) ------------------------------------------------------------


def _posted_twice(site: Site) -> httpx.Response:
    _, request = _request(site)
    form = _form(_wallet(site).vp_token(request), request)
    assert _post(site, request["response_uri"], form).json() == {"result": "valid"}
    return _post(site, request["response_uri"], form)


def _object_after_answer(site: Site) -> httpx.Response:
    created = site.post_request()
    request_uri = created.json()["request_uri"]
    request = _wallet(site).request_object(site.client, request_uri)
    form = _form(_wallet(site).vp_token(request), request)
    assert _post(site, request["response_uri"], form).json() == {"result": "valid"}
    return no_5xx(site.client.get(request_uri))


def _expired_request(site: Site) -> httpx.Response:
    _, request = _request(site)
    form = _form(_wallet(site).vp_token(request), request)
    start = site.clock.at
    try:
        site.clock.advance(site.services.runtime.settings.request_ttl + 1)
        return _post(site, request["response_uri"], form)
    finally:
        site.clock.at = start


def _unknown_request(site: Site) -> httpx.Response:
    _, request = _request(site)
    form = _form(_wallet(site).vp_token(request), request)
    return _post(site, f"{site.url}/responses/{secrets.token_urlsafe(16)}", form)


ONLINE: dict[str, tuple[int, Callable[[Site], httpx.Response]]] = {
    "online_response_posted_twice": (409, _posted_twice),
    "request_object_fetched_after_answer": (409, _object_after_answer),
    "response_to_expired_request": (410, _expired_request),
    "response_to_unknown_request": (404, _unknown_request),
}


@pytest.mark.parametrize("attack", **_ids(*ONLINE))
def test_online_replay(site: Site, attack: Attack) -> None:
    status, mount = ONLINE[attack.name]
    answer = mount(site)
    assert (answer.status_code, answer.json()["error"]) == (status, attack.code.value)


@pytest.mark.parametrize("attack", **_ids("presentation_moved_to_another_request"))
def test_presentation_moved_to_another_request(site: Site, attack: Attack) -> None:
    wallet = _wallet(site)
    _, first = _request(site)
    second_id, second = _request(site)
    vp_token = wallet.vp_token(first)  # bound to the first request's nonce
    answer = _post(site, second["response_uri"], _form(vp_token, second))
    assert answer.json() == {"result": "invalid"}
    status = no_5xx(site.client.get(f"{site.url}/requests/{second_id}", headers=STAFF)).json()
    assert status["verdict"]["reason"] == attack.code.value
    # The first request is still open and its own response is accepted.
    assert _post(site, first["response_uri"], _form(vp_token, first)).json() == {"result": "valid"}


@pytest.mark.parametrize("attack", **_ids("online_presentation_replayed_offline"))
def test_online_presentation_replayed_offline(site: Site, attack: Attack) -> None:
    _, request = _request(site)
    vp_token = _wallet(site).vp_token(request)
    assert _post(site, request["response_uri"], _form(vp_token, request)).json() == {
        "result": "valid"
    }
    presentation = next(iter(vp_token.values()))[0]
    body = {"policy": "bar-entry", "nonce": request["nonce"], "presentation": presentation}
    verdict = site.verify_body(body).json()
    assert (verdict["result"], verdict["reason"]) == ("invalid", attack.code.value)


# --- replicas sharing a replay store -----------------------------------------------------------


def _replicas(tmp_path: Path, **env: str) -> Iterator[tuple[Deployment, str, str]]:
    deployment = Deployment.create(tmp_path / "verifier", now=int(time.time()))
    logs = tmp_path / "logs"
    logs.mkdir()
    try:
        with ExitStack() as stack:
            processes = []
            for name in ("a", "b"):
                port = free_port()
                replica_env = deployment.env(
                    CIVIC_VERIFIER_PORT=str(port),
                    CIVIC_VERIFIER_PUBLIC_URL=f"http://127.0.0.1:{port}",
                    **env,
                )
                process = VerifierProcess(port, replica_env, logs / f"{name}.log")
                stack.callback(process.__exit__, None, None, None)
                processes.append(process)
            with ThreadPoolExecutor(2) as pool:  # both start at once: imports take a while
                list(pool.map(lambda p: p.__enter__(), processes))
            yield deployment, processes[0].url, processes[1].url
    finally:
        deployment.close()


def _offline_across(deployment: Deployment, first: str, second: str) -> tuple[str, str]:
    """A challenge of the first replica, accepted by the second, replayed to both."""
    city = deployment.city
    with httpx.Client(timeout=15) as client:
        nonce = no_5xx(client.post(first + "/challenges", headers=STAFF)).json()["nonce"]
        text = city.present(city.issue(), nonce=nonce, at=int(time.time()))
        body = {"policy": "bar-entry", "nonce": nonce, "presentation": text}
        accepted = no_5xx(client.post(second + "/verify", json=body, headers=STAFF)).json()
        assert accepted["result"] == "valid", accepted
        verdicts = [
            no_5xx(client.post(replica + "/verify", json=body, headers=STAFF)).json()
            for replica in (first, second)
        ]
    assert verdicts[0]["reason"] == verdicts[1]["reason"]
    return verdicts[0]["result"], verdicts[0]["reason"]


def _online_across(deployment: Deployment, first: str, second: str) -> httpx.Response:
    """A request of the first replica, answered through the second, replayed to the first."""
    city = deployment.city
    wallet = Wallet(city, {RESIDENCY_VCT: city.issue()})
    with httpx.Client(timeout=15) as client:
        created = no_5xx(
            client.post(first + "/requests", json={"policy": "bar-entry"}, headers=STAFF)
        ).json()
        request = wallet.request_object(client, created["request_uri"])
        city.now = int(time.time())
        form = _form(wallet.vp_token(request), request)
        path = f"/responses/{created['id']}"
        assert no_5xx(client.post(second + path, data=form)).json() == {"result": "valid"}
        return no_5xx(client.post(first + path, data=form))


@pytest.fixture(scope="module")
def sqlite_replicas(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Deployment, str, str]]:
    yield from _replicas(tmp_path_factory.mktemp("replicas"))


@pytest.mark.parametrize("attack", **_ids("offline_presentation_replayed_across_sqlite_replicas"))
def test_offline_replay_across_replicas_sharing_sqlite(
    sqlite_replicas: tuple[Deployment, str, str], attack: Attack
) -> None:
    assert _offline_across(*sqlite_replicas) == ("invalid", attack.code.value)


@pytest.mark.parametrize("attack", **_ids("online_response_replayed_across_replicas"))
def test_online_replay_across_replicas_sharing_sqlite(
    sqlite_replicas: tuple[Deployment, str, str], attack: Attack
) -> None:
    answer = _online_across(*sqlite_replicas)
    assert (answer.status_code, answer.json()["error"]) == (409, attack.code.value)


def _thread_replicas(tmp_path: Path, **settings: Any) -> Iterator[tuple[Deployment, str, str]]:
    """Two replicas in this process (uvicorn threads, each its own services and database
    engine) over one deployment, on the real clock."""
    deployment = Deployment.create(tmp_path / "verifier", now=int(time.time()))
    try:
        with ExitStack() as stack:
            urls = []
            for _ in range(2):
                port = free_port()
                runtime = load_runtime(
                    deployment.settings(port=port, public_url=f"http://127.0.0.1:{port}",
                                        **settings)
                )  # fmt: skip
                server = AppServer(create_app(build_services(runtime)), port)
                urls.append(stack.enter_context(server).url)
            yield deployment, urls[0], urls[1]
    finally:
        deployment.close()


@pytest.mark.parametrize("attack", **_ids("offline_presentation_raced_across_sqlite_replicas"))
def test_offline_race_across_replicas_sharing_sqlite(
    sqlite_replicas: tuple[Deployment, str, str], attack: Attack
) -> None:
    deployment, first, second = sqlite_replicas
    city = deployment.city
    with httpx.Client(timeout=30) as client:
        nonce = no_5xx(client.post(first + "/challenges", headers=STAFF)).json()["nonce"]
        text = city.present(city.issue(), nonce=nonce, at=int(time.time()))
        body = {"policy": "bar-entry", "nonce": nonce, "presentation": text}

        def send(i: int) -> Any:
            replica = (first, second)[i % 2]
            return no_5xx(client.post(replica + "/verify", json=body, headers=STAFF)).json()

        with ThreadPoolExecutor(8) as pool:
            verdicts = list(pool.map(send, range(16)))
    outcomes = sorted((v["result"], v["reason"]) for v in verdicts)
    assert outcomes == [("invalid", attack.code.value)] * 15 + [("valid", None)]


@pytest.mark.parametrize("attack", **_ids("online_response_raced_across_replicas"))
def test_online_race_across_replicas_sharing_sqlite(
    sqlite_replicas: tuple[Deployment, str, str], attack: Attack
) -> None:
    deployment, first, second = sqlite_replicas
    city = deployment.city
    wallet = Wallet(city, {RESIDENCY_VCT: city.issue()})
    with httpx.Client(timeout=30) as client:
        created = no_5xx(
            client.post(first + "/requests", json={"policy": "bar-entry"}, headers=STAFF)
        ).json()
        request = wallet.request_object(client, created["request_uri"])
        city.now = int(time.time())
        form = _form(wallet.vp_token(request), request)

        def send(i: int) -> httpx.Response:
            replica = (first, second)[i % 2]
            return no_5xx(client.post(f"{replica}/responses/{created['id']}", data=form))

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, range(8)))
    outcomes = sorted(
        (a.status_code, a.json().get("result") or a.json().get("error")) for a in answers
    )
    assert outcomes == [(200, "valid")] + [(409, attack.code.value)] * 7


@pytest.mark.skipif(not REDIS_URL, reason="CIVIC_TEST_REDIS_URL is not set (Redis replay store)")
@pytest.mark.parametrize("attack", **_ids("offline_presentation_replayed_across_redis_replicas"))
def test_replay_across_replicas_sharing_redis(tmp_path: Path, attack: Attack) -> None:
    from redis import Redis

    assert REDIS_URL is not None
    prefix = f"civic:security:{secrets.token_hex(6)}:"
    client = Redis.from_url(REDIS_URL)
    try:
        for deployment, first, second in _thread_replicas(
            tmp_path, redis_url=REDIS_URL, redis_prefix=prefix
        ):
            assert _offline_across(deployment, first, second) == ("invalid", attack.code.value)
            answer = _online_across(deployment, first, second)
            assert (answer.status_code, answer.json()["error"]) == (
                409,
                "request_already_answered",
            )
        # The nonces were spent in Redis, not only in the shared database.
        assert any(key.startswith(prefix.encode() + b"used:")
                   for key in client.scan_iter(match=prefix + "*"))  # fmt: skip
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()
