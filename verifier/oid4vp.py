"""OpenID4VP 1.0 pieces of the verifier: the request object, the wallet URI, direct_post.

- Section 5 and RFC 9101 (JAR): the request object is a JWT with ``typ: oauth-authz-req+jwt``,
  signed by the key the registry accredits for this verifier (``kid`` names it); ``client_id``
  is the verifier's registry identifier (pre-registered client, section 5.9.2, see
  :mod:`verifier.settings`), ``response_type=vp_token``, ``response_mode=direct_post`` with a
  ``response_uri`` (section 8.2), a fresh ``nonce`` of 256 bits and a ``state`` of 128 bits, the
  ``dcql_query`` derived from the counter's policy, ``aud`` ``https://self-issued.me/v2``
  (section 5.8, static discovery), ``iat``/``exp``, and ``client_metadata`` listing the
  algorithms we verify (section 11.1).
- Section 5.7 / 13.1: the wallet is invoked by reference,
  ``openid4vp://?client_id=...&request_uri=...``.
- Section 8.2: the response arrives as ``application/x-www-form-urlencoded`` with ``vp_token``
  (a JSON object keyed by credential query id) and ``state``. :func:`parse_direct_post` reads
  it strictly: UTF-8, every parameter once, ``vp_token`` strict JSON.
"""

from __future__ import annotations

import secrets
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

from civic.encoding import json_loads
from civic.errors import MalformedError, ReasonCode
from civic.jose import Signer, sign_jwt
from civic.policy import Policy

REQUEST_OBJECT_TYP: Final = "oauth-authz-req+jwt"
STATIC_AUDIENCE: Final = "https://self-issued.me/v2"
WALLET_SCHEME: Final = "openid4vp://"
NONCE_BYTES: Final = 32
STATE_BYTES: Final = 16
ID_BYTES: Final = 16
ALGORITHMS: Final = ["EdDSA", "ES256"]
MAX_FORM_FIELDS: Final = 16


def new_token(length: int) -> str:
    """URL-safe random text (ASCII letters, digits, ``-`` and ``_``), as section 5.2 asks."""
    return secrets.token_urlsafe(length)


def request_object_claims(
    *,
    policy: Policy,
    client_id: str,
    response_uri: str,
    nonce: str,
    state: str,
    issued_at: int,
    expires_at: int,
) -> dict[str, Any]:
    return {
        "iss": client_id,
        "aud": STATIC_AUDIENCE,
        "client_id": client_id,
        "response_type": "vp_token",
        "response_mode": "direct_post",
        "response_uri": response_uri,
        "nonce": nonce,
        "state": state,
        "dcql_query": policy.dcql().to_json(),
        "client_metadata": {
            "vp_formats_supported": {
                "dc+sd-jwt": {"sd-jwt_alg_values": ALGORITHMS, "kb-jwt_alg_values": ALGORITHMS}
            }
        },
        "iat": issued_at,
        "exp": expires_at,
    }


def sign_request_object(claims: dict[str, Any], signer: Signer, kid: str) -> str:
    return sign_jwt({"typ": REQUEST_OBJECT_TYP, "kid": kid}, claims, signer)


def wallet_uri(client_id: str, request_uri: str) -> str:
    return WALLET_SCHEME + "?" + urlencode({"client_id": client_id, "request_uri": request_uri})


def parse_direct_post(body: bytes) -> tuple[object, str | None]:
    """``(vp_token, state)`` from a direct_post body; ``malformed_vp_token`` otherwise.

    An error response (``error=...``) is returned as a malformed token: the wallet declined.
    """
    try:
        text = body.decode("utf-8")
        fields = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            max_num_fields=MAX_FORM_FIELDS,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        raise MalformedError(ReasonCode.MALFORMED_VP_TOKEN, "body is not a UTF-8 form") from None
    names = [name for name, _ in fields]
    if len(set(names)) != len(names):
        raise MalformedError(ReasonCode.MALFORMED_VP_TOKEN, "a form parameter appears twice")
    form = dict(fields)
    if "error" in form:
        raise MalformedError(ReasonCode.MALFORMED_VP_TOKEN, "the wallet sent an error response")
    if "vp_token" not in form:
        raise MalformedError(ReasonCode.MALFORMED_VP_TOKEN, "vp_token is missing")
    try:
        vp_token = json_loads(form["vp_token"])
    except MalformedError as error:
        raise MalformedError(
            ReasonCode.MALFORMED_VP_TOKEN, f"vp_token is not JSON ({error.reason.value})"
        ) from None
    return vp_token, form.get("state")
