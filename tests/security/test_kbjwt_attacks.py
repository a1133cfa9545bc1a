"""Key Binding JWT attacks (RFC 9901 section 4.3 and 7.3; OpenID4VP 1.0 section 14.1).

A KB-JWT proves possession of the ``cnf`` key for this verifier (``aud``), this transaction
(``nonce``, single use), now (``iat``) and exactly these disclosures (``sd_hash``). Each attack
below breaks one of those, or the JOSE of the KB-JWT itself, and must fail the ``key_binding``
check of the verdict with its code.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from civic.encoding import json_dumps
from civic.errors import ReasonCode
from civic.sdjwt import sd_hash
from civic.verdict import Result
from tests.security.forge import (
    DROP,
    KB_TYP,
    Build,
    Case,
    Scene,
    attacks_of,
    case,
    rebind,
    run_core,
    verify_core,
)

C = ReasonCode


def _kb(**claims: Any) -> Build:
    """The honest presentation with its KB-JWT replaced by one with ``claims`` overridden."""

    def build(scene: Scene) -> str:
        return rebind(scene, scene.valid(), **claims)

    return build


def _kb_at(offset: int) -> Build:
    def build(scene: Scene) -> str:
        return rebind(scene, scene.valid(), iat=scene.now + offset)

    return build


def _kb_header(**members: Any) -> Build:
    def build(scene: Scene) -> str:
        header = {"alg": "EdDSA", "typ": KB_TYP}
        header.update(members)
        header = {k: v for k, v in header.items() if v is not DROP}
        return rebind(scene, scene.valid(), header=header)

    return build


def _without_kb(scene: Scene) -> str:
    return scene.present(scene.issue(), key_binding=False)


def _kb_by(key: str) -> Build:
    def build(scene: Scene) -> str:
        signer = {"attacker": scene.attacker, "attacker_p256": scene.attacker_p256}[key]
        return rebind(scene, scene.valid(), signer=signer)

    return build


def _kb_hs256(scene: Scene) -> str:
    secret = scene.city.holder.public_key.raw
    return rebind(
        scene,
        scene.valid(),
        header={"alg": "HS256", "typ": KB_TYP},
        signer=lambda data: hmac.new(secret, data, hashlib.sha256).digest(),
    )


def _kb_none(scene: Scene) -> str:
    return rebind(
        scene, scene.valid(), header={"alg": "none", "typ": KB_TYP}, signer=lambda _d: b""
    )


def _kb_jwk_injection(scene: Scene) -> str:
    header = {"alg": "EdDSA", "typ": KB_TYP, "jwk": scene.attacker.public_key.to_jwk()}
    return rebind(scene, scene.valid(), header=header, signer=scene.attacker)


def _wrong_sd_hash(scene: Scene) -> str:
    return rebind(scene, scene.valid(), sd_hash=sd_hash("another~prefix~"))


def _lifted_kb(scene: Scene) -> str:
    """The KB-JWT of one presentation appended to another (same holder, same nonce)."""
    donor = scene.present(scene.issue(), [("age_over_19",), ("given_name",)])
    target = scene.valid()
    return target[: target.rfind("~") + 1] + donor[donor.rfind("~") + 1 :]


def _stripped_kb_signature(scene: Scene) -> str:
    text = scene.valid()
    return text[: text.rfind(".") + 1]


def _not_a_jws(scene: Scene) -> str:
    text = scene.valid()
    return text[: text.rfind("~") + 1] + "not-a-kb-jwt"


def _duplicate_nonce(scene: Scene) -> str:
    text = scene.valid()
    prefix = text[: text.rfind("~") + 1]
    payload = (
        f'{{"iat":{scene.now - 5},"aud":"counter.mapo.seoul.example","nonce":"stolen-nonce",'
        f'"nonce":"{scene.nonce}","sd_hash":"{sd_hash(prefix)}"}}'
    ).encode()
    return prefix + scene.kb_jwt(prefix, payload=payload)


def _kb_member_raw(name: str, raw: str) -> Build:
    """The KB-JWT with member ``name`` written as ``raw`` JSON text (an escape sequence the
    product's serializer would never produce)."""

    def build(scene: Scene) -> str:
        text = scene.valid()
        prefix = text[: text.rfind("~") + 1]
        claims = {
            "iat": scene.now - 5,
            "aud": "counter.mapo.seoul.example",
            "nonce": scene.nonce,
            "sd_hash": sd_hash(prefix),
        }
        body = json_dumps(claims)
        member = f'"{name}":{json_dumps(claims[name])}'
        return prefix + scene.kb_jwt(
            prefix, payload=body.replace(member, f'"{name}":{raw}').encode()
        )

    return build


def _cnf(change: Any) -> Build:
    """The agency signs a credential whose cnf is ``change`` (or gone, for :data:`DROP`); the
    holder binds it all the same."""

    def build(scene: Scene) -> str:
        def edit(payload: dict[str, Any]) -> None:
            if change is DROP:
                del payload["cnf"]
            else:
                payload["cnf"] = change(scene)

        return scene.resign(edit)

    return build


def _cnf_with_private_member(scene: Scene) -> dict[str, Any]:
    return {"jwk": scene.city.holder.export_private_jwk()}


CASES: tuple[Case, ...] = (
    case("kb_jwt_missing_when_required", C.KB_JWT_MISSING, "key_binding",
         "a presentation with no KB-JWT to a policy that requires key binding", _without_kb),
    case("kb_jwt_wrong_typ", C.KB_JWT_TYP, "key_binding",
         'KB-JWT typ "JWT"', _kb_header(typ="JWT")),
    case("kb_jwt_typ_missing", C.KB_JWT_TYP, "key_binding",
         "KB-JWT without typ", _kb_header(typ=DROP)),
    case("kb_jwt_typ_of_a_credential", C.KB_JWT_TYP, "key_binding",
         'KB-JWT typ "dc+sd-jwt" (token type confusion)', _kb_header(typ="dc+sd-jwt")),
    case("kb_jwt_wrong_aud", C.KB_JWT_AUD_MISMATCH, "key_binding",
         "a KB-JWT made for another verifier", _kb(aud="bar.example")),
    case("kb_jwt_aud_array", C.KB_JWT_AUD_MISMATCH, "key_binding",
         "aud as an array naming this verifier and another",
         _kb(aud=["counter.mapo.seoul.example", "bar.example"])),
    case("kb_jwt_aud_missing", C.KB_JWT_AUD_MISMATCH, "key_binding",
         "a KB-JWT without aud", _kb(aud=DROP)),
    case("kb_jwt_wrong_nonce", C.KB_JWT_NONCE_MISMATCH, "key_binding",
         "a KB-JWT for another transaction's nonce", _kb(nonce="n-another-transaction-000")),
    case("kb_jwt_nonce_missing", C.KB_JWT_NONCE_MISMATCH, "key_binding",
         "a KB-JWT without nonce", _kb(nonce=DROP)),
    case("kb_jwt_nonce_reused", C.KB_JWT_NONCE_REUSED, "key_binding",
         "a valid presentation replayed: the verifier's single-use nonce is already spent",
         lambda scene: scene.valid(), replay=True),
    case("kb_jwt_wrong_sd_hash", C.KB_JWT_SD_HASH_MISMATCH, "key_binding",
         "sd_hash over another presentation", _wrong_sd_hash),
    case("kb_jwt_sd_hash_missing", C.KB_JWT_SD_HASH_MISMATCH, "key_binding",
         "a KB-JWT without sd_hash", _kb(sd_hash=DROP)),
    case("kb_jwt_lifted_from_another_presentation", C.KB_JWT_SD_HASH_MISMATCH, "key_binding",
         "the holder's genuine KB-JWT of one presentation appended to another", _lifted_kb),
    case("kb_jwt_iat_stale", C.KB_JWT_IAT_STALE, "key_binding",
         "a KB-JWT signed an hour ago (pre-made presentations)", _kb_at(-3600)),
    case("kb_jwt_iat_in_future", C.KB_JWT_IAT_IN_FUTURE, "key_binding",
         "a KB-JWT dated an hour ahead", _kb_at(3600)),
    case("kb_jwt_iat_missing", C.KB_JWT_MALFORMED, "key_binding",
         "a KB-JWT without iat", _kb(iat=DROP)),
    case("kb_jwt_iat_not_a_number", C.KB_JWT_MALFORMED, "key_binding",
         "iat as a string", _kb(iat="1800000000")),
    case("kb_jwt_signed_by_other_key", C.KB_JWT_SIGNATURE_INVALID, "key_binding",
         "a thief binds a stolen credential with its own key", _kb_by("attacker")),
    case("kb_jwt_signature_stripped", C.KB_JWT_SIGNATURE_INVALID, "key_binding",
         "the KB-JWT signature segment emptied", _stripped_kb_signature),
    case("kb_jwt_jwk_header_injection", C.KB_JWT_SIGNATURE_INVALID, "key_binding",
         "the thief's key embedded as the KB-JWT's jwk header", _kb_jwk_injection),
    case("kb_jwt_alg_none", C.ALG_NOT_ALLOWED, "key_binding",
         'KB-JWT alg "none" with an empty signature', _kb_none),
    case("kb_jwt_hs256_keyed_with_cnf", C.ALG_NOT_ALLOWED, "key_binding",
         "KB-JWT MACed with HS256 keyed with the public cnf key", _kb_hs256),
    case("kb_jwt_es256_on_ed25519_cnf", C.ALG_KEY_MISMATCH, "key_binding",
         "an ES256 KB-JWT for an Ed25519 cnf key", _kb_by("attacker_p256")),
    case("kb_jwt_crit_unknown", C.CRIT_UNSUPPORTED, "key_binding",
         "KB-JWT with an unknown critical header",
         _kb_header(crit=["x-attack"], **{"x-attack": 1})),
    case("kb_jwt_not_a_jws", C.KB_JWT_MALFORMED, "key_binding",
         "text that is no JWS where the KB-JWT goes", _not_a_jws),
    case("kb_jwt_duplicate_nonce_member", C.KB_JWT_MALFORMED, "key_binding",
         "nonce twice in the KB-JWT: a stolen one first, the expected one last",
         _duplicate_nonce),
    case("kb_jwt_aud_lone_surrogate", C.KB_JWT_MALFORMED, "key_binding",
         "an aud of an unpaired surrogate escape, which has no UTF-8 form to compare",
         _kb_member_raw("aud", '"counter\\ud800"')),
    case("kb_jwt_nonce_lone_surrogate", C.KB_JWT_MALFORMED, "key_binding",
         "a nonce ending in an unpaired surrogate escape",
         _kb_member_raw("nonce", '"n-0S6_WzA2Mj\\udfff"')),
    case("kb_jwt_present_when_cnf_missing", C.CNF_MISSING, "key_binding",
         "a KB-JWT on a credential that binds no holder key", _cnf(DROP)),
    case("cnf_without_jwk", C.CNF_MISSING, "key_binding",
         "cnf naming a key by kid only, which the verifier cannot resolve",
         _cnf(lambda _scene: {"kid": "holder-key-1"})),
    case("cnf_jwk_with_private_member", C.PRIVATE_KEY_MATERIAL, "key_binding",
         "an issuer that leaked the holder's private key into cnf", _cnf(_cnf_with_private_member)),
)  # fmt: skip

ATTACKS = attacks_of(CASES)


def test_a_rebound_kb_jwt_verifies_when_nothing_is_wrong(scene: Scene) -> None:
    verdict = verify_core(scene, rebind(scene, scene.valid()))
    assert verdict.result is Result.VALID, verdict.to_json()


@pytest.mark.parametrize("attack", CASES, ids=[c.name for c in CASES])
def test_kb_jwt_attack_is_rejected(scene: Scene, attack: Case) -> None:
    run_core(scene, attack)
