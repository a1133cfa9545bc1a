"""The issuer's OpenID4VCI 1.0 pre-authorized code flow over real HTTP on 127.0.0.1.

An httpx client plays the wallet with civic.jose keys against uvicorn serving the issuer; the
registry is an in-memory log synced through civic.logsync. Every bad input gets its spec error
code and leaves the database exactly as it was (compared table by table).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, text

from civic.clock import FixedClock
from civic.credentials import (
    CREDENTIAL_TYPES,
    RESIDENCY_VCT,
    VACCINATION_VCT,
    YOUTH_ALLOWANCE_VCT,
    get_type,
)
from civic.encoding import b64std_decode, b64url_decode, b64url_encode, json_dumps
from civic.jose import PrivateKey, parse_jws, sign_jwt
from civic.qr import decode_png
from civic.sdjwt import parse_sd_jwt
from civic.sdjwtvc import verify_credential
from civic.statuslist import Status, parse_status_claim, verify_status_list_token
from issuer import db
from issuer.issuance import purge_expired
from issuer.oid4vci import PRE_AUTHORIZED_GRANT, PROOF_TYP
from issuer.testing import LocalIssuer

START = 1_800_000_000


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIssuer]:
    clock = FixedClock(START)
    with LocalIssuer(tmp_path_factory.mktemp("issuer"), now=clock) as local:
        yield local


@pytest.fixture
def wallet(issuer: LocalIssuer) -> Iterator[Wallet]:
    with httpx.Client(base_url=issuer.url, timeout=30) as client:
        yield Wallet(issuer, client)


def example_claims(vct: str) -> dict[str, Any]:
    return get_type(vct).example_claims()


def claim_values(claims: Any) -> set[str]:
    """Every string value (and string form of numbers) in a claims object, recursively."""
    if isinstance(claims, dict):
        return set().union(*(claim_values(v) for v in claims.values())) if claims else set()
    if isinstance(claims, list):
        return set().union(*(claim_values(v) for v in claims)) if claims else set()
    if isinstance(claims, bool):
        return set()
    return {str(claims)}


class Wallet:
    """The wallet side of the protocol, plus the staff member creating offers."""

    def __init__(self, issuer: LocalIssuer, http: httpx.Client) -> None:
        self.issuer = issuer
        self.http = http

    @property
    def now(self) -> int:
        return self.issuer.now()

    def create_offer(
        self,
        vct: str = RESIDENCY_VCT,
        claims: dict[str, Any] | None = None,
        *,
        api_key: str | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> httpx.Response:
        body: dict[str, Any] = {"vct": vct, "claims": claims or example_claims(vct)}
        if evidence is not None:
            body["evidence"] = evidence
        return self.http.post(
            "/admin/offers",
            json=body,
            headers={"Authorization": f"Bearer {api_key or self.issuer.admin_key}"},
        )

    def offer(self, vct: str = RESIDENCY_VCT) -> dict[str, Any]:
        response = self.create_offer(vct)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def resolve(self, offer: dict[str, Any]) -> dict[str, Any]:
        """Follow the offer URI (by reference) to the Credential Offer object."""
        link = urlsplit(offer["credential_offer_uri"])
        assert link.scheme == "openid-credential-offer"
        url = parse_qs(link.query)["credential_offer_uri"][0]
        response = self.http.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        document: dict[str, Any] = response.json()
        return document

    def code_of(self, offer: dict[str, Any]) -> str:
        grant = self.resolve(offer)["grants"][PRE_AUTHORIZED_GRANT]
        code: str = grant["pre-authorized_code"]
        return code

    def token(self, code: str, tx_code: str | None) -> httpx.Response:
        form = {"grant_type": PRE_AUTHORIZED_GRANT, "pre-authorized_code": code}
        if tx_code is not None:
            form["tx_code"] = tx_code
        return self.http.post("/token", data=form)

    def access_token(self, vct: str = RESIDENCY_VCT) -> tuple[str, dict[str, Any]]:
        offer = self.offer(vct)
        response = self.token(self.code_of(offer), offer["tx_code"])
        assert response.status_code == 200, response.text
        return response.json()["access_token"], offer

    def nonce(self) -> str:
        response = self.http.post("/nonce")
        assert response.status_code == 200
        assert "no-store" in response.headers["cache-control"]
        nonce: str = response.json()["c_nonce"]
        return nonce

    def proof(
        self,
        key: PrivateKey,
        nonce: str | None,
        *,
        aud: Any = None,
        iat: Any = None,
        header: dict[str, Any] | None = None,
    ) -> str:
        head: dict[str, Any] = {"typ": PROOF_TYP, "jwk": key.public_key.to_jwk()}
        head.update(header or {})
        head = {k: v for k, v in head.items() if v is not None}
        claims: dict[str, Any] = {
            "aud": self.issuer.url if aud is None else aud,
            "iat": self.now if iat is None else iat,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        return sign_jwt(head, claims, key)

    def credential(
        self,
        token: str | None,
        proofs: list[str] | None,
        *,
        configuration: str = "residency",
        extra: dict[str, Any] | None = None,
    ) -> httpx.Response:
        body: dict[str, Any] = {"credential_configuration_id": configuration}
        if proofs is not None:
            body["proofs"] = {"jwt": proofs}
        body.update(extra or {})
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.http.post("/credential", json=body, headers=headers)


def db_state(issuer: LocalIssuer) -> dict[str, list[str]]:
    with issuer.context.engine.connect() as connection:
        return {
            table.name: sorted(repr(tuple(row)) for row in connection.execute(select(table)))
            for table in db.TABLES
        }


def offer_row(issuer: LocalIssuer, offer_id: str) -> Any:
    with issuer.context.engine.connect() as connection:
        return connection.execute(select(db.offers).where(db.offers.c.offer_id == offer_id)).first()


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert "no-store" in response.headers.get("cache-control", "")
    description = body.get("error_description", "")
    assert all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in description)


# --- metadata ------------------------------------------------------------------------------


def test_issuer_metadata_describes_the_three_types(wallet: Wallet) -> None:
    response = wallet.http.get("/.well-known/openid-credential-issuer")
    assert response.status_code == 200
    metadata = response.json()
    url = wallet.issuer.url
    assert metadata["credential_issuer"] == url
    assert metadata["credential_endpoint"] == url + "/credential"
    assert metadata["nonce_endpoint"] == url + "/nonce"
    assert metadata["batch_credential_issuance"]["batch_size"] >= 2
    assert {d["locale"] for d in metadata["display"]} == {"en", "ko"}
    configurations = metadata["credential_configurations_supported"]
    assert {c["vct"] for c in configurations.values()} == set(CREDENTIAL_TYPES)
    for configuration in configurations.values():
        assert configuration["format"] == "dc+sd-jwt"
        assert configuration["cryptographic_binding_methods_supported"] == ["jwk"]
        algs = configuration["proof_types_supported"]["jwt"]["proof_signing_alg_values_supported"]
        assert set(algs) == {"EdDSA", "ES256"}
        display = configuration["credential_metadata"]["display"]
        assert {d["locale"] for d in display} == {"en", "ko"}
        paths = [c["path"] for c in configuration["credential_metadata"]["claims"]]
        ctype = get_type(configuration["vct"])
        assert paths == [list(p) for p in ctype.disclosable_paths]


def test_authorization_server_metadata(wallet: Wallet) -> None:
    metadata = wallet.http.get("/.well-known/oauth-authorization-server").json()
    assert metadata["issuer"] == wallet.issuer.url
    assert metadata["token_endpoint"] == wallet.issuer.url + "/token"
    assert metadata["grant_types_supported"] == [PRE_AUTHORIZED_GRANT]
    assert metadata["pre-authorized_grant_anonymous_access_supported"] is True


# --- the whole flow ------------------------------------------------------------------------


def test_full_flow_issues_unlinkable_copies(wallet: Wallet, issuer: LocalIssuer) -> None:
    claims = example_claims(RESIDENCY_VCT)
    offer = wallet.offer()
    # The QR code holds exactly the offer URI.
    assert decode_png(b64std_decode(offer["qr_png_base64"])) == offer["credential_offer_uri"]
    document = wallet.resolve(offer)
    assert document["credential_issuer"] == issuer.url
    assert document["credential_configuration_ids"] == ["residency"]
    grant = document["grants"][PRE_AUTHORIZED_GRANT]
    assert grant["tx_code"]["input_mode"] == "numeric"
    assert grant["tx_code"]["length"] == len(offer["tx_code"])

    token_response = wallet.token(grant["pre-authorized_code"], offer["tx_code"])
    assert token_response.status_code == 200
    assert "no-store" in token_response.headers["cache-control"]
    token = token_response.json()
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] > 0

    nonce = wallet.nonce()
    keys = [PrivateKey.generate("EdDSA"), PrivateKey.generate("ES256"), PrivateKey.generate()]
    response = wallet.credential(token["access_token"], [wallet.proof(k, nonce) for k in keys])
    assert response.status_code == 200, response.text
    assert "no-store" in response.headers["cache-control"]
    credentials = [item["credential"] for item in response.json()["credentials"]]
    assert len(credentials) == 3

    references = []
    for key, credential in zip(keys, credentials, strict=True):
        verified = verify_credential(
            credential, issuer.signer.public_key, key_binding=None, now=issuer.now
        )
        assert verified.header.issuer == issuer.url
        assert verified.header.vct == RESIDENCY_VCT
        assert verified.header.kid == issuer.signer.kid
        assert verified.claims["cnf"]["jwk"] == key.public_key.to_jwk()
        assert verified.subject_claims == claims
        references.append(
            parse_status_claim(verified.claims["status"], unsafe_allow_http_loopback=True)
        )
        header = parse_jws(credential.split("~")[0]).header
        assert header["typ"] == "dc+sd-jwt"
    # Fresh salts and fresh status indices: no two copies share a disclosure or an index.
    disclosure_sets = [
        {(d.salt, d.encoded) for d in parse_sd_jwt(c).disclosures} for c in credentials
    ]
    salts = [salt for disclosures in disclosure_sets for salt, _ in disclosures]
    assert len(salts) == len(set(salts))
    for i, first in enumerate(disclosure_sets):
        for second in disclosure_sets[i + 1 :]:
            assert not first & second
    assert len({(r.uri, r.index) for r in references}) == 3

    # The status list says valid for each.
    for reference in references:
        fetched = wallet.http.get(urlsplit(reference.uri).path)
        verified_list = verify_status_list_token(
            fetched.text, key=issuer.signer.public_key, expected_uri=reference.uri, now=issuer.now
        )
        assert verified_list.status_list.get(reference.index) == Status.VALID

    # The offer is spent: its claims are gone, the credentials are recorded without claims.
    row = offer_row(issuer, offer["offer_id"])
    assert row.state == "delivered"
    assert row.claims is None
    listing = wallet.http.get(
        "/admin/credentials", headers={"Authorization": f"Bearer {issuer.admin_key}"}
    ).json()["credentials"]
    mine = [c for c in listing if c["status_list"]["idx"] in {r.index for r in references}]
    assert len(mine) == 3
    assert {c["holder_key_thumbprint"] for c in mine} == {k.public_key.thumbprint() for k in keys}
    assert not claim_values(claims) & claim_values(mine)

    # Nothing can be had twice: the token, the code and the offer URI are all spent.
    again = wallet.credential(token["access_token"], [wallet.proof(keys[0], wallet.nonce())])
    assert_oauth_error(again, 401, "invalid_token")
    assert_oauth_error(
        wallet.token(grant["pre-authorized_code"], offer["tx_code"]), 400, "invalid_grant"
    )
    link = parse_qs(urlsplit(offer["credential_offer_uri"]).query)["credential_offer_uri"][0]
    assert wallet.http.get(link).status_code == 404


def test_the_database_keeps_no_claims_after_delivery(wallet: Wallet, issuer: LocalIssuer) -> None:
    claims = example_claims(VACCINATION_VCT)
    claims["vaccination"]["ci"] = "URN:UVCI:01:KR:KDCA/UNIQUEMARKER/0001"
    response = wallet.create_offer(VACCINATION_VCT, claims)
    assert response.status_code == 201
    offer = response.json()
    database = issuer.settings.data_dir / "issuer.sqlite3"
    token = wallet.token(wallet.code_of(offer), offer["tx_code"]).json()["access_token"]
    assert "UNIQUEMARKER" in repr(db_state(issuer))  # held until delivery, as it must be
    checkpoint(issuer)
    assert b"UNIQUEMARKER" in database.read_bytes()
    key = PrivateKey.generate()
    issued = wallet.credential(
        token, [wallet.proof(key, wallet.nonce())], configuration="vaccination"
    )
    assert issued.status_code == 200
    credential = issued.json()["credentials"][0]["credential"]
    verified = verify_credential(
        credential, issuer.signer.public_key, key_binding=None, now=issuer.now
    )
    assert verified.subject_claims == claims
    dump = repr(db_state(issuer))
    assert "UNIQUEMARKER" not in dump
    assert offer_row(issuer, offer["offer_id"]).claims is None
    # SQLite overwrites freed space (secure_delete): after a checkpoint the file has no trace.
    checkpoint(issuer)
    assert b"UNIQUEMARKER" not in database.read_bytes()


def checkpoint(issuer: LocalIssuer) -> None:
    """Move the WAL into the database file, so that the file shows what is stored."""
    with issuer.context.engine.connect() as connection:
        connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))


def test_logs_never_carry_claim_values(
    wallet: Wallet, issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    claims = example_claims(YOUTH_ALLOWANCE_VCT)
    evidence = {"birth_date": "1998-03-15", "application_date": "2025-04-14"}
    secrets_seen: list[str] = []
    with caplog.at_level(logging.DEBUG):
        # A refused offer (schema error) and a wrong-rule one, then a whole good flow.
        bad = dict(claims, monthly_amount="five hundred thousand")
        assert wallet.create_offer(YOUTH_ALLOWANCE_VCT, bad, evidence=evidence).status_code == 400
        older = {"birth_date": "1980-01-01", "application_date": "2025-04-14"}
        assert wallet.create_offer(YOUTH_ALLOWANCE_VCT, claims, evidence=older).status_code == 400
        response = wallet.create_offer(YOUTH_ALLOWANCE_VCT, claims, evidence=evidence)
        assert response.status_code == 201
        offer = response.json()
        code = wallet.code_of(offer)
        wrong = str((int(offer["tx_code"]) + 1) % 10**6).zfill(6)
        assert wallet.token(code, wrong).status_code == 400
        token = wallet.token(code, offer["tx_code"]).json()["access_token"]
        key = PrivateKey.generate()
        issued = wallet.credential(
            token, [wallet.proof(key, wallet.nonce())], configuration="youth_allowance"
        )
        assert issued.status_code == 200
        secrets_seen = [offer["tx_code"], code, token]
    messages = [record.getMessage() for record in caplog.records]
    assert any("delivered" in message for message in messages)
    values = claim_values(claims) | claim_values(evidence) | {"five hundred thousand"}
    for message in messages:
        for value in values:
            assert value not in message, f"claim value in a log record: {message!r}"
        # Bearer secrets (code, token) do not go to the issuer's logs either.
        if "issuer" in message or "->" in message:
            for secret in secrets_seen[1:]:
                assert secret not in message


# --- the token endpoint --------------------------------------------------------------------


def test_wrong_tx_codes_count_and_the_fifth_burns_the_offer(
    wallet: Wallet, issuer: LocalIssuer
) -> None:
    offer = wallet.offer()
    code = wallet.code_of(offer)
    wrong = str((int(offer["tx_code"]) + 1) % 10**6).zfill(6)
    for attempt in range(1, 5):
        assert_oauth_error(wallet.token(code, wrong), 400, "invalid_grant")
        assert offer_row(issuer, offer["offer_id"]).tx_code_failures == attempt
        assert offer_row(issuer, offer["offer_id"]).state == "offered"
    assert_oauth_error(wallet.token(code, wrong), 400, "invalid_grant")
    row = offer_row(issuer, offer["offer_id"])
    assert row.state == "burned"
    assert row.claims is None
    # Burned for good: even the right code gets nothing, and the offer URI is gone.
    assert_oauth_error(wallet.token(code, offer["tx_code"]), 400, "invalid_grant")
    link = parse_qs(urlsplit(offer["credential_offer_uri"]).query)["credential_offer_uri"][0]
    assert wallet.http.get(link).status_code == 404


def test_four_wrong_tx_codes_still_leave_the_right_one_working(wallet: Wallet) -> None:
    offer = wallet.offer()
    code = wallet.code_of(offer)
    wrong = str((int(offer["tx_code"]) + 7) % 10**6).zfill(6)
    for _ in range(4):
        assert_oauth_error(wallet.token(code, wrong), 400, "invalid_grant")
    assert wallet.token(code, offer["tx_code"]).status_code == 200


def test_token_request_errors_change_nothing(wallet: Wallet, issuer: LocalIssuer) -> None:
    offer = wallet.offer()
    code = wallet.code_of(offer)
    before = db_state(issuer)
    cases: list[tuple[httpx.Response, str]] = [
        (wallet.token(code, None), "invalid_request"),
        (wallet.token("not-a-code", offer["tx_code"]), "invalid_grant"),
        (
            wallet.http.post(
                "/token",
                data={"grant_type": "authorization_code", "code": code},
            ),
            "unsupported_grant_type",
        ),
        (wallet.http.post("/token", data={"pre-authorized_code": code}), "invalid_request"),
        (
            wallet.http.post(
                "/token",
                json={"grant_type": PRE_AUTHORIZED_GRANT, "pre-authorized_code": code},
            ),
            "invalid_request",
        ),
        (
            wallet.http.post(
                "/token",
                content=f"grant_type={PRE_AUTHORIZED_GRANT}&pre-authorized_code={code}"
                f"&pre-authorized_code={code}&tx_code={offer['tx_code']}",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ),
            "invalid_request",
        ),
        (
            wallet.http.post(
                "/token",
                content=b"grant_type=\xff\xfe",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ),
            "invalid_request",
        ),
    ]
    for response, error in cases:
        assert_oauth_error(response, 400, error)
    assert db_state(issuer) == before
    assert wallet.token(code, offer["tx_code"]).status_code == 200


def test_reused_code_is_refused_and_changes_nothing(wallet: Wallet, issuer: LocalIssuer) -> None:
    offer = wallet.offer()
    code = wallet.code_of(offer)
    assert wallet.token(code, offer["tx_code"]).status_code == 200
    before = db_state(issuer)
    assert_oauth_error(wallet.token(code, offer["tx_code"]), 400, "invalid_grant")
    assert db_state(issuer) == before


def test_expired_code_is_refused_and_changes_nothing(wallet: Wallet, issuer: LocalIssuer) -> None:
    offer = wallet.offer()
    code = wallet.code_of(offer)
    clock = issuer.now
    assert isinstance(clock, FixedClock)
    clock.advance(issuer.settings.pre_authorized_code_ttl)
    before = db_state(issuer)
    assert_oauth_error(wallet.token(code, offer["tx_code"]), 400, "invalid_grant")
    assert db_state(issuer) == before
    link = parse_qs(urlsplit(offer["credential_offer_uri"]).query)["credential_offer_uri"][0]
    assert wallet.http.get(link).status_code == 404


# --- the credential endpoint ---------------------------------------------------------------


def _tamper(jwt: str) -> str:
    head, payload, signature = jwt.split(".")
    flipped = bytearray(b64url_decode(signature))
    flipped[0] ^= 1
    return ".".join([head, payload, b64url_encode(bytes(flipped))])


def _bad_proofs(wallet: Wallet, nonce: str) -> dict[str, tuple[str, str]]:
    key = PrivateKey.generate()
    p256 = PrivateKey.generate("ES256")
    private_jwk = key.export_private_jwk()
    return {
        "wrong typ": (wallet.proof(key, nonce, header={"typ": "JWT"}), "invalid_proof"),
        "no typ": (wallet.proof(key, nonce, header={"typ": None}), "invalid_proof"),
        "wrong aud": (wallet.proof(key, nonce, aud="https://other.example"), "invalid_proof"),
        "aud list": (wallet.proof(key, nonce, aud=[wallet.issuer.url, "x"]), "invalid_proof"),
        "bad signature": (_tamper(wallet.proof(key, nonce)), "invalid_proof"),
        "missing jwk": (wallet.proof(key, nonce, header={"jwk": None}), "invalid_proof"),
        "kid instead of jwk": (
            wallet.proof(key, nonce, header={"jwk": None, "kid": "did:example:1#0"}),
            "invalid_proof",
        ),
        "kid and jwk": (wallet.proof(key, nonce, header={"kid": "k1"}), "invalid_proof"),
        "private jwk": (wallet.proof(key, nonce, header={"jwk": private_jwk}), "invalid_proof"),
        "jwk of another key": (
            wallet.proof(key, nonce, header={"jwk": p256.public_key.to_jwk()}),
            "invalid_proof",
        ),
        "missing nonce": (wallet.proof(key, None), "invalid_proof"),
        "stale iat": (wallet.proof(key, nonce, iat=wallet.now - 3600), "invalid_proof"),
        "future iat": (wallet.proof(key, nonce, iat=wallet.now + 3600), "invalid_proof"),
        "iat not a number": (wallet.proof(key, nonce, iat="now"), "invalid_proof"),
        "not a jws": ("not.a.jws", "invalid_proof"),
        "unknown nonce": (wallet.proof(key, "no-such-nonce"), "invalid_nonce"),
    }


def test_bad_proofs_get_their_errors_and_change_nothing(
    wallet: Wallet, issuer: LocalIssuer
) -> None:
    token, offer = wallet.access_token()
    nonce = wallet.nonce()
    before = db_state(issuer)
    for name, (proof, error) in _bad_proofs(wallet, nonce).items():
        response = wallet.credential(token, [proof])
        assert response.status_code == 400, name
        assert response.json()["error"] == error, name
        # A bad proof next to a good one spoils the whole request, and consumes nothing.
        good = wallet.proof(PrivateKey.generate(), nonce)
        assert wallet.credential(token, [good, proof]).json()["error"] == error, name
        assert db_state(issuer) == before, name
    # The token and the nonce are still good: the same request with a good proof succeeds.
    response = wallet.credential(token, [wallet.proof(PrivateKey.generate(), nonce)])
    assert response.status_code == 200, response.text
    assert offer_row(issuer, offer["offer_id"]).state == "delivered"


def test_request_errors_change_nothing(wallet: Wallet, issuer: LocalIssuer) -> None:
    token, _ = wallet.access_token()
    nonce = wallet.nonce()
    key = PrivateKey.generate()
    good = wallet.proof(key, nonce)
    before = db_state(issuer)
    batch = issuer.settings.batch_size
    many = [wallet.proof(PrivateKey.generate(), nonce) for _ in range(batch + 1)]
    cases: list[tuple[httpx.Response, int, str]] = [
        (
            wallet.credential(token, [good], configuration="no-such"),
            400,
            "unknown_credential_configuration",
        ),
        (wallet.credential(token, [good], configuration="vaccination"), 403, "insufficient_scope"),
        (wallet.credential(token, None), 400, "invalid_proof"),
        (wallet.credential(token, []), 400, "invalid_proof"),
        (wallet.credential(token, [good, good]), 400, "invalid_proof"),
        (
            wallet.credential(token, None, extra={"proofs": {"di_vp": [{}]}}),
            400,
            "invalid_proof",
        ),
        (
            wallet.credential(token, None, extra={"proofs": {"jwt": [good], "attestation": ["x"]}}),
            400,
            "invalid_proof",
        ),
        (wallet.credential(token, many), 400, "invalid_credential_request"),
        (
            wallet.credential(token, [good], extra={"credential_identifier": "x"}),
            400,
            "invalid_credential_request",
        ),
        (
            wallet.credential(
                token, [good], extra={"credential_response_encryption": {"enc": "A128GCM"}}
            ),
            400,
            "invalid_encryption_parameters",
        ),
        (
            wallet.http.post(
                "/credential",
                content=b'{"credential_configuration_id": "residency",',
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            ),
            400,
            "invalid_credential_request",
        ),
        (
            wallet.http.post(
                "/credential",
                content=json_dumps(
                    {"credential_configuration_id": "residency", "proofs": {"jwt": [good]}}
                ),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
            ),
            400,
            "invalid_credential_request",
        ),
        (
            wallet.http.post(
                "/credential",
                content=b'{"credential_configuration_id": "residency", '
                b'"credential_configuration_id": "vaccination"}',
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            ),
            400,
            "invalid_credential_request",
        ),
    ]
    for response, status, error in cases:
        assert_oauth_error(response, status, error)
        if status == 403:
            assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert db_state(issuer) == before
    assert wallet.credential(token, [good]).status_code == 200


def test_token_errors_on_the_credential_endpoint(wallet: Wallet, issuer: LocalIssuer) -> None:
    key = PrivateKey.generate()
    nonce = wallet.nonce()
    before = db_state(issuer)
    missing = wallet.credential(None, [wallet.proof(key, nonce)])
    assert_oauth_error(missing, 401, "invalid_token")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    unknown = wallet.credential("no-such-token", [wallet.proof(key, nonce)])
    assert_oauth_error(unknown, 401, "invalid_token")
    assert 'error="invalid_token"' in unknown.headers["www-authenticate"]
    basic = wallet.http.post(
        "/credential", json={}, headers={"Authorization": "Basic dXNlcjpwYXNz"}
    )
    assert_oauth_error(basic, 400, "invalid_request")
    assert db_state(issuer) == before


def test_expired_access_token_is_refused(wallet: Wallet, issuer: LocalIssuer) -> None:
    token, offer = wallet.access_token()
    clock = issuer.now
    assert isinstance(clock, FixedClock)
    clock.advance(issuer.settings.access_token_ttl)
    nonce = wallet.nonce()
    before = db_state(issuer)
    response = wallet.credential(token, [wallet.proof(PrivateKey.generate(), nonce)])
    assert_oauth_error(response, 401, "invalid_token")
    assert db_state(issuer) == before
    assert offer_row(issuer, offer["offer_id"]).state == "token_issued"


def test_a_used_nonce_is_refused(wallet: Wallet, issuer: LocalIssuer) -> None:
    nonce = wallet.nonce()
    first, _ = wallet.access_token()
    # One nonce may serve all the proofs of one batch request ...
    keys = [PrivateKey.generate(), PrivateKey.generate()]
    response = wallet.credential(first, [wallet.proof(k, nonce) for k in keys])
    assert response.status_code == 200
    # ... but never a second request.
    second, offer = wallet.access_token()
    before = db_state(issuer)
    response = wallet.credential(second, [wallet.proof(PrivateKey.generate(), nonce)])
    assert_oauth_error(response, 400, "invalid_nonce")
    assert db_state(issuer) == before
    # One stale nonce among fresh ones consumes none of them.
    fresh = wallet.nonce()
    before = db_state(issuer)
    mixed = [wallet.proof(PrivateKey.generate(), fresh), wallet.proof(PrivateKey.generate(), nonce)]
    assert_oauth_error(wallet.credential(second, mixed), 400, "invalid_nonce")
    assert db_state(issuer) == before
    ok = wallet.credential(second, [wallet.proof(PrivateKey.generate(), fresh)])
    assert ok.status_code == 200
    assert offer_row(issuer, offer["offer_id"]).state == "delivered"


def test_an_expired_nonce_is_refused(wallet: Wallet, issuer: LocalIssuer) -> None:
    clock = issuer.now
    assert isinstance(clock, FixedClock)
    nonce = wallet.nonce()
    clock.advance(issuer.settings.c_nonce_ttl - 1)
    token, _ = wallet.access_token()
    clock.advance(1)
    before = db_state(issuer)
    response = wallet.credential(token, [wallet.proof(PrivateKey.generate(), nonce)])
    assert_oauth_error(response, 400, "invalid_nonce")
    assert db_state(issuer) == before


def test_unused_offers_lose_their_claims_when_they_expire(
    wallet: Wallet, issuer: LocalIssuer
) -> None:
    waiting = wallet.offer()
    exchanged = wallet.offer()
    assert wallet.token(wallet.code_of(exchanged), exchanged["tx_code"]).status_code == 200
    clock = issuer.now
    assert isinstance(clock, FixedClock)
    with db.write_transaction(issuer.context.engine) as connection:
        purge_expired(connection, clock())
    assert offer_row(issuer, waiting["offer_id"]).claims is not None
    clock.advance(issuer.settings.pre_authorized_code_ttl)
    with db.write_transaction(issuer.context.engine) as connection:
        purge_expired(connection, clock())
    for offer in (waiting, exchanged):
        row = offer_row(issuer, offer["offer_id"])
        assert (row.state, row.claims) == ("expired", None)
    with issuer.context.engine.connect() as connection:
        stale = connection.execute(select(db.nonces).where(db.nonces.c.expires_at <= clock())).all()
    assert stale == []


# --- size limits ---------------------------------------------------------------------------


def test_oversized_bodies_get_413_and_change_nothing(wallet: Wallet, issuer: LocalIssuer) -> None:
    limit = issuer.settings.max_body_bytes
    token, _ = wallet.access_token()
    before = db_state(issuer)
    padding = "x" * (limit + 1)
    big_credential = wallet.credential(
        token, [wallet.proof(PrivateKey.generate(), wallet.nonce())], extra={"padding": padding}
    )
    assert big_credential.status_code == 413
    assert big_credential.json()["error"] == "invalid_request"
    claims = dict(example_claims(RESIDENCY_VCT), given_name=padding)
    assert wallet.create_offer(RESIDENCY_VCT, claims).status_code == 413
    big_token = wallet.http.post(
        "/token", data={"grant_type": PRE_AUTHORIZED_GRANT, "pre-authorized_code": padding}
    )
    assert big_token.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        for _ in range(limit // 1024 + 2):
            yield b"y" * 1024

    streamed = wallet.http.post(
        "/credential",
        content=chunks(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413
    # Nonces were issued along the way (that is the nonce endpoint working); nothing else.
    after = db_state(issuer)
    assert {k: v for k, v in after.items() if k != "issuer_nonces"} == {
        k: v for k, v in before.items() if k != "issuer_nonces"
    }
