"""did:key and did:jwk: base58btc, varints, the w3c-ccg did:key vectors, the did:jwk example."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from civic.did import (
    BASE58_ALPHABET,
    MAX_DID_LENGTH,
    base58btc_decode,
    base58btc_encode,
    decode_varint,
    did_jwk_from_public_key,
    did_key_from_public_key,
    encode_varint,
    multikey_from_public_key,
    public_key_from_did_url,
    public_key_from_multikey,
    resolve_did,
)
from civic.encoding import b64url_decode, b64url_encode, json_dumps
from civic.errors import CivicError, MalformedError, ReasonCode
from civic.jose import PrivateKey, PublicKey, ed25519_public_key, p256_public_key
from tests.vectors import load_json

VECTORS = ("did_key", "test-vectors")

# did:jwk spec (quartzjer/did-jwk spec.md, "Examples"): the P-256 DID and the JWK it holds.
SPEC_P256_DID_JWK = (
    "did:jwk:eyJjcnYiOiJQLTI1NiIsImt0eSI6IkVDIiwieCI6ImFjYklRaXVNczNpOF91c3pFakoydHBUdFJNNEVVM3l6"
    "OTFQSDZDZEgyVjAiLCJ5IjoiX0tjeUxqOXZXTXB0bm1LdG00NkdxRHo4d2Y3NEk1TEtncmwyR3pIM25TRSJ9"
)
SPEC_P256_JWK = {
    "crv": "P-256",
    "kty": "EC",
    "x": "acbIQiuMs3i8_uszEjJ2tpTtRM4EU3yz91PH6CdH2V0",
    "y": "_KcyLj9vWMptnmKtm46GqDz8wf74I5LKgrl2GzH3nSE",
}
SPEC_X25519_DID_JWK = (
    "did:jwk:eyJrdHkiOiJPS1AiLCJjcnYiOiJYMjU1MTkiLCJ1c2UiOiJlbmMiLCJ4IjoiM3A3YmZYdDl3YlRUVzJIQzdP"
    "UTFOei1EUThoYmVHZE5yZngtRkctSUswOCJ9"
)

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
RELATIONSHIPS = (
    "authentication",
    "assertionMethod",
    "capabilityInvocation",
    "capabilityDelegation",
)

ED_KEY = PrivateKey.from_ed25519_seed(bytes(range(32))).public_key
EC_KEY = PrivateKey.generate("ES256").public_key


def _p256_from_scalar(scalar: int) -> PublicKey:
    point = (
        ec.derive_private_key(scalar, ec.SECP256R1())
        .public_key()
        .public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    )
    return p256_public_key(point)


def _did_key(payload: bytes) -> str:
    return "did:key:z" + base58btc_encode(payload)


def _did_jwk(value: Any) -> str:
    return "did:jwk:" + b64url_encode(json_dumps(value).encode("utf-8"))


def _reason(did: object) -> ReasonCode:
    with pytest.raises(CivicError) as info:
        resolve_did(did)  # type: ignore[arg-type]
    return info.value.reason


ed_keys = st.binary(min_size=32, max_size=32).map(
    lambda seed: PrivateKey.from_ed25519_seed(seed).public_key
)
ec_keys = st.integers(min_value=1, max_value=P256_ORDER - 1).map(_p256_from_scalar)
any_keys = st.one_of(ed_keys, ec_keys)


# --- base58btc and varints --------------------------------------------------------------------

# draft-msporny-base58-03 section 5 ("Hello World!", the leading-zero case) and two more
# published answers (ppad-base58 and Tenzir documentation).
BASE58_KNOWN = [
    (b"Hello World!", "2NEpo7TZRRrLZSi2U"),
    (bytes.fromhex("0000287fb4cd"), "11233QC4"),
    (b"hello world", "StV1DL6CwTryKyV"),
    (b"Hello World", "JxF12TrwUP45BMd"),
    (b"", ""),
    (b"\x00", "1"),
    (b"\x00\x00\x00\x01", "1112"),
]


@pytest.mark.parametrize(("raw", "text"), BASE58_KNOWN)
def test_base58_known_answers(raw: bytes, text: str) -> None:
    assert base58btc_encode(raw) == text
    assert base58btc_decode(text) == raw


@pytest.mark.parametrize("text", ["0", "O", "I", "l", "2NEpo7TZRRrLZSi2U ", "+", "z-", "é", "1\n"])
def test_base58_rejects_foreign_characters(text: str) -> None:
    with pytest.raises(MalformedError) as info:
        base58btc_decode(text, reason=ReasonCode.MALFORMED_DID)
    assert info.value.reason == ReasonCode.MALFORMED_DID


@given(st.binary(max_size=80))
def test_base58_round_trip(raw: bytes) -> None:
    assert base58btc_decode(base58btc_encode(raw)) == raw


@given(st.text(alphabet=BASE58_ALPHABET, max_size=60))
def test_base58_is_bijective(text: str) -> None:
    assert base58btc_encode(base58btc_decode(text)) == text


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (0x7F, b"\x7f"),
        (0x80, b"\x80\x01"),
        (0xED, b"\xed\x01"),
        (0x1200, b"\x80\x24"),
    ],
)
def test_varint_known_answers(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded
    assert decode_varint(encoded + b"\xff") == (value, len(encoded))


@pytest.mark.parametrize(
    "data",
    [b"", b"\x80", b"\xed", b"\x80\x00", b"\xed\x81\x00", b"\xff" * 9 + b"\x01", b"\x80" * 12],
)
def test_varint_rejects_truncated_overlong_and_non_minimal(data: bytes) -> None:
    with pytest.raises(MalformedError) as info:
        decode_varint(data, reason=ReasonCode.MALFORMED_DID)
    assert info.value.reason == ReasonCode.MALFORMED_DID


@given(st.integers(min_value=0, max_value=(1 << 63) - 1), st.binary(max_size=4))
def test_varint_round_trip(value: int, tail: bytes) -> None:
    encoded = encode_varint(value)
    assert decode_varint(encoded + tail) == (value, len(encoded))


# --- did:key: the w3c-ccg vectors -------------------------------------------------------------


def _ed25519_vectors() -> list[tuple[str, dict[str, Any]]]:
    return list(load_json(*VECTORS, "ed25519-x25519.json").items())


def _vector_public_bytes(pair: dict[str, Any]) -> bytes:
    if "publicKeyBase58" in pair:
        return base58btc_decode(pair["publicKeyBase58"])
    return b64url_decode(pair["publicKeyJwk"]["x"])


def test_ed25519_vectors_resolve_to_listed_keys_and_x25519_key_agreement() -> None:
    vectors = _ed25519_vectors()
    assert len(vectors) == 5
    for did, vector in vectors:
        document = resolve_did(did)
        assert document.id == did
        assert document.public_key.alg == "EdDSA"
        assert document.public_key.raw == _vector_public_bytes(vector["verificationKeyPair"])
        assert document.verification_method_id == f"{did}#{did.removeprefix('did:key:')}"
        agreement = vector["keyAgreementKeyPair"]
        assert document.key_agreement_id is not None
        assert document.key_agreement_id.split("#")[1] == agreement["id"].split("#")[1]
        assert document.x25519_public_key == _vector_public_bytes(agreement)
        assert did_key_from_public_key(document.public_key) == did


def test_ed25519_vector_documents_have_the_listed_ids_and_relationships() -> None:
    for did, vector in _ed25519_vectors():
        ours = resolve_did(did).to_json()
        theirs = vector["didDocument"]
        assert ours["id"] == theirs["id"]
        assert [m["id"] for m in ours["verificationMethod"]] == [
            m["id"] for m in theirs["verificationMethod"]
        ]
        for relationship in (*RELATIONSHIPS, "keyAgreement"):
            assert ours[relationship] == theirs[relationship]


def test_ed25519_jwk_vector_document_is_reproduced_exactly() -> None:
    jwk_form = [v for _, v in _ed25519_vectors() if "publicKeyJwk" in v["verificationKeyPair"]]
    assert jwk_form
    for vector in jwk_form:
        assert resolve_did(vector["didDocument"]["id"]).to_json() == vector["didDocument"]


def test_ed25519_vector_seeds_derive_the_listed_keys() -> None:
    for did, vector in _ed25519_vectors():
        key = PrivateKey.from_ed25519_seed(bytes.fromhex(vector["seed"]))
        assert key.public_key.raw == _vector_public_bytes(vector["verificationKeyPair"])
        assert did_key_from_public_key(key.public_key) == did
        private_jwk = vector["verificationKeyPair"].get("privateKeyJwk")
        if private_jwk is not None:
            assert key.export_private_jwk() == private_jwk


def test_p256_vectors_resolve_to_listed_keys_and_re_encode() -> None:
    vectors = load_json(*VECTORS, "nist-curves.json")
    p256 = {did: v for did, v in vectors.items() if did.startswith("did:key:zDn")}
    assert len(p256) == 3
    for did, vector in p256.items():
        document = resolve_did(did)
        method = vector["verificationMethod"]
        assert document.public_key.alg == "ES256"
        if "publicKeyJwk" in method:
            assert document.public_key.to_jwk() == method["publicKeyJwk"]
            assert PrivateKey.from_jwk(method["privateKeyJwk"]).public_key == document.public_key
            assert document.to_json() == vector["didDocument"]
        else:
            compressed = base58btc_decode(method["publicKeyBase58"])
            assert p256_public_key(compressed) == document.public_key
        assert document.key_agreement_id == document.verification_method_id
        assert did_key_from_public_key(document.public_key) == did


def _unsupported_vector_dids() -> list[str]:
    nist = load_json(*VECTORS, "nist-curves.json")
    dids = [did for did in nist if not did.startswith("did:key:zDn")]
    for name in ("secp256k1.json", "rsa.json", "bls12381.json"):
        dids.extend(load_json(*VECTORS, name))
    dids.extend(load_json(*VECTORS, "x25519.json")["didDocument"])
    return dids


def test_other_key_types_are_unsupported() -> None:
    dids = _unsupported_vector_dids()
    assert len(dids) == 4 + 6 + 2 + 6 + 4
    for did in dids:
        assert _reason(did) == ReasonCode.UNSUPPORTED_KEY_TYPE, did


def test_x25519_key_agreement_fragment_is_not_a_signature_key() -> None:
    did, vector = _ed25519_vectors()[0]
    agreement_fragment = vector["keyAgreementKeyPair"]["id"].split("#")[1]
    with pytest.raises(MalformedError) as info:
        public_key_from_did_url(f"{did}#{agreement_fragment}")
    assert info.value.reason == ReasonCode.MALFORMED_DID


def test_multikey_is_the_did_key_method_specific_id() -> None:
    for key in (ED_KEY, EC_KEY):
        multikey = multikey_from_public_key(key)
        assert did_key_from_public_key(key) == "did:key:" + multikey
        assert public_key_from_multikey(multikey) == key
    for bad in ("", "z", "6Mk", "z0"):
        with pytest.raises(MalformedError) as info:
            public_key_from_multikey(bad)
        assert info.value.reason == ReasonCode.MALFORMED_INPUT


# --- did:key: malformed input -----------------------------------------------------------------

ED_PREFIX = encode_varint(0xED)
P256_PREFIX = encode_varint(0x1200)


def _p256_x_not_on_curve() -> bytes:
    for x in range(1, 100):
        candidate = b"\x02" + x.to_bytes(32, "big")
        try:
            p256_public_key(candidate)
        except MalformedError:
            return candidate
    raise AssertionError("no off-curve x below 100")  # pragma: no cover


ED25519_IDENTITY = b"\x01" + b"\x00" * 31  # small order: no X25519 key, not a real key


@pytest.mark.parametrize(
    "did",
    [
        "did:key:",
        "did:key:z",
        "did:key:6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",  # no multibase prefix
        "did:key:uAe0BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # base64url multibase
        "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooW0",  # '0' not in base58
        "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp#x",  # a DID URL
        "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp/path",
        "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp?q=1",
        "did:key:1:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",  # old versioned form
        " did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
        "DID:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
        "did:KEY:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
        _did_key(ED_PREFIX),  # no key at all
        _did_key(ED_PREFIX + ED_KEY.raw[:31]),
        _did_key(ED_PREFIX + ED_KEY.raw + b"\x00"),
        _did_key(b"\xed\x81\x00" + ED_KEY.raw),  # non-minimal varint for 0xed
        _did_key(b"\xed"),  # truncated varint
        _did_key(ED_PREFIX + ED25519_IDENTITY),
        _did_key(P256_PREFIX + EC_KEY.raw),  # uncompressed point
        _did_key(P256_PREFIX + b"\x04" + EC_KEY.raw[1:33]),  # 33 bytes, wrong SEC1 tag
        _did_key(P256_PREFIX + _p256_x_not_on_curve()),
        _did_key(P256_PREFIX + b"\x02" + b"\xff" * 32),  # x above the field prime
        _did_key(encode_varint(0x12) + b"\x00" * 32),  # sha2-256: not a key codec
        "did:",
        "did:web",
        "did:web:",
        "did:web:example.com:",
        "did:web:exa mple.com",
        "did:web:example.com#key-1",
        "did:web:%zz",
        "",
        "z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
    ],
)
def test_malformed_dids_are_malformed(did: str) -> None:
    assert _reason(did) == ReasonCode.MALFORMED_DID


@pytest.mark.parametrize(
    "did",
    [
        "did:web:example.com",
        "did:web:example.com:user:alice",
        "did:web:localhost%3A8443",
        "did:example:123456789abcdefghi",
        "did:ebsi:zfEmvX5twhXjQJiCWsukvQA",
        "did:peer:2.Ez6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc",
    ],
)
def test_other_methods_are_unsupported(did: str) -> None:
    assert _reason(did) == ReasonCode.UNSUPPORTED_DID_METHOD


def test_non_strings_and_oversized_dids_are_refused() -> None:
    assert _reason(None) == ReasonCode.MALFORMED_DID
    assert _reason(b"did:key:z6Mk") == ReasonCode.MALFORMED_DID
    long_jwk = _did_jwk({**SPEC_P256_JWK, "pad": "a" * MAX_DID_LENGTH})
    assert _reason(long_jwk) == ReasonCode.INPUT_TOO_LARGE
    assert _reason("did:key:z" + "1" * MAX_DID_LENGTH) == ReasonCode.INPUT_TOO_LARGE


def test_invalid_ed25519_keys_get_no_did() -> None:
    weak = ed25519_public_key(ED25519_IDENTITY)
    for create in (did_key_from_public_key, did_jwk_from_public_key):
        with pytest.raises(MalformedError) as info:
            create(weak)
        assert info.value.reason == ReasonCode.MALFORMED_JWK


# --- did:jwk ----------------------------------------------------------------------------------


def test_spec_p256_did_jwk_resolves() -> None:
    document = resolve_did(SPEC_P256_DID_JWK)
    assert document.public_key == p256_public_key(
        b"\x04" + b64url_decode(SPEC_P256_JWK["x"]) + b64url_decode(SPEC_P256_JWK["y"])
    )
    assert document.verification_method_id == SPEC_P256_DID_JWK + "#0"
    assert did_jwk_from_public_key(document.public_key) == SPEC_P256_DID_JWK
    body = document.to_json()
    assert body["@context"] == [
        "https://www.w3.org/ns/did/v1",
        "https://w3id.org/security/suites/jws-2020/v1",
    ]
    assert body["verificationMethod"] == [
        {
            "id": SPEC_P256_DID_JWK + "#0",
            "type": "JsonWebKey2020",
            "controller": SPEC_P256_DID_JWK,
            "publicKeyJwk": SPEC_P256_JWK,
        }
    ]
    # The spec lists keyAgreement too: an EC key without "use": "sig" may agree keys.
    for relationship in (*RELATIONSHIPS, "keyAgreement"):
        assert body[relationship] == [SPEC_P256_DID_JWK + "#0"]
    assert public_key_from_did_url(SPEC_P256_DID_JWK + "#0") == document.public_key


def test_spec_x25519_did_jwk_is_an_unsupported_key_type() -> None:
    assert _reason(SPEC_X25519_DID_JWK) == ReasonCode.UNSUPPORTED_KEY_TYPE


def test_did_jwk_keeps_the_jwk_as_written() -> None:
    written = {"x": ED_KEY.to_jwk()["x"], "kty": "OKP", "kid": "wallet-1", "crv": "Ed25519"}
    did = _did_jwk(written)
    document = resolve_did(did)
    assert document.public_key == ED_KEY
    assert document.to_json()["verificationMethod"][0]["publicKeyJwk"] == written
    # Another serialisation of the same key is another DID (did:jwk spec, "Security").
    assert did_jwk_from_public_key(ED_KEY) != did
    # Ed25519 cannot agree keys, so there is no keyAgreement entry.
    assert "keyAgreement" not in document.to_json()


def test_did_jwk_use_sig_has_no_key_agreement() -> None:
    document = resolve_did(_did_jwk({**EC_KEY.to_jwk(), "use": "sig"}))
    assert document.key_agreement_id is None
    assert "keyAgreement" not in document.to_json()
    assert resolve_did(did_jwk_from_public_key(EC_KEY)).key_agreement_id is not None


def test_did_jwk_with_private_key_is_refused() -> None:
    private = PrivateKey.from_ed25519_seed(bytes(32)).export_private_jwk()
    assert _reason(_did_jwk(private)) == ReasonCode.PRIVATE_KEY_MATERIAL
    with pytest.raises(CivicError) as info:
        resolve_did(_did_jwk(private))
    assert private["d"] not in str(info.value)


def _off_curve_jwk() -> dict[str, str]:
    jwk = EC_KEY.to_jwk()
    y = bytearray(b64url_decode(jwk["y"]))
    y[-1] ^= 1
    return {**jwk, "y": b64url_encode(bytes(y))}


@pytest.mark.parametrize(
    "did",
    [
        "did:jwk:",
        "did:jwk:" + b64url_encode(json_dumps(SPEC_P256_JWK).encode()) + "=",  # padding
        "did:jwk:" + b64url_encode(b'{"kty":"EC"}') + "#0",
        "did:jwk:eyJhIjox" + "A",  # impossible base64url length
        "did:jwk:e31",  # non-canonical base64url tail
        "did:jwk:" + b64url_encode(b"\xff\xfe"),  # not UTF-8
        "did:jwk:" + b64url_encode(b'{"kty": "OKP",'),  # not JSON
        "did:jwk:" + b64url_encode(b'{"kty":"OKP","kty":"OKP"}'),  # duplicate member
        _did_jwk([SPEC_P256_JWK]),
        _did_jwk("did:jwk"),
        _did_jwk(None),
        _did_jwk({}),
        _did_jwk({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(b"\x00" * 31)}),
        _did_jwk({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(ED25519_IDENTITY)}),
        _did_jwk({"kty": "OKP", "crv": "Ed25519", "x": ED_KEY.to_jwk()["x"], "alg": "ES256"}),
        _did_jwk({"kty": "OKP", "crv": "Ed25519", "x": ED_KEY.to_jwk()["x"], "use": "enc"}),
        _did_jwk(_off_curve_jwk()),
        _did_jwk({"kty": "EC", "crv": "P-256", "x": SPEC_P256_JWK["x"]}),
    ],
)
def test_malformed_did_jwk(did: str) -> None:
    assert _reason(did) == ReasonCode.MALFORMED_DID


# --- DID URLs ---------------------------------------------------------------------------------


def test_did_url_names_the_verification_method() -> None:
    for key in (ED_KEY, EC_KEY):
        did = did_key_from_public_key(key)
        assert public_key_from_did_url(f"{did}#{did.removeprefix('did:key:')}") == key
        assert public_key_from_did_url(did_jwk_from_public_key(key) + "#0") == key


@pytest.mark.parametrize(
    "suffix_for_key, suffix_for_jwk",
    [("", ""), ("#", "#"), ("#0", "#1"), ("#key-1", "#0#0"), ("#z6Mk", "#00")],
)
def test_did_url_with_a_wrong_or_missing_fragment_is_refused(
    suffix_for_key: str, suffix_for_jwk: str
) -> None:
    for did_url in (
        did_key_from_public_key(ED_KEY) + suffix_for_key,
        did_jwk_from_public_key(EC_KEY) + suffix_for_jwk,
    ):
        with pytest.raises(MalformedError) as info:
            public_key_from_did_url(did_url)
        assert info.value.reason == ReasonCode.MALFORMED_DID


def test_did_url_of_another_method_is_unsupported() -> None:
    with pytest.raises(MalformedError) as info:
        public_key_from_did_url("did:web:example.com#key-1")
    assert info.value.reason == ReasonCode.UNSUPPORTED_DID_METHOD


# --- properties -------------------------------------------------------------------------------


@given(any_keys)
def test_did_key_round_trip(key: PublicKey) -> None:
    did = did_key_from_public_key(key)
    document = resolve_did(did)
    assert document.public_key == key
    assert document.public_key.to_jwk() == key.to_jwk()
    assert public_key_from_did_url(document.verification_method_id) == key
    assert did.startswith("did:key:z6Mk" if key.alg == "EdDSA" else "did:key:zDn")


@given(any_keys)
def test_did_jwk_round_trip(key: PublicKey) -> None:
    did = did_jwk_from_public_key(key)
    document = resolve_did(did)
    assert document.public_key == key
    assert document.to_json()["verificationMethod"][0]["publicKeyJwk"] == key.to_jwk()
    assert public_key_from_did_url(did + "#0") == key


@given(ed_keys)
def test_did_key_document_is_valid_json_and_self_consistent(key: PublicKey) -> None:
    document = resolve_did(did_key_from_public_key(key)).to_json()
    assert json.loads(json.dumps(document)) == document
    method_ids = {m["id"] for m in document["verificationMethod"]}
    for relationship in (*RELATIONSHIPS, "keyAgreement"):
        assert set(document[relationship]) <= method_ids


def _multicodec_payloads() -> st.SearchStrategy[bytes]:
    codecs = st.sampled_from([0xED, 0x1200, 0xEC, 0xE7, 0x1201, 0x1205, 0x12, 0x00, 0x7F])
    return st.builds(
        lambda codec, body: encode_varint(codec) + body, codecs, st.binary(max_size=70)
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)

arbitrary_dids = st.one_of(
    st.text(max_size=200),
    st.text(max_size=100).map(lambda t: "did:" + t),
    st.text(alphabet=BASE58_ALPHABET + "0OIl#", max_size=80).map(lambda t: "did:key:z" + t),
    st.binary(max_size=80).map(lambda b: "did:key:z" + base58btc_encode(b)),
    _multicodec_payloads().map(_did_key),
    st.binary(max_size=120).map(lambda b: "did:jwk:" + b64url_encode(b)),
    json_values.map(_did_jwk),
    st.dictionaries(
        st.sampled_from(["kty", "crv", "x", "y", "d", "use", "alg", "key_ops"]),
        st.one_of(st.sampled_from(["OKP", "EC", "Ed25519", "P-256", "sig"]), json_values),
    ).map(_did_jwk),
)


@given(arbitrary_dids)
def test_resolution_raises_only_civic_errors(text: str) -> None:
    for parse in (resolve_did, public_key_from_did_url):
        for candidate in (text, text + "#0"):
            with contextlib.suppress(CivicError):
                parse(candidate)
