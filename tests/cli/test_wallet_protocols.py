"""The wallet's decisions, as pure functions: offers, issuer metadata, what it accepts from an
issuer, which requests it answers, what it discloses, what it shows for consent, status.

The city (tests/unit/verifier_city.py) supplies real keys, a folded registry trust state,
credentials and status lists; nothing here touches the network.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civic.credentials import RESIDENCY_VCT, VACCINATION_VCT, YOUTH_ALLOWANCE_VCT
from civic.dcql import dcql_for_claims, parse_dcql
from civic.errors import CivicError, ReasonCode
from civic.jose import PrivateKey, sign_jwt
from civic.sdjwt import SD, issue_sd_jwt, parse_sd_jwt
from civic.trust import TrustState
from tests.unit.verifier_city import CLIENT_ID, ISSUER, NOW, STATUS_BASE, City
from wallet_cli.http import check_service_url
from wallet_cli.oid4vci import (
    PRE_AUTHORIZED_GRANT,
    TxCodeSpec,
    VerifiedCopy,
    check_batch,
    check_tx_code,
    metadata_url,
    parse_credential_offer,
    parse_issuer_metadata,
    parse_offer_uri,
    proof_jwt,
    require_accredited_issuer,
    token_endpoint_of,
    verify_issued,
)
from wallet_cli.oid4vp import (
    RequestReference,
    check_accreditation,
    check_disclosable,
    claim_label,
    consent_summary,
    holding,
    parse_challenge,
    parse_claim_list,
    parse_request_uri,
    plan_presentation,
    verify_request_object,
)
from wallet_cli.status import copy_status, summarize

ALLOWED = [
    {"vct": RESIDENCY_VCT, "claims": [["age_over_19"], ["address", "region"]]},
    {"vct": YOUTH_ALLOWANCE_VCT, "claims": [["allowance_status"], ["eligibility"]]},
]


def reason(excinfo: pytest.ExceptionInfo[CivicError]) -> ReasonCode:
    return excinfo.value.reason


@pytest.fixture
def city() -> City:
    city = City()
    city.accredit_verifier(ALLOWED)
    return city


def issued_to(city: City, key: PrivateKey, vct: str = RESIDENCY_VCT, **kwargs: Any) -> str:
    city.holder = key
    return city.issue(vct, **kwargs)


# --- offers -----------------------------------------------------------------------------------


OFFER = {
    "credential_issuer": "https://issuer.example",
    "credential_configuration_ids": ["residency"],
    "grants": {
        PRE_AUTHORIZED_GRANT: {
            "pre-authorized_code": "code-123",
            "tx_code": {"input_mode": "numeric", "length": 6, "description": "from the counter"},
        }
    },
}


def test_offer_uri_by_reference_and_by_value() -> None:
    url = "https://issuer.example/offers/abc"
    by_reference = parse_offer_uri(
        f"openid-credential-offer://?credential_offer_uri={quote(url, safe='')}"
    )
    assert (by_reference.offer_url, by_reference.offer) == (url, None)
    by_value = parse_offer_uri(
        "openid-credential-offer://?credential_offer=" + quote(json.dumps(OFFER), safe="")
    )
    assert by_value.offer == OFFER and by_value.offer_url is None


@pytest.mark.parametrize(
    "uri",
    [
        "https://issuer.example/?credential_offer_uri=https://x.example",
        "openid-credential-offer://?",
        "openid-credential-offer://?credential_offer_uri=http://evil.example/offer",
        "openid-credential-offer://?credential_offer_uri=https://a.example&credential_offer={}",
        "openid-credential-offer://?credential_offer_uri=https://a.example&credential_offer_uri=https://b.example",
        "openid-credential-offer://?credential_offer=[1]",
        "openid-credential-offer://?credential_offer={bad",
    ],
)
def test_bad_offer_uris_are_refused(uri: str) -> None:
    with pytest.raises(CivicError) as excinfo:
        parse_offer_uri(uri)
    assert reason(excinfo) in (ReasonCode.MALFORMED_INPUT, ReasonCode.MALFORMED_JSON)


def test_offer_document_and_tx_code() -> None:
    offer = parse_credential_offer(OFFER)
    assert offer.issuer == "https://issuer.example"
    assert offer.tx_code == TxCodeSpec("numeric", 6, "from the counter")
    assert "code-123" not in repr(offer)
    assert check_tx_code(offer.tx_code, " 012345 ") == "012345"
    for wrong in ("12345", "1234567", "12345a", "١٢٣٤٥٦", ""):
        with pytest.raises(CivicError):
            check_tx_code(offer.tx_code, wrong)
    assert check_tx_code(TxCodeSpec("text", None, None), "abc-1") == "abc-1"


@pytest.mark.parametrize(
    "change",
    [
        {"credential_issuer": "http://issuer.example"},
        {"credential_configuration_ids": []},
        {"credential_configuration_ids": ["a", "a"]},
        {"grants": {"authorization_code": {}}},
        {"grants": {PRE_AUTHORIZED_GRANT: {"pre-authorized_code": ""}}},
        {"grants": {PRE_AUTHORIZED_GRANT: {"pre-authorized_code": "c", "tx_code": {"length": 0}}}},
        {"grants": {PRE_AUTHORIZED_GRANT: {"pre-authorized_code": "c", "tx_code": "123"}}},
        {
            "grants": {
                PRE_AUTHORIZED_GRANT: {"pre-authorized_code": "c", "tx_code": {"input_mode": "x"}}
            }
        },
    ],
)
def test_bad_offer_documents_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(CivicError):
        parse_credential_offer(OFFER | change)


def test_service_urls_are_https_except_on_loopback() -> None:
    assert check_service_url("https://a.example/x", "u")
    for url in ("http://127.0.0.1:8000/x", "http://localhost/x", "http://[::1]:80/"):
        assert check_service_url(url, "u") == url
    for url in ("http://a.example/", "ftp://a.example", "https://u:p@a.example/", "https://a/#f"):
        with pytest.raises(CivicError):
            check_service_url(url, "u")


# --- issuer metadata --------------------------------------------------------------------------


METADATA = {
    "credential_issuer": "https://issuer.example",
    "credential_endpoint": "https://issuer.example/credential",
    "nonce_endpoint": "https://issuer.example/nonce",
    "batch_credential_issuance": {"batch_size": 4},
    "display": [{"name": "District office", "locale": "en"}, {"name": "구청", "locale": "ko"}],
    "credential_configurations_supported": {
        "residency": {
            "format": "dc+sd-jwt",
            "vct": RESIDENCY_VCT,
            "proof_types_supported": {
                "jwt": {"proof_signing_alg_values_supported": ["EdDSA", "ES256"]}
            },
        }
    },
}


def test_metadata_urls_put_the_well_known_before_the_path() -> None:
    assert (
        metadata_url("https://a.example", "/.well-known/openid-credential-issuer")
        == "https://a.example/.well-known/openid-credential-issuer"
    )
    assert (
        metadata_url("https://a.example/tenant/", "/.well-known/oauth-authorization-server")
        == "https://a.example/.well-known/oauth-authorization-server/tenant"
    )


def test_issuer_metadata() -> None:
    metadata = parse_issuer_metadata(
        METADATA, issuer="https://issuer.example", configuration_id="residency"
    )
    assert metadata.vct == RESIDENCY_VCT
    assert metadata.batch_size == 4
    assert metadata.names == ("District office", "구청")
    assert metadata.authorization_server == "https://issuer.example"
    with pytest.raises(CivicError) as excinfo:
        parse_issuer_metadata(
            METADATA, issuer="https://other.example", configuration_id="residency"
        )
    assert reason(excinfo) is ReasonCode.ISSUER_ERROR
    with pytest.raises(CivicError):
        parse_issuer_metadata(METADATA, issuer="https://issuer.example", configuration_id="nope")
    mdoc = json.loads(json.dumps(METADATA))
    mdoc["credential_configurations_supported"]["residency"]["format"] = "mso_mdoc"
    with pytest.raises(CivicError):
        parse_issuer_metadata(mdoc, issuer="https://issuer.example", configuration_id="residency")


def test_token_endpoint_from_authorization_server_metadata() -> None:
    document = {
        "issuer": "https://issuer.example",
        "token_endpoint": "https://issuer.example/token",
        "grant_types_supported": [PRE_AUTHORIZED_GRANT],
    }
    assert token_endpoint_of(document, "https://issuer.example") == "https://issuer.example/token"
    with pytest.raises(CivicError):
        token_endpoint_of(document, "https://other.example")
    with pytest.raises(CivicError):
        token_endpoint_of(
            document | {"grant_types_supported": ["authorization_code"]}, "https://issuer.example"
        )


# --- what the wallet accepts from an issuer -------------------------------------------------


def test_issuer_accreditation_is_checked_before_the_code(city: City) -> None:
    key = require_accredited_issuer(city.state, ISSUER, RESIDENCY_VCT, NOW)
    assert key.kid == city.kid
    with pytest.raises(CivicError) as excinfo:
        require_accredited_issuer(city.state, "https://unknown.example", RESIDENCY_VCT, NOW)
    assert reason(excinfo) is ReasonCode.ISSUER_UNKNOWN
    narrow = City()
    narrow.state = TrustState.genesis(narrow.config)
    narrow.accredit_issuer("k2", narrow.agency, vct=[VACCINATION_VCT])
    with pytest.raises(CivicError) as excinfo:
        require_accredited_issuer(narrow.state, ISSUER, RESIDENCY_VCT, NOW)
    assert reason(excinfo) is ReasonCode.KEY_NOT_ACCREDITED_FOR_VCT


def test_a_received_copy_is_verified_before_it_is_stored(city: City) -> None:
    key = PrivateKey.generate()
    text = issued_to(city, key)
    copy = verify_issued(
        text,
        issuer=ISSUER,
        vct=RESIDENCY_VCT,
        holder_thumbprints=[key.public_key.thumbprint()],
        state=city.state,
        now=NOW,
    )
    assert copy.holder_thumbprint == key.public_key.thumbprint()
    assert copy.subject_claims["address"]["region"] == "Seoul"
    assert "Seoul" not in repr(copy)


def _refusal(city: City, text: str, **overrides: Any) -> ReasonCode:
    arguments: dict[str, Any] = {
        "issuer": ISSUER,
        "vct": RESIDENCY_VCT,
        "holder_thumbprints": [city.holder.public_key.thumbprint()],
        "state": city.state,
        "now": NOW,
    } | overrides
    with pytest.raises(CivicError) as excinfo:
        verify_issued(text, **arguments)
    return reason(excinfo)


def test_what_a_wallet_refuses_to_store(city: City) -> None:
    mine = PrivateKey.generate()
    good = issued_to(city, mine)
    other = PrivateKey.generate()
    assert _refusal(
        city, issued_to(city, other), holder_thumbprints=[mine.public_key.thumbprint()]
    ) is (ReasonCode.HOLDER_KEY_MISMATCH)
    city.holder = mine
    assert _refusal(city, good, vct=VACCINATION_VCT) is ReasonCode.VCT_UNKNOWN
    assert _refusal(city, good, issuer="https://mapo.example") is ReasonCode.ISSUER_UNKNOWN
    # Signed by a key the registry never accredited, under the accredited kid.
    rogue = city.issue(RESIDENCY_VCT, signer=PrivateKey.generate())
    assert _refusal(city, rogue) is ReasonCode.SIGNATURE_INVALID
    # A kid the issuer does not have.
    assert _refusal(city, city.issue(RESIDENCY_VCT, kid="nope")) is ReasonCode.KEY_UNKNOWN
    # Expired on arrival.
    stale = city.issue(RESIDENCY_VCT, issued_at=NOW - 1000, lifetime=10)
    assert _refusal(city, stale) is ReasonCode.EXPIRED
    # A status list outside the issuer's accredited status base URL.
    elsewhere = city.issue(RESIDENCY_VCT, status_uri="https://tracker.example/status/1")
    assert _refusal(city, elsewhere) is ReasonCode.STATUS_URI_NOT_ACCREDITED
    # Claims that break the type's schema.
    bad = city.issue(RESIDENCY_VCT, {"given_name": 7})
    assert _refusal(city, bad) is ReasonCode.SCHEMA_INVALID
    # A presentation (with KB-JWT) is not an issued credential.
    presented = city.present(good)
    with pytest.raises(CivicError):
        verify_issued(
            presented,
            issuer=ISSUER,
            vct=RESIDENCY_VCT,
            holder_thumbprints=[mine.public_key.thumbprint()],
            state=city.state,
            now=NOW,
        )


def _copy(thumbprint: str, claims: dict[str, Any]) -> VerifiedCopy:
    return VerifiedCopy("x~", thumbprint, claims, NOW, None, NOW + 10)


def test_a_batch_has_distinct_keys_and_identical_claims() -> None:
    check_batch([_copy("a", {"x": 1}), _copy("b", {"x": 1})], 2)
    with pytest.raises(CivicError):
        check_batch([_copy("a", {"x": 1}), _copy("a", {"x": 1})], 2)
    with pytest.raises(CivicError):
        check_batch([_copy("a", {"x": 1}), _copy("b", {"x": 2})], 2)
    with pytest.raises(CivicError):
        check_batch([_copy("a", {}), _copy("b", {}), _copy("c", {})], 2)
    with pytest.raises(CivicError):
        check_batch([], 2)


def test_proof_jwt_has_no_iss_and_binds_the_key() -> None:
    key = PrivateKey.generate("ES256")
    token = proof_jwt(key, audience="https://issuer.example", nonce="n", now=NOW)
    from civic.jose import parse_jws

    jws = parse_jws(token)
    assert jws.header["typ"] == "openid4vci-proof+jwt" and jws.header["alg"] == "ES256"
    assert jws.header["jwk"] == key.public_key.to_jwk()
    assert jws.payload_json() == {"aud": "https://issuer.example", "iat": NOW, "nonce": "n"}


# --- requests ------------------------------------------------------------------------------


def request_object(city: City, **changes: Any) -> str:
    claims: dict[str, Any] = {
        "iss": CLIENT_ID,
        "aud": "https://self-issued.me/v2",
        "client_id": CLIENT_ID,
        "response_type": "vp_token",
        "response_mode": "direct_post",
        "response_uri": "https://counter.example/responses/1",
        "nonce": "nonce-0123456789",
        "state": "state-1",
        "dcql_query": dcql_for_claims("residency", RESIDENCY_VCT, [["age_over_19"]]).to_json(),
        "iat": NOW - 5,
        "exp": NOW + 300,
    }
    header: dict[str, Any] = {"typ": "oauth-authz-req+jwt", "kid": "v-1"}
    signer = changes.pop("signer", city.verifier_key)
    header.update(changes.pop("header", {}))
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return sign_jwt(header, claims, signer)


REFERENCE = RequestReference(CLIENT_ID, "https://counter.example/requests/1/object")


def test_request_uri() -> None:
    reference = parse_request_uri(
        "openid4vp://?client_id=c.example&request_uri=https%3A%2F%2Fc.example%2Fr%2F1"
    )
    assert reference == RequestReference("c.example", "https://c.example/r/1")
    for bad in (
        "https://c.example/?client_id=a&request_uri=https://c.example/r",
        "openid4vp://?client_id=a",
        "openid4vp://?client_id=a&request_uri=http://c.example/r",
        "openid4vp://?client_id=a&client_id=b&request_uri=https://c.example/r",
        "openid4vp://?client_id=a&request=eyJ",
        "openid4vp://?client_id=a&request_uri=https://c.example/r&request_uri_method=post",
    ):
        with pytest.raises(CivicError):
            parse_request_uri(bad)


def test_a_signed_request_from_an_accredited_verifier(city: City) -> None:
    request = verify_request_object(request_object(city), REFERENCE, city.state, now=NOW)
    assert request.client_id == CLIENT_ID
    assert request.verifier.purpose == "Counter at the Mapo-gu district office"
    assert request.nonce == "nonce-0123456789" and request.state == "state-1"
    check_accreditation(city.state, request, now=NOW)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"signer": PrivateKey.generate()}, ReasonCode.SIGNATURE_INVALID),
        ({"header": {"kid": "v-0"}}, ReasonCode.KEY_UNKNOWN),
        ({"header": {"typ": "JWT"}}, ReasonCode.TYP_MISMATCH),
        ({"client_id": "other.example"}, ReasonCode.MALFORMED_INPUT),
        ({"iss": "other.example"}, ReasonCode.MALFORMED_INPUT),
        ({"aud": "https://other-wallet.example"}, ReasonCode.MALFORMED_INPUT),
        ({"exp": NOW - 61}, ReasonCode.REQUEST_EXPIRED),
        ({"exp": None}, ReasonCode.MALFORMED_INPUT),
        ({"iat": NOW + 3600}, ReasonCode.IAT_IN_FUTURE),
        ({"response_mode": "direct_post.jwt"}, ReasonCode.MALFORMED_INPUT),
        ({"response_uri": "http://counter.example/r"}, ReasonCode.MALFORMED_INPUT),
        ({"nonce": None}, ReasonCode.MALFORMED_INPUT),
        ({"dcql_query": {"credentials": []}}, ReasonCode.MALFORMED_DCQL),
        ({"presentation_definition": {}}, ReasonCode.MALFORMED_INPUT),
    ],
)
def test_requests_the_wallet_refuses(
    city: City, changes: dict[str, Any], expected: ReasonCode
) -> None:
    with pytest.raises(CivicError) as excinfo:
        verify_request_object(request_object(city, **changes), REFERENCE, city.state, now=NOW)
    assert reason(excinfo) is expected


def test_unknown_and_revoked_verifiers(city: City) -> None:
    token = request_object(city)
    with pytest.raises(CivicError) as excinfo:
        verify_request_object(
            token, RequestReference("nobody.example", REFERENCE.request_uri), city.state, now=NOW
        )
    assert reason(excinfo) is ReasonCode.VERIFIER_UNKNOWN
    city.event("verifier.revoke", verifier=CLIENT_ID, revoked_at=NOW - 1)
    with pytest.raises(CivicError) as excinfo:
        verify_request_object(token, REFERENCE, city.state, now=NOW)
    assert reason(excinfo) is ReasonCode.VERIFIER_REVOKED


def test_claims_beyond_the_accreditation_are_refused_with_an_explanation(city: City) -> None:
    nosy = dcql_for_claims(
        "residency", RESIDENCY_VCT, [["age_over_19"], ["birth_date"], ["address", "locality"]]
    )
    request = verify_request_object(
        request_object(city, dcql_query=nosy.to_json()), REFERENCE, city.state, now=NOW
    )
    with pytest.raises(CivicError) as excinfo:
        check_accreditation(city.state, request, now=NOW)
    assert reason(excinfo) is ReasonCode.VERIFIER_CLAIMS_NOT_ACCREDITED
    detail = excinfo.value.detail
    assert "birth_date" in detail and "address.locality" in detail
    assert "age_over_19, address.region" in detail  # what it may ask for
    vaccination = dcql_for_claims("v", VACCINATION_VCT, [["vaccination", "dn"]])
    request = verify_request_object(
        request_object(city, dcql_query=vaccination.to_json()), REFERENCE, city.state, now=NOW
    )
    with pytest.raises(CivicError) as excinfo:
        check_accreditation(city.state, request, now=NOW)
    assert "Vaccination certificate" in excinfo.value.detail


# --- what to disclose -----------------------------------------------------------------------


def test_the_plan_takes_the_credential_needing_the_fewest_disclosures(city: City) -> None:
    holder = PrivateKey.generate()
    # Two residency credentials: one discloses address.region through its parent (2
    # disclosures), the other has a plain address object with a disclosable region (1).
    nested = issued_to(city, holder)
    flat = issue_sd_jwt(
        {
            "iss": ISSUER,
            "vct": RESIDENCY_VCT,
            "address": {SD("region"): "Seoul", SD("locality"): "Mapo-gu"},
            SD("age_over_19"): True,
        },
        city.agency,
        header={"typ": "dc+sd-jwt", "kid": city.kid},
        holder_key=holder.public_key,
    )
    holdings = [
        holding("nested01", RESIDENCY_VCT, nested),
        holding("flat0001", RESIDENCY_VCT, flat),
    ]
    query = dcql_for_claims("residency", RESIDENCY_VCT, [["address", "region"]])
    (planned,) = plan_presentation(query, holdings)
    assert (planned.credential_id, planned.disclosures) == ("flat0001", 1)
    assert planned.claim_paths == (("address", "region"),)
    (planned,) = plan_presentation(query, holdings[:1])
    assert (planned.credential_id, planned.disclosures) == ("nested01", 2)
    with pytest.raises(CivicError) as excinfo:
        plan_presentation(dcql_for_claims("v", VACCINATION_VCT, [["vaccination"]]), holdings)
    assert reason(excinfo) is ReasonCode.DCQL_UNSATISFIED


def test_plan_with_two_credential_queries_and_claim_sets(city: City) -> None:
    holder = PrivateKey.generate()
    residency = holding("res00001", RESIDENCY_VCT, issued_to(city, holder))
    youth = holding("you00001", YOUTH_ALLOWANCE_VCT, issued_to(city, holder, YOUTH_ALLOWANCE_VCT))
    query = parse_dcql(
        {
            "credentials": [
                {
                    "id": "residency",
                    "format": "dc+sd-jwt",
                    "meta": {"vct_values": [RESIDENCY_VCT]},
                    "claims": [
                        {"id": "dob", "path": ["birth_date"]},
                        {"id": "adult", "path": ["age_over_19"], "values": [True]},
                    ],
                    "claim_sets": [["adult"], ["dob"]],
                },
                {
                    "id": "youth",
                    "format": "dc+sd-jwt",
                    "meta": {"vct_values": [YOUTH_ALLOWANCE_VCT]},
                    "claims": [{"path": ["allowance_status"]}],
                },
            ]
        }
    )
    plan = plan_presentation(query, [residency, youth])
    assert [(p.query_id, p.credential_id, p.claim_paths) for p in plan] == [
        ("residency", "res00001", (("age_over_19",),)),
        ("youth", "you00001", (("allowance_status",),)),
    ]


def test_consent_summary_names_each_claim_and_value(city: City) -> None:
    holder = PrivateKey.generate()
    held = holding("res00001", RESIDENCY_VCT, issued_to(city, holder))
    query = dcql_for_claims("residency", RESIDENCY_VCT, [["age_over_19"], ["address", "region"]])
    plan = plan_presentation(query, [held])
    for lang, expected in (
        ("en", [("Aged 19 or over", "Yes"), ("Address › Metropolitan city or province", "Seoul")]),
        ("ko", [("만 19세 이상", "예"), ("주소 › 시·도", "서울특별시")]),
    ):
        summary = consent_summary(
            verifier=CLIENT_ID,
            purpose="Counter",
            accredited=True,
            response_uri="https://counter.example/responses/1",
            plan=plan,
            holdings={"res00001": held},
            type_names={"res00001": "Residency certificate"},
            issuer_names={"res00001": "Mapo-gu office"},
            trust_size=5,
            lang=lang,
        )
        (item,) = summary.items
        assert [(c.name, c.value) for c in item.claims] == expected
        assert summary.response_host == "counter.example"
        assert "Seoul" not in repr(item.claims)
    document = summary.to_json()
    assert document["credentials"][0]["claims"][0]["path"] == ["age_over_19"]


def test_claim_labels_fall_back_to_the_path() -> None:
    assert claim_label(RESIDENCY_VCT, ("address", "locality"), "en") == (
        "Address › City, county or district"
    )
    assert claim_label(RESIDENCY_VCT, ("nickname",), "en") == "nickname"
    assert claim_label("urn:other", ("a", 0, "b"), "ko") == "a.0.b"


# --- offline QR inputs ----------------------------------------------------------------------


def test_claim_lists() -> None:
    assert parse_claim_list("age_over_19, address.region,age_over_19") == (
        ("age_over_19",),
        ("address", "region"),
    )
    assert parse_claim_list("nationalities.0") == (("nationalities", 0),)
    for bad in ("", " , ", "a..b", ".a"):
        with pytest.raises(CivicError):
            parse_claim_list(bad)


@settings(max_examples=50)
@given(st.lists(st.from_regex(r"[a-z_]{1,8}(\.[a-z_]{1,8}){0,2}", fullmatch=True), min_size=1))
def test_claim_lists_round_trip(paths: list[str]) -> None:
    parsed = parse_claim_list(",".join(paths))
    assert [".".join(map(str, p)) for p in parsed] == list(dict.fromkeys(paths))


def test_only_claims_the_credential_has_can_be_chosen(city: City) -> None:
    held = holding("res00001", RESIDENCY_VCT, issued_to(city, PrivateKey.generate()))
    check_disclosable(held, [("address", "region"), ("age_over_19",)])
    with pytest.raises(CivicError) as excinfo:
        check_disclosable(held, [("vaccination",)])
    assert reason(excinfo) is ReasonCode.CLAIM_MISSING
    with pytest.raises(CivicError) as excinfo:
        check_disclosable(held, [("iss",)])
    assert reason(excinfo) is ReasonCode.CLAIM_NOT_DISCLOSABLE


def test_challenges() -> None:
    assert parse_challenge('{"aud":"c.example","nonce":"n-1"}') == ("c.example", "n-1")
    for bad in ('{"aud":"c.example"}', "[]", '{"aud":"","nonce":"n"}', "nope"):
        with pytest.raises(CivicError):
            parse_challenge(bad)


# --- status ---------------------------------------------------------------------------------


def test_status_of_each_copy(city: City) -> None:
    from civic.statuslist import Status

    tokens: dict[str, str] = {}
    fetch = tokens.__getitem__
    text = issued_to(city, PrivateKey.generate(), status_index=7)
    tokens[f"{STATUS_BASE}/1"] = city.status_token()
    assert copy_status(text, city.state, fetch, now=NOW).value == "valid"
    city.status_lists[city.status_uri].set(7, Status.SUSPENDED)
    tokens[f"{STATUS_BASE}/1"] = city.status_token()
    assert copy_status(text, city.state, fetch, now=NOW).value == "suspended"
    city.status_lists[city.status_uri].set(7, Status.INVALID)
    tokens[f"{STATUS_BASE}/1"] = city.status_token()
    revoked = copy_status(text, city.state, fetch, now=NOW)
    assert (revoked.value, revoked.reason) == ("invalid", "status_invalid")
    # A list signed by another key, or unreachable: unknown, not valid.
    tokens[f"{STATUS_BASE}/1"] = city.status_token(signer=PrivateKey.generate())
    assert copy_status(text, city.state, fetch, now=NOW).value == "unknown"

    def unreachable(uri: str) -> str:
        from civic.errors import VerificationError

        raise VerificationError(ReasonCode.STATUS_LIST_UNAVAILABLE, "down")

    assert copy_status(text, city.state, unreachable, now=NOW).reason == "status_list_unavailable"
    # The registry revokes the issuer key: every copy is invalid, whatever the list says.
    city.event("issuer.key.revoke", issuer=ISSUER, kid=city.kid, revoked_at=NOW - 1)
    assert copy_status(text, city.state, unreachable, now=NOW).reason == "key_revoked"
    assert summarize([copy_status(text, city.state, unreachable, now=NOW)]) == "invalid"
    assert summarize([]) == "valid"


def test_a_copy_without_status_is_valid_with_a_note(city: City) -> None:
    text = issued_to(city, PrivateKey.generate(), status_index=None)
    status = copy_status(text, city.state, lambda uri: "", now=NOW)
    assert (status.value, status.reason) == ("valid", "no status list")
    assert parse_sd_jwt(text).payload.get("status") is None
