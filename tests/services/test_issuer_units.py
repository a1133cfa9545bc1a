"""The issuer's pure and local parts: protocol parsing, key files, settings, status allocation.

The protocol messages are compared with the OpenID4VCI 1.0 examples (public vectors), and the
parsers are fed arbitrary input (hypothesis): they answer with an OAuth error or a value, and
never leak another exception.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import nacl.pwhash
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from uvicorn.logging import DefaultFormatter

from civic.clock import FixedClock
from civic.credentials import CREDENTIAL_TYPES, RESIDENCY_VCT, get_type
from civic.encoding import json_dumps, json_loads_object
from civic.errors import CivicError, ReasonCode, UsageError, VerificationError
from civic.jose import PrivateKey, sign_jwt
from civic.statuslist import Status
from civic_service.http import _CoalescingTransport
from issuer import db
from issuer.admin import ApiPrincipal, create_offer
from issuer.issuance import (
    IssuanceFlow,
    new_tx_code,
    parse_offer_ref,
    pre_authorized_code_for,
    tx_code_mac,
)
from issuer.keys import (
    FileKeySigner,
    KeyStore,
    check_passphrase,
    load_key_file,
    open_sealed_jwk,
    seal_private_jwk,
    write_key_file,
)
from issuer.oid4vci import (
    PRE_AUTHORIZED_GRANT,
    PROOF_TYP,
    IssuerProfile,
    OAuthError,
    bearer_token,
    configurations_for,
    credential_offer,
    issuer_metadata,
    offer_deep_link,
    parse_credential_request,
    parse_token_request,
    verify_key_proof,
    verify_key_proofs,
)
from issuer.server import LevelPrefixFormatter
from issuer.settings import IssuerSettings, SettingsError, load_runtime
from issuer.statuslists import (
    build_status_list,
    change_status,
    insert_with_fresh_index,
    transition,
)
from issuer.testing import LocalIssuer
from tests.vectors import load_json

ARGON_FAST = {
    "opslimit": nacl.pwhash.argon2id.OPSLIMIT_MIN,
    "memlimit": nacl.pwhash.argon2id.MEMLIMIT_MIN,
}
PASSPHRASE = "correct horse battery staple"
AUD = "https://issuer.example"
NOW = 1_800_000_000
FORM = "application/x-www-form-urlencoded"


def profile() -> IssuerProfile:
    return IssuerProfile(
        AUD, ("Issuer", "발급 기관"), configurations_for(list(CREDENTIAL_TYPES)), 10
    )


# --- messages against the specification's examples ----------------------------------------


@pytest.mark.vectors
def test_offer_has_the_shape_of_the_spec_example() -> None:
    example = load_json("oid4vci", "examples", "credential_offer_pre-authz_code.json")
    offer = credential_offer(AUD, "residency", "code", 6)
    assert set(offer) == set(example)
    grant = offer["grants"][PRE_AUTHORIZED_GRANT]
    assert set(grant) == set(example["grants"][PRE_AUTHORIZED_GRANT])
    assert set(grant["tx_code"]) <= {"input_mode", "length", "description"}
    assert len(grant["tx_code"]["description"]) <= 300


@pytest.mark.vectors
def test_metadata_uses_only_member_names_of_the_spec() -> None:
    example = load_json("oid4vci", "examples", "credential_issuer_metadata_sd_jwt_long.json")
    configuration_example = load_json("oid4vci", "examples", "credential_metadata_sd_jwt_vc.json")
    metadata = issuer_metadata(profile())
    assert set(metadata) <= set(example)
    spec_configuration = next(
        iter(configuration_example["credential_configurations_supported"].values())
    )
    for configuration in metadata["credential_configurations_supported"].values():
        assert set(configuration) <= set(spec_configuration)
        assert set(configuration["credential_metadata"]) <= set(
            spec_configuration["credential_metadata"]
        )
        for claim in configuration["credential_metadata"]["claims"]:
            assert set(claim) <= {"path", "display", "mandatory"}


def test_offer_deep_link_round_trips() -> None:
    url = "https://issuer.example/offers/abc-_123"
    link = urlsplit(offer_deep_link(url))
    assert link.scheme == "openid-credential-offer"
    assert parse_qs(link.query) == {"credential_offer_uri": [url]}


# --- token request -------------------------------------------------------------------------


def test_token_request_parsing() -> None:
    body = f"grant_type={PRE_AUTHORIZED_GRANT}&pre-authorized_code=abc&tx_code=123456&x=1"
    request = parse_token_request(body.encode(), FORM + "; charset=utf-8")
    assert (request.pre_authorized_code, request.tx_code) == ("abc", "123456")
    assert "abc" not in repr(request)
    without = parse_token_request(
        f"grant_type={PRE_AUTHORIZED_GRANT}&pre-authorized_code=abc".encode(), FORM
    )
    assert without.tx_code is None
    cases = {
        b"": "invalid_request",
        b"grant_type=refresh_token": "unsupported_grant_type",
        f"grant_type={PRE_AUTHORIZED_GRANT}".encode(): "invalid_request",
        f"grant_type={PRE_AUTHORIZED_GRANT}&grant_type={PRE_AUTHORIZED_GRANT}".encode(): (
            "invalid_request"
        ),
        b"%zz": "invalid_request",
    }
    for raw, error in cases.items():
        with pytest.raises(OAuthError) as caught:
            parse_token_request(raw, FORM)
        assert caught.value.error == error, raw
    with pytest.raises(OAuthError):
        parse_token_request(b"grant_type=x", "application/json")


@given(st.binary(max_size=300), st.sampled_from([FORM, "application/json", None]))
@settings(max_examples=300)
def test_token_request_parser_only_raises_oauth_errors(
    raw: bytes, content_type: str | None
) -> None:
    try:
        parse_token_request(raw, content_type)
    except OAuthError as error:
        assert error.error in ("invalid_request", "unsupported_grant_type")


def test_bearer_token() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer abc") == "abc"
    with pytest.raises(OAuthError) as missing:
        bearer_token(None)
    assert missing.value.status == 401
    assert missing.value.www_authenticate() == 'Bearer realm="credential"'
    for header in ("Basic abc", "Bearer", "Bearer a b"):
        with pytest.raises(OAuthError) as bad:
            bearer_token(header)
        assert bad.value.error == "invalid_request"


# --- credential request and proofs ---------------------------------------------------------


def test_credential_request_parsing() -> None:
    configurations = configurations_for(list(CREDENTIAL_TYPES))
    body = {"credential_configuration_id": "residency", "proofs": {"jwt": ["a", "b"]}, "x": 1}
    request = parse_credential_request(
        json_dumps(body).encode(), "application/json", configurations=configurations, batch_size=2
    )
    assert request.configuration_id == "residency"
    assert request.proofs == ("a", "b")
    with pytest.raises(OAuthError) as too_many:
        parse_credential_request(
            json_dumps(body).encode(),
            "application/json",
            configurations=configurations,
            batch_size=1,
        )
    assert too_many.value.error == "invalid_credential_request"


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    ["credential_configuration_id", "proofs", "jwt", "credential_identifier", "x"]
                ),
                children,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
@settings(max_examples=300)
def test_credential_request_parser_only_raises_oauth_errors(value: Any) -> None:
    configurations = configurations_for(list(CREDENTIAL_TYPES))
    try:
        parse_credential_request(
            json_dumps(value).encode(),
            "application/json",
            configurations=configurations,
            batch_size=3,
        )
    except OAuthError as error:
        assert error.error in {
            "invalid_credential_request",
            "unknown_credential_configuration",
            "invalid_proof",
            "invalid_encryption_parameters",
        }


def proof(key: PrivateKey, **claims: Any) -> str:
    body = {"aud": AUD, "iat": NOW, "nonce": "n1", **claims}
    return sign_jwt({"typ": PROOF_TYP, "jwk": key.public_key.to_jwk()}, body, key)


def test_key_proof_verification() -> None:
    for alg in ("EdDSA", "ES256"):
        key = PrivateKey.generate(alg)  # type: ignore[arg-type]
        verified = verify_key_proof(proof(key), audience=AUD, now=NOW, max_age=300, skew=60)
        assert verified.holder_key == key.public_key
        assert verified.nonce == "n1"
    key = PrivateKey.generate()
    # iat within [now - max_age, now + skew] only.
    verify_key_proof(proof(key, iat=NOW - 300), audience=AUD, now=NOW, max_age=300, skew=60)
    verify_key_proof(proof(key, iat=NOW + 60), audience=AUD, now=NOW, max_age=300, skew=60)
    reasons = {
        proof(key, iat=NOW - 301): ReasonCode.EXPIRED,
        proof(key, iat=NOW + 61): ReasonCode.IAT_IN_FUTURE,
        proof(key, iat=True): ReasonCode.MALFORMED_INPUT,
        proof(key, aud=AUD + "/"): ReasonCode.MALFORMED_INPUT,
        proof(key, nonce=""): ReasonCode.MALFORMED_INPUT,
        sign_jwt({"typ": "openid4vci-proof+JWT", "jwk": key.public_key.to_jwk()}, {}, key): (
            ReasonCode.TYP_MISMATCH
        ),
    }
    for token, reason in reasons.items():
        with pytest.raises(OAuthError) as caught:
            verify_key_proof(token, audience=AUD, now=NOW, max_age=300, skew=60)
        assert caught.value.error == "invalid_proof"
        assert caught.value.reason == reason
    with pytest.raises(OAuthError) as same_key:
        verify_key_proofs(
            [proof(key), proof(key, nonce="n2")], audience=AUD, now=NOW, max_age=300, skew=60
        )
    assert same_key.value.error == "invalid_proof"


@given(st.text(max_size=200))
@settings(max_examples=300)
def test_key_proof_parser_only_raises_oauth_errors(token: str) -> None:
    with pytest.raises(OAuthError) as caught:
        verify_key_proof(token, audience=AUD, now=NOW, max_age=300, skew=60)
    assert caught.value.error == "invalid_proof"


# --- offer secrets -------------------------------------------------------------------------


def test_offer_secrets() -> None:
    ref = "A" * 42 + "A"
    assert parse_offer_ref(ref) == ref
    assert parse_offer_ref("A" * 42) is None
    assert parse_offer_ref("!" * 43) is None
    code = pre_authorized_code_for(ref)
    assert code == pre_authorized_code_for(ref) != pre_authorized_code_for("B" + ref[1:])
    assert tx_code_mac(code, "123456") != tx_code_mac(code, "123457")
    digits = [new_tx_code(6, os.urandom) for _ in range(50)]
    assert all(len(d) == 6 and d.isdigit() for d in digits)
    assert new_tx_code(6, lambda n: b"\x00" * n) == "000000"


# --- key files -----------------------------------------------------------------------------


def test_sealed_key_round_trip_and_failures() -> None:
    key = PrivateKey.generate()
    jwk = key.export_private_jwk()
    sealed = seal_private_jwk(jwk, PASSPHRASE, **ARGON_FAST)
    assert jwk["d"] not in json_dumps(sealed)
    assert open_sealed_jwk(sealed, PASSPHRASE) == jwk
    with pytest.raises(VerificationError) as wrong:
        open_sealed_jwk(sealed, PASSPHRASE + "!")
    assert wrong.value.reason == ReasonCode.UNAUTHORIZED
    tampered = dict(
        sealed,
        ciphertext=sealed["ciphertext"][:-2]
        + ("AA" if sealed["ciphertext"][-2:] != "AA" else "BA"),
    )
    with pytest.raises(CivicError):
        open_sealed_jwk(tampered, PASSPHRASE)
    for bad in (dict(sealed, format="other"), dict(sealed, opslimit=0), dict(sealed, salt="AA")):
        with pytest.raises(CivicError):
            open_sealed_jwk(bad, PASSPHRASE)


@given(st.text(min_size=12, max_size=40).filter(lambda p: p.strip() == p))
@settings(max_examples=20)
def test_sealing_round_trips_for_any_strong_passphrase(passphrase: str) -> None:
    try:
        check_passphrase(passphrase)
    except UsageError:
        return
    jwk = PrivateKey.generate().export_private_jwk()
    assert open_sealed_jwk(seal_private_jwk(jwk, passphrase, **ARGON_FAST), passphrase) == jwk


def test_weak_passphrases_are_refused() -> None:
    for weak in ("", "short", "changeme-changeme", "Password123456", "test-test-test"):
        with pytest.raises(UsageError):
            check_passphrase(weak)
    check_passphrase(PASSPHRASE)


def test_key_files(tmp_path: Path) -> None:
    key = PrivateKey.generate("ES256")
    plain = tmp_path / "plain.jwk"
    write_key_file(plain, key, passphrase=None)
    assert plain.stat().st_mode & 0o777 == 0o600
    signer = load_key_file(plain, passphrase=None)
    assert signer.public_key == key.public_key
    assert signer.kid == key.public_key.thumbprint()
    assert key.export_private_jwk()["d"] not in repr(signer)
    assert key.public_key.verify(b"data", signer.sign(b"data"))
    assert not hasattr(signer, "export_private_jwk")

    sealed = tmp_path / "sealed.jwk"
    write_key_file(sealed, key, passphrase=PASSPHRASE, **ARGON_FAST)
    assert key.export_private_jwk()["d"].encode() not in sealed.read_bytes()
    assert load_key_file(sealed, passphrase=PASSPHRASE).public_key == key.public_key
    with pytest.raises(UsageError) as needs:
        load_key_file(sealed, passphrase=None)
    assert needs.value.reason == ReasonCode.UNAUTHORIZED
    with pytest.raises(VerificationError):
        load_key_file(sealed, passphrase="a different passphrase")

    plain.chmod(0o644)
    with pytest.raises(UsageError) as readable:
        load_key_file(plain, passphrase=None)
    assert "chmod 600" in readable.value.detail
    with pytest.raises(FileExistsError):
        write_key_file(sealed, key, passphrase=None)
    broken = tmp_path / "broken.jwk"
    broken.write_text('{"kty": "OKP"}')
    broken.chmod(0o600)
    with pytest.raises(CivicError):
        load_key_file(broken, passphrase=None)


def test_key_store(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    db.create_schema(engine)
    store = KeyStore(engine, tmp_path / "keys", passphrase=PASSPHRASE)
    first = store.create("EdDSA", now=NOW, **ARGON_FAST)
    second = store.create("ES256", now=NOW + 1, **ARGON_FAST)
    assert [s.kid for s in store.signers()] == [second.kid, first.kid]
    # Another process (a fresh store) reads the sealed files with the passphrase.
    fresh = KeyStore(engine, tmp_path / "keys", passphrase=PASSPHRASE)
    assert [s.public_key for s in fresh.signers()] == [second.public_key, first.public_key]
    assert all(isinstance(s, FileKeySigner) for s in fresh.signers())
    store.retire(second.kid, now=NOW + 2)
    assert [s.kid for s in store.signers()] == [first.kid]
    assert len(store.public_keys(include_retired=True)) == 2
    # A key file swapped for another key is refused.
    (tmp_path / "keys" / f"{first.kid}.jwk").unlink()
    write_key_file(tmp_path / "keys" / f"{first.kid}.jwk", PrivateKey.generate(), passphrase=None)
    with pytest.raises(UsageError):
        KeyStore(engine, tmp_path / "keys", passphrase=PASSPHRASE).signers()
    assert "PASSPHRASE" not in repr(store) and PASSPHRASE not in repr(store)


def test_key_created_in_the_same_second_is_the_newer(tmp_path: Path) -> None:
    # Kids are thumbprints, in no particular order: with equal creation times a rotation
    # right after init would sign with either key. Several keys make a lucky order unlikely.
    engine = db.create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    db.create_schema(engine)
    store = KeyStore(engine, tmp_path / "keys", passphrase=None)
    made = [store.create("EdDSA", now=NOW, **ARGON_FAST) for _ in range(6)]
    assert [s.kid for s in store.signers()] == [s.kid for s in reversed(made)]
    times = [created for _, _, created in store.public_keys()]
    assert times == [NOW + 5, NOW + 4, NOW + 3, NOW + 2, NOW + 1, NOW]
    # A key made later than that keeps its own time.
    later = store.create("EdDSA", now=NOW + 100, **ARGON_FAST)
    assert store.public_keys()[0][0] == later.kid and store.public_keys()[0][2] == NOW + 100


# --- settings ------------------------------------------------------------------------------


def test_settings_defaults_load(tmp_path: Path) -> None:
    runtime = load_runtime(IssuerSettings(data_dir=tmp_path))
    assert runtime.issuer_url == "http://127.0.0.1:8600"
    assert runtime.status_base_url == "http://127.0.0.1:8600/status"
    assert set(runtime.vcts) == set(CREDENTIAL_TYPES)
    assert runtime.database_url.startswith("sqlite:///")
    assert runtime.key_passphrase is None


@pytest.mark.parametrize(
    "changes",
    [
        {"issuer_url": "http://issuer.example"},
        {"issuer_url": "https://issuer.example/tenant"},
        {"issuer_url": "https://issuer.example?x=1"},
        {"issuer_url": "https://user@issuer.example"},
        {"issuer_url": "ftp://issuer.example"},
        {"key_passphrase": "changeme"},
        {"key_passphrase": "short"},
        {"status_list_size": 65536},
        {"status_list_size": 131073},
        {"tx_code_length": 4},
        {"tx_code_max_attempts": 0},
        {"batch_size": 1},
        {"vcts": ["urn:other"]},
        {"vcts": []},
        {"access_token_ttl": 0},
        {"pre_authorized_code_ttl": 7 * 86400},
        {"status_list_lifetime": 300, "status_list_ttl": 300},
        {"max_body_bytes": 100},
    ],
)
def test_unsafe_settings_are_refused(tmp_path: Path, changes: dict[str, Any]) -> None:
    with pytest.raises(SettingsError):
        load_runtime(IssuerSettings(data_dir=tmp_path, **changes))


def test_passphrase_from_a_file_and_never_in_repr(tmp_path: Path) -> None:
    path = tmp_path / "passphrase"
    path.write_text(PASSPHRASE + "\n")
    runtime = load_runtime(
        IssuerSettings(data_dir=tmp_path, key_passphrase_file=path, issuer_url="https://a.example")
    )
    assert runtime.key_passphrase == PASSPHRASE
    assert PASSPHRASE not in repr(runtime)
    assert PASSPHRASE not in repr(IssuerSettings(key_passphrase=PASSPHRASE))
    path.write_text("changeme\n")
    with pytest.raises(SettingsError):
        load_runtime(IssuerSettings(data_dir=tmp_path, key_passphrase_file=path))
    with pytest.raises(SettingsError):
        load_runtime(
            IssuerSettings(data_dir=tmp_path, key_passphrase_file=path, key_passphrase=PASSPHRASE)
        )


def test_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CIVIC_ISSUER_ISSUER_URL", "https://district.example")
    monkeypatch.setenv("CIVIC_ISSUER_VCTS", json_dumps([RESIDENCY_VCT]))
    monkeypatch.setenv("DATABASE_URL", "postgresql://db.example/issuer")
    runtime = load_runtime(IssuerSettings(data_dir=tmp_path))
    assert runtime.issuer_url == "https://district.example"
    assert runtime.vcts == (RESIDENCY_VCT,)
    assert runtime.database_url == "postgresql://db.example/issuer"


# --- status lists --------------------------------------------------------------------------


def test_status_transitions() -> None:
    valid, invalid, suspended = Status.VALID, Status.INVALID, Status.SUSPENDED
    table = {
        ("revoke", valid): invalid,
        ("revoke", suspended): invalid,
        ("revoke", invalid): None,
        ("suspend", valid): suspended,
        ("suspend", suspended): None,
        ("suspend", invalid): None,
        ("reinstate", suspended): valid,
        ("reinstate", valid): None,
        ("reinstate", invalid): None,
    }
    for (action, current), expected in table.items():
        assert transition(action, current) == expected, (action, current)
    with pytest.raises(UsageError):
        transition("delete", valid)
    built = build_status_list(16, [(3, invalid), (15, suspended)])
    assert [built.get(i) for i in (0, 3, 15)] == [valid, invalid, suspended]


def _credential(n: int) -> dict[str, Any]:
    return {
        "credential_id": f"c{n}",
        "offer_id": "o",
        "vct": RESIDENCY_VCT,
        "kid": "k",
        "status": 0,
        "holder_thumbprint": "t",
        "issued_at": NOW,
        "expires_at": NOW + 1,
        "status_changed_at": None,
    }


def test_allocation_never_repeats_and_moves_to_a_new_list(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    db.create_schema(engine)
    allocations = []
    for n in range(300):
        allocations.append(
            db.run_driver_write(
                engine,
                lambda t, n=n: insert_with_fresh_index(t, _credential(n), list_size=256, now=NOW),
            )
        )
    pairs = {(a.list_id, a.index) for a in allocations}
    assert len(pairs) == 300
    assert all(0 <= a.index < 256 for a in allocations)
    assert len({a.list_id for a in allocations}) >= 2
    with engine.connect() as connection:
        lists = connection.execute(select(db.status_lists)).all()
        stored = connection.execute(
            select(db.credentials.c.status_list_id, db.credentials.c.status_index)
        ).all()
    assert {(int(a), int(b)) for a, b in stored} == pairs
    assert any(row.full for row in lists)
    # A status change bumps the list's version (so the next fetch re-signs).
    first = allocations[0]
    with db.write_transaction(engine) as connection:
        assert change_status(connection, "c0", "suspend", NOW) == Status.SUSPENDED
        assert change_status(connection, "c0", "suspend", NOW) is None
        with pytest.raises(UsageError):
            change_status(connection, "nope", "revoke", NOW)
    with engine.connect() as connection:
        version = connection.execute(
            select(db.status_lists.c.version).where(db.status_lists.c.list_id == first.list_id)
        ).scalar_one()
    assert version == 1


def test_allocation_uses_the_random_source(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    db.create_schema(engine)
    draws = iter([5, 5, 9])

    def random(n: int) -> bytes:
        return next(draws).to_bytes(n, "big")

    first = db.run_driver_write(
        engine,
        lambda t: insert_with_fresh_index(t, _credential(1), list_size=256, now=NOW, random=random),
    )
    second = db.run_driver_write(
        engine,
        lambda t: insert_with_fresh_index(t, _credential(2), list_size=256, now=NOW, random=random),
    )
    assert (first.index, second.index) == (5, 9)  # the second draw of 5 collided


def test_sealed_file_contents_are_json(tmp_path: Path) -> None:
    path = tmp_path / "k.jwk"
    write_key_file(path, PrivateKey.generate(), passphrase=PASSPHRASE, **ARGON_FAST)
    document = json_loads_object(path.read_text())
    assert document["format"] == "civic-sealed-key/1"
    assert document["kdf"] == "argon2id"


# --- durability of SQLite commits (issuer.db module notes) ----------------------------------


def _fsynced_paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record which files ``os.fsync`` is asked to sync (and still sync them)."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return synced


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name fds")
def test_deliveries_are_synced_before_they_return_and_tokens_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FixedClock(NOW)
    issuer = LocalIssuer(tmp_path / "issuer", now=clock)
    try:
        flow = IssuanceFlow(issuer.context)
        principal = ApiPrincipal("k", frozenset(issuer.runtime.vcts))
        claims = get_type(RESIDENCY_VCT).example_claims()
        offer = create_offer(
            issuer.context, principal, vct=RESIDENCY_VCT, claims=claims, render_qr=False
        )
        code = pre_authorized_code_for(offer.offer_url.rsplit("/", 1)[1])
        wal = str((tmp_path / "issuer" / "issuer.sqlite3").resolve()) + "-wal"
        synced = _fsynced_paths(monkeypatch)

        wrong = f"grant_type={PRE_AUTHORIZED_GRANT}&pre-authorized_code={code}&tx_code=x".encode()
        with pytest.raises(OAuthError):
            flow.token(wrong, FORM)
        assert synced.count(wal) == 1  # a wrong guess is counted on disk
        body = (
            f"grant_type={PRE_AUTHORIZED_GRANT}&pre-authorized_code={code}&tx_code={offer.tx_code}"
        )
        token = flow.token(body.encode(), FORM)["access_token"]
        nonce = flow.nonce()
        assert synced.count(wal) == 1  # token and nonce: not durable, they fail closed

        holder = PrivateKey.generate()
        proof = sign_jwt(
            {"typ": PROOF_TYP, "jwk": holder.public_key.to_jwk()},
            {"aud": issuer.url, "iat": NOW, "nonce": nonce},
            holder,
        )
        request = json_dumps(
            {"credential_configuration_id": "residency", "proofs": {"jwt": [proof]}}
        )
        answer = flow.credential(f"Bearer {token}", request.encode(), "application/json")
        assert len(answer["credentials"]) == 1
        assert synced.count(wal) == 2  # the delivery is on disk before it is returned
    finally:
        issuer.context.engine.dispose()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name fds")
def test_shared_wal_syncs_cover_every_caller_that_asked_before_they_began(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    db.create_schema(engine)  # leaves a WAL file behind
    wal = str((tmp_path / "db.sqlite3").resolve()) + "-wal"
    started: list[threading.Event] = [threading.Event(), threading.Event()]
    release = threading.Event()
    synced: list[str] = []
    real_fsync = os.fsync

    def held_fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path == wal:
            started[len(synced)].set()
            synced.append(path)
            if len(synced) == 1:
                assert release.wait(30)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", held_fsync)

    async def scenario() -> None:
        first = asyncio.ensure_future(db.sync_wal_shared(engine))
        await asyncio.to_thread(started[0].wait, 30)  # the first fsync has begun (and waits)
        later = [asyncio.ensure_future(db.sync_wal_shared(engine)) for _ in range(3)]
        await asyncio.sleep(0)  # let them ask
        assert not first.done() and not any(task.done() for task in later)
        release.set()
        await first
        await asyncio.gather(*later)

    try:
        asyncio.run(scenario())
        # The three that asked during the first fsync share one more; none rode on the first.
        assert synced == [wal, wal]
    finally:
        engine.dispose()


def test_shared_wal_sync_hands_its_error_to_the_callers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    db.create_schema(engine)

    def failing_fsync(_fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    try:
        with pytest.raises(OSError):
            asyncio.run(db.sync_wal_shared(engine))
    finally:
        engine.dispose()
    memory = db.create_engine("sqlite://")
    asyncio.run(db.sync_wal_shared(memory))  # nothing on disk to sync


def test_sync_wal_is_a_no_op_without_a_wal_file(tmp_path: Path) -> None:
    memory = db.create_engine("sqlite://")
    db.create_schema(memory)
    db.sync_wal(memory)  # nothing on disk to sync
    engine = db.create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    db.create_schema(engine)
    engine.dispose()  # the last connection checkpoints and removes the WAL
    assert not (tmp_path / "db.sqlite3-wal").exists()
    db.sync_wal(engine)


def test_driver_transactions_roll_back_and_survive_dispose(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    db.create_schema(engine)
    insert = "INSERT INTO {issuer_nonces} (nonce, expires_at) VALUES (:nonce, 1)"
    count = "SELECT COUNT(*) FROM {issuer_nonces}"
    with pytest.raises(RuntimeError), db.driver_transaction(engine, write=True) as transaction:
        transaction.execute(insert, {"nonce": "rolled back"})
        raise RuntimeError("fail after the insert")
    with db.driver_transaction(engine, write=True) as transaction:
        assert transaction.execute(insert, {"nonce": "kept"}) == 1
    engine.dispose()  # closes the per-thread connections; the next transaction opens one
    with db.driver_transaction(engine, write=False) as transaction:
        assert transaction.one(count) == (1,)

    # Another thread works on a connection of its own, and sees the same committed data.
    seen: list[Any] = []
    worker = threading.Thread(
        target=lambda: seen.append(db.run_driver_write(engine, lambda t: t.one(count)))
    )
    worker.start()
    worker.join()
    assert seen == [(1,)]
    engine.dispose()


def test_a_writer_waits_for_another_process_lock_in_short_steps(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    engine = db.create_engine(f"sqlite:///{path}")
    db.create_schema(engine)
    # Another process's writer, as SQLite sees it: a connection of its own holding the lock.
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release_later() -> None:
        time.sleep(0.03)
        other.execute("COMMIT")
        released.set()

    threading.Thread(target=release_later).start()
    with db.driver_transaction(engine, write=True) as transaction:
        assert released.is_set()  # it waited for the lock instead of failing
        transaction.execute("INSERT INTO {issuer_nonces} (nonce, expires_at) VALUES ('n', 1)")
    other.close()
    with db.driver_transaction(engine, write=False) as transaction:
        assert transaction.one("SELECT nonce FROM {issuer_nonces}") == ("n",)
    engine.dispose()


# --- serving: one send per response (issuer.server) ---------------------------------------


class _RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_a_response_head_and_body_leave_in_one_write_in_order() -> None:
    async def scenario() -> _RecordingTransport:
        real = _RecordingTransport()
        proxy = _CoalescingTransport(real, asyncio.get_running_loop())
        proxy.write(b"HTTP/1.1 200 OK\r\n\r\n")
        proxy.write(b"{}")
        assert real.writes == []  # still this turn of the loop
        await asyncio.sleep(0)
        proxy.write(b"HTTP/1.1 404 Not Found\r\n\r\n")
        proxy.write(b"[]")
        assert not proxy.is_closing()
        proxy.close()  # what is pending leaves before the close
        return real

    real = asyncio.run(scenario())
    assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}", b"HTTP/1.1 404 Not Found\r\n\r\n[]"]
    assert real.closed


def test_the_issuer_log_lines_are_uvicorns_default_format() -> None:
    uvicorn_formatter = DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False)
    formatter = LevelPrefixFormatter("%(levelprefix)s %(message)s", use_colors=False)
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
        records = [
            logging.LogRecord(
                "issuer.app", level, __file__, 1, "%s %s -> %d", ("POST", "/x", 200), None
            )
            for _ in range(2)
        ]
        assert formatter.format(records[0]) == uvicorn_formatter.format(records[1])


def test_the_purge_searches_live_offers_by_index_not_every_offer(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    engine = db.create_engine(f"sqlite:///{path}")
    db.create_schema(engine)
    engine.dispose()
    # A database made before the purge indexes existed gets them on the next start.
    with sqlite3.connect(path) as raw:
        raw.execute("DROP INDEX ix_issuer_offers_state_code_expiry")
        raw.execute("DROP INDEX ix_issuer_offers_state_token_expiry")
    engine = db.create_engine(f"sqlite:///{path}")
    db.create_schema(engine)
    engine.dispose()
    with sqlite3.connect(path) as raw:
        plans = [
            " ".join(
                row[-1]
                for row in raw.execute(
                    f"EXPLAIN QUERY PLAN UPDATE issuer_offers SET state = 'expired' "  # noqa: S608
                    f"WHERE state = 'offered' AND {column} <= 0"
                )
            )
            for column in ("code_expires_at", "token_expires_at")
        ]
    assert (
        "USING INDEX ix_issuer_offers_state_code_expiry (state=? AND code_expires_at<?)"
        in (plans[0])
    )
    assert (
        "USING INDEX ix_issuer_offers_state_token_expiry (state=? AND token_expires_at<?)"
        in (plans[1])
    )
