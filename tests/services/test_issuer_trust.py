"""The issuer refuses to sign with a key the registry does not accredit for the vct.

The registry is a real log of governance-signed entries (civic.logsync.MemoryLog) that the
issuer syncs through civic.logsync (checkpoint, consistency proof, recomputed root, fold);
events are appended while the issuer runs, and the issuer's clock decides when it re-syncs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from civic.clock import FixedClock
from civic.credentials import RESIDENCY_VCT, VACCINATION_VCT, get_type
from civic.errors import ReasonCode, VerificationError
from civic.jose import PrivateKey, parse_jws, sign_jwt
from civic.logsync import MemoryLog
from issuer import db
from issuer.oid4vci import PRE_AUTHORIZED_GRANT, PROOF_TYP
from issuer.testing import LocalIssuer, MemoryRegistry
from issuer.trust import Accreditation, FixedTrust, RegistryTrust

START = 1_800_000_000


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def db_state(issuer: LocalIssuer) -> dict[str, list[str]]:
    with issuer.context.engine.connect() as connection:
        return {
            table.name: sorted(repr(tuple(row)) for row in connection.execute(select(table)))
            for table in db.TABLES
        }


def token_for(http: httpx.Client, issuer: LocalIssuer, vct: str) -> tuple[str, str]:
    body = {"vct": vct, "claims": get_type(vct).example_claims()}
    created = http.post("/admin/offers", json=body, headers=auth(issuer.admin_key))
    assert created.status_code == 201, created.text
    offer = created.json()
    document = http.get(offer["credential_offer_url"]).json()
    code = document["grants"][PRE_AUTHORIZED_GRANT]["pre-authorized_code"]
    form = {
        "grant_type": PRE_AUTHORIZED_GRANT,
        "pre-authorized_code": code,
        "tx_code": offer["tx_code"],
    }
    token = http.post("/token", data=form)
    assert token.status_code == 200
    return token.json()["access_token"], document["credential_configuration_ids"][0]


def request_credential(
    http: httpx.Client, issuer: LocalIssuer, token: str, configuration: str
) -> httpx.Response:
    key = PrivateKey.generate()
    nonce = http.post("/nonce").json()["c_nonce"]
    proof = sign_jwt(
        {"typ": PROOF_TYP, "jwk": key.public_key.to_jwk()},
        {"aud": issuer.url, "iat": issuer.now(), "nonce": nonce},
        key,
    )
    return http.post(
        "/credential",
        json={"credential_configuration_id": configuration, "proofs": {"jwt": [proof]}},
        headers=auth(token),
    )


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def issuer(tmp_path: Path, clock: FixedClock) -> Iterator[LocalIssuer]:
    """An issuer whose key the registry accredits for residency only."""
    with LocalIssuer(tmp_path / "issuer", now=clock, accredit=False) as local:
        local.accredit(local.signer, [RESIDENCY_VCT])
        yield local


@pytest.fixture
def http(issuer: LocalIssuer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=issuer.url, timeout=30) as client:
        yield client


def test_no_offer_for_a_type_the_key_is_not_accredited_for(
    http: httpx.Client, issuer: LocalIssuer
) -> None:
    before = db_state(issuer)
    body = {"vct": VACCINATION_VCT, "claims": get_type(VACCINATION_VCT).example_claims()}
    response = http.post("/admin/offers", json=body, headers=auth(issuer.admin_key))
    assert response.status_code == 503
    assert response.json()["error"] == ReasonCode.KEY_NOT_ACCREDITED_FOR_VCT.value
    assert db_state(issuer) == before


def test_a_revoked_key_does_not_sign_and_a_rotated_one_does(
    http: httpx.Client, issuer: LocalIssuer, clock: FixedClock
) -> None:
    token, configuration = token_for(http, issuer, RESIDENCY_VCT)
    issuer.registry.revoke(issuer.url, issuer.signer.kid, clock())
    clock.advance(1)  # past the refresh interval: the issuer syncs the revocation
    before = db_state(issuer)
    refused = request_credential(http, issuer, token, configuration)
    assert refused.status_code == 400
    assert refused.json()["error"] == "credential_request_denied"
    after = db_state(issuer)
    # Only the nonce fetched for the request was added; the offer and its claims are intact.
    assert {k: v for k, v in after.items() if k != "issuer_nonces"} == {
        k: v for k, v in before.items() if k != "issuer_nonces"
    }
    # A new key, once the registry accredits it, signs the same pending request.
    new_key = issuer.keys.create("ES256", now=clock())
    refused_again = request_credential(http, issuer, token, configuration)
    assert refused_again.json()["error"] == "credential_request_denied"
    issuer.accredit(new_key, [RESIDENCY_VCT])
    clock.advance(1)
    issued = request_credential(http, issuer, token, configuration)
    assert issued.status_code == 200, issued.text
    credential = issued.json()["credentials"][0]["credential"]
    header = parse_jws(credential.split("~")[0]).header
    assert header["kid"] == new_key.kid
    assert header["alg"] == "ES256"
    # Status lists are signed by an accredited key too.
    uri = http.get("/admin/credentials", headers=auth(issuer.admin_key)).json()["credentials"][0]
    token_header = parse_jws(http.get("/status/1").text).header
    assert token_header["kid"] == new_key.kid
    assert uri["kid"] == new_key.kid


def test_status_lists_are_not_signed_without_an_accredited_key(
    http: httpx.Client, issuer: LocalIssuer, clock: FixedClock
) -> None:
    token, configuration = token_for(http, issuer, RESIDENCY_VCT)
    assert request_credential(http, issuer, token, configuration).status_code == 200
    assert http.get("/status/1").status_code == 200
    issuer.registry.revoke(issuer.url, issuer.signer.kid, clock())
    clock.advance(issuer.settings.status_list_ttl)
    response = http.get("/status/1")
    assert response.status_code == 503
    assert response.json()["error"] == ReasonCode.KEY_REVOKED.value


# --- the accreditation check itself --------------------------------------------------------


@pytest.fixture
def registry(clock: FixedClock) -> MemoryRegistry:
    return MemoryRegistry(now=clock)


class Keyed:
    def __init__(self, key: PrivateKey, kid: str | None = None) -> None:
        self._key = key
        self.kid = kid or key.public_key.thumbprint()
        self.alg = key.alg
        self.public_key = key.public_key

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


ISSUER = "https://district.example"
STATUS = ISSUER + "/status"


def accreditation(registry: MemoryRegistry, **trust: Any) -> Accreditation:
    return Accreditation(registry.trust(**trust), ISSUER, status_base_url=STATUS)


def test_accreditation_reasons(registry: MemoryRegistry, clock: FixedClock) -> None:
    key = Keyed(PrivateKey.generate())
    other = Keyed(PrivateKey.generate())
    impostor = Keyed(PrivateKey.generate(), kid=other.kid)
    elsewhere = Keyed(PrivateKey.generate())
    check = accreditation(registry)
    with pytest.raises(VerificationError) as unknown_issuer:
        check.check(key.kid, key.public_key, RESIDENCY_VCT, clock())
    assert unknown_issuer.value.reason == ReasonCode.ISSUER_UNKNOWN
    window = {"not_before": clock() - 10, "not_after": clock() + 1000}
    registry.accredit(
        ISSUER, key.kid, key.public_key, [RESIDENCY_VCT], status_base_url=STATUS, **window
    )
    registry.accredit(
        ISSUER, other.kid, other.public_key, [RESIDENCY_VCT], status_base_url=STATUS, **window
    )
    registry.accredit(
        ISSUER,
        elsewhere.kid,
        elsewhere.public_key,
        [RESIDENCY_VCT],
        status_base_url="https://elsewhere.example/status",
        **window,
    )
    clock.advance(1)
    assert check.check(key.kid, key.public_key, RESIDENCY_VCT, clock()).kid == key.kid

    def reason(signer: Keyed, vct: str = RESIDENCY_VCT) -> ReasonCode:
        with pytest.raises(VerificationError) as caught:
            check.check(signer.kid, signer.public_key, vct, clock())
        return caught.value.reason

    assert reason(key, VACCINATION_VCT) == ReasonCode.KEY_NOT_ACCREDITED_FOR_VCT
    assert reason(impostor) == ReasonCode.KEY_UNKNOWN
    assert reason(Keyed(PrivateKey.generate())) == ReasonCode.KEY_UNKNOWN
    assert reason(elsewhere) == ReasonCode.STATUS_LIST_SUBJECT_MISMATCH
    # Newest usable first; a retirement with a grace period keeps both keys until it passes.
    assert check.choose([other, key], RESIDENCY_VCT, clock()) is other
    registry.retire(ISSUER, other.kid, clock() + 100)
    clock.advance(1)
    assert check.choose([other, key], RESIDENCY_VCT, clock()) is other
    clock.advance(100)
    assert reason(other) == ReasonCode.KEY_RETIRED
    assert check.choose([other, key], RESIDENCY_VCT, clock()) is key
    registry.revoke(ISSUER, key.kid, clock())
    clock.advance(1)
    with pytest.raises(VerificationError) as none_left:
        check.choose([other, key], RESIDENCY_VCT, clock())
    assert none_left.value.reason == ReasonCode.KEY_RETIRED  # the first (newest) key's reason
    clock.advance(1000)
    assert reason(Keyed(PrivateKey.generate())) == ReasonCode.KEY_UNKNOWN


class FlakyLog:
    """The registry log, with a switch to make it unreachable."""

    def __init__(self, log: MemoryLog) -> None:
        self.log = log
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise VerificationError(ReasonCode.LOG_UNAVAILABLE, "registry down")

    def checkpoint(self) -> bytes:
        self._check()
        return self.log.checkpoint()

    def entries(self, start: int, end: int) -> list[bytes]:
        self._check()
        return self.log.entries(start, end)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        self._check()
        return self.log.consistency_proof(old, new)


def test_an_unreachable_registry_keeps_the_last_state_until_max_age(
    registry: MemoryRegistry, clock: FixedClock
) -> None:
    key = Keyed(PrivateKey.generate())
    registry.accredit(
        ISSUER,
        key.kid,
        key.public_key,
        [RESIDENCY_VCT],
        status_base_url=STATUS,
        not_before=clock() - 10,
        not_after=clock() + 10**6,
    )
    source = FlakyLog(registry.log)
    trust = RegistryTrust(source, registry.config, refresh_interval=10, max_age=100)
    check = Accreditation(trust, ISSUER, status_base_url=STATUS)
    check.check(key.kid, key.public_key, RESIDENCY_VCT, clock())
    source.down = True
    clock.advance(50)
    check.check(key.kid, key.public_key, RESIDENCY_VCT, clock())  # last good snapshot
    clock.advance(51)
    with pytest.raises(VerificationError) as stale:
        check.check(key.kid, key.public_key, RESIDENCY_VCT, clock())
    assert stale.value.reason == ReasonCode.TRUST_STALE
    source.down = False
    clock.advance(10)
    check.check(key.kid, key.public_key, RESIDENCY_VCT, clock())


def test_a_registry_never_reached_refuses(registry: MemoryRegistry, clock: FixedClock) -> None:
    source = FlakyLog(registry.log)
    source.down = True
    check = Accreditation(
        RegistryTrust(source, registry.config, refresh_interval=10, max_age=100),
        ISSUER,
        status_base_url=STATUS,
    )
    key = Keyed(PrivateKey.generate())
    with pytest.raises(VerificationError) as caught:
        check.check(key.kid, key.public_key, RESIDENCY_VCT, clock())
    assert caught.value.reason == ReasonCode.LOG_UNAVAILABLE


def test_a_log_that_rewrites_history_is_not_believed(
    registry: MemoryRegistry, clock: FixedClock
) -> None:
    key = Keyed(PrivateKey.generate())
    window = {"not_before": clock() - 10, "not_after": clock() + 10**6}
    registry.accredit(
        ISSUER, key.kid, key.public_key, [RESIDENCY_VCT], status_base_url=STATUS, **window
    )
    trust = RegistryTrust(registry.log, registry.config, refresh_interval=1, max_age=100)
    check = Accreditation(trust, ISSUER, status_base_url=STATUS)
    check.check(key.kid, key.public_key, RESIDENCY_VCT, clock())
    # The log drops the accreditation and serves a smaller tree: a rollback, refused; the
    # state already synced stays in force.
    registry.log.note = registry.log.sign(registry.log.checkpoint_at(0))
    clock.advance(1)
    with pytest.raises(VerificationError) as caught:
        trust.refresh(clock())
    assert caught.value.reason == ReasonCode.LOG_ROLLBACK
    check.check(key.kid, key.public_key, RESIDENCY_VCT, clock())


def test_fixed_trust_serves_a_state_as_given(registry: MemoryRegistry, clock: FixedClock) -> None:
    key = Keyed(PrivateKey.generate())
    window = {"not_before": clock() - 10, "not_after": clock() + 10**6}
    registry.accredit(
        ISSUER, key.kid, key.public_key, [RESIDENCY_VCT], status_base_url=STATUS, **window
    )
    state = registry.trust().trust_state(clock())
    check = Accreditation(FixedTrust(state), ISSUER, status_base_url=STATUS)
    assert check.choose([key], RESIDENCY_VCT, clock()) is key


class BrokenSigner:
    """The issuer's key, through a signing device that fails (an HSM going away)."""

    def __init__(self, signer: Any) -> None:
        self.kid = signer.kid
        self.alg = signer.alg
        self.public_key = signer.public_key

    def sign(self, data: bytes) -> bytes:
        raise RuntimeError("device failure while signing for 김서연 born 1998-03-15")


class BrokenKeys:
    def __init__(self, signer: Any) -> None:
        self._signer = BrokenSigner(signer)

    def signers(self, transaction: Any = None) -> list[BrokenSigner]:
        return [self._signer]


def test_an_unexpected_failure_is_a_bare_500_logged_without_its_message(
    http: httpx.Client, issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    token, configuration = token_for(http, issuer, RESIDENCY_VCT)
    issuer.context.keys = BrokenKeys(issuer.signer)
    before = db_state(issuer)
    with caplog.at_level(logging.DEBUG):
        response = request_credential(http, issuer, token, configuration)
    assert response.status_code == 500
    assert response.json() == {"error": "server_error", "detail": "internal error"}
    messages = "\n".join(record.getMessage() for record in caplog.records)
    assert "unhandled RuntimeError" in messages
    assert "김서연" not in messages and "1998-03-15" not in messages
    after = db_state(issuer)
    assert {k: v for k, v in after.items() if k != "issuer_nonces"} == {
        k: v for k, v in before.items() if k != "issuer_nonces"
    }


class CountingLog:
    """The registry's log, counting checkpoint fetches (one per sync)."""

    def __init__(self, log: MemoryLog) -> None:
        self.log = log
        self.syncs = 0

    def checkpoint(self) -> bytes:
        self.syncs += 1
        return self.log.checkpoint()

    def entries(self, start: int, end: int) -> list[bytes]:
        return self.log.entries(start, end)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        return self.log.consistency_proof(old, new)


def test_background_sync_runs_ahead_of_the_requests() -> None:
    registry = MemoryRegistry(now=FixedClock(START))
    counting = CountingLog(registry.log)
    trust = RegistryTrust(counting, registry.config, refresh_interval=60, max_age=3600)
    trust.refresh_ahead(START, margin=30)  # no snapshot yet: left to the first use
    assert counting.syncs == 0
    trust.trust_state(START)
    assert counting.syncs == 1
    trust.refresh_ahead(START + 29, margin=30)  # the next request-time sync is 31 s away
    assert counting.syncs == 1
    trust.refresh_ahead(START + 30, margin=30)  # within the margin: sync now, in advance
    assert counting.syncs == 2
    # A request right after finds the snapshot fresh and does not sync itself.
    trust.trust_state(START + 61)
    assert counting.syncs == 2
    trust.trust_state(START + 90)
    assert counting.syncs == 3
