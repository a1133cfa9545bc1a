"""Receiving credentials: the wallet's side of OpenID4VCI 1.0, pre-authorized code flow.

By section of OpenID for Verifiable Credential Issuance 1.0:

- 4.1 / 4.1.3: the Credential Offer, by value (``credential_offer``) or by reference
  (``credential_offer_uri``) in an ``openid-credential-offer://`` URI
  (:func:`parse_offer_uri`, :func:`parse_credential_offer`); only the pre-authorized code grant
  is followed, with its ``tx_code`` (:func:`check_tx_code`);
- 12.2.2 / 12.2.4: the Credential Issuer Metadata at ``/.well-known/openid-credential-issuer``
  (:func:`metadata_url`, :func:`parse_issuer_metadata`), whose ``credential_issuer`` must be the
  offer's issuer exactly; the Authorization Server metadata of RFC 8414 for the token endpoint;
- 6.1 / 6.2: the Token Request and Response;
- 7: the Nonce Endpoint; 8.2 / 8.3: the Credential Request with ``proofs.jwt`` (one proof per
  copy, each by its own fresh holder key: batch issuance for unlinkable copies) and the
  Credential Response;
- Appendix F.1: the ``jwt`` key proof (:func:`proof_jwt`): ``typ: openid4vci-proof+jwt``, the
  public key in ``jwk``, ``aud`` the issuer, no ``iss`` (anonymous pre-authorized access).

What comes back is verified before anything is stored (:func:`verify_issued`, issue 6 item 2):
the issuer key named by ``kid`` is accredited in the registry for the offered ``vct``
(:meth:`civic.trust.TrustState.check_issuer_key`), the issuer signature, times and disclosure
digests verify (:func:`civic.sdjwtvc.verify_credential`), ``cnf`` is one of the keys this
wallet just made, the claims pass the type's schema, and the ``status`` reference lies under
the issuer's accredited status base URL. Copies of one batch must carry the same claims.

Everything above :func:`receive` is pure; :func:`receive` does the HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from civic.clock import Clock, system_clock
from civic.credentials import get_type, validate_claims
from civic.encoding import json_dumps_canonical, json_loads
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError
from civic.jose import Alg, PrivateKey, sign_jwt
from civic.sdjwt import holder_key_of, parse_sd_jwt
from civic.sdjwtvc import VC_TYP, credential_header, verify_credential
from civic.trust import IssuerKey, TrustState
from civic.verdict import accredited_status_reference
from wallet_cli.http import Http, check_service_url, error_summary

OFFER_SCHEME: Final = "openid-credential-offer"
PRE_AUTHORIZED_GRANT: Final = "urn:ietf:params:oauth:grant-type:pre-authorized_code"
PROOF_TYP: Final = "openid4vci-proof+jwt"
ISSUER_WELL_KNOWN: Final = "/.well-known/openid-credential-issuer"
AS_WELL_KNOWN: Final = "/.well-known/oauth-authorization-server"
MAX_COPIES: Final = 10
MAX_OFFER_URI: Final = 8192


def _malformed(detail: str) -> MalformedError:
    return MalformedError(ReasonCode.MALFORMED_INPUT, detail)


def _issuer_error(detail: str) -> VerificationError:
    return VerificationError(ReasonCode.ISSUER_ERROR, detail)


# --- the offer (section 4.1) -------------------------------------------------------------------


@dataclass(frozen=True)
class OfferReference:
    """An offer URI: the offer itself (by value) or where to fetch it (by reference)."""

    offer: dict[str, Any] | None
    offer_url: str | None


def _single_parameters(query: str, what: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise _malformed(f"{what} has a malformed query") from None
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        raise _malformed(f"{what} repeats a parameter")
    return dict(pairs)


def parse_offer_uri(uri: str) -> OfferReference:
    """Section 4.1: ``openid-credential-offer://?credential_offer_uri=...`` (4.1.3) or
    ``...?credential_offer=<JSON>`` (4.1.1); exactly one of the two."""
    text = uri.strip()
    if len(text) > MAX_OFFER_URI:
        raise _malformed("the offer URI is too long")
    parts = urlsplit(text)
    if parts.scheme != OFFER_SCHEME:
        raise _malformed(f"not a credential offer ({OFFER_SCHEME}://)")
    params = _single_parameters(parts.query, "the offer URI")
    by_value, by_reference = params.get("credential_offer"), params.get("credential_offer_uri")
    if (by_value is None) == (by_reference is None):
        raise _malformed("the offer URI needs credential_offer or credential_offer_uri")
    if by_reference is not None:
        return OfferReference(None, check_service_url(by_reference, "credential_offer_uri"))
    assert by_value is not None
    value = json_loads(by_value)
    if not isinstance(value, dict):
        raise _malformed("credential_offer is not a JSON object")
    return OfferReference(value, None)


@dataclass(frozen=True)
class TxCodeSpec:
    """Section 4.1.1 ``tx_code``: how the code the citizen was given looks."""

    input_mode: str
    length: int | None
    description: str | None


@dataclass(frozen=True)
class CredentialOffer:
    issuer: str
    configuration_ids: tuple[str, ...]
    pre_authorized_code: str
    tx_code: TxCodeSpec | None

    def __repr__(self) -> str:  # the code is a bearer secret
        return f"CredentialOffer(issuer={self.issuer!r}, configurations={self.configuration_ids})"


def parse_credential_offer(document: Mapping[str, Any]) -> CredentialOffer:
    issuer = check_service_url(document.get("credential_issuer"), "credential_issuer")
    ids = document.get("credential_configuration_ids")
    if (
        not isinstance(ids, list)
        or not ids
        or not all(isinstance(i, str) and i for i in ids)
        or len(set(ids)) != len(ids)
    ):
        raise _malformed("credential_configuration_ids must be a non-empty list of ids")
    grants = document.get("grants")
    grant = grants.get(PRE_AUTHORIZED_GRANT) if isinstance(grants, dict) else None
    if not isinstance(grant, dict):
        raise UsageError(
            ReasonCode.MALFORMED_INPUT,
            "the offer has no pre-authorized code grant (the only flow this wallet follows)",
        )
    code = grant.get("pre-authorized_code")
    if not isinstance(code, str) or not code:
        raise _malformed("pre-authorized_code is missing")
    tx_code: TxCodeSpec | None = None
    if "tx_code" in grant:
        spec = grant["tx_code"]
        if not isinstance(spec, dict):
            raise _malformed("tx_code is not an object")
        mode = spec.get("input_mode", "numeric")
        length = spec.get("length")
        description = spec.get("description")
        if mode not in ("numeric", "text"):
            raise _malformed("tx_code input_mode is neither numeric nor text")
        if length is not None and (type(length) is not int or not 1 <= length <= 64):
            raise _malformed("tx_code length is not a small positive integer")
        if description is not None and (not isinstance(description, str) or len(description) > 300):
            raise _malformed("tx_code description is not a short string")
        tx_code = TxCodeSpec(mode, length, description)
    return CredentialOffer(issuer, tuple(ids), code, tx_code)


def check_tx_code(spec: TxCodeSpec, code: str) -> str:
    """The code as typed, if it has the announced shape (checked before it is sent)."""
    code = code.strip()
    if not code:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "the transaction code is empty")
    if spec.input_mode == "numeric" and not (code.isascii() and code.isdigit()):
        raise UsageError(ReasonCode.MALFORMED_INPUT, "the transaction code is digits only")
    if spec.length is not None and len(code) != spec.length:
        raise UsageError(
            ReasonCode.MALFORMED_INPUT, f"the transaction code has {spec.length} characters"
        )
    return code


# --- metadata (section 12) ---------------------------------------------------------------------


def metadata_url(identifier: str, well_known: str) -> str:
    """Section 12.2.2 / RFC 8414 section 3.1: the well-known suffix goes between the host
    and any path component of the identifier."""
    parts = urlsplit(identifier)
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, well_known + path, "", ""))


def _display_names(value: object) -> tuple[str, str] | None:
    """(English, Korean) names from a ``display`` array, when it has them."""
    if not isinstance(value, list):
        return None
    names: dict[str, str] = {}
    for item in value:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            locale = item.get("locale")
            if isinstance(locale, str):
                names.setdefault(locale.split("-")[0].lower(), item["name"][:200])
    english = names.get("en")
    if english is None:
        return None
    return english, names.get("ko", english)


@dataclass(frozen=True)
class IssuerMetadata:
    issuer: str
    credential_endpoint: str
    nonce_endpoint: str | None
    batch_size: int
    authorization_server: str
    names: tuple[str, str] | None
    configuration_id: str
    vct: str
    proof_algs: tuple[str, ...]


def parse_issuer_metadata(
    document: Mapping[str, Any], *, issuer: str, configuration_id: str
) -> IssuerMetadata:
    """Section 12.2.4, for the one configuration the wallet asks for."""
    if document.get("credential_issuer") != issuer:
        raise VerificationError(
            ReasonCode.ISSUER_ERROR, "the metadata names another credential issuer than the offer"
        )
    endpoint = check_service_url(document.get("credential_endpoint"), "credential_endpoint")
    nonce = document.get("nonce_endpoint")
    nonce_endpoint = None if nonce is None else check_service_url(nonce, "nonce_endpoint")
    batch = document.get("batch_credential_issuance")
    batch_size = 1
    if batch is not None:
        size = batch.get("batch_size") if isinstance(batch, dict) else None
        if type(size) is not int or size < 2:
            raise _malformed("batch_credential_issuance.batch_size must be an integer >= 2")
        batch_size = size
    servers = document.get("authorization_servers")
    if servers is None:
        authorization_server = issuer
    elif isinstance(servers, list) and servers and isinstance(servers[0], str):
        authorization_server = check_service_url(servers[0], "authorization server")
    else:
        raise _malformed("authorization_servers is not a list of URLs")
    configurations = document.get("credential_configurations_supported")
    configuration = (
        configurations.get(configuration_id) if isinstance(configurations, dict) else None
    )
    if not isinstance(configuration, dict):
        raise _issuer_error("the offered credential configuration is not in the metadata")
    if configuration.get("format") != VC_TYP:
        raise UsageError(ReasonCode.MALFORMED_INPUT, f"only {VC_TYP} credentials are supported")
    vct = configuration.get("vct")
    if not isinstance(vct, str) or not vct:
        raise _malformed("the configuration has no vct")
    proof_types = configuration.get("proof_types_supported")
    jwt_proofs = proof_types.get("jwt") if isinstance(proof_types, dict) else None
    algs = jwt_proofs.get("proof_signing_alg_values_supported") if jwt_proofs else None
    if not isinstance(algs, list) or not all(isinstance(a, str) for a in algs):
        raise _malformed("the configuration takes no jwt key proofs")
    return IssuerMetadata(
        issuer=issuer,
        credential_endpoint=endpoint,
        nonce_endpoint=nonce_endpoint,
        batch_size=batch_size,
        authorization_server=authorization_server,
        names=_display_names(document.get("display")),
        configuration_id=configuration_id,
        vct=vct,
        proof_algs=tuple(algs),
    )


def token_endpoint_of(document: Mapping[str, Any], authorization_server: str) -> str:
    """RFC 8414 section 3.3: ``issuer`` must be the server asked; then its token endpoint."""
    if document.get("issuer") != authorization_server:
        raise _issuer_error("the authorization server metadata names another issuer")
    grants = document.get("grant_types_supported")
    if isinstance(grants, list) and PRE_AUTHORIZED_GRANT not in grants:
        raise _issuer_error("the authorization server does not support pre-authorized codes")
    return check_service_url(document.get("token_endpoint"), "token_endpoint")


# --- registry (before the citizen types the code) ----------------------------------------------


def require_accredited_issuer(state: TrustState, issuer: str, vct: str, now: int) -> IssuerKey:
    """Some key of ``issuer`` is accredited for ``vct`` now; else the registry's reason.

    Checked before the transaction code is asked for, so that a citizen never completes an
    offer from an agency the registry does not vouch for.
    """
    keys = state.issuer_keys(issuer)
    if not keys:
        raise VerificationError(
            ReasonCode.ISSUER_UNKNOWN, "the issuer of this offer is not accredited in the registry"
        )
    first_error: CivicError | None = None
    for key in reversed(keys):
        try:
            return state.check_issuer_key(issuer, key.kid, vct, now, now)
        except VerificationError as error:
            first_error = first_error or error
    assert first_error is not None
    raise VerificationError(
        first_error.reason,
        f"the registry does not accredit this issuer for it now: {first_error.detail}",
    )


# --- proofs and verification -------------------------------------------------------------------


def proof_jwt(key: PrivateKey, *, audience: str, nonce: str | None, now: int) -> str:
    """Appendix F.1: proof of possession of ``key`` for the issuer ``audience``."""
    claims: dict[str, Any] = {"aud": audience, "iat": now}
    if nonce is not None:
        claims["nonce"] = nonce
    return sign_jwt({"typ": PROOF_TYP, "jwk": key.public_key.to_jwk()}, claims, key)


@dataclass(frozen=True)
class VerifiedCopy:
    sd_jwt: str
    holder_thumbprint: str
    subject_claims: dict[str, Any]
    issued_at: int | None
    not_before: int | None
    expires_at: int | None

    def __repr__(self) -> str:  # claims are personal data
        return f"VerifiedCopy(holder={self.holder_thumbprint!r})"


def _int_claim(payload: Mapping[str, Any], name: str) -> int | None:
    value = payload.get(name)
    return value if type(value) is int else None


def verify_issued(
    text: str,
    *,
    issuer: str,
    vct: str,
    holder_thumbprints: Sequence[str],
    state: TrustState,
    now: int,
) -> VerifiedCopy:
    """Everything the wallet checks before it stores a received copy (module doc)."""
    parsed = parse_sd_jwt(text)
    if parsed.kb_jwt is not None:
        raise MalformedError(ReasonCode.KB_JWT_UNEXPECTED, "an issued credential has no KB-JWT")
    header = credential_header(parsed)
    if header.issuer != issuer:
        raise VerificationError(
            ReasonCode.ISSUER_UNKNOWN, "the credential's iss is not the issuer of the offer"
        )
    if header.vct != vct:
        raise VerificationError(ReasonCode.VCT_UNKNOWN, "the credential is not of the offered type")
    if header.kid is None:
        raise VerificationError(ReasonCode.KEY_UNKNOWN, "the credential names no issuer key")
    issued_at = _int_claim(parsed.payload, "iat")
    key = state.check_issuer_key(issuer, header.kid, vct, issued_at, now)
    verified = verify_credential(parsed, key.public_key, key_binding=None, now=lambda: now)
    thumbprint = holder_key_of(parsed.payload).thumbprint()
    if thumbprint not in holder_thumbprints:
        raise VerificationError(
            ReasonCode.HOLDER_KEY_MISMATCH, "the credential is bound to a key this wallet lacks"
        )
    subject = verified.subject_claims
    validate_claims(vct, subject)
    status = parsed.payload.get("status")
    if status is not None:
        accredited_status_reference(status, key.status_base_url)
    return VerifiedCopy(
        sd_jwt=text,
        holder_thumbprint=thumbprint,
        subject_claims=subject,
        issued_at=issued_at,
        not_before=_int_claim(parsed.payload, "nbf"),
        expires_at=_int_claim(parsed.payload, "exp"),
    )


def check_batch(copies: Sequence[VerifiedCopy], requested: int) -> None:
    """One copy per key, no more than asked, all with the same claims."""
    if not 1 <= len(copies) <= requested:
        raise _issuer_error(f"the issuer returned {len(copies)} credentials for {requested} proofs")
    if len({c.holder_thumbprint for c in copies}) != len(copies):
        raise _issuer_error("two copies are bound to the same holder key")
    first = json_dumps_canonical(copies[0].subject_claims)
    if any(json_dumps_canonical(c.subject_claims) != first for c in copies[1:]):
        raise _issuer_error("the copies of one credential carry different claims")


# --- the flow (I/O) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """A verified batch, ready to store."""

    metadata: IssuerMetadata
    copies: tuple[tuple[VerifiedCopy, PrivateKey], ...]
    trust_size: int

    @property
    def type_names(self) -> tuple[str, str]:
        ctype = get_type(self.metadata.vct)
        return ctype.type_name("en"), ctype.type_name("ko")


@dataclass(frozen=True)
class OfferPreview:
    """What the citizen is told before typing the code."""

    offer: CredentialOffer
    metadata: IssuerMetadata
    token_endpoint: str


def resolve_offer(http: Http, offer_uri: str) -> OfferPreview:
    reference = parse_offer_uri(offer_uri)
    if reference.offer_url is not None:
        answer = http.request(
            "GET",
            reference.offer_url,
            what="credential offer",
            headers={"Accept": "application/json"},
        )
        if answer.status != 200:
            raise _issuer_error(f"credential offer: {error_summary(answer)}")
        document = answer.json_object("credential offer")
    else:
        assert reference.offer is not None
        document = reference.offer
    offer = parse_credential_offer(document)
    configuration_id = offer.configuration_ids[0]
    answer = http.request(
        "GET", metadata_url(offer.issuer, ISSUER_WELL_KNOWN), what="issuer metadata"
    )
    if answer.status != 200:
        raise _issuer_error(f"issuer metadata: {error_summary(answer)}")
    metadata = parse_issuer_metadata(
        answer.json_object("issuer metadata"),
        issuer=offer.issuer,
        configuration_id=configuration_id,
    )
    get_type(metadata.vct)  # only the civic types can be shown and checked
    answer = http.request(
        "GET",
        metadata_url(metadata.authorization_server, AS_WELL_KNOWN),
        what="authorization server metadata",
    )
    if answer.status != 200:
        raise _issuer_error(f"authorization server metadata: {error_summary(answer)}")
    token_endpoint = token_endpoint_of(
        answer.json_object("authorization server metadata"), metadata.authorization_server
    )
    return OfferPreview(offer, metadata, token_endpoint)


def receive(
    http: Http,
    preview: OfferPreview,
    *,
    tx_code: Callable[[TxCodeSpec], str],
    copies: int,
    alg: Alg,
    state: TrustState,
    trust_size: int,
    now: Clock = system_clock,
) -> Received:
    """Token, nonce, credential request for ``copies`` fresh keys, then :func:`verify_issued`."""
    offer, metadata = preview.offer, preview.metadata
    if alg not in metadata.proof_algs:
        raise _issuer_error(f"the issuer takes no {alg} key proofs")
    form = {"grant_type": PRE_AUTHORIZED_GRANT, "pre-authorized_code": offer.pre_authorized_code}
    if offer.tx_code is not None:
        form["tx_code"] = check_tx_code(offer.tx_code, tx_code(offer.tx_code))
    answer = http.request("POST", preview.token_endpoint, what="token endpoint", data=form)
    if answer.status != 200:
        raise _issuer_error(f"the token request was refused: {error_summary(answer)}")
    token = answer.json_object("token endpoint")
    access_token, token_type = token.get("access_token"), token.get("token_type")
    if not isinstance(access_token, str) or not access_token:
        raise _issuer_error("the token response has no access_token")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise _issuer_error("the token is not a Bearer token")

    nonce: str | None = None
    if metadata.nonce_endpoint is not None:
        answer = http.request("POST", metadata.nonce_endpoint, what="nonce endpoint")
        if answer.status != 200:
            raise _issuer_error(f"nonce endpoint: {error_summary(answer)}")
        value = answer.json_object("nonce endpoint").get("c_nonce")
        if not isinstance(value, str) or not value:
            raise _issuer_error("the nonce endpoint returned no c_nonce")
        nonce = value

    count = max(1, min(copies, metadata.batch_size, MAX_COPIES))
    keys = [PrivateKey.generate(alg) for _ in range(count)]
    issued_now = now()
    proofs = [proof_jwt(key, audience=metadata.issuer, nonce=nonce, now=issued_now) for key in keys]
    answer = http.request(
        "POST",
        metadata.credential_endpoint,
        what="credential endpoint",
        headers={"Authorization": f"Bearer {access_token}"},
        json_body={
            "credential_configuration_id": metadata.configuration_id,
            "proofs": {"jwt": proofs},
        },
    )
    if answer.status != 200:
        raise _issuer_error(f"the credential request was refused: {error_summary(answer)}")
    body = answer.json_object("credential endpoint")
    if "transaction_id" in body and "credentials" not in body:
        raise _issuer_error("deferred issuance is not supported by this wallet")
    items = body.get("credentials")
    if not isinstance(items, list) or not all(
        isinstance(item, dict) and isinstance(item.get("credential"), str) for item in items
    ):
        raise _issuer_error("the credential response has no credentials")
    by_thumbprint = {key.public_key.thumbprint(): key for key in keys}
    at = now()
    verified = [
        verify_issued(
            item["credential"],
            issuer=metadata.issuer,
            vct=metadata.vct,
            holder_thumbprints=list(by_thumbprint),
            state=state,
            now=at,
        )
        for item in items
    ]
    check_batch(verified, count)
    return Received(
        metadata,
        tuple((copy, by_thumbprint[copy.holder_thumbprint]) for copy in verified),
        trust_size,
    )
