"""Accreditation attacks: verifiers asking for more than the registry lets them, verifiers the
registry does not know or has revoked, and request objects not signed by the accredited key.

Three surfaces:

- ``wallet``: the holder's checks of the ``present`` command (wallet_cli.cli.present), in its
  order: parse the ``openid4vp://`` URI, fetch the request object over HTTP on 127.0.0.1
  (``fetch_request_object``), ``verify_request_object``, ``check_accreditation``; nothing is
  disclosed when any of them refuses. A rogue verifier's request objects are served by a
  plain HTTP server on loopback.
- ``core``: :meth:`civic.trust.TrustState.check_verifier_request`.
- ``verifier``: the verifier service refuses to create requests its accreditation does not
  cover (POST /requests answers 409 with the reason, never a 5xx).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from civic.clock import FixedClock
from civic.credentials import RESIDENCY_VCT
from civic.dcql import dcql_for_claims
from civic.errors import CivicError, ReasonCode
from civic.jose import PrivateKey, sign_jwt
from civic.trust import TrustState, new_event, sign_event
from tests.security import Attack
from tests.security.verifier_site import running_site
from tests.services.verifier_deploy import Deployment, StatusServer
from tests.unit.verifier_city import CLIENT_ID, NOW, YEAR, City
from verifier.settings import PACKAGED_POLICIES
from wallet_cli.http import Http
from wallet_cli.oid4vp import (
    check_accreditation,
    fetch_request_object,
    parse_request_uri,
    verify_request_object,
)

WALLET_ATTACKS: tuple[Attack, ...] = (
    Attack("wallet_verifier_asks_claims_beyond_accreditation",
           ReasonCode.VERIFIER_CLAIMS_NOT_ACCREDITED, "wallet",
           "an accredited verifier's signed request asks for birth_date besides age_over_19"),
    Attack("wallet_verifier_asks_parent_of_accredited_claim",
           ReasonCode.VERIFIER_CLAIMS_NOT_ACCREDITED, "wallet",
           "accredited for address.region, the verifier asks for all of address"),
    Attack("wallet_verifier_asks_unaccredited_type", ReasonCode.VERIFIER_CLAIMS_NOT_ACCREDITED,
           "wallet", "a request for a credential type the verifier is not accredited for"),
    Attack("wallet_unknown_client_id", ReasonCode.VERIFIER_UNKNOWN, "wallet",
           "a request from a client_id the registry has never accredited"),
    Attack("wallet_revoked_verifier", ReasonCode.VERIFIER_REVOKED, "wallet",
           "a genuine request from a verifier whose accreditation the registry revoked"),
    Attack("wallet_request_signed_by_unaccredited_key", ReasonCode.SIGNATURE_INVALID, "wallet",
           "a request object under the accredited client_id and kid, signed by another key"),
    Attack("wallet_request_with_unaccredited_kid", ReasonCode.KEY_UNKNOWN, "wallet",
           "a request object naming a kid the registry does not accredit for the verifier"),
    Attack("wallet_verifier_accreditation_expired", ReasonCode.KEY_OUTSIDE_WINDOW, "wallet",
           "a request from a verifier whose accreditation window has closed"),
    Attack("wallet_expired_request_object", ReasonCode.REQUEST_EXPIRED, "wallet",
           "an old request object of the accredited verifier replayed to the wallet"),
)  # fmt: skip

CORE_ATTACKS: tuple[Attack, ...] = (
    Attack("core_verifier_claims_beyond_accreditation",
           ReasonCode.VERIFIER_CLAIMS_NOT_ACCREDITED, "core",
           "check_verifier_request for a claim outside the verifier's accredited paths"),
    Attack("core_verifier_unknown", ReasonCode.VERIFIER_UNKNOWN, "core",
           "check_verifier_request for a client_id the registry never accredited"),
    Attack("core_verifier_revoked", ReasonCode.VERIFIER_REVOKED, "core",
           "check_verifier_request for a verifier the registry revoked"),
    Attack("core_verifier_outside_window", ReasonCode.KEY_OUTSIDE_WINDOW, "core",
           "check_verifier_request after the verifier's accreditation window closed"),
)  # fmt: skip

SERVICE_ATTACKS: tuple[Attack, ...] = (
    Attack("verifier_policy_beyond_accreditation", ReasonCode.VERIFIER_CLAIMS_NOT_ACCREDITED,
           "verifier", "a verifier operator configures a policy asking for birth_date"),
    Attack("verifier_signing_key_not_accredited", ReasonCode.VERIFIER_UNKNOWN, "verifier",
           "a verifier deployed with a signing key other than the one the registry accredits"),
    Attack("verifier_revoked_creates_request", ReasonCode.VERIFIER_REVOKED, "verifier",
           "a revoked verifier keeps running and tries to create a presentation request"),
)  # fmt: skip

ATTACKS: tuple[Attack, ...] = WALLET_ATTACKS + CORE_ATTACKS + SERVICE_ATTACKS

ALLOWED = [{"vct": RESIDENCY_VCT, "claims": [["age_over_19"], ["address", "region"]]}]


def _revoked(city: City) -> TrustState:
    """The city's trust state plus a revocation of the verifier (the city is not changed)."""
    event = new_event(
        "verifier.revoke", now=FixedClock(city.now - 100), verifier=CLIENT_ID,
        revoked_at=city.now - 100,
    )  # fmt: skip
    return city.state.apply(sign_event(event, [("gov-1", city.governance)]))


# --- the wallet, fetching request objects over HTTP ----------------------------------------


@dataclass
class RogueHost:
    """A verifier's web server on loopback serving whatever request objects it likes."""

    server: StatusServer
    city: City
    count: int = 0

    def offer(self, token: str, client_id: str = CLIENT_ID) -> str:
        self.count += 1
        path = f"/status/request-{self.count}"
        self.server.tokens[path] = token
        request_uri = self.server.base.removesuffix("/status") + path
        return "openid4vp://?" + urlencode({"client_id": client_id, "request_uri": request_uri})

    def request_object(self, **changes: Any) -> str:
        claims: dict[str, Any] = {
            "iss": CLIENT_ID,
            "aud": "https://self-issued.me/v2",
            "client_id": CLIENT_ID,
            "response_type": "vp_token",
            "response_mode": "direct_post",
            "response_uri": "http://127.0.0.1:9/responses/1",
            "nonce": "nonce-0123456789abcdef",
            "state": "state-1",
            "dcql_query": dcql_for_claims("residency", RESIDENCY_VCT, [["age_over_19"]]).to_json(),
            "iat": NOW - 5,
            "exp": NOW + 300,
        }
        signer = changes.pop("signer", self.city.verifier_key)
        header = {"typ": "oauth-authz-req+jwt", "kid": "v-1", **changes.pop("header", {})}
        claims.update(changes)
        return sign_jwt(header, claims, signer)


def wallet_checks(uri: str, state: TrustState, now: int = NOW) -> None:
    """What ``civic-wallet present`` does before it shows anything for consent."""
    reference = parse_request_uri(uri)
    with Http() as http:
        token = fetch_request_object(http, reference)
    request = verify_request_object(token, reference, state, now=now)
    check_accreditation(state, request, now=now)


@pytest.fixture(scope="module")
def rogue() -> Iterator[RogueHost]:
    city = City()
    city.accredit_verifier(ALLOWED)
    server = StatusServer()
    try:
        yield RogueHost(server, city)
    finally:
        server.close()


def _dcql(vct: str, *paths: list[Any]) -> dict[str, Any]:
    return dcql_for_claims("q", vct, list(paths)).to_json()


WALLET: dict[str, Callable[[RogueHost], tuple[str, TrustState]]] = {
    "wallet_verifier_asks_claims_beyond_accreditation": lambda r: (r.offer(r.request_object(
        dcql_query=_dcql(RESIDENCY_VCT, ["age_over_19"], ["birth_date"]))), r.city.state),
    "wallet_verifier_asks_parent_of_accredited_claim": lambda r: (r.offer(r.request_object(
        dcql_query=_dcql(RESIDENCY_VCT, ["address"]))), r.city.state),
    "wallet_verifier_asks_unaccredited_type": lambda r: (r.offer(r.request_object(
        dcql_query=_dcql("urn:civic:vct:youth-allowance:1", ["allowance_status"]))),
        r.city.state),
    "wallet_unknown_client_id": lambda r: (r.offer(r.request_object(
        client_id="rogue.example", iss="rogue.example"), client_id="rogue.example"),
        r.city.state),
    "wallet_revoked_verifier": lambda r: (r.offer(r.request_object()), _revoked(r.city)),
    "wallet_request_signed_by_unaccredited_key": lambda r: (r.offer(r.request_object(
        signer=PrivateKey.generate())), r.city.state),
    "wallet_request_with_unaccredited_kid": lambda r: (r.offer(r.request_object(
        signer=PrivateKey.generate(), header={"kid": "v-2"})), r.city.state),
    "wallet_verifier_accreditation_expired": lambda r: (r.offer(r.request_object(
        iat=NOW + 2 * YEAR - 5, exp=NOW + 2 * YEAR + 300)), r.city.state),
    "wallet_expired_request_object": lambda r: (r.offer(r.request_object(
        iat=NOW - 3600, exp=NOW - 3000)), r.city.state),
}  # fmt: skip


@pytest.mark.parametrize("attack", WALLET_ATTACKS, ids=[a.name for a in WALLET_ATTACKS])
def test_wallet_refuses(rogue: RogueHost, attack: Attack) -> None:
    uri, state = WALLET[attack.name](rogue)
    # Two years on, the verifier's one-year accreditation has closed (its request is fresh).
    now = NOW + 2 * YEAR if attack.name == "wallet_verifier_accreditation_expired" else NOW
    with pytest.raises(CivicError) as caught:
        wallet_checks(uri, state, now)
    assert caught.value.reason is attack.code


def test_wallet_accepts_the_honest_request_from_the_rogue_host(rogue: RogueHost) -> None:
    """The control: the same host serving a request the accreditation covers is accepted."""
    wallet_checks(rogue.offer(rogue.request_object()), rogue.city.state)


def test_wallet_accepts_a_request_of_the_real_verifier(tmp_path: Path) -> None:
    """The control over the real verifier service: its own request passes the wallet."""
    with running_site(tmp_path / "verifier", history=False) as site:
        created = site.post_request("youth-allowance-counter")
        assert created.status_code == 201, created.text
        wallet_checks(created.json()["uri"], site.city.state, now=site.clock())


# --- the core check --------------------------------------------------------------------------


def _core_city() -> City:
    city = City()
    city.accredit_verifier(ALLOWED)
    return city


CORE: dict[str, Callable[[City], None]] = {
    "core_verifier_claims_beyond_accreditation": lambda c: c.state.check_verifier_request(
        CLIENT_ID, RESIDENCY_VCT, [["age_over_19"], ["birth_date"]], c.now
    ),
    "core_verifier_unknown": lambda c: c.state.check_verifier_request(
        "rogue.example", RESIDENCY_VCT, [["age_over_19"]], c.now
    ),
    "core_verifier_revoked": lambda c: _revoked(c).check_verifier_request(
        CLIENT_ID, RESIDENCY_VCT, [["age_over_19"]], c.now
    ),
    "core_verifier_outside_window": lambda c: c.state.check_verifier_request(
        CLIENT_ID, RESIDENCY_VCT, [["age_over_19"]], c.now + 2 * YEAR
    ),
}


@pytest.mark.parametrize("attack", CORE_ATTACKS, ids=[a.name for a in CORE_ATTACKS])
def test_core_refuses(attack: Attack) -> None:
    city = _core_city()
    city.state.check_verifier_request(CLIENT_ID, RESIDENCY_VCT, [["age_over_19"]], city.now)
    with pytest.raises(CivicError) as caught:
        CORE[attack.name](city)
    assert caught.value.reason is attack.code


# --- the verifier service ------------------------------------------------------------------


NOSY = (
    "id: nosy\ncredentials:\n  - id: residency\n    vct: urn:civic:vct:residency:1\n"
    "    claims:\n      - path: [age_over_19]\n      - path: [birth_date]\n"
)


def _policies(root: Path) -> Path:
    policies = root / "policies"
    policies.mkdir()
    for path in PACKAGED_POLICIES.iterdir():
        (policies / path.name).write_bytes(path.read_bytes())
    (policies / "nosy.yaml").write_text(NOSY)
    return policies


def _other_signing_key(deployment: Deployment) -> None:
    deployment.city.verifier_key = PrivateKey.generate()  # accredited was the previous one


def _revoke_verifier(deployment: Deployment) -> None:
    city = deployment.city
    city.event("verifier.revoke", verifier=CLIENT_ID, revoked_at=city.now - 100)


@pytest.mark.parametrize(
    ("attack", "prepare", "policy"),
    [
        (SERVICE_ATTACKS[0], None, "nosy"),
        (SERVICE_ATTACKS[1], _other_signing_key, "bar-entry"),
        (SERVICE_ATTACKS[2], _revoke_verifier, "bar-entry"),
    ],
    ids=[a.name for a in SERVICE_ATTACKS],
)
def test_verifier_refuses_to_ask(
    tmp_path: Path,
    attack: Attack,
    prepare: Callable[[Deployment], None] | None,
    policy: str,
) -> None:
    with running_site(
        tmp_path / "verifier", history=False, policies_dir=_policies(tmp_path), prepare=prepare
    ) as site:
        answer = site.post_request(policy)
        assert (answer.status_code, answer.json()["error"]) == (409, attack.code.value)
        if prepare is None:  # the control: the packaged policies still work
            assert site.post_request("bar-entry").status_code == 201


def test_every_attack_is_mounted() -> None:
    mounted = set(WALLET) | set(CORE) | {a.name for a in SERVICE_ATTACKS}
    assert mounted == {a.name for a in ATTACKS}
