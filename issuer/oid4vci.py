"""OpenID4VCI 1.0, pre-authorized code flow: the protocol's pure parts.

By section of OpenID for Verifiable Credential Issuance 1.0:

- 4.1 the Credential Offer object and 4.1.3 the offer by reference
  (``openid-credential-offer://?credential_offer_uri=...``);
- 6.1/6.3 the Token Request with ``grant_type=urn:ietf:params:oauth:grant-type:pre-authorized_code``
  and its errors (``invalid_request``, ``invalid_grant``, ``unsupported_grant_type``; RFC 6749
  section 5.2);
- 8.2 the Credential Request (``credential_configuration_id`` + ``proofs.jwt``), 8.3 the
  response, 8.3.1.2 the request errors;
- 12.2 the Credential Issuer Metadata, 12.3 the Authorization Server metadata (RFC 8414);
- Appendix F.1 the ``jwt`` proof type and F.4 its verification (``typ: openid4vci-proof+jwt``,
  the holder key in the ``jwk`` header, ``aud`` = the issuer identifier, ``iat`` fresh, ``nonce``
  a server ``c_nonce``); A.3 the ``dc+sd-jwt`` format profile.

Everything here is a function of its arguments: the database steps (single use of codes,
nonces and tokens) live in :mod:`issuer.issuance`. Error descriptions stay within the ASCII
subset the specification allows and never carry request values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, quote

from civic.credentials import CREDENTIAL_TYPES, CredentialType
from civic.encoding import json_loads, utf8_decode
from civic.errors import CivicError, MalformedError, ReasonCode
from civic.jose import ALGORITHMS, PublicKey, check_header, parse_jws, public_key_from_jwk
from civic.sdjwtvc import VC_TYP

PRE_AUTHORIZED_GRANT: Final = "urn:ietf:params:oauth:grant-type:pre-authorized_code"
PROOF_TYP: Final = "openid4vci-proof+jwt"
OFFER_SCHEME: Final = "openid-credential-offer://"
FORMAT: Final = VC_TYP
SIGNING_ALGS: Final = ("EdDSA", "ES256")
TX_CODE_DESCRIPTION: Final = "Enter the code the agency staff gave you with this offer"
MAX_TOKEN_FIELDS: Final = 32

# Error codes (RFC 6749 5.2, RFC 6750 3.1, OpenID4VCI 1.0 8.3.1.2).
INVALID_REQUEST: Final = "invalid_request"
INVALID_GRANT: Final = "invalid_grant"
UNSUPPORTED_GRANT_TYPE: Final = "unsupported_grant_type"
INVALID_TOKEN: Final = "invalid_token"  # noqa: S105 (an error code)
INSUFFICIENT_SCOPE: Final = "insufficient_scope"
INVALID_CREDENTIAL_REQUEST: Final = "invalid_credential_request"
UNKNOWN_CREDENTIAL_CONFIGURATION: Final = "unknown_credential_configuration"
INVALID_PROOF: Final = "invalid_proof"
INVALID_NONCE: Final = "invalid_nonce"
INVALID_ENCRYPTION_PARAMETERS: Final = "invalid_encryption_parameters"
CREDENTIAL_REQUEST_DENIED: Final = "credential_request_denied"


class OAuthError(CivicError):
    """An error answered with an OAuth/OpenID4VCI error code.

    ``error`` is the spec's code for the client; ``reason`` (a :class:`ReasonCode`) is the
    precise cause for the logs. ``status`` is the HTTP status; 401 and 403 answers carry a
    ``WWW-Authenticate`` challenge (RFC 6750 section 3).
    """

    def __init__(
        self,
        error: str,
        description: str,
        *,
        reason: ReasonCode = ReasonCode.MALFORMED_INPUT,
        status: int = 400,
    ) -> None:
        super().__init__(reason, description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}

    def www_authenticate(self) -> str | None:
        if self.status == 401 and self.reason == ReasonCode.UNAUTHORIZED:
            # RFC 6750 3.1: a request without credentials gets no error code in the challenge.
            return 'Bearer realm="credential"'
        if self.status in (401, 403):
            return f'Bearer realm="credential", error="{self.error}"'
        return None


# --- configurations and metadata ----------------------------------------------------------


@dataclass(frozen=True)
class CredentialConfiguration:
    """One entry of ``credential_configurations_supported``: a civic type as dc+sd-jwt."""

    configuration_id: str
    ctype: CredentialType

    @property
    def vct(self) -> str:
        return self.ctype.vct

    def metadata(self) -> dict[str, Any]:
        claims = [
            {
                "path": list(path),
                "display": [
                    {"name": self.ctype.display_name(path, "en"), "locale": "en"},
                    {"name": self.ctype.display_name(path, "ko"), "locale": "ko"},
                ],
            }
            for path in self.ctype.disclosable_paths
        ]
        return {
            "format": FORMAT,
            "scope": self.configuration_id,
            "vct": self.ctype.vct,
            "cryptographic_binding_methods_supported": ["jwk"],
            "credential_signing_alg_values_supported": list(SIGNING_ALGS),
            "proof_types_supported": {
                "jwt": {"proof_signing_alg_values_supported": list(SIGNING_ALGS)}
            },
            "credential_metadata": {
                "display": [
                    {"name": self.ctype.type_name("en"), "locale": "en"},
                    {"name": self.ctype.type_name("ko"), "locale": "ko"},
                ],
                "claims": claims,
            },
        }


def configurations_for(vcts: Sequence[str]) -> dict[str, CredentialConfiguration]:
    """Configurations for the given types, keyed by id (the type's key, e.g. ``residency``)."""
    out: dict[str, CredentialConfiguration] = {}
    for vct in vcts:
        ctype = CREDENTIAL_TYPES.get(vct)
        if ctype is None:
            raise MalformedError(ReasonCode.VCT_UNKNOWN, "configured vct is not a civic type")
        out[ctype.key] = CredentialConfiguration(ctype.key, ctype)
    return out


def configuration_for_vct(
    configurations: Mapping[str, CredentialConfiguration], vct: str
) -> CredentialConfiguration | None:
    for configuration in configurations.values():
        if configuration.vct == vct:
            return configuration
    return None


@dataclass(frozen=True)
class IssuerProfile:
    """What the metadata documents say about this issuer."""

    issuer_url: str
    names: tuple[str, str]
    """Display name in English and Korean."""
    configurations: Mapping[str, CredentialConfiguration]
    batch_size: int

    def endpoint(self, path: str) -> str:
        return self.issuer_url + path


def issuer_metadata(profile: IssuerProfile) -> dict[str, Any]:
    """Credential Issuer Metadata (section 12.2.4); the issuer is its own AS, so no
    ``authorization_servers``."""
    return {
        "credential_issuer": profile.issuer_url,
        "credential_endpoint": profile.endpoint("/credential"),
        "nonce_endpoint": profile.endpoint("/nonce"),
        "batch_credential_issuance": {"batch_size": profile.batch_size},
        "display": [
            {"name": profile.names[0], "locale": "en"},
            {"name": profile.names[1], "locale": "ko"},
        ],
        "credential_configurations_supported": {
            cid: configuration.metadata() for cid, configuration in profile.configurations.items()
        },
    }


def authorization_server_metadata(profile: IssuerProfile) -> dict[str, Any]:
    """RFC 8414 metadata of the built-in AS; pre-authorized grant only (section 12.3 lets
    such a server omit ``response_types_supported``)."""
    return {
        "issuer": profile.issuer_url,
        "token_endpoint": profile.endpoint("/token"),
        "grant_types_supported": [PRE_AUTHORIZED_GRANT],
        "token_endpoint_auth_methods_supported": ["none"],
        "pre-authorized_grant_anonymous_access_supported": True,
        "scopes_supported": sorted(profile.configurations),
    }


# --- credential offer (section 4.1) -------------------------------------------------------


def credential_offer(
    issuer_url: str, configuration_id: str, pre_authorized_code: str, tx_code_length: int
) -> dict[str, Any]:
    return {
        "credential_issuer": issuer_url,
        "credential_configuration_ids": [configuration_id],
        "grants": {
            PRE_AUTHORIZED_GRANT: {
                "pre-authorized_code": pre_authorized_code,
                "tx_code": {
                    "input_mode": "numeric",
                    "length": tx_code_length,
                    "description": TX_CODE_DESCRIPTION,
                },
            }
        },
    }


def offer_deep_link(offer_url: str) -> str:
    """The offer by reference (section 4.1.3), for a QR code or a link."""
    return f"{OFFER_SCHEME}?credential_offer_uri={quote(offer_url, safe='')}"


# --- token request (section 6.1) ----------------------------------------------------------


@dataclass(frozen=True)
class TokenRequest:
    pre_authorized_code: str
    tx_code: str | None

    def __repr__(self) -> str:
        return "TokenRequest(<secret>)"


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_token_request(body: bytes, content_type: str | None) -> TokenRequest:
    """Parse a form-encoded Token Request (RFC 6749 section 4.1.3 / 3.2).

    Repeated parameters are refused (RFC 6749 section 3.2); unknown ones are ignored.
    """
    if _media_type(content_type) != "application/x-www-form-urlencoded":
        raise OAuthError(INVALID_REQUEST, "the token request must be form-encoded")
    try:
        text = utf8_decode(body)
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            max_num_fields=MAX_TOKEN_FIELDS,
            errors="strict",
        )
    except (MalformedError, ValueError):
        raise OAuthError(INVALID_REQUEST, "the token request body is not a valid form") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise OAuthError(INVALID_REQUEST, "a parameter is repeated")
        fields[name] = value
    grant_type = fields.get("grant_type")
    if not grant_type:
        raise OAuthError(INVALID_REQUEST, "grant_type is missing")
    if grant_type != PRE_AUTHORIZED_GRANT:
        raise OAuthError(UNSUPPORTED_GRANT_TYPE, "only the pre-authorized code grant is supported")
    code = fields.get("pre-authorized_code")
    if not code:
        raise OAuthError(INVALID_REQUEST, "pre-authorized_code is missing")
    tx_code = fields.get("tx_code")
    return TokenRequest(code, tx_code if tx_code is not None else None)


def bearer_token(authorization: str | None) -> str:
    """The access token of an ``Authorization: Bearer`` header (RFC 6750 section 2.1)."""
    if not authorization:
        raise OAuthError(
            INVALID_TOKEN, "an access token is required", reason=ReasonCode.UNAUTHORIZED, status=401
        )
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise OAuthError(
            INVALID_REQUEST, "the Authorization header is not a Bearer token", status=400
        )
    return token


# --- credential request (section 8.2) -----------------------------------------------------


@dataclass(frozen=True)
class CredentialRequest:
    configuration_id: str
    proofs: tuple[str, ...]


def parse_credential_request(
    body: bytes,
    content_type: str | None,
    *,
    configurations: Mapping[str, CredentialConfiguration],
    batch_size: int,
) -> CredentialRequest:
    """Parse a Credential Request; unknown members are ignored as section 8.2 requires."""
    if _media_type(content_type) != "application/json":
        raise OAuthError(INVALID_CREDENTIAL_REQUEST, "the credential request must be JSON")
    try:
        request = json_loads(body)
    except MalformedError as error:
        raise OAuthError(
            INVALID_CREDENTIAL_REQUEST,
            "the credential request is not valid JSON",
            reason=error.reason,
        ) from None
    if not isinstance(request, dict):
        raise OAuthError(INVALID_CREDENTIAL_REQUEST, "the credential request is not an object")
    if "credential_response_encryption" in request:
        raise OAuthError(
            INVALID_ENCRYPTION_PARAMETERS, "this issuer does not encrypt credential responses"
        )
    if "credential_identifier" in request:
        raise OAuthError(
            INVALID_CREDENTIAL_REQUEST,
            "credential_identifier is not used: no credential_identifiers were issued",
        )
    configuration_id = request.get("credential_configuration_id")
    if not isinstance(configuration_id, str) or not configuration_id:
        raise OAuthError(INVALID_CREDENTIAL_REQUEST, "credential_configuration_id is missing")
    if configuration_id not in configurations:
        raise OAuthError(
            UNKNOWN_CREDENTIAL_CONFIGURATION,
            "credential configuration is unknown",
            reason=ReasonCode.VCT_UNKNOWN,
        )
    proofs = request.get("proofs")
    if proofs is None:
        raise OAuthError(INVALID_PROOF, "proofs are required")
    if not isinstance(proofs, dict) or len(proofs) != 1:
        raise OAuthError(INVALID_PROOF, "proofs must hold exactly one proof type")
    jwts = proofs.get("jwt")
    if jwts is None:
        raise OAuthError(INVALID_PROOF, "only the jwt proof type is supported")
    if not isinstance(jwts, list) or not jwts or not all(isinstance(p, str) for p in jwts):
        raise OAuthError(INVALID_PROOF, "proofs.jwt must be a non-empty array of strings")
    if len(jwts) > batch_size:
        raise OAuthError(INVALID_CREDENTIAL_REQUEST, "more proofs than the batch size allows")
    return CredentialRequest(configuration_id, tuple(jwts))


# --- key proofs (Appendix F.1, F.4) -------------------------------------------------------


@dataclass(frozen=True)
class KeyProof:
    """A verified proof of possession: the key to bind and the c_nonce it carries."""

    holder_key: PublicKey
    nonce: str


def _invalid_proof(detail: str, reason: ReasonCode) -> OAuthError:
    return OAuthError(INVALID_PROOF, detail, reason=reason)


def verify_key_proof(token: str, *, audience: str, now: int, max_age: int, skew: int) -> KeyProof:
    """Check one ``jwt`` key proof; the nonce is checked against the store by the caller.

    The algorithm is pinned to the type of the key in the ``jwk`` header (civic.jose), so the
    proof cannot choose a weaker one; ``kid`` and ``x5c`` are refused, as only JWK binding is
    offered (``cryptographic_binding_methods_supported: ["jwk"]``).
    """
    try:
        jws = parse_jws(token)
    except MalformedError as error:
        raise _invalid_proof("the proof is not a compact JWS", error.reason) from None
    header = jws.header
    if header.get("typ") != PROOF_TYP:
        raise _invalid_proof("the proof typ is not openid4vci-proof+jwt", ReasonCode.TYP_MISMATCH)
    if not isinstance(header.get("alg"), str) or header["alg"] not in ALGORITHMS:
        raise _invalid_proof("the proof algorithm is not supported", ReasonCode.ALG_NOT_ALLOWED)
    if "kid" in header or "x5c" in header or "trust_chain" in header:
        raise _invalid_proof("the holder key must be given as jwk only", ReasonCode.MALFORMED_JWK)
    jwk = header.get("jwk")
    if not isinstance(jwk, Mapping):
        raise _invalid_proof("the proof has no jwk header", ReasonCode.MALFORMED_JWK)
    try:
        holder_key = public_key_from_jwk(jwk)
        check_header(header, holder_key, typ=PROOF_TYP)
    except CivicError as error:
        raise _invalid_proof("the proof header is not acceptable", error.reason) from None
    if not holder_key.verify(jws.signing_input, jws.signature):
        raise _invalid_proof("the proof signature does not verify", ReasonCode.SIGNATURE_INVALID)
    try:
        claims = jws.payload_json()
    except MalformedError as error:
        raise _invalid_proof("the proof payload is not a JSON object", error.reason) from None
    if claims.get("aud") != audience:
        raise _invalid_proof(
            "the proof aud is not this credential issuer", ReasonCode.MALFORMED_INPUT
        )
    iat = claims.get("iat")
    if type(iat) is not int:
        raise _invalid_proof("the proof iat is missing", ReasonCode.MALFORMED_INPUT)
    if iat > now + skew:
        raise _invalid_proof("the proof iat is in the future", ReasonCode.IAT_IN_FUTURE)
    if iat < now - max_age:
        raise _invalid_proof("the proof is too old", ReasonCode.EXPIRED)
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not nonce:
        raise _invalid_proof("the proof has no c_nonce", ReasonCode.MALFORMED_INPUT)
    return KeyProof(holder_key, nonce)


def verify_key_proofs(
    tokens: Sequence[str], *, audience: str, now: int, max_age: int, skew: int
) -> list[KeyProof]:
    """Every proof must pass, and each binds a different key (one credential per key)."""
    proofs = [
        verify_key_proof(token, audience=audience, now=now, max_age=max_age, skew=skew)
        for token in tokens
    ]
    if len({proof.holder_key for proof in proofs}) != len(proofs):
        raise _invalid_proof("two proofs are for the same key", ReasonCode.MALFORMED_INPUT)
    return proofs


def credential_response(credentials: Sequence[str]) -> dict[str, Any]:
    """Section 8.3: one object per issued credential, in the order of the proofs."""
    return {"credentials": [{"credential": credential} for credential in credentials]}
