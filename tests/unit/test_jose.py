"""JWK import/export, RFC 7638 thumbprints and compact JWS (RFC 7515, RFC 8037)."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws

from civic.encoding import b64url_decode, b64url_encode, json_dumps
from civic.errors import MalformedError, ReasonCode, UsageError, VerificationError
from civic.jose import (
    PrivateKey,
    parse_jws,
    public_key_from_jwk,
    sign_jws,
    sign_jwt,
    verify_jws,
)
from tests.vectors import load_json

ED = PrivateKey.from_ed25519_seed(bytes(range(32)))
EC = PrivateKey.generate("ES256")


def _forge(header: dict[str, object], payload: bytes, signature: bytes = b"\0" * 64) -> str:
    return ".".join(
        [
            b64url_encode(json_dumps(header).encode()),
            b64url_encode(payload),
            b64url_encode(signature),
        ]
    )


# --- RFC 8037 known answers ------------------------------------------------------------------


def test_rfc8037_private_key_derives_public_key_and_thumbprint() -> None:
    v = load_json("jose", "rfc8037_ed25519.json")
    key = PrivateKey.from_jwk(v["private_jwk"])
    assert key.public_key.to_jwk() == v["public_jwk"]
    assert key.public_key.raw.hex() == v["x_hex"]
    assert key.public_key.thumbprint() == v["jwk_thumbprint"]["thumbprint_b64url"]
    assert key.export_private_jwk() == v["private_jwk"]


def test_rfc8037_signature_is_byte_exact() -> None:
    v = load_json("jose", "rfc8037_ed25519.json")["jws"]
    key = PrivateKey.from_jwk(load_json("jose", "rfc8037_ed25519.json")["private_jwk"])
    assert sign_jws({}, v["payload"].encode(), key) == v["compact"]
    jws = verify_jws(v["compact"], key.public_key, typ=None)
    assert jws.payload == v["payload"].encode()
    assert jws.signing_input.decode() == v["signing_input"]


def test_rfc8037_negative_case_fails() -> None:
    v = load_json("jose", "rfc8037_ed25519.json")
    key = public_key_from_jwk(v["public_jwk"])
    for case in v["negative"]:
        with pytest.raises(VerificationError) as info:
            verify_jws(case["compact"], key, typ=None)
        assert info.value.reason is ReasonCode.SIGNATURE_INVALID


# --- cross-check with jwcrypto as an independent implementation --------------------------------


@pytest.mark.parametrize("key", [ED, EC], ids=["EdDSA", "ES256"])
def test_jwcrypto_verifies_our_tokens_and_we_verify_theirs(key: PrivateKey) -> None:
    token = sign_jwt({"typ": "example+jwt"}, {"sub": "x", "n": 1}, key)
    theirs = jwcrypto_jwk.JWK(**key.export_private_jwk())
    checked = jwcrypto_jws.JWS()
    checked.deserialize(token)
    checked.verify(theirs)  # raises on failure
    assert json.loads(checked.payload) == {"sub": "x", "n": 1}

    signed = jwcrypto_jws.JWS(b"payload from jwcrypto")
    signed.add_signature(theirs, alg=key.alg, protected=json.dumps({"alg": key.alg}))
    assert verify_jws(signed.serialize(compact=True), key.public_key, typ=None).payload == (
        b"payload from jwcrypto"
    )
    assert key.public_key.thumbprint() == theirs.thumbprint()


# --- algorithm pinning and header rules --------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "HS256", "RS256", "ES384", "Ed25519", None, 7])
def test_alg_outside_allow_list_is_rejected(alg: object) -> None:
    token = _forge({"alg": alg}, b"x")
    with pytest.raises(VerificationError) as info:
        verify_jws(token, ED.public_key, typ=None)
    assert info.value.reason is ReasonCode.ALG_NOT_ALLOWED


def test_alg_none_with_empty_signature_is_rejected() -> None:
    token = b64url_encode(b'{"alg":"none"}') + "." + b64url_encode(b"{}") + "."
    with pytest.raises(VerificationError) as info:
        verify_jws(token, ED.public_key, typ=None)
    assert info.value.reason is ReasonCode.ALG_NOT_ALLOWED


def test_hs256_keyed_with_public_key_is_rejected() -> None:
    import hashlib
    import hmac

    header = b64url_encode(b'{"alg":"HS256"}')
    payload = b64url_encode(b'{"iss":"x"}')
    mac = hmac.new(ED.public_key.raw, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    with pytest.raises(VerificationError) as info:
        verify_jws(f"{header}.{payload}.{b64url_encode(mac)}", ED.public_key, typ=None)
    assert info.value.reason is ReasonCode.ALG_NOT_ALLOWED


@pytest.mark.parametrize(("signer", "verifier"), [(ED, EC), (EC, ED)], ids=["Ed->EC", "EC->Ed"])
def test_algorithm_swapped_between_key_types_is_rejected(
    signer: PrivateKey, verifier: PrivateKey
) -> None:
    token = sign_jws({}, b"x", signer)
    with pytest.raises(VerificationError) as info:
        verify_jws(token, verifier.public_key, typ=None)
    assert info.value.reason is ReasonCode.ALG_KEY_MISMATCH


def test_signer_alg_cannot_be_overridden() -> None:
    with pytest.raises(UsageError):
        sign_jws({"alg": "ES256"}, b"x", ED)


@pytest.mark.parametrize(
    "crit",
    [["b64"], ["exp"], [], "b64", [1], ["x-understood"]],
    ids=["b64", "unknown", "empty", "not-a-list", "not-a-string", "absent-from-header"],
)
def test_unknown_or_malformed_crit_is_rejected(crit: object) -> None:
    header: dict[str, object] = {"crit": crit, "b64": False, "exp": 1}
    token = sign_jws(header, b"x", ED)
    with pytest.raises(VerificationError) as info:
        verify_jws(token, ED.public_key, typ=None, understood_crit=["b64"] if crit == [] else [])
    assert info.value.reason is ReasonCode.CRIT_UNSUPPORTED


def test_understood_crit_is_accepted() -> None:
    token = sign_jws({"crit": ["x-ok"], "x-ok": 1}, b"x", ED)
    assert verify_jws(token, ED.public_key, typ=None, understood_crit=["x-ok"]).payload == b"x"


def test_typ_is_enforced_and_application_prefix_is_optional() -> None:
    token = sign_jws({"typ": "kb+jwt"}, b"x", ED)
    with pytest.raises(VerificationError) as info:
        verify_jws(token, ED.public_key, typ="dc+sd-jwt")
    assert info.value.reason is ReasonCode.TYP_MISMATCH
    prefixed = sign_jws({"typ": "application/kb+jwt"}, b"x", ED)
    assert verify_jws(prefixed, ED.public_key, typ="kb+jwt").payload == b"x"
    untyped = sign_jws({}, b"x", ED)
    with pytest.raises(VerificationError):
        verify_jws(untyped, ED.public_key, typ="kb+jwt")


def test_duplicate_header_member_is_rejected() -> None:
    header = b64url_encode(b'{"alg":"EdDSA","alg":"none"}')
    token = f"{header}.{b64url_encode(b'x')}.{b64url_encode(bytes(64))}"
    with pytest.raises(MalformedError) as info:
        parse_jws(token)
    assert info.value.reason is ReasonCode.DUPLICATE_JSON_MEMBER


def test_non_canonical_base64_signature_is_rejected() -> None:
    token = sign_jws({}, b"x", ED)
    head, payload, sig = token.split(".")
    # The signature is 64 bytes: 86 characters whose last one carries 4 unused zero bits;
    # setting one of them decodes to the same bytes, so it must be refused, not ignored.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    tweaked = sig[:-1] + alphabet[alphabet.index(sig[-1]) | 1]
    assert base64.urlsafe_b64decode(tweaked + "==") == b64url_decode(sig)
    with pytest.raises(MalformedError) as info:
        verify_jws(f"{head}.{payload}.{tweaked}", ED.public_key, typ=None)
    assert info.value.reason is ReasonCode.MALFORMED_BASE64


@pytest.mark.parametrize(
    "token",
    ["", "a.b", "a.b.c.d", ".e30.", "e30.e30", "W10.e30." + "A" * 86],
    ids=["empty", "two-parts", "four-parts", "empty-header", "missing-sig", "array-header"],
)
def test_structurally_malformed_jws(token: str) -> None:
    with pytest.raises(MalformedError):
        parse_jws(token)


def test_oversized_jws_rejected_before_decoding() -> None:
    with pytest.raises(MalformedError) as info:
        parse_jws("A" * 70_000 + ".e30.")
    assert info.value.reason is ReasonCode.INPUT_TOO_LARGE


@given(st.text(max_size=300))
def test_parse_jws_never_leaks_foreign_exceptions(text: str) -> None:
    with contextlib.suppress(MalformedError):
        parse_jws(text)


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=85))
def test_any_signature_bit_flip_fails(payload: bytes, position: int) -> None:
    for key in (ED, EC):
        token = sign_jws({}, payload, key)
        head, body, sig = token.split(".")
        raw = bytearray(b64url_decode(sig))
        raw[position % 64] ^= 0x01
        with pytest.raises(VerificationError):
            verify_jws(f"{head}.{body}.{b64url_encode(bytes(raw))}", key.public_key, typ=None)


# --- JWK import ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jwk", "reason"),
    [
        ({"kty": "oct", "k": "AAAA"}, ReasonCode.PRIVATE_KEY_MATERIAL),
        ({"kty": "RSA", "n": "AQAB", "e": "AQAB"}, ReasonCode.UNSUPPORTED_KEY_TYPE),
        ({"kty": "OKP", "crv": "X25519", "x": "A" * 43}, ReasonCode.UNSUPPORTED_KEY_TYPE),
        ({"kty": "EC", "crv": "P-384", "x": "A", "y": "A"}, ReasonCode.UNSUPPORTED_KEY_TYPE),
        ({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}, ReasonCode.MALFORMED_JWK),
        ({"kty": "OKP", "crv": "Ed25519"}, ReasonCode.MALFORMED_JWK),
        ({"crv": "Ed25519", "x": "A" * 43}, ReasonCode.MALFORMED_JWK),
        ({"kty": "EC", "crv": "P-256", "x": "A" * 43, "y": "A" * 43}, ReasonCode.MALFORMED_JWK),
    ],
    ids=["oct", "rsa", "x25519", "p384", "short-x", "no-x", "no-kty", "off-curve"],
)
def test_bad_public_jwks_are_rejected(jwk: dict[str, str], reason: ReasonCode) -> None:
    with pytest.raises(MalformedError) as info:
        public_key_from_jwk(jwk)
    assert info.value.reason is reason


def test_public_slot_refuses_private_key_material() -> None:
    with pytest.raises(MalformedError) as info:
        public_key_from_jwk(ED.export_private_jwk())
    assert info.value.reason is ReasonCode.PRIVATE_KEY_MATERIAL


def test_jwk_alg_member_must_match_key_type() -> None:
    jwk = {**ED.public_key.to_jwk(), "alg": "ES256"}
    with pytest.raises(MalformedError) as info:
        public_key_from_jwk(jwk)
    assert info.value.reason is ReasonCode.ALG_KEY_MISMATCH


@pytest.mark.parametrize("key", [ED, EC], ids=["EdDSA", "ES256"])
def test_jwk_round_trips(key: PrivateKey) -> None:
    assert public_key_from_jwk(key.public_key.to_jwk()) == key.public_key
    assert PrivateKey.from_jwk(key.export_private_jwk()).public_key == key.public_key


def test_private_jwk_with_mismatched_public_part_is_rejected() -> None:
    other = PrivateKey.from_ed25519_seed(bytes(32))
    mixed = {**ED.export_private_jwk(), "x": other.public_key.to_jwk()["x"]}
    with pytest.raises(MalformedError):
        PrivateKey.from_jwk(mixed)


def test_private_key_repr_hides_secret() -> None:
    secret = ED.export_private_jwk()["d"]
    assert secret not in repr(ED)
    assert ED.public_key.thumbprint() in repr(ED)


def test_injected_randomness_makes_key_generation_reproducible() -> None:
    a = PrivateKey.generate("EdDSA", random=lambda n: b"\x07" * n)
    b = PrivateKey.generate("EdDSA", random=lambda n: b"\x07" * n)
    assert a.public_key == b.public_key
