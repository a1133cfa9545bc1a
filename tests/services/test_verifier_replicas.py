"""Two verifier processes sharing PostgreSQL (and Redis): a presentation accepted by one replica
is refused when replayed to the other (issue 5, "Replay and replicas").

Gated on ``CIVIC_TEST_POSTGRES_URL`` / ``CIVIC_TEST_REDIS_URL`` (set by .ci/run); each run uses a
fresh PostgreSQL schema and Redis key prefix and removes them afterwards.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from civic.encoding import json_dumps
from civic_service.db import normalise_url
from tests.services.registry_harness import free_port
from tests.services.verifier_deploy import STAFF, Deployment, VerifierProcess, Wallet
from tests.unit.verifier_city import CLIENT_ID

POSTGRES_URL = os.environ.get("CIVIC_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("CIVIC_TEST_REDIS_URL")

needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL, reason="CIVIC_TEST_POSTGRES_URL is not set (PostgreSQL replica test)"
)
needs_redis = pytest.mark.skipif(
    not REDIS_URL, reason="CIVIC_TEST_REDIS_URL is not set (Redis replay cache test)"
)


@pytest.fixture
def schema() -> Iterator[str]:
    assert POSTGRES_URL is not None
    name = f"verifier_test_{secrets.token_hex(6)}"
    yield name
    engine = create_engine(normalise_url(POSTGRES_URL))
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    engine.dispose()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    from redis import Redis

    assert REDIS_URL is not None
    prefix = f"civic:test:{secrets.token_hex(6)}:"
    yield prefix
    client = Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def _replicas(tmp_path: Path, **env: str) -> tuple[Deployment, list[dict[str, str]]]:
    # Processes run on the real clock: the city's time is now.
    deployment = Deployment.create(tmp_path / "verifier", now=int(time.time()))
    envs = []
    for _ in range(2):
        port = free_port()
        envs.append(
            deployment.env(
                CIVIC_VERIFIER_PORT=str(port),
                CIVIC_VERIFIER_PUBLIC_URL=f"http://127.0.0.1:{port}",
                **env,
            )
        )
    return deployment, envs


def _offline_replay(deployment: Deployment, first: str, second: str) -> None:
    city = deployment.city
    with httpx.Client(timeout=15) as client:
        answer = client.post(first + "/challenges", headers=STAFF)
        assert answer.status_code == 201, answer.text
        nonce = answer.json()["nonce"]
        text = city.present(city.issue(), nonce=nonce, at=int(time.time()))
        body = {"policy": "bar-entry", "nonce": nonce, "presentation": text}
        # The nonce was issued by the first replica; the second knows it too.
        accepted = client.post(second + "/verify", json=body, headers=STAFF).json()
        assert accepted["result"] == "valid", accepted
        replayed = client.post(first + "/verify", json=body, headers=STAFF).json()
        assert (replayed["result"], replayed["reason"]) == ("invalid", "kb_jwt_nonce_reused")
        again = client.post(second + "/verify", json=body, headers=STAFF).json()
        assert again["reason"] == "kb_jwt_nonce_reused"


def _online_replay(deployment: Deployment, first: str, second: str) -> None:
    city = deployment.city
    wallet = Wallet(city, {"urn:civic:vct:residency:1": city.issue()})
    with httpx.Client(timeout=15) as client:
        created = client.post(first + "/requests", json={"policy": "bar-entry"}, headers=STAFF)
        assert created.status_code == 201, created.text
        request_id = created.json()["id"]
        request = wallet.request_object(client, created.json()["request_uri"])
        assert request["client_id"] == CLIENT_ID
        city.now = int(time.time())
        vp_token = wallet.vp_token(request)
        body = {"vp_token": json_dumps(vp_token), "state": request["state"]}
        # The wallet posts to the second replica (a load balancer's choice), then replays.
        accepted = client.post(f"{second}/responses/{request_id}", data=body)
        assert accepted.json() == {"result": "valid"}, accepted.text
        replayed = client.post(f"{first}/responses/{request_id}", data=body)
        assert (replayed.status_code, replayed.json()["error"]) == (
            409,
            "request_already_answered",
        )
        status = client.get(f"{first}/requests/{request_id}", headers=STAFF).json()
        assert status["verdict"]["result"] == "valid"


@needs_postgres
def test_replicas_on_postgresql(tmp_path: Path, schema: str) -> None:
    assert POSTGRES_URL is not None
    deployment, envs = _replicas(
        tmp_path, CIVIC_VERIFIER_DATABASE_URL=POSTGRES_URL, CIVIC_VERIFIER_DATABASE_SCHEMA=schema
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    try:
        with (
            VerifierProcess(int(envs[0]["CIVIC_VERIFIER_PORT"]), envs[0], logs / "a.log") as a,
            VerifierProcess(int(envs[1]["CIVIC_VERIFIER_PORT"]), envs[1], logs / "b.log") as b,
        ):
            _offline_replay(deployment, a.url, b.url)
            _online_replay(deployment, a.url, b.url)
    finally:
        deployment.close()


@needs_postgres
@needs_redis
def test_replicas_with_redis_replay_cache(tmp_path: Path, schema: str, redis_prefix: str) -> None:
    assert POSTGRES_URL is not None and REDIS_URL is not None
    deployment, envs = _replicas(
        tmp_path,
        CIVIC_VERIFIER_DATABASE_URL=POSTGRES_URL,
        CIVIC_VERIFIER_DATABASE_SCHEMA=schema,
        CIVIC_REDIS_URL=REDIS_URL,
        CIVIC_VERIFIER_REDIS_PREFIX=redis_prefix,
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    try:
        with (
            VerifierProcess(int(envs[0]["CIVIC_VERIFIER_PORT"]), envs[0], logs / "a.log") as a,
            VerifierProcess(int(envs[1]["CIVIC_VERIFIER_PORT"]), envs[1], logs / "b.log") as b,
        ):
            _offline_replay(deployment, a.url, b.url)
            _online_replay(deployment, a.url, b.url)
        from redis import Redis

        client = Redis.from_url(REDIS_URL)
        keys = {key.decode() for key in client.scan_iter(match=redis_prefix + "*")}
        client.close()
        # The nonces live in Redis, not in the database.
        assert any(key.startswith(redis_prefix + "used:") for key in keys)
        engine = create_engine(normalise_url(POSTGRES_URL))
        with engine.connect() as connection:
            count = connection.execute(
                text(f'SELECT count(*) FROM "{schema}".verifier_nonces')  # noqa: S608
            ).scalar()
        engine.dispose()
        assert count == 0
    finally:
        deployment.close()
