"""No uncaught exception: JWS and JWK, SD-JWT and its disclosures, SD-JWT VC, KB-JWT, status lists.

Every target gets random input and mutations of a valid input; the signed formats also get
JSON-level mutations re-signed with the right key, which reach the checks behind the signature.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from civic.encoding import b64url_encode, json_dumps
from civic.jose import PrivateKey, parse_jws, public_key_from_jwk, verify_jws
from civic.sdjwt import (
    disclosure_digest,
    parse_disclosure,
    parse_sd_jwt,
    process_disclosures,
    verify_key_binding,
    verify_sd_jwt,
)
from civic.sdjwtvc import VC_TYP, verify_credential
from civic.statuslist import (
    StatusList,
    StatusReference,
    VerifiedStatusList,
    parse_status_claim,
    status_of,
    verify_status_list_token,
)
from tests.fuzz import samples
from tests.fuzz.harness import civic_only, fuzz
from tests.fuzz.mutate import any_text, json_values, mutated_json, mutated_text

ISSUER = samples.ISSUER_KEY.public_key
HOLDER = samples.HOLDER_KEY.public_key


def _verify_everything(text: str) -> None:
    """Every stage a verifier runs on a presentation, each on its own."""
    parsed = civic_only(parse_sd_jwt, text)
    if parsed is None:
        return
    civic_only(process_disclosures, parsed)
    civic_only(verify_key_binding, parsed, HOLDER, samples.KB, now=samples.CLOCK(), skew=60)
    civic_only(verify_sd_jwt, parsed, ISSUER, typ=VC_TYP, key_binding=None, now=samples.CLOCK)
    civic_only(verify_credential, parsed, ISSUER, key_binding=samples.KB, now=samples.CLOCK)
    civic_only(verify_credential, text, ISSUER, key_binding=samples.KB, now=samples.CLOCK)


# --- JWS and JWK ----------------------------------------------------------------------------

_JWS = samples.sign_json(
    {"alg": "EdDSA", "typ": "example+jwt", "kid": "k1"}, {"a": 1}, samples.ISSUER_KEY
)


def _check_jws(token: str) -> None:
    if civic_only(parse_jws, token) is not None:
        civic_only(verify_jws, token, ISSUER, typ="example+jwt")
        civic_only(
            verify_jws, token, samples.P256_KEY.public_key, typ=None, understood_crit=["b64"]
        )


@fuzz(any_text())
def test_jws_random_text(token: str) -> None:
    _check_jws(token)


@fuzz(mutated_text(_JWS))
def test_jws_mutated(token: str) -> None:
    _check_jws(token)


@fuzz(mutated_json({"alg": "EdDSA", "typ": "example+jwt", "crit": ["b64"], "b64": True}))
def test_jws_resigned_header(header: Any) -> None:
    _check_jws(samples.sign_raw(header, b'{"a":1}', samples.ISSUER_KEY))


def _check_jwk(jwk: Any) -> None:
    civic_only(public_key_from_jwk, jwk)
    civic_only(PrivateKey.from_jwk, jwk)


@fuzz(json_values(("kty", "crv", "x", "y", "d", "alg", "use", "kid")))
def test_jwk_random(jwk: Any) -> None:
    _check_jwk(jwk)


@fuzz(
    st.sampled_from(
        [
            samples.ISSUER_KEY.export_private_jwk(),
            samples.P256_KEY.export_private_jwk(),
            samples.P256_KEY.public_key.to_jwk(),
        ]
    ).flatmap(mutated_json)
)
def test_jwk_mutated(jwk: Any) -> None:
    _check_jwk(jwk)


# --- SD-JWT, disclosures, SD-JWT VC, KB-JWT -------------------------------------------------


@fuzz(any_text(600))
def test_sd_jwt_random_text(text: str) -> None:
    _verify_everything(text)


@fuzz(
    st.sampled_from(["credential", "presentation"]).flatmap(
        lambda name: mutated_text(getattr(samples, name)())
    )
)
def test_sd_jwt_mutated(text: str) -> None:
    _verify_everything(text)


def _split(text: str) -> tuple[str, list[str]]:
    jws, *disclosures, _ = text.split("~")
    return jws, disclosures


def _assemble(header: Any, payload: Any, disclosures: list[str], *, kb: bool = True) -> str:
    prefix = "~".join([samples.sign_json(header, payload, samples.ISSUER_KEY), *disclosures, ""])
    return prefix + samples.kb_jwt(prefix) if kb else prefix


_CRED_HEADER, _CRED_PAYLOAD = samples.jws_parts(_split(samples.credential())[0])


@fuzz(mutated_json(_CRED_PAYLOAD))
def test_sd_jwt_resigned_payload(payload: Any) -> None:
    _verify_everything(_assemble(_CRED_HEADER, payload, _split(samples.credential())[1]))


@fuzz(mutated_json(_CRED_HEADER))
def test_sd_jwt_resigned_header(header: Any) -> None:
    _verify_everything(_assemble(header, _CRED_PAYLOAD, _split(samples.credential())[1]))


def _disclosure_arrays() -> list[Any]:
    return [[d.salt, d.name, d.value] if d.name is not None else [d.salt, d.value]
            for d in parse_sd_jwt(samples.credential()).disclosures]  # fmt: skip


@fuzz(st.data())
def test_sd_jwt_resigned_disclosures(data: st.DataObject) -> None:
    """A disclosure mutated, its digest put in the payload in place of the old one, re-signed."""
    disclosures = _split(samples.credential())[1]
    index = data.draw(st.integers(0, len(disclosures) - 1))
    array = data.draw(mutated_json(_disclosure_arrays()[index]))
    encoded = b64url_encode(json_dumps(array).encode("utf-8", "surrogatepass"))
    payload_text = json_dumps(_CRED_PAYLOAD).replace(
        disclosure_digest(disclosures[index]), disclosure_digest(encoded)
    )
    civic_only(parse_disclosure, encoded)
    disclosures[index] = encoded
    chosen = data.draw(st.lists(st.sampled_from(disclosures), max_size=len(disclosures) + 2))
    prefix = "~".join(
        [
            samples.sign_raw(_CRED_HEADER, payload_text.encode("utf-8"), samples.ISSUER_KEY),
            *chosen,
            "",
        ]
    )
    _verify_everything(prefix + samples.kb_jwt(prefix))


_PREFIX = samples.presentation().rsplit("~", 1)[0] + "~"
_KB_CLAIMS = {"iat": samples.NOW, "aud": samples.AUDIENCE, "nonce": samples.NONCE}


@fuzz(mutated_json({**_KB_CLAIMS, "sd_hash": "x"}))
def test_kb_jwt_resigned_claims(claims: Any) -> None:
    if isinstance(claims, dict) and claims.get("sd_hash") == "x":
        claims["sd_hash"] = samples.sd_hash(_PREFIX)
    _verify_everything(_PREFIX + samples.kb_jwt(_PREFIX, claims))


@fuzz(mutated_json({"alg": "EdDSA", "typ": "kb+jwt"}))
def test_kb_jwt_resigned_header(header: Any) -> None:
    _verify_everything(_PREFIX + samples.kb_jwt(_PREFIX, header=header))


@fuzz(mutated_text(samples.presentation().rsplit("~", 1)[1]))
def test_kb_jwt_mutated(kb: str) -> None:
    _verify_everything(_PREFIX + kb)


# --- Token Status List ----------------------------------------------------------------------


def _check_status_token(token: str) -> None:
    verified = civic_only(
        verify_status_list_token,
        token,
        key=ISSUER,
        expected_uri=samples.STATUS_URI,
        now=samples.CLOCK,
    )
    if verified is not None:
        for index in (0, 3, 63, 64, verified.status_list.size - 1, 2**40):
            if index >= 0:
                civic_only(status_of, verified, StatusReference(index, samples.STATUS_URI))


@fuzz(any_text())
def test_status_token_random_text(token: str) -> None:
    _check_status_token(token)


@fuzz(mutated_text(samples.status_token()))
def test_status_token_mutated(token: str) -> None:
    _check_status_token(token)


_STATUS_HEADER, _STATUS_CLAIMS = samples.jws_parts(samples.status_token())


@fuzz(mutated_json(_STATUS_CLAIMS))
def test_status_token_resigned_claims(claims: Any) -> None:
    _check_status_token(samples.sign_json(_STATUS_HEADER, claims, samples.ISSUER_KEY))


@fuzz(mutated_json(samples.status_list().encode()))
def test_status_list_decode_mutated(encoded: Any) -> None:
    decoded = civic_only(StatusList.decode, encoded)
    if decoded is not None:
        verified = VerifiedStatusList(decoded, samples.STATUS_URI, samples.NOW, None, None)
        for index in (0, 1, decoded.size - 1, decoded.size, 2**63):
            if index >= 0:
                civic_only(status_of, verified, StatusReference(index, samples.STATUS_URI))


@fuzz(st.integers(1, 8), st.binary(max_size=200))
def test_status_list_decode_random_lst(bits: int, compressed: bytes) -> None:
    civic_only(StatusList.decode, {"bits": bits, "lst": b64url_encode(compressed)})


@fuzz(mutated_json({"status_list": {"idx": 3, "uri": samples.STATUS_URI}}))
def test_status_claim_mutated(claim: Any) -> None:
    civic_only(parse_status_claim, claim)
    civic_only(parse_status_claim, claim, unsafe_allow_http_loopback=True)
