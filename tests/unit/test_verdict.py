"""civic.verdict: the verification checklist, every reason code it can give, and its rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civic.clock import FixedClock
from civic.credentials import RESIDENCY_VCT, VACCINATION_VCT, YOUTH_ALLOWANCE_VCT, get_type
from civic.credentials.examples import RESIDENCY_EXAMPLE_BUSAN
from civic.encoding import b64url_decode, b64url_encode, json_dumps, json_loads
from civic.errors import ReasonCode, VerificationError
from civic.jose import PrivateKey, sign_jwt
from civic.logsync import verify_bundle
from civic.policy import Policy, parse_policy
from civic.qr import pack
from civic.sdjwt import parse_sd_jwt, sd_hash
from civic.statuslist import Status
from civic.verdict import (
    CHECK_NAMES,
    Outcome,
    Result,
    SnapshotTrust,
    StatusListCache,
    Verdict,
    status_uri_within,
    verify_presentation,
    verify_presentations,
    verify_vp_token,
)
from tests.unit.verifier_city import (
    CLIENT_ID,
    ISSUER,
    NOW,
    STATUS_BASE,
    STATUS_URI,
    City,
    DictStatus,
    NonceBook,
    StateTrust,
)

NONCE = "n-0S6_WzA2Mj-counter-nonce"

BAR = parse_policy(
    {
        "id": "bar-entry",
        "credentials": [
            {
                "id": "residency",
                "vct": RESIDENCY_VCT,
                "claims": [{"path": ["age_over_19"], "equals": True}],
            }
        ],
    }
)
YOUTH = parse_policy(
    {
        "id": "youth-allowance-counter",
        "credentials": [
            {
                "id": "residency",
                "vct": RESIDENCY_VCT,
                "claims": [
                    {"path": ["address", "region"], "equals": "Seoul"},
                    {"path": ["age_over_19"], "equals": True},
                ],
            },
            {
                "id": "youth_allowance",
                "vct": YOUTH_ALLOWANCE_VCT,
                "claims": [
                    {"path": ["allowance_status"], "equals": "active"},
                    {"path": ["eligibility", "age_19_to_34"], "equals": True},
                ],
            },
        ],
    }
)
YOUTH_REVEAL = {
    RESIDENCY_VCT: [("address", "region"), ("age_over_19",)],
    YOUTH_ALLOWANCE_VCT: [("allowance_status",), ("eligibility", "age_19_to_34")],
}


@pytest.fixture(scope="module")
def city() -> City:
    return City()


class Counter:
    """One verification against a city, with everything overridable."""

    def __init__(self, city: City) -> None:
        self.city = city
        self.trust = StateTrust(city.state)
        self.status = DictStatus({STATUS_URI: city.status_token()})
        self.nonces = NonceBook()
        self.status_cache: StatusListCache | None = None

    def verify(
        self,
        text: str,
        policy: Policy = BAR,
        *,
        nonce: str = NONCE,
        audience: str = CLIENT_ID,
        now: int = NOW,
        consume: Any = None,
    ) -> Verdict:
        verdict = verify_presentation(
            text,
            trust=self.trust,
            status=self.status,
            policy=policy,
            audience=audience,
            nonce=nonce,
            consume_nonce=consume or self.nonces,
            now=now,
            status_cache=self.status_cache,
        )
        # Every verdict of this module, valid or not: the verifier answers with this text.
        assert verdict.to_json_text() == json.dumps(
            verdict.to_json(), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )
        return verdict


def outcome_of(verdict: Verdict, name: str, credential: str | None = None) -> Outcome:
    found = [
        c
        for c in verdict.checks
        if c.name == name and (credential is None or c.credential == credential)
    ]
    assert found, name
    return found[0].outcome


def assert_invalid(verdict: Verdict, check: str, reason: ReasonCode) -> None:
    assert verdict.result is Result.INVALID, verdict.to_json()
    failed = [c for c in verdict.checks if c.outcome is Outcome.FAILED]
    assert [(c.name, c.reason) for c in failed] == [(check, reason)]
    assert verdict.reason is reason
    names = [c.name for c in verdict.checks]
    after = names[names.index(check) + 1 :]
    assert all(c.outcome is Outcome.SKIPPED for c in verdict.checks[len(names) - len(after) :])
    assert verdict.credentials == () or all(r.claims == () for r in verdict.credentials)


# --- the valid path -------------------------------------------------------------------------------


def test_valid_presentation_runs_every_check_in_order(city: City) -> None:
    counter = Counter(city)
    verdict = counter.verify(city.present(city.issue()))
    assert verdict.result is Result.VALID
    assert [c.name for c in verdict.checks] == list(CHECK_NAMES)
    assert all(c.outcome is Outcome.PASSED for c in verdict.checks)
    assert verdict.reason is None
    assert verdict.checkpoint_size == city.state.size
    (report,) = verdict.credentials
    assert (report.query, report.issuer, report.vct, report.kid) == (
        "residency",
        ISSUER,
        RESIDENCY_VCT,
        city.kid,
    )
    assert [(c.path, c.value) for c in report.claims] == [(("age_over_19",), True)]
    assert counter.status.fetched == [STATUS_URI]
    assert counter.nonces.used == {NONCE}


def test_verdict_json_shape_and_privacy(city: City) -> None:
    verdict = Counter(city).verify(city.present(city.issue(), [("age_over_19",), ("given_name",)]))
    document = verdict.to_json()
    assert document["result"] == "valid"
    assert document["policy"] == {"id": "bar-entry", "satisfied": True, "failed": []}
    assert document["checks"][0] == {
        "name": "trust",
        "outcome": "passed",
        "reason": None,
        "credential": None,
    }
    claims = document["credentials"][0]["claims"]
    # The wallet over-disclosed its given name: the verdict keeps only what the policy asked for.
    residency = get_type(RESIDENCY_VCT)
    label = {lang: residency.display_name("age_over_19", lang) for lang in ("en", "ko")}
    assert claims == [{"path": ["age_over_19"], "value": True, "label": label}]
    assert "서연" not in json_dumps(document)
    stored = json_dumps(verdict.to_json(include_claims=False))
    assert "claims" not in stored and "value" not in stored
    assert "True" not in repr(verdict.credentials)


def test_packed_qr_text_verifies_like_the_raw_presentation(city: City) -> None:
    verdict = Counter(city).verify(pack(city.present(city.issue())))
    assert verdict.result is Result.VALID


def test_two_credentials_in_a_vp_token(city: City) -> None:
    counter = Counter(city)
    vp_token = {
        "residency": [city.present(city.issue(RESIDENCY_VCT), YOUTH_REVEAL[RESIDENCY_VCT])],
        "youth_allowance": [
            city.present(city.issue(YOUTH_ALLOWANCE_VCT), YOUTH_REVEAL[YOUTH_ALLOWANCE_VCT])
        ],
    }
    verdict = verify_vp_token(
        vp_token,
        trust=counter.trust,
        status=counter.status,
        policy=YOUTH,
        audience=CLIENT_ID,
        nonce=NONCE,
        consume_nonce=counter.nonces,
        now=NOW,
    )
    assert verdict.result is Result.VALID, verdict.to_json()
    assert [r.query for r in verdict.credentials] == ["residency", "youth_allowance"]
    # One response, one nonce: spent once although two KB-JWTs carry it.
    assert counter.nonces.used == {NONCE}
    credentials = [c.credential for c in verdict.checks if c.name == "key_binding"]
    assert credentials == ["residency", "youth_allowance"]


def test_offline_presentations_are_matched_to_queries_by_vct(city: City) -> None:
    counter = Counter(city)
    texts = [
        city.present(city.issue(YOUTH_ALLOWANCE_VCT), YOUTH_REVEAL[YOUTH_ALLOWANCE_VCT]),
        city.present(city.issue(RESIDENCY_VCT), YOUTH_REVEAL[RESIDENCY_VCT]),
    ]
    verdict = verify_presentations(
        texts,
        trust=counter.trust,
        status=counter.status,
        policy=YOUTH,
        audience=CLIENT_ID,
        nonce=NONCE,
        consume_nonce=counter.nonces,
        now=NOW,
    )
    assert verdict.result is Result.VALID
    assert [r.query for r in verdict.credentials] == ["youth_allowance", "residency"]


def test_busan_resident_fails_the_youth_policy(city: City) -> None:
    counter = Counter(city)
    vp_token = {
        "residency": [
            city.present(
                city.issue(RESIDENCY_VCT, RESIDENCY_EXAMPLE_BUSAN), YOUTH_REVEAL[RESIDENCY_VCT]
            )
        ],
        "youth_allowance": [
            city.present(city.issue(YOUTH_ALLOWANCE_VCT), YOUTH_REVEAL[YOUTH_ALLOWANCE_VCT])
        ],
    }
    verdict = verify_vp_token(
        vp_token,
        trust=counter.trust,
        status=counter.status,
        policy=YOUTH,
        audience=CLIENT_ID,
        nonce=NONCE,
        consume_nonce=counter.nonces,
        now=NOW,
    )
    assert_invalid(verdict, "policy", ReasonCode.POLICY_NOT_SATISFIED)
    assert verdict.policy is not None
    assert verdict.policy.failed == ("residency:address.region equals",)


# --- trust ----------------------------------------------------------------------------------------


def test_stale_trust_is_undetermined_never_valid(city: City) -> None:
    counter = Counter(city)
    counter.trust = StateTrust(city.state, stale=True)
    verdict = counter.verify(city.present(city.issue()))
    assert verdict.result is Result.UNDETERMINED
    assert verdict.reason is ReasonCode.TRUST_STALE
    assert outcome_of(verdict, "trust") is Outcome.UNDETERMINED
    # Every other check still ran and passed: only freshness is in doubt.
    assert all(c.outcome is Outcome.PASSED for c in verdict.checks[1:])


def test_stale_trust_that_does_not_know_the_issuer_is_undetermined(city: City) -> None:
    counter = Counter(city)
    counter.trust = StateTrust(city.state, stale=True)
    newcomer = PrivateKey.generate()
    text = city.present(city.issue(signer=newcomer, kid="new-key"))
    verdict = counter.verify(text)
    assert verdict.result is Result.UNDETERMINED
    issuer_key = next(c for c in verdict.checks if c.name == "issuer_key")
    assert (issuer_key.outcome, issuer_key.reason) == (Outcome.UNDETERMINED, ReasonCode.KEY_UNKNOWN)
    # With fresh trust the same presentation is invalid.
    assert_invalid(Counter(city).verify(text), "issuer_key", ReasonCode.KEY_UNKNOWN)


def test_stale_trust_still_rejects_a_revoked_key() -> None:
    city = City()
    city.event("issuer.key.revoke", issuer=ISSUER, kid=city.kid, revoked_at=NOW - 100)
    counter = Counter(city)
    counter.trust = StateTrust(city.state, stale=True)
    verdict = counter.verify(city.present(city.issue()))
    assert verdict.result is Result.INVALID
    assert verdict.reason is ReasonCode.KEY_REVOKED


def test_snapshot_trust_freshness_follows_the_witnesses(city: City) -> None:
    snapshot, _ = city.snapshot(witness_time=NOW - 30)
    fresh = SnapshotTrust(snapshot, max_age=3600)
    assert fresh.checkpoint_size == len(city.entries)
    assert not fresh.is_stale(NOW)
    assert fresh.is_stale(NOW + 3600)
    counter = Counter(city)
    counter.trust = fresh  # type: ignore[assignment]
    assert counter.verify(city.present(city.issue())).result is Result.VALID
    counter.trust = SnapshotTrust(snapshot, max_age=10)  # type: ignore[assignment]
    verdict = counter.verify(
        city.present(city.issue(), nonce="another-nonce-000000"), nonce="another-nonce-000000"
    )
    assert verdict.result is Result.UNDETERMINED


def test_bundle_past_its_max_age_is_stale(city: City) -> None:
    bundle, config = city.bundle(witness_time=NOW - 7200)
    snapshot = verify_bundle(bundle, config, now=FixedClock(NOW), max_age=3600)
    assert snapshot.stale
    assert SnapshotTrust(snapshot, max_age=3600).is_stale(NOW)
    young = verify_bundle(bundle, config, now=FixedClock(NOW), max_age=86_400)
    assert not SnapshotTrust(young, max_age=86_400).is_stale(NOW)


# --- parse ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", ReasonCode.MALFORMED_SD_JWT),
        ("not an sd-jwt", ReasonCode.MALFORMED_SD_JWT),
        ("a.b.c~", ReasonCode.MALFORMED_BASE64),
        ("CW1:%%%%", ReasonCode.MALFORMED_QR_PAYLOAD),
        ("CW9:ABC", ReasonCode.QR_UNSUPPORTED_VERSION),
        ("x" * 300_000, ReasonCode.INPUT_TOO_LARGE),
    ],
)
def test_unparseable_input_is_invalid(city: City, text: str, reason: ReasonCode) -> None:
    verdict = Counter(city).verify(text)
    assert_invalid(verdict, "parse", reason)
    assert verdict.credentials[0].issuer is None


def test_a_credential_type_the_policy_does_not_ask_for(city: City) -> None:
    text = city.present(city.issue(VACCINATION_VCT), [("vaccination", "dn")])
    assert_invalid(Counter(city).verify(text), "parse", ReasonCode.DCQL_UNSATISFIED)


def test_missing_iss_is_malformed(city: City) -> None:
    text = _resign(city, city.present(city.issue()), drop="iss")
    assert_invalid(Counter(city).verify(text), "parse", ReasonCode.MALFORMED_SD_JWT)


# --- issuer key -----------------------------------------------------------------------------------


def test_unknown_issuer(city: City) -> None:
    text = city.present(city.issue(issuer="https://elsewhere.example"))
    assert_invalid(Counter(city).verify(text), "issuer_key", ReasonCode.ISSUER_UNKNOWN)


def test_missing_kid_is_an_unknown_key(city: City) -> None:
    text = _resign(city, city.present(city.issue()), header={"typ": "dc+sd-jwt"})
    assert_invalid(Counter(city).verify(text), "issuer_key", ReasonCode.KEY_UNKNOWN)


def test_key_not_accredited_for_the_vct() -> None:
    city = City()
    city.accredit_issuer("vax-only", city.agency, vct=[VACCINATION_VCT])
    text = city.present(city.issue(kid="vax-only"))
    assert_invalid(Counter(city).verify(text), "issuer_key", ReasonCode.KEY_NOT_ACCREDITED_FOR_VCT)


def test_key_outside_its_window() -> None:
    city = City()
    city.accredit_issuer("old", city.agency, not_before=NOW - 1000, not_after=NOW - 100)
    text = city.present(city.issue(kid="old"))
    assert_invalid(Counter(city).verify(text), "issuer_key", ReasonCode.KEY_OUTSIDE_WINDOW)


def test_retired_key_covers_only_credentials_issued_before_retirement() -> None:
    city = City()
    city.event("issuer.key.retire", issuer=ISSUER, kid=city.kid, retired_at=NOW - 1000)
    before = city.present(city.issue(issued_at=NOW - 2000))
    assert Counter(city).verify(before).result is Result.VALID
    after = city.present(city.issue(issued_at=NOW - 500))
    assert_invalid(Counter(city).verify(after), "issuer_key", ReasonCode.KEY_RETIRED)


def test_revoked_key() -> None:
    city = City()
    city.event("issuer.key.revoke", issuer=ISSUER, kid=city.kid, revoked_at=NOW - 100)
    text = city.present(city.issue(issued_at=NOW - 5000))
    assert_invalid(Counter(city).verify(text), "issuer_key", ReasonCode.KEY_REVOKED)


# --- signature, time, disclosures -----------------------------------------------------------------


def test_forged_signature(city: City) -> None:
    forger = PrivateKey.generate()
    text = city.present(city.issue(signer=forger))
    assert_invalid(Counter(city).verify(text), "signature", ReasonCode.SIGNATURE_INVALID)


def test_tampered_payload(city: City) -> None:
    text = city.present(city.issue())
    jws, rest = text.split("~", 1)
    header, payload, signature = jws.split(".")
    claims = json_loads(b64url_decode(payload))
    claims["exp"] += 1
    tampered = ".".join([header, b64url_encode(json_dumps(claims).encode()), signature])
    assert_invalid(
        Counter(city).verify(tampered + "~" + rest), "signature", ReasonCode.SIGNATURE_INVALID
    )


def test_wrong_typ(city: City) -> None:
    text = _resign(city, city.present(city.issue()), header={"typ": "JWT", "kid": city.kid})
    assert_invalid(Counter(city).verify(text), "signature", ReasonCode.TYP_MISMATCH)


def test_expired(city: City) -> None:
    text = city.present(city.issue(issued_at=NOW - 1000, lifetime=500))
    assert_invalid(Counter(city).verify(text), "time", ReasonCode.EXPIRED)


def test_not_yet_valid(city: City) -> None:
    text = city.present(city.issue(not_before=NOW + 3600))
    assert_invalid(Counter(city).verify(text), "time", ReasonCode.NOT_YET_VALID)


def test_duplicate_disclosure(city: City) -> None:
    text = city.present(city.issue())
    parts = text.split("~")
    duplicated = "~".join([parts[0], parts[1], parts[1], *parts[2:]])
    verdict = Counter(city).verify(duplicated)
    assert verdict.result is Result.INVALID
    assert verdict.reason is ReasonCode.DISCLOSURE_DUPLICATE


def test_unreferenced_disclosure(city: City) -> None:
    other = city.issue().split("~")[1]
    text = city.present(city.issue(), key_binding=False)
    verdict = Counter(city).verify(text + other + "~", policy=_no_kb(BAR))
    assert_invalid(verdict, "disclosures", ReasonCode.DISCLOSURE_UNREFERENCED)


# --- key binding ----------------------------------------------------------------------------------


def test_missing_kb_jwt(city: City) -> None:
    text = city.present(city.issue(), key_binding=False)
    assert_invalid(Counter(city).verify(text), "key_binding", ReasonCode.KB_JWT_MISSING)


def test_policy_without_key_binding_skips_it(city: City) -> None:
    text = city.present(city.issue(), key_binding=False)
    verdict = Counter(city).verify(text, policy=_no_kb(BAR))
    assert verdict.result is Result.VALID
    assert outcome_of(verdict, "key_binding") is Outcome.SKIPPED


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"audience": "someone.else.example"}, ReasonCode.KB_JWT_AUD_MISMATCH),
        ({"nonce": "a-different-nonce-000"}, ReasonCode.KB_JWT_NONCE_MISMATCH),
        ({"at": NOW - 3600}, ReasonCode.KB_JWT_IAT_STALE),
        ({"at": NOW + 3600}, ReasonCode.KB_JWT_IAT_IN_FUTURE),
        ({"holder": PrivateKey.generate()}, ReasonCode.KB_JWT_SIGNATURE_INVALID),
    ],
)
def test_bad_key_binding(city: City, change: dict[str, Any], reason: ReasonCode) -> None:
    counter = Counter(city)
    verdict = counter.verify(city.present(city.issue(), **change))
    assert_invalid(verdict, "key_binding", reason)
    assert counter.nonces.used == set()  # a broken presentation never burns the nonce


def test_replayed_presentation(city: City) -> None:
    counter = Counter(city)
    text = city.present(city.issue())
    assert counter.verify(text).result is Result.VALID
    assert_invalid(counter.verify(text), "key_binding", ReasonCode.KB_JWT_NONCE_REUSED)


def test_a_nonce_the_verifier_never_issued(city: City) -> None:
    def unknown(nonce: str) -> bool:
        raise VerificationError(ReasonCode.NONCE_UNKNOWN, "not issued here")

    verdict = Counter(city).verify(city.present(city.issue()), consume=unknown)
    assert_invalid(verdict, "key_binding", ReasonCode.NONCE_UNKNOWN)


def test_no_cnf_key() -> None:
    city = City()
    text = city.present(city.issue())
    assert_invalid(
        Counter(city).verify(_resign(city, text, drop="cnf")), "key_binding", ReasonCode.CNF_MISSING
    )


# --- status ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (Status.INVALID, ReasonCode.STATUS_INVALID),
        (Status.SUSPENDED, ReasonCode.STATUS_SUSPENDED),
        (Status.APPLICATION_SPECIFIC, ReasonCode.STATUS_VALUE_UNKNOWN),
    ],
)
def test_revoked_or_suspended(value: Status, reason: ReasonCode) -> None:
    city = City()
    city.status_lists[STATUS_URI].set(9, int(value))
    counter = Counter(city)
    assert_invalid(counter.verify(city.present(city.issue(status_index=9))), "status", reason)
    assert (
        counter.verify(
            city.present(city.issue(status_index=8), nonce="n2-0000000000000000"),
            nonce="n2-0000000000000000",
        ).result
        is Result.VALID
    )


def test_status_index_outside_the_list(city: City) -> None:
    text = city.present(city.issue(status_index=10_000))
    assert_invalid(Counter(city).verify(text), "status", ReasonCode.STATUS_INDEX_OUT_OF_RANGE)


def test_unreachable_status_list_is_undetermined(city: City) -> None:
    counter = Counter(city)
    counter.status = DictStatus({})
    verdict = counter.verify(city.present(city.issue()))
    assert verdict.result is Result.UNDETERMINED
    assert verdict.reason is ReasonCode.STATUS_LIST_UNAVAILABLE
    assert outcome_of(verdict, "schema") is Outcome.PASSED
    assert outcome_of(verdict, "policy") is Outcome.PASSED


def test_policy_may_accept_an_unreachable_status_list(city: City) -> None:
    counter = Counter(city)
    counter.status = DictStatus({})
    accepting = parse_policy({**BAR.to_json(), "status_unavailable": "accept"})
    verdict = counter.verify(city.present(city.issue()), policy=accepting)
    assert verdict.result is Result.VALID
    status = next(c for c in verdict.checks if c.name == "status")
    assert (status.outcome, status.reason) == (Outcome.SKIPPED, ReasonCode.STATUS_LIST_UNAVAILABLE)


def test_expired_status_list_is_undetermined(city: City) -> None:
    counter = Counter(city)
    counter.status = DictStatus(
        {STATUS_URI: city.status_token(issued_at=NOW - 7200, lifetime=3600)}
    )
    verdict = counter.verify(city.present(city.issue()))
    assert verdict.result is Result.UNDETERMINED
    assert verdict.reason is ReasonCode.STATUS_LIST_EXPIRED


def test_status_list_signed_by_another_key_is_never_trusted(city: City) -> None:
    counter = Counter(city)
    counter.status = DictStatus({STATUS_URI: city.status_token(signer=PrivateKey.generate())})
    verdict = counter.verify(city.present(city.issue()))
    assert verdict.result is Result.UNDETERMINED
    assert verdict.reason is ReasonCode.STATUS_LIST_SIGNATURE_INVALID


def test_status_list_for_another_uri(city: City) -> None:
    counter = Counter(city)
    counter.status = DictStatus({STATUS_URI: city.status_token(subject=STATUS_BASE + "/2")})
    verdict = counter.verify(city.present(city.issue()))
    assert verdict.result is Result.UNDETERMINED
    assert verdict.reason is ReasonCode.STATUS_LIST_SUBJECT_MISMATCH


def test_status_uri_outside_the_accredited_base_is_not_fetched(city: City) -> None:
    counter = Counter(city)
    text = city.present(city.issue(status_uri="https://tracker.example/status/1"))
    assert_invalid(counter.verify(text), "status", ReasonCode.STATUS_URI_NOT_ACCREDITED)
    assert counter.status.fetched == []


def test_missing_status_claim(city: City) -> None:
    text = city.present(city.issue(status_index=None))
    assert_invalid(Counter(city).verify(text), "status", ReasonCode.STATUS_CLAIM_MISSING)
    lenient = parse_policy({**BAR.to_json(), "require_status": False})
    text = city.present(city.issue(status_index=None), nonce="n3-0000000000000000")
    verdict = Counter(city).verify(text, policy=lenient, nonce="n3-0000000000000000")
    assert verdict.result is Result.VALID
    assert outcome_of(verdict, "status") is Outcome.SKIPPED


def test_malformed_status_claim(city: City) -> None:
    text = _resign(city, city.present(city.issue()), set_claims={"status": {"status_list": 1}})
    assert_invalid(Counter(city).verify(text), "status", ReasonCode.STATUS_CLAIM_MALFORMED)


@pytest.mark.parametrize(
    ("uri", "inside"),
    [
        (STATUS_BASE, True),
        (STATUS_BASE + "/1", True),
        (STATUS_BASE + "/a/b?x=1", True),
        (STATUS_BASE + "-evil/1", False),
        (STATUS_BASE + "/../admin", False),
        (STATUS_BASE + "/./1", False),
        (STATUS_BASE + "/%2e%2e/admin", False),
        (STATUS_BASE + "/.%2E/admin", False),
        (STATUS_BASE + "/..%2fadmin", False),
        (STATUS_BASE + "/..\\admin", False),
        (STATUS_BASE + "/%2e/1", False),
        (STATUS_BASE + "/a%2eb/1", True),
        ("https://mapo.seoul.example/other", False),
    ],
)
def test_status_uri_within(uri: str, inside: bool) -> None:
    assert status_uri_within(uri, STATUS_BASE) is inside
    assert status_uri_within(uri, STATUS_BASE + "/") is (inside and uri != STATUS_BASE)


# --- schema and policy ----------------------------------------------------------------------------


def test_schema_violation(city: City) -> None:
    claims = {**city_claims(), "age_over_19": "yes"}
    text = city.present(city.issue(RESIDENCY_VCT, claims))
    assert_invalid(Counter(city).verify(text), "schema", ReasonCode.SCHEMA_INVALID)


def test_policy_not_satisfied(city: City) -> None:
    claims = {**city_claims(), "age_over_19": False}
    text = city.present(city.issue(RESIDENCY_VCT, claims))
    verdict = Counter(city).verify(text)
    assert_invalid(verdict, "policy", ReasonCode.POLICY_NOT_SATISFIED)
    assert verdict.credentials[0].claims == ()  # an invalid verdict reports no claim values


def test_requested_claim_not_disclosed(city: City) -> None:
    text = city.present(city.issue(), [("given_name",)])
    assert_invalid(Counter(city).verify(text), "policy", ReasonCode.CLAIM_MISSING)


# --- vp_token structure ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vp_token", "reason"),
    [
        ("a string", ReasonCode.MALFORMED_VP_TOKEN),
        ({"residency": "not an array"}, ReasonCode.MALFORMED_VP_TOKEN),
        ({"residency": []}, ReasonCode.MALFORMED_VP_TOKEN),
        ({"residency": ["a~", "b~"]}, ReasonCode.MALFORMED_VP_TOKEN),
        ({"residency": [1]}, ReasonCode.MALFORMED_VP_TOKEN),
        ({"residency": ["a~"], "other": ["b~"]}, ReasonCode.MALFORMED_VP_TOKEN),
        ({}, ReasonCode.DCQL_UNSATISFIED),
    ],
)
def test_malformed_vp_token(city: City, vp_token: Any, reason: ReasonCode) -> None:
    counter = Counter(city)
    verdict = verify_vp_token(
        vp_token,
        trust=counter.trust,
        status=counter.status,
        policy=BAR,
        audience=CLIENT_ID,
        nonce=NONCE,
        consume_nonce=counter.nonces,
        now=NOW,
    )
    assert verdict.result is Result.INVALID
    assert [(c.name, c.outcome, c.reason) for c in verdict.checks] == [
        ("trust", Outcome.PASSED, None),
        ("presentations", Outcome.FAILED, reason),
        ("policy", Outcome.SKIPPED, None),
    ]


def test_wrong_number_of_offline_presentations(city: City) -> None:
    counter = Counter(city)
    text = city.present(city.issue(), YOUTH_REVEAL[RESIDENCY_VCT])
    verdict = verify_presentations(
        [text],
        trust=counter.trust,
        status=counter.status,
        policy=YOUTH,
        audience=CLIENT_ID,
        nonce=NONCE,
        consume_nonce=counter.nonces,
        now=NOW,
    )
    assert verdict.result is Result.INVALID
    assert verdict.reason is ReasonCode.DCQL_UNSATISFIED


def test_two_presentations_of_one_type_offline(city: City) -> None:
    counter = Counter(city)
    text = city.present(city.issue(), YOUTH_REVEAL[RESIDENCY_VCT])
    verdict = verify_presentations(
        [text, text],
        trust=counter.trust,
        status=counter.status,
        policy=YOUTH,
        audience=CLIENT_ID,
        nonce=NONCE,
        consume_nonce=counter.nonces,
        now=NOW,
    )
    assert verdict.result is Result.INVALID
    second_parse = [c for c in verdict.checks if c.name == "parse"][1]
    assert (second_parse.outcome, second_parse.reason) == (
        Outcome.FAILED,
        ReasonCode.DCQL_UNSATISFIED,
    )


# --- verified status lists, cached ---------------------------------------------------------------


def test_status_cache_reuses_a_token_until_it_expires(city: City) -> None:
    cache = StatusListCache()
    token = city.status_token(issued_at=NOW - 60, lifetime=3600)
    key = city.agency.public_key
    first = cache.verify(token, key=key, expected_uri=STATUS_URI, now=NOW, skew=60)
    assert cache.verify(token, key=key, expected_uri=STATUS_URI, now=NOW + 600, skew=60) is first
    with pytest.raises(VerificationError) as caught:
        cache.verify(token, key=key, expected_uri=STATUS_URI, now=NOW - 60 + 3600 + 60, skew=60)
    assert caught.value.reason is ReasonCode.STATUS_LIST_EXPIRED


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"key": "other"}, ReasonCode.STATUS_LIST_SIGNATURE_INVALID),
        ({"expected_uri": STATUS_BASE + "/2"}, ReasonCode.STATUS_LIST_SUBJECT_MISMATCH),
        # Earlier than it was verified at: the token was issued "in the future" then.
        ({"now": NOW - 3600}, ReasonCode.IAT_IN_FUTURE),
        ({"skew": 0, "now": NOW - 61}, ReasonCode.IAT_IN_FUTURE),
        ({"token": "forged"}, ReasonCode.STATUS_LIST_SIGNATURE_INVALID),
    ],
)
def test_status_cache_reuses_nothing_its_verification_did_not_cover(
    city: City, change: dict[str, Any], reason: ReasonCode
) -> None:
    cache = StatusListCache()
    token = city.status_token(issued_at=NOW - 60)
    arguments: dict[str, Any] = {
        "key": city.agency.public_key,
        "expected_uri": STATUS_URI,
        "now": NOW,
        "skew": 60,
    }
    cache.verify(token, **arguments)
    if change.get("key") == "other":
        change = {"key": PrivateKey.generate().public_key}
    if change.get("token") == "forged":
        header, payload, signature = token.split(".")
        forged = b64url_encode(bytes(64 - 1) + b64url_decode(signature)[-1:])
        token, change = f"{header}.{payload}.{forged}", {}
    with pytest.raises(VerificationError) as caught:
        cache.verify(token, **{**arguments, **change})
    assert caught.value.reason is reason


def test_status_cache_keeps_at_most_its_size(city: City) -> None:
    cache = StatusListCache(max_entries=2)
    tokens = [city.status_token(issued_at=NOW - 60 - n) for n in range(3)]
    key = city.agency.public_key

    def verify(token: str) -> object:
        return cache.verify(token, key=key, expected_uri=STATUS_URI, now=NOW, skew=60)

    first = [verify(token) for token in tokens]
    assert verify(tokens[2]) is first[2]
    assert verify(tokens[1]) is first[1]
    assert verify(tokens[0]) is not first[0]  # the oldest entry was dropped: verified afresh


def test_verdicts_with_a_status_cache_see_a_newly_published_revocation() -> None:
    city = City()
    counter = Counter(city)
    counter.status_cache = StatusListCache()
    for n in range(2):
        nonce = f"n-cache-{n}-0000000000"
        verdict = counter.verify(city.present(city.issue(), nonce=nonce), nonce=nonce)
        assert verdict.result is Result.VALID
    city.status_lists[STATUS_URI].set(7, int(Status.INVALID))
    counter.status.tokens[STATUS_URI] = city.status_token(issued_at=NOW - 30)
    nonce = "n-cache-revoked-0000000000"
    verdict = counter.verify(city.present(city.issue(), nonce=nonce), nonce=nonce)
    assert_invalid(verdict, "status", ReasonCode.STATUS_INVALID)


# --- the rules, as properties ---------------------------------------------------------------------


@given(
    stale=st.booleans(),
    reachable=st.booleans(),
    accept=st.booleans(),
    over_19=st.booleans(),
    revoked=st.booleans(),
    cached=st.booleans(),
)
def test_result_rules(
    *, stale: bool, reachable: bool, accept: bool, over_19: bool, revoked: bool, cached: bool
) -> None:
    city = _CITY
    counter = Counter(city)
    counter.status_cache = _STATUS_CACHE if cached else None
    counter.trust = StateTrust(city.state, stale=stale)
    if not reachable:
        counter.status = DictStatus({})
    policy = parse_policy(
        {**BAR.to_json(), "status_unavailable": "accept" if accept else "undetermined"}
    )
    claims = {**city_claims(), "age_over_19": over_19}
    text = city.present(city.issue(RESIDENCY_VCT, claims, status_index=1 if revoked else 2))
    verdict = counter.verify(text, policy=policy)
    outcomes = {c.outcome for c in verdict.checks}
    if not over_19 or (revoked and reachable):
        assert verdict.result is Result.INVALID
    elif stale or (not reachable and not accept):
        assert verdict.result is Result.UNDETERMINED
    else:
        assert verdict.result is Result.VALID
    assert (verdict.result is Result.INVALID) is (Outcome.FAILED in outcomes)
    if stale:
        assert verdict.result is not Result.VALID


_CITY = City()
_CITY.status_lists[STATUS_URI].set(1, int(Status.INVALID))
_STATUS_CACHE = StatusListCache()  # shared by the examples, as by a verifier's requests


# --- helpers --------------------------------------------------------------------------------------


def city_claims() -> dict[str, Any]:
    return get_type(RESIDENCY_VCT).example_claims()


def _no_kb(policy: Policy) -> Policy:
    return parse_policy({**policy.to_json(), "key_binding": False})


def _resign(
    city: City,
    presentation: str,
    *,
    drop: str | None = None,
    header: dict[str, Any] | None = None,
    set_claims: dict[str, Any] | None = None,
) -> str:
    """Re-sign the issuer JWT of a presentation with the agency key after editing it; the
    KB-JWT is recomputed over the new prefix so that only the edit is wrong."""
    parsed = parse_sd_jwt(presentation)
    payload = dict(parsed.payload)
    if drop is not None:
        payload.pop(drop)
    if set_claims:
        payload.update(set_claims)
    new_header = header if header is not None else {"typ": "dc+sd-jwt", "kid": city.kid}
    jws = sign_jwt(new_header, payload, city.agency)
    prefix = "~".join([jws, *(d.encoded for d in parsed.disclosures), ""])
    if parsed.kb_jwt is None:
        return prefix
    kb = json_loads(b64url_decode(parsed.kb_jwt.split(".")[1]))
    kb["sd_hash"] = sd_hash(prefix)
    return prefix + sign_jwt({"typ": "kb+jwt"}, kb, city.holder)
