"""No uncaught exception in the services' own request parsers: the issuer's OpenID4VCI token
and credential requests and key proofs, the verifier's direct_post responses.

Their refusals are civic errors too; the issuer's carry an OAuth error code (``OAuthError``).
"""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import strategies as st

from civic.credentials import RESIDENCY_VCT
from civic.encoding import json_dumps
from civic.errors import MalformedError, VerificationError
from issuer.oid4vci import (
    PROOF_TYP,
    OAuthError,
    bearer_token,
    configurations_for,
    parse_credential_request,
    parse_token_request,
    verify_key_proof,
    verify_key_proofs,
)
from tests.fuzz import samples
from tests.fuzz.harness import fuzz
from tests.fuzz.mutate import any_bytes, any_text, mutated_bytes, mutated_json, mutated_text
from verifier.oid4vp import parse_direct_post

_REFUSALS = (MalformedError, VerificationError, OAuthError)
_AUDIENCE = "https://issuer.example"
_CONFIGURATIONS = configurations_for([RESIDENCY_VCT])
_FORM = "application/x-www-form-urlencoded"


def _refused(call: Any, *args: Any, **kwargs: Any) -> None:
    with contextlib.suppress(*_REFUSALS):
        call(*args, **kwargs)


def _check_token_request(body: bytes) -> None:
    for content_type in (_FORM, "application/x-www-form-urlencoded; charset=utf-8", None):
        _refused(parse_token_request, body, content_type)


@fuzz(any_bytes())
def test_token_request_random(body: bytes) -> None:
    _check_token_request(body)


_TOKEN_BODY = (
    b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Apre-authorized_code"
    b"&pre-authorized_code=SplxlOBeZQQYbYS6WxSbIA&tx_code=493536"
)


@fuzz(mutated_bytes(_TOKEN_BODY, seps="&="))
def test_token_request_mutated(body: bytes) -> None:
    _check_token_request(body)


@fuzz(st.none() | any_text(80) | mutated_text("Bearer czZCaGRSa3F0MzpnWDFmQmF0M2JW", seps=" "))
def test_bearer_header(authorization: str | None) -> None:
    _refused(bearer_token, authorization)


def _proof(claims: Any | None = None, header: Any | None = None) -> str:
    return samples.sign_json(
        header
        if header is not None
        else {"alg": "EdDSA", "typ": PROOF_TYP, "jwk": samples.HOLDER_KEY.public_key.to_jwk()},
        claims if claims is not None else {"aud": _AUDIENCE, "iat": samples.NOW, "nonce": "n-1"},
        samples.HOLDER_KEY,
    )


def _check_credential_request(body: bytes) -> None:
    request = None
    try:
        request = parse_credential_request(
            body, "application/json", configurations=_CONFIGURATIONS, batch_size=3
        )
    except _REFUSALS:
        return
    _refused(
        verify_key_proofs, request.proofs, audience=_AUDIENCE, now=samples.NOW, max_age=300, skew=60
    )


_CREDENTIAL_REQUEST = {
    "credential_configuration_id": next(iter(_CONFIGURATIONS)),
    "proofs": {"jwt": [_proof()]},
}


@fuzz(mutated_json(_CREDENTIAL_REQUEST))
def test_credential_request_mutated_json(request: Any) -> None:
    _check_credential_request(json_dumps(request).encode("utf-8", "surrogatepass"))


@fuzz(mutated_bytes(json_dumps(_CREDENTIAL_REQUEST).encode(), seps=",:."))
def test_credential_request_mutated_bytes(body: bytes) -> None:
    _check_credential_request(body)


def _check_proof(token: str) -> None:
    _refused(verify_key_proof, token, audience=_AUDIENCE, now=samples.NOW, max_age=300, skew=60)


@fuzz(
    mutated_json({"alg": "EdDSA", "typ": PROOF_TYP, "jwk": samples.HOLDER_KEY.public_key.to_jwk()})
)
def test_key_proof_resigned_header(header: Any) -> None:
    _check_proof(_proof(header=header))


@fuzz(mutated_json({"aud": _AUDIENCE, "iat": samples.NOW, "nonce": "n-1"}))
def test_key_proof_resigned_claims(claims: Any) -> None:
    _check_proof(_proof(claims=claims))


@fuzz(mutated_text(_proof()))
def test_key_proof_mutated(token: str) -> None:
    _check_proof(token)


_DIRECT_POST = b"vp_token=%7B%22res%22%3A%5B%22eyJhbGciOi.x.y~%22%5D%7D&state=af0ifjsldkj"


@fuzz(mutated_bytes(_DIRECT_POST, seps="&=%"))
def test_direct_post_mutated(body: bytes) -> None:
    _refused(parse_direct_post, body)


@fuzz(any_bytes())
def test_direct_post_random(body: bytes) -> None:
    _refused(parse_direct_post, body)
