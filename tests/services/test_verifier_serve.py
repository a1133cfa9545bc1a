"""``civic-verifier serve --workers 2`` answers without Nagle's delay: uvicorn binds the
workers' socket with protocol 0, asyncio then leaves Nagle on, and every response's body waited
for the client's delayed ACK (40 ms on Linux) until verifier.serving set TCP_NODELAY."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.services.registry_harness import ROOT, stop_process, wait_for
from tests.services.verifier_deploy import Deployment

WORKERS = 2


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[str]:
    deployment = Deployment.create(tmp_path / "verifier", now=int(time.time()))
    env = deployment.env(CIVIC_VERIFIER_PORT=str(deployment.port))
    log = tmp_path / "serve.log"
    command = [
        sys.executable,
        "-c",
        "from verifier.cli import app; app()",
        "serve",
        "--workers",
        str(WORKERS),
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 -- our own CLI, fixed arguments
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"serve exited: {log.read_text()[-2000:]}")
        try:
            return httpx.get(deployment.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, 60, "civic-verifier serve")
        yield deployment.url
    finally:
        stop_process(process, timeout=20)
        deployment.close()


def test_multi_worker_answers_are_not_held_back_by_delayed_acks(serving: str) -> None:
    durations = []
    with httpx.Client(timeout=10) as client:  # one keep-alive connection
        for _ in range(15):
            started = time.perf_counter()
            assert client.get(serving + "/healthz").status_code == 200
            durations.append(time.perf_counter() - started)
    # With Nagle on, each answer takes at least the 40 ms delayed ACK.
    assert statistics.median(durations) < 0.025, durations
