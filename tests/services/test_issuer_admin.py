"""The issuer's admin API and status lists, over real HTTP on 127.0.0.1.

API keys (hashed at rest, scoped to vcts; 401/403), offer validation against the type schemas
and the youth allowance rules, the credential listing without claims, and revoke / suspend /
reinstate showing in the very next Status List Token.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from civic.clock import FixedClock
from civic.credentials import RESIDENCY_VCT, VACCINATION_VCT, YOUTH_ALLOWANCE_VCT, get_type
from civic.jose import PrivateKey, parse_jws, sign_jwt
from civic.statuslist import Status, verify_status_list_token
from issuer import db
from issuer.admin import revoke_api_key
from issuer.oid4vci import PRE_AUTHORIZED_GRANT, PROOF_TYP
from issuer.statuslists import MIN_LIST_SIZE
from issuer.testing import LocalIssuer

START = 1_800_000_000
EVIDENCE = {"birth_date": "1998-03-15", "application_date": "2025-04-14"}


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIssuer]:
    with LocalIssuer(tmp_path_factory.mktemp("issuer"), now=FixedClock(START)) as local:
        yield local


@pytest.fixture
def http(issuer: LocalIssuer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=issuer.url, timeout=30) as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def offer_body(vct: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"vct": vct, "claims": get_type(vct).example_claims()}
    if vct == YOUTH_ALLOWANCE_VCT:
        body["evidence"] = dict(EVIDENCE)
    body.update(changes)
    return body


def issue(
    http: httpx.Client, issuer: LocalIssuer, vct: str = RESIDENCY_VCT, copies: int = 1
) -> list[dict[str, Any]]:
    """Run a whole issuance; returns the admin records of the new credentials."""
    offer = http.post("/admin/offers", json=offer_body(vct), headers=auth(issuer.admin_key))
    assert offer.status_code == 201, offer.text
    created = offer.json()
    document = http.get(created["credential_offer_url"]).json()
    code = document["grants"][PRE_AUTHORIZED_GRANT]["pre-authorized_code"]
    token = http.post(
        "/token",
        data={
            "grant_type": PRE_AUTHORIZED_GRANT,
            "pre-authorized_code": code,
            "tx_code": created["tx_code"],
        },
    ).json()["access_token"]
    nonce = http.post("/nonce").json()["c_nonce"]
    keys = [PrivateKey.generate() for _ in range(copies)]
    proofs = [
        sign_jwt(
            {"typ": PROOF_TYP, "jwk": k.public_key.to_jwk()},
            {"aud": issuer.url, "iat": issuer.now(), "nonce": nonce},
            k,
        )
        for k in keys
    ]
    response = http.post(
        "/credential",
        json={
            "credential_configuration_id": document["credential_configuration_ids"][0],
            "proofs": {"jwt": proofs},
        },
        headers=auth(token),
    )
    assert response.status_code == 200, response.text
    thumbprints = {k.public_key.thumbprint() for k in keys}
    listing = http.get(
        "/admin/credentials", params={"limit": 500}, headers=auth(issuer.admin_key)
    ).json()
    return [c for c in listing["credentials"] if c["holder_key_thumbprint"] in thumbprints]


def status_of(http: httpx.Client, issuer: LocalIssuer, record: dict[str, Any]) -> int:
    uri = record["status_list"]["uri"]
    response = http.get(urlsplit(uri).path)
    assert response.status_code == 200
    verified = verify_status_list_token(
        response.text, key=issuer.signer.public_key, expected_uri=uri, now=issuer.now
    )
    return verified.status_list.get(record["status_list"]["idx"])


# --- authentication and scope --------------------------------------------------------------


def test_missing_or_wrong_api_keys_get_401(http: httpx.Client, issuer: LocalIssuer) -> None:
    key_id = issuer.admin_key.split(".")[0]
    for headers in (
        {},
        auth("nonsense"),
        auth(f"{key_id}.wrong-secret"),
        auth(issuer.admin_key + "x"),
        {"Authorization": f"Basic {issuer.admin_key}"},
    ):
        response = http.post("/admin/offers", json=offer_body(RESIDENCY_VCT), headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert http.get("/admin/credentials", headers=headers).status_code == 401


def test_a_revoked_api_key_stops_working(http: httpx.Client, issuer: LocalIssuer) -> None:
    key = issuer.api_key([RESIDENCY_VCT])
    assert http.get("/admin/credentials", headers=auth(key)).status_code == 200
    assert revoke_api_key(issuer.context.engine, key.split(".")[0], now=issuer.now())
    assert http.get("/admin/credentials", headers=auth(key)).status_code == 401


def test_api_keys_are_stored_hashed(issuer: LocalIssuer) -> None:
    key = issuer.api_key([RESIDENCY_VCT])
    secret = key.split(".")[1]
    with issuer.context.engine.connect() as connection:
        rows = connection.execute(select(db.api_keys)).all()
    assert secret not in repr(rows)
    assert secret.encode() not in b"".join(row.secret_sha256 for row in rows)


def test_a_key_without_the_scope_gets_403_and_changes_nothing(
    http: httpx.Client, issuer: LocalIssuer
) -> None:
    residency = issue(http, issuer, RESIDENCY_VCT)[0]
    health_key = issuer.api_key([VACCINATION_VCT], label="health counter")
    with issuer.context.engine.connect() as connection:
        before = connection.execute(select(db.offers.c.offer_id)).all()
    response = http.post("/admin/offers", json=offer_body(RESIDENCY_VCT), headers=auth(health_key))
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    with issuer.context.engine.connect() as connection:
        assert connection.execute(select(db.offers.c.offer_id)).all() == before
    # It cannot see or change credentials of other types either.
    path = f"/admin/credentials/{residency['id']}"
    assert http.get(path, headers=auth(health_key)).status_code == 403
    assert http.post(path + "/revoke", headers=auth(health_key)).status_code == 403
    listing = http.get("/admin/credentials", headers=auth(health_key)).json()
    assert all(c["vct"] == VACCINATION_VCT for c in listing["credentials"])
    assert (
        http.get(
            "/admin/credentials", params={"vct": RESIDENCY_VCT}, headers=auth(health_key)
        ).status_code
        == 403
    )
    assert status_of(http, issuer, residency) == Status.VALID


# --- offers --------------------------------------------------------------------------------


def test_offer_claims_are_checked_against_the_schema(
    http: httpx.Client, issuer: LocalIssuer
) -> None:
    claims = get_type(RESIDENCY_VCT).example_claims()
    bad_cases = {
        "wrong type": dict(claims, birth_date=19980315),
        "bad date": dict(claims, birth_date="1998-02-30"),
        "unknown member": dict(claims, favourite_colour="blue"),
        "missing member": {k: v for k, v in claims.items() if k != "family_name"},
        "resident registration number": dict(claims, given_name="980315-2345678"),
    }
    for name, bad in bad_cases.items():
        response = http.post(
            "/admin/offers",
            json={"vct": RESIDENCY_VCT, "claims": bad},
            headers=auth(issuer.admin_key),
        )
        assert response.status_code == 400, name
        assert response.json()["error"] == "schema_invalid", name
        assert "980315" not in response.text and "blue" not in response.text
    registered = dict(claims, exp=1)
    response = http.post(
        "/admin/offers",
        json={"vct": RESIDENCY_VCT, "claims": registered},
        headers=auth(issuer.admin_key),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "reserved_claim_name"
    unknown = http.post(
        "/admin/offers",
        json={"vct": "urn:other:vct", "claims": claims},
        headers=auth(issuer.admin_key),
    )
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "vct_unknown"
    # Python's JSON reader takes NaN and Infinity; a credential carrying one would verify
    # nowhere, so the offer is refused.
    for number in (float("nan"), float("inf")):
        vaccination = dict(get_type(VACCINATION_VCT).example_claims(), dn=number)
        response = http.post(
            "/admin/offers",
            content=json.dumps({"vct": VACCINATION_VCT, "claims": vaccination}),
            headers={**auth(issuer.admin_key), "content-type": "application/json"},
        )
        assert response.status_code == 400, number
        assert response.json()["error"] in ("schema_invalid", "number_out_of_range"), number
    extra = http.post(
        "/admin/offers", json=offer_body(RESIDENCY_VCT, extra=1), headers=auth(issuer.admin_key)
    )
    assert extra.status_code == 400
    evidence = http.post(
        "/admin/offers",
        json=offer_body(RESIDENCY_VCT, evidence=EVIDENCE),
        headers=auth(issuer.admin_key),
    )
    assert evidence.status_code == 400


def test_youth_allowance_offers_follow_the_programme_rules(
    http: httpx.Client, issuer: LocalIssuer
) -> None:
    def post(**changes: Any) -> httpx.Response:
        return http.post(
            "/admin/offers",
            json=offer_body(YOUTH_ALLOWANCE_VCT, **changes),
            headers=auth(issuer.admin_key),
        )

    assert post().status_code == 201
    claims = get_type(YOUTH_ALLOWANCE_VCT).example_claims()
    refused = {
        "no evidence": {"evidence": None},
        "aged 35": {"evidence": dict(EVIDENCE, birth_date="1990-04-14")},
        "aged 18": {"evidence": dict(EVIDENCE, birth_date="2006-04-15")},
        "not Seoul": {"evidence": dict(EVIDENCE, residence_region="Busan")},
        "wrong amount": {"claims": dict(claims, monthly_amount=600000)},
        "seven months": {
            "claims": dict(claims, period={"start": "2025-06-01", "end": "2025-12-31"})
        },
    }
    for name, changes in refused.items():
        response = post(**changes)
        assert response.status_code == 400, name
        assert response.json()["error"] in ("programme_rule_failed", "schema_invalid"), name
    assert post(evidence=dict(EVIDENCE, birth_date="1990-04-15")).status_code == 201  # 34


def test_offer_answer_and_single_use_offer_document(
    http: httpx.Client, issuer: LocalIssuer
) -> None:
    response = http.post(
        "/admin/offers", json=offer_body(VACCINATION_VCT), headers=auth(issuer.admin_key)
    )
    assert response.status_code == 201
    created = response.json()
    assert created["credential_offer_uri"].startswith(
        "openid-credential-offer://?credential_offer_uri=http%3A%2F%2F127.0.0.1"
    )
    assert created["tx_code"].isdigit() and len(created["tx_code"]) == 6
    assert created["expires_at"] == issuer.now() + issuer.settings.pre_authorized_code_ttl
    document = http.get(created["credential_offer_url"])
    assert document.status_code == 200
    assert "no-store" in document.headers["cache-control"]
    # The transaction code travels separately: never inside the offer.
    assert created["tx_code"] not in document.text
    assert http.get(created["credential_offer_url"] + "x").status_code == 404
    assert http.get("/offers/" + "A" * 43).status_code == 404


# --- issued credentials and status ---------------------------------------------------------


def test_listing_holds_no_claims(http: httpx.Client, issuer: LocalIssuer) -> None:
    records = issue(http, issuer, YOUTH_ALLOWANCE_VCT, copies=2)
    assert len(records) == 2
    for record in records:
        assert set(record) == {
            "id",
            "vct",
            "kid",
            "status",
            "status_list",
            "holder_key_thumbprint",
            "issued_at",
            "expires_at",
            "status_changed_at",
        }
        assert record["status"] == "valid"
        assert record["kid"] == issuer.signer.kid
    single = http.get(f"/admin/credentials/{records[0]['id']}", headers=auth(issuer.admin_key))
    assert single.json() == records[0]
    assert http.get("/admin/credentials/nope", headers=auth(issuer.admin_key)).status_code == 404
    page = http.get(
        "/admin/credentials", params={"limit": 1, "offset": 0}, headers=auth(issuer.admin_key)
    ).json()
    assert len(page["credentials"]) == 1 and page["total"] >= 2
    bad = http.get("/admin/credentials", params={"limit": 0}, headers=auth(issuer.admin_key))
    assert bad.status_code == 400


def test_status_changes_show_in_the_next_fetch(http: httpx.Client, issuer: LocalIssuer) -> None:
    record, neighbour = issue(http, issuer, RESIDENCY_VCT, copies=2)
    assert status_of(http, issuer, record) == Status.VALID
    path = f"/admin/credentials/{record['id']}"
    steps = [
        ("suspend", 200, Status.SUSPENDED, "suspended"),
        ("reinstate", 200, Status.VALID, "valid"),
        ("reinstate", 409, Status.VALID, "valid"),
        ("suspend", 200, Status.SUSPENDED, "suspended"),
        ("revoke", 200, Status.INVALID, "revoked"),
        ("reinstate", 409, Status.INVALID, "revoked"),
        ("suspend", 409, Status.INVALID, "revoked"),
        ("revoke", 409, Status.INVALID, "revoked"),
    ]
    for action, code, expected, name in steps:
        response = http.post(f"{path}/{action}", headers=auth(issuer.admin_key))
        assert response.status_code == code, action
        if code == 409:
            assert response.json()["error"] == "status_transition_not_allowed"
        assert status_of(http, issuer, record) == expected, action
        current = http.get(path, headers=auth(issuer.admin_key)).json()
        assert current["status"] == name
    assert status_of(http, issuer, neighbour) == Status.VALID
    assert http.post(f"{path}/delete", headers=auth(issuer.admin_key)).status_code == 400
    assert (
        http.post("/admin/credentials/nope/revoke", headers=auth(issuer.admin_key)).status_code
        == 404
    )


def test_status_list_token_shape_and_cache_headers(http: httpx.Client, issuer: LocalIssuer) -> None:
    record = issue(http, issuer, VACCINATION_VCT)[0]
    uri = record["status_list"]["uri"]
    response = http.get(urlsplit(uri).path)
    assert response.headers["content-type"] == "application/statuslist+jwt"
    ttl = issuer.settings.status_list_ttl
    assert response.headers["cache-control"] == f"max-age={ttl}"
    jws = parse_jws(response.text)
    assert jws.header["typ"] == "statuslist+jwt"
    assert jws.header["kid"] == issuer.signer.kid
    claims = jws.payload_json()
    assert claims["sub"] == uri
    assert claims["ttl"] == ttl
    assert claims["exp"] > claims["iat"] == issuer.now()
    verified = verify_status_list_token(
        response.text, key=issuer.signer.public_key, expected_uri=uri, now=issuer.now
    )
    assert verified.status_list.bits == 2
    assert verified.status_list.size >= MIN_LIST_SIZE
    # Unchanged list, same second: the cached token is served again.
    assert http.get(urlsplit(uri).path).text == response.text
    # After ttl it is re-signed with a fresh iat.
    clock = issuer.now
    assert isinstance(clock, FixedClock)
    clock.advance(ttl)
    later = http.get(urlsplit(uri).path).text
    assert parse_jws(later).payload_json()["iat"] == issuer.now()
    assert http.get("/status/999").status_code == 404
    assert http.get("/status/abc").status_code == 404


def test_admin_checks_the_api_key_before_the_body(http: httpx.Client, issuer: LocalIssuer) -> None:
    # FastAPI decodes a JSON body before running dependencies: an unauthenticated caller
    # must still learn nothing about its request but 401.
    for body in (b"not json", b'{"vct": '):
        for headers in ({}, {"authorization": "Bearer wrong.key"}):
            response = http.post(
                "/admin/offers",
                content=body,
                headers={**headers, "content-type": "application/json"},
            )
            assert response.status_code == 401, (body, headers)
            assert response.headers["www-authenticate"].startswith("Bearer")
        answered = http.post(
            "/admin/offers",
            content=body,
            headers={**auth(issuer.admin_key), "content-type": "application/json"},
        )
        assert answered.status_code == 400
        assert answered.json()["error"] == "invalid_request"
    # Wallet endpoints keep their own OAuth errors.
    assert http.post("/token", content=b"not a form").status_code == 400
