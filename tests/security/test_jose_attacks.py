"""JOSE attacks on the issuer-signed JWT of an SD-JWT VC (RFC 7515, RFC 8725).

Algorithm confusion, ``none``, critical headers, token type confusion, header key injection,
key ids of other issuers, stripped and truncated signatures, non-canonical base64url and
duplicate JSON members. Each is presented to the verdict checklist
(:func:`civic.verdict.verify_presentation`) and must fail the named check with its code.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from civic.encoding import b64url_decode, b64url_encode, json_dumps
from civic.errors import ReasonCode
from civic.sdjwt import parse_sd_jwt
from civic.verdict import Result
from tests.security.forge import (
    DROP,
    OTHER_ISSUER,
    OTHER_KID,
    P256_KID,
    Build,
    Case,
    Scene,
    attacks_of,
    case,
    honest_texts,
    run_core,
    verify_core,
)

C = ReasonCode
_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _unsigned(alg: str) -> Build:
    def build(scene: Scene) -> str:
        return scene.resign(header=scene.issuer_header(alg=alg), signer=lambda _data: b"")

    return build


def _with_header(**members: Any) -> Build:
    """The agency's own signature over a header with ``members`` changed."""

    def build(scene: Scene) -> str:
        return scene.resign(header=scene.issuer_header(**members))

    return build


def _hs256(key_of: str) -> Build:
    def build(scene: Scene) -> str:
        public = scene.city.agency.public_key
        key = public.raw if key_of == "raw" else json_dumps(public.to_jwk()).encode()
        return scene.resign(
            header=scene.issuer_header(alg="HS256"),
            signer=lambda data: hmac.new(key, data, hashlib.sha256).digest(),
        )

    return build


def _eddsa_on_p256(scene: Scene) -> str:
    # The attacker's own Ed25519 signature under the agency's P-256 kid.
    header = scene.issuer_header(scene.attacker, kid=P256_KID)
    return scene.resign(header=header, signer=scene.attacker)


def _es256_on_ed25519(scene: Scene) -> str:
    header = scene.issuer_header(scene.attacker_p256)  # kid: the agency's Ed25519 key
    return scene.resign(header=header, signer=scene.attacker_p256)


def _es256_der(scene: Scene) -> str:
    """A P-256 credential whose signature is DER (what a careless ECDSA library emits), not the
    64-byte r||s of RFC 7518 section 3.4."""
    key = scene.p256._ec  # the DER form is only reachable through the raw key
    assert key is not None
    header = scene.issuer_header(scene.p256, kid=P256_KID)
    return scene.resign(
        header=header, signer=lambda data: key.sign(data, ec.ECDSA(hashes.SHA256()))
    )


def _attacker_jwk(member: str) -> Build:
    def build(scene: Scene) -> str:
        value: object = {
            "jwk": scene.attacker.public_key.to_jwk(),
            "jku": "https://attacker.example/jwks.json",
            "x5u": "https://attacker.example/cert.pem",
            "x5c": [b64url_encode(b"not really a certificate")],
        }[member]
        header = scene.issuer_header(scene.attacker, **{member: value})
        return scene.resign(header=header, signer=scene.attacker)

    return build


def _jwk_without_kid(scene: Scene) -> str:
    header = scene.issuer_header(scene.attacker, jwk=scene.attacker.public_key.to_jwk())
    del header["kid"]
    return scene.resign(header=header, signer=scene.attacker)


def _kid_of_other_issuer(scene: Scene) -> str:
    """The attacker signs a Mapo credential, naming the other issuer's key."""
    return scene.resign(header=scene.issuer_header(kid=OTHER_KID), signer=scene.attacker)


def _other_issuer_by_attacker(scene: Scene) -> str:
    def edit(payload: dict[str, object]) -> None:
        payload["iss"] = OTHER_ISSUER

    return scene.resign(edit, header=scene.issuer_header(kid=OTHER_KID), signer=scene.attacker)


def _other_issuer_by_agency(scene: Scene) -> str:
    """An accredited issuer signs in another accredited issuer's name, with that one's kid."""

    def edit(payload: dict[str, object]) -> None:
        payload["iss"] = OTHER_ISSUER

    return scene.resign(edit, header=scene.issuer_header(kid=OTHER_KID))


def _issuer_jws(text: str) -> tuple[str, str]:
    jws, rest = text.split("~", 1)
    return jws, rest


def _edit_signature(edit: Callable[[str], str]) -> Build:
    def build(scene: Scene) -> str:
        jws, rest = _issuer_jws(scene.valid())
        header, payload, signature = jws.split(".")
        return f"{header}.{payload}.{edit(signature)}~{rest}"

    return build


def _truncate(signature: str) -> str:
    return b64url_encode(b64url_decode(signature)[:48])


def _flip(signature: str) -> str:
    raw = bytearray(b64url_decode(signature))
    raw[10] ^= 0x01
    return b64url_encode(bytes(raw))


def _trailing_bits(signature: str) -> str:
    # 64 bytes are 86 characters; the last carries 4 unused bits, which must be zero.
    value = _B64URL.index(signature[-1])
    return signature[:-1] + _B64URL[(value & ~0x0F) | 0x05]


_ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493


def _s_plus_order(signature: str) -> str:
    """The same Ed25519 signature with S + L: a second encoding a lax verifier accepts."""
    raw = b64url_decode(signature)
    s = int.from_bytes(raw[32:], "little") + _ED25519_ORDER
    return b64url_encode(raw[:32] + s.to_bytes(32, "little"))


def _drop_signature_segment(scene: Scene) -> str:
    jws, rest = _issuer_jws(scene.valid())
    return jws.rsplit(".", 1)[0] + "~" + rest


def _five_segments(scene: Scene) -> str:
    jws, rest = _issuer_jws(scene.valid())
    return jws + ".AAAA.AAAA~" + rest


def _padded_header(scene: Scene) -> str:
    jws, rest = _issuer_jws(scene.valid())
    header, others = jws.split(".", 1)
    return f"{header}=.{others}~{rest}"


def _standard_alphabet(scene: Scene) -> str:
    """The issuer JWT with base64url's '-' and '_' written as standard base64's '+' and '/'."""
    for width in range(8):
        header = scene.issuer_header(pad="?" * width + ">" * width)
        encoded = b64url_encode(json_dumps(header).encode())
        if "-" in encoded and "_" in encoded:
            break
    jws, rest = _issuer_jws(scene.resign(header=header))
    assert "-" in jws
    return jws.translate(str.maketrans("-_", "+/")) + "~" + rest


def _payload_extended(scene: Scene) -> str:
    """``exp`` pushed ten years on, without the issuer's signature over the change."""
    jws, rest = _issuer_jws(scene.valid())
    header, _payload, signature = jws.split(".")
    claims = parse_sd_jwt(jws + "~").payload
    claims["exp"] += 10 * 365 * 86_400
    edited = b64url_encode(json_dumps(claims).encode())
    prefix = f"{header}.{edited}.{signature}~" + rest[: rest.rfind("~") + 1]
    return prefix + scene.kb_jwt(prefix)


def _cnf_swapped(scene: Scene) -> str:
    """A stolen credential whose cnf is rewritten to the thief's key, then bound by the thief."""
    jws, rest = _issuer_jws(scene.valid())
    header, _payload, signature = jws.split(".")
    claims = parse_sd_jwt(jws + "~").payload
    claims["cnf"] = {"jwk": scene.attacker.public_key.to_jwk()}
    edited = b64url_encode(json_dumps(claims).encode())
    prefix = f"{header}.{edited}.{signature}~" + rest[: rest.rfind("~") + 1]
    return prefix + scene.kb_jwt(prefix, signer=scene.attacker)


def _raw_header(header_text: bytes) -> Build:
    def build(scene: Scene) -> str:
        return scene.resign(header=header_text)

    return build


def _duplicate_payload_member(scene: Scene) -> str:
    parts = scene.parts()
    body = json_dumps(parts.payload)
    assert body.startswith('{"iss":')
    forged = ('{"iss":"https://attacker.example",' + body[1:]).encode()
    return scene.assemble(forged, parts.encoded("age_over_19"))


def _kid_not_a_string(scene: Scene) -> str:
    return scene.resign(header=scene.issuer_header(kid=12345))


CASES: tuple[Case, ...] = (
    case("alg_none", C.ALG_NOT_ALLOWED, "signature",
         'alg "none" with an empty signature', _unsigned("none")),
    case("alg_none_capitalised", C.ALG_NOT_ALLOWED, "signature",
         'alg "None": case variants of none', _unsigned("None")),
    case("alg_none_uppercase", C.ALG_NOT_ALLOWED, "signature",
         'alg "NONE"', _unsigned("NONE")),
    case("alg_none_keeping_a_valid_signature", C.ALG_NOT_ALLOWED, "signature",
         'alg "none" in a header still carrying the agency\'s real signature',
         _with_header(alg="none")),
    case("alg_missing", C.ALG_NOT_ALLOWED, "signature",
         "no alg header member at all", _with_header(alg=DROP)),
    case("alg_case_variant_eddsa", C.ALG_NOT_ALLOWED, "signature",
         'alg "eddsa": algorithm names are case-sensitive', _with_header(alg="eddsa")),
    case("alg_rs256_not_allowed", C.ALG_NOT_ALLOWED, "signature",
         "RS256, an algorithm outside the allow-list", _with_header(alg="RS256")),
    case("hs256_keyed_with_public_key", C.ALG_NOT_ALLOWED, "signature",
         "HS256 MAC keyed with the issuer's raw public key bytes", _hs256("raw")),
    case("hs256_keyed_with_public_jwk", C.ALG_NOT_ALLOWED, "signature",
         "HS256 MAC keyed with the issuer's public JWK text", _hs256("jwk")),
    case("eddsa_header_on_p256_key", C.ALG_KEY_MISMATCH, "signature",
         "EdDSA header and signature under the kid of an accredited P-256 key", _eddsa_on_p256),
    case("es256_header_on_ed25519_key", C.ALG_KEY_MISMATCH, "signature",
         "ES256 header and signature under the kid of an accredited Ed25519 key",
         _es256_on_ed25519),
    case("es256_der_encoded_signature", C.SIGNATURE_INVALID, "signature",
         "an ES256 signature in DER form instead of the fixed 64-byte r||s", _es256_der),
    case("crit_unknown_extension", C.CRIT_UNSUPPORTED, "signature",
         "crit names an extension the verifier does not understand",
         _with_header(crit=["x-attack"], **{"x-attack": True})),
    case("crit_empty_list", C.CRIT_UNSUPPORTED, "signature",
         "crit present but empty (RFC 7515 4.1.11 forbids it)", _with_header(crit=[])),
    case("crit_not_a_list", C.CRIT_UNSUPPORTED, "signature",
         "crit as a string", _with_header(crit="b64")),
    case("typ_jwt_instead_of_dc_sd_jwt", C.TYP_MISMATCH, "signature",
         'typ "JWT": a plain JWT must not pass as an SD-JWT VC', _with_header(typ="JWT")),
    case("typ_missing", C.TYP_MISMATCH, "signature",
         "no typ header member", _with_header(typ=DROP)),
    case("typ_kb_jwt_on_issuer_jwt", C.TYP_MISMATCH, "signature",
         'typ "kb+jwt" on the issuer-signed JWT (token type confusion)',
         _with_header(typ="kb+jwt")),
    case("typ_legacy_vc_sd_jwt", C.TYP_MISMATCH, "signature",
         'the pre-2024 typ "vc+sd-jwt"', _with_header(typ="vc+sd-jwt")),
    case("jwk_header_injection", C.SIGNATURE_INVALID, "signature",
         "attacker signs and embeds its own key as a jwk header under the agency's kid",
         _attacker_jwk("jwk")),
    case("jwk_header_without_kid", C.KEY_UNKNOWN, "issuer_key",
         "attacker's embedded jwk and no kid: the header key is never a trust anchor",
         _jwk_without_kid),
    case("jku_header_injection", C.SIGNATURE_INVALID, "signature",
         "a jku URL pointing at the attacker's key set (never fetched)",
         _attacker_jwk("jku")),
    case("x5u_header_injection", C.SIGNATURE_INVALID, "signature",
         "an x5u URL pointing at the attacker's certificate", _attacker_jwk("x5u")),
    case("x5c_header_injection", C.SIGNATURE_INVALID, "signature",
         "an x5c chain embedded by the attacker", _attacker_jwk("x5c")),
    case("kid_of_another_issuer", C.KEY_UNKNOWN, "issuer_key",
         "attacker signs a Mapo credential under another accredited issuer's kid",
         _kid_of_other_issuer),
    case("other_issuer_impersonated_by_attacker", C.SIGNATURE_INVALID, "signature",
         "iss and kid of another accredited issuer, signed by the attacker",
         _other_issuer_by_attacker),
    case("issuer_signs_as_another_issuer", C.SIGNATURE_INVALID, "signature",
         "an accredited issuer signs with its own key in another issuer's name and kid",
         _other_issuer_by_agency),
    case("kid_not_a_string", C.MALFORMED_SD_JWT, "parse",
         "kid as a number", _kid_not_a_string),
    case("signature_stripped", C.SIGNATURE_INVALID, "signature",
         "the signature segment emptied", _edit_signature(lambda _s: "")),
    case("signature_truncated", C.SIGNATURE_INVALID, "signature",
         "the signature cut to 48 bytes", _edit_signature(_truncate)),
    case("signature_bit_flipped", C.SIGNATURE_INVALID, "signature",
         "one bit of the signature flipped", _edit_signature(_flip)),
    case("ed25519_signature_s_not_reduced", C.SIGNATURE_INVALID, "signature",
         "the issuer's Ed25519 signature malleated to S + L (RFC 8032 5.1.7 requires S < L)",
         _edit_signature(_s_plus_order)),
    case("signature_segment_missing", C.MALFORMED_JWS, "parse",
         "a two-segment JWS", _drop_signature_segment),
    case("jwe_shaped_five_segments", C.MALFORMED_JWS, "parse",
         "five dot-separated segments where a compact JWS has three", _five_segments),
    case("payload_exp_extended_without_resigning", C.SIGNATURE_INVALID, "signature",
         "exp moved ten years later in the signed payload, KB-JWT rebound", _payload_extended),
    case("cnf_swapped_to_attacker_key", C.SIGNATURE_INVALID, "signature",
         "a stolen credential's cnf rewritten to the thief's key, bound by the thief",
         _cnf_swapped),
    case("base64url_padding_in_signature", C.MALFORMED_BASE64, "parse",
         "'=' padding after the signature", _edit_signature(lambda s: s + "==")),
    case("base64url_padding_in_header", C.MALFORMED_BASE64, "parse",
         "'=' padding after the header segment", _padded_header),
    case("base64_standard_alphabet", C.MALFORMED_BASE64, "parse",
         "the issuer JWT in standard base64 ('+' and '/')", _standard_alphabet),
    case("base64url_nonzero_trailing_bits", C.MALFORMED_BASE64, "parse",
         "a second encoding of the same signature (unused low bits set)",
         _edit_signature(_trailing_bits)),
    case("duplicate_header_member_kid", C.DUPLICATE_JSON_MEMBER, "parse",
         "kid twice in the header, so parsers may disagree on the key",
         _raw_header(b'{"alg":"EdDSA","typ":"dc+sd-jwt","kid":"gangnam-2026-1",'
                     b'"kid":"mapo-2026-1"}')),
    case("duplicate_header_member_alg", C.DUPLICATE_JSON_MEMBER, "parse",
         'alg twice: "none" first, "EdDSA" last', _raw_header(
             b'{"alg":"none","typ":"dc+sd-jwt","kid":"mapo-2026-1","alg":"EdDSA"}')),
    case("duplicate_payload_member_iss", C.DUPLICATE_JSON_MEMBER, "parse",
         "iss twice in the signed payload", _duplicate_payload_member),
    case("header_not_an_object", C.MALFORMED_JSON, "parse",
         "the header is a JSON array", _raw_header(b'["EdDSA"]')),
)  # fmt: skip

ATTACKS = attacks_of(CASES)


def test_the_scene_signs_valid_presentations(scene: Scene) -> None:
    for text in honest_texts(scene):
        verdict = verify_core(scene, text)
        assert verdict.result is Result.VALID, verdict.to_json()


@pytest.mark.parametrize("attack", CASES, ids=[c.name for c in CASES])
def test_jose_attack_is_rejected(scene: Scene, attack: Case) -> None:
    run_core(scene, attack)
