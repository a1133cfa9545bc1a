"""``bench.load`` for a few seconds per service, capped in count: every answer is the expected
one (no timing asserted), and an unexpected answer is counted as an error, not lost."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.load import Service, drive, issuer_service, load, verifier_service

SECONDS = 5.0
CONCURRENCY = 8


def _all_as_expected(result: dict[str, Any], expected: str, max_units: int) -> int:
    assert result["warmup"]["errors_by_kind"] == {}
    assert result["warmup"]["units_as_expected"] > 0
    units = int(result["units"])
    assert 0 < units <= max_units
    assert result["errors"] == 0 and result["errors_by_kind"] == {}, result
    assert result["units_as_expected"] == units
    assert result["by_verdict"] == {expected: units}
    assert result["latency_ms"]["p50"] is not None
    return units


def test_verifier_load_answers_valid_every_time(tmp_path: Path) -> None:
    with ExitStack() as stack:
        service: Service[Any] = verifier_service(stack, tmp_path)
        result = load(service, seconds=SECONDS, concurrency=CONCURRENCY, max_units=300)
        units = _all_as_expected(result, "valid", 300)
        assert result["by_status"] == {"/verify 200": units}
        assert result["requests"] == units
        # A body sent twice: the replay is refused, and counted as an error with its verdict.
        body = service.jobs(1)[0]
        tally, _, ran_out = drive(service, [body, body], seconds=SECONDS, concurrency=1)
    assert ran_out
    assert dict(tally.by_verdict) == {"valid": 1, "invalid kb_jwt_nonce_reused": 1}
    assert dict(tally.errors) == {"verdict invalid kb_jwt_nonce_reused": 1}
    assert dict(tally.by_status) == {"/verify 200": 2}


def test_issuer_load_delivers_a_verifying_credential_every_time(tmp_path: Path) -> None:
    with ExitStack() as stack:
        service: Service[Any] = issuer_service(stack, tmp_path)
        result = load(service, seconds=SECONDS, concurrency=CONCURRENCY, max_units=120)
        units = _all_as_expected(result, "credential verified", 120)
        assert result["by_status"] == {
            "/credential 200": units,
            "/nonce 200": units,
            "/token 200": units,
        }
        assert result["requests"] == 3 * units
        # An offer used twice: its code is spent, the second token request is refused.
        offer = service.jobs(1)[0]
        tally, _, _ = drive(service, [offer, offer], seconds=SECONDS, concurrency=1)
        service.check(tally)
    assert dict(tally.by_verdict) == {"credential verified": 1}
    assert dict(tally.errors) == {"status 400": 1}
    assert dict(tally.by_status) == {
        "/credential 200": 1,
        "/nonce 200": 1,
        "/token 200": 1,
        "/token 400": 1,
    }
