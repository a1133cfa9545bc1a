"""Presenting credentials: the wallet's side of OpenID4VP 1.0, and the offline QR.

By section of OpenID for Verifiable Presentations 1.0:

- 5.7 / 13.1: the wallet is invoked by reference, ``openid4vp://?client_id=...&request_uri=...``
  (:func:`parse_request_uri`); the request object is fetched with GET (``request_uri_method``
  ``post`` is not offered);
- 5 and RFC 9101 (JAR) 6.2: the request object is a JWT, ``typ: oauth-authz-req+jwt``, signed
  by the key the trust registry accredits for the ``client_id`` (pre-registered client,
  section 5.9.2: the registry *is* the registration), named by ``kid``; its ``client_id`` must
  be the one in the URI (section 5.10), ``response_type=vp_token``,
  ``response_mode=direct_post`` with a ``response_uri`` (section 8.2), a ``nonce``, a
  ``dcql_query`` (section 6), unexpired (:func:`verify_request_object`);
- the registry then decides (issue 6 item 4): every credential type and claim path in the
  query must be inside the verifier's accreditation (:func:`check_accreditation`), else the
  wallet refuses and says which claims are beyond it;
- 6.4 (selecting credentials): :func:`civic.dcql.match_query` lists what may answer; among
  matching credentials the wallet takes the one needing the fewest disclosures
  (:func:`plan_presentation`, counted with :func:`civic.sdjwt.select_disclosures`, which adds
  only the parents of the requested claims);
- 8.1 / 8.2: ``vp_token`` is a JSON object keyed by credential query id, each an array of one
  SD-JWT+KB whose KB-JWT has ``aud`` = ``client_id`` and the request's ``nonce``; it is posted
  form-encoded to ``response_uri`` with ``state`` (:func:`post_response`).

:func:`consent_summary` is what the citizen sees before saying yes: who asks (client id),
why (the purpose the registry accredited, not a claim of the verifier's own), and each claim
with its display name and value. Only the I/O functions at the end touch the network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from civic.credentials import get_type
from civic.dcql import (
    FORMAT_SD_JWT_VC,
    ConcreteClaimPath,
    DcqlQuery,
    HeldCredential,
    match_query,
    parse_dcql,
    select_claims,
)
from civic.encoding import json_dumps
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError
from civic.jose import parse_jws, verify_jws
from civic.sdjwt import ParsedSdJwt, parse_sd_jwt, process_disclosures, select_disclosures
from civic.sdjwtvc import REGISTERED_CLAIMS
from civic.trust import AccreditedVerifier, TrustState
from wallet_cli.http import Http, check_service_url, error_summary

WALLET_SCHEMES: Final = ("openid4vp", "haip", "eudi-openid4vp")
REQUEST_OBJECT_TYP: Final = "oauth-authz-req+jwt"
STATIC_AUDIENCE: Final = "https://self-issued.me/v2"
MAX_REQUEST_URI: Final = 8192
MAX_NONCE: Final = 256
SKEW: Final = 60


def _malformed(detail: str) -> MalformedError:
    return MalformedError(ReasonCode.MALFORMED_INPUT, detail)


# --- the request (sections 5, 5.10) -----------------------------------------------------------


@dataclass(frozen=True)
class RequestReference:
    client_id: str
    request_uri: str


def parse_request_uri(uri: str) -> RequestReference:
    """``openid4vp://?client_id=...&request_uri=...``: each parameter once, both present."""
    text = uri.strip()
    if len(text) > MAX_REQUEST_URI:
        raise _malformed("the request URI is too long")
    parts = urlsplit(text)
    if parts.scheme not in WALLET_SCHEMES:
        raise _malformed("not an OpenID4VP request (openid4vp://)")
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise _malformed("the request URI has a malformed query") from None
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        raise _malformed("the request URI repeats a parameter")
    params = dict(pairs)
    if "request" in params:
        raise UsageError(
            ReasonCode.MALFORMED_INPUT, "requests by value are not accepted; only request_uri"
        )
    method = params.get("request_uri_method", "get")
    if method != "get":
        raise UsageError(ReasonCode.MALFORMED_INPUT, "only request_uri_method=get is supported")
    client_id, request_uri = params.get("client_id"), params.get("request_uri")
    if not client_id or not request_uri:
        raise _malformed("the request URI needs client_id and request_uri")
    return RequestReference(client_id, check_service_url(request_uri, "request_uri"))


@dataclass(frozen=True)
class PresentationRequest:
    """A verified request object and the registry entry that vouches for it."""

    client_id: str
    verifier: AccreditedVerifier
    response_uri: str
    nonce: str
    state: str | None
    dcql: DcqlQuery
    expires_at: int

    def __repr__(self) -> str:
        return f"PresentationRequest(client_id={self.client_id!r})"


def _string(claims: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise _malformed(f"the request object's {name} is missing or not a string")
    return value


def verify_request_object(
    token: str, reference: RequestReference, state: TrustState, *, now: int
) -> PresentationRequest:
    """Signature by the accredited key, then the members (module doc). The accreditation of
    the claims asked for is :func:`check_accreditation`'s job."""
    client_id = reference.client_id
    verifier = state.verifier(client_id)
    if verifier is None:
        raise VerificationError(
            ReasonCode.VERIFIER_UNKNOWN,
            f"{client_id!r} is not a verifier accredited by the trust registry",
        )
    if verifier.revoked_at is not None:
        raise VerificationError(
            ReasonCode.VERIFIER_REVOKED, f"the registry has revoked {client_id!r}"
        )
    if not verifier.not_before <= now <= verifier.not_after:
        raise VerificationError(
            ReasonCode.KEY_OUTSIDE_WINDOW, "the verifier's accreditation is not valid now"
        )
    try:
        header = parse_jws(token.strip()).header
    except CivicError as error:
        raise MalformedError(error.reason, "the request object is not a compact JWS") from None
    if header.get("kid") != verifier.kid:
        raise VerificationError(
            ReasonCode.KEY_UNKNOWN,
            "the request object is not signed with the key the registry accredits now",
        )
    claims = verify_jws(token.strip(), verifier.public_key, typ=REQUEST_OBJECT_TYP).payload_json()
    if claims.get("client_id") != client_id:
        raise VerificationError(
            ReasonCode.MALFORMED_INPUT, "the request object is for another client_id"
        )
    if "iss" in claims and claims["iss"] != client_id:
        raise VerificationError(ReasonCode.MALFORMED_INPUT, "the request object's iss is not it")
    audience = claims.get("aud")
    if audience is not None and audience not in (STATIC_AUDIENCE, [STATIC_AUDIENCE]):
        raise VerificationError(ReasonCode.MALFORMED_INPUT, "the request is for another wallet")
    expires_at = claims.get("exp")
    if type(expires_at) is not int:
        raise _malformed("the request object has no exp")
    if now - SKEW >= expires_at:
        raise VerificationError(ReasonCode.REQUEST_EXPIRED, "the request has expired")
    issued_at = claims.get("iat")
    if type(issued_at) is int and issued_at > now + SKEW:
        raise VerificationError(ReasonCode.IAT_IN_FUTURE, "the request was issued in the future")
    if claims.get("response_type") != "vp_token":
        raise UsageError(ReasonCode.MALFORMED_INPUT, "only response_type=vp_token is supported")
    if claims.get("response_mode") != "direct_post":
        raise UsageError(ReasonCode.MALFORMED_INPUT, "only response_mode=direct_post is supported")
    if "presentation_definition" in claims or "scope" in claims:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "only DCQL queries are supported")
    response_uri = check_service_url(claims.get("response_uri"), "response_uri")
    nonce = _string(claims, "nonce")
    assert nonce is not None
    if len(nonce) > MAX_NONCE:
        raise _malformed("the request nonce is too long")
    if "dcql_query" not in claims:
        raise _malformed("the request object has no dcql_query")
    return PresentationRequest(
        client_id=client_id,
        verifier=verifier,
        response_uri=response_uri,
        nonce=nonce,
        state=_string(claims, "state", required=False),
        dcql=parse_dcql(claims["dcql_query"]),
        expires_at=expires_at,
    )


def _path_text(path: Sequence[str | int | None]) -> str:
    return ".".join("*" if c is None else str(c) for c in path)


def check_accreditation(state: TrustState, request: PresentationRequest, *, now: int) -> None:
    """Every type and claim asked for lies inside the verifier's accreditation (docs/registry.md
    "Verifier requests"); otherwise ``verifier_claims_not_accredited`` naming what is beyond."""
    client_id = request.client_id
    for query in request.dcql.credentials:
        if query.format != FORMAT_SD_JWT_VC or not query.meta.vct_values:
            raise VerificationError(
                ReasonCode.VERIFIER_CLAIMS_NOT_ACCREDITED,
                f"query {query.id!r} asks for a credential format the registry does not cover",
            )
        for vct in query.meta.vct_values:
            try:
                state.check_verifier_request(client_id, vct, query.claim_paths, now)
            except VerificationError as error:
                if error.reason is not ReasonCode.VERIFIER_CLAIMS_NOT_ACCREDITED:
                    raise
                allowed = request.verifier.allowed_for(vct)
                if allowed is None:
                    raise VerificationError(
                        error.reason,
                        f"{client_id!r} is not accredited to ask for {_type_label(vct)} at all",
                    ) from None
                beyond = [
                    _path_text(path) for path in query.claim_paths if not allowed.covers(path)
                ]
                permitted = [_path_text(path) for path in allowed.claims]
                raise VerificationError(
                    error.reason,
                    f"{client_id!r} asks for {', '.join(beyond)} of {_type_label(vct)}, beyond"
                    f" its accreditation ({', '.join(permitted) or 'no claims'})",
                ) from None


def _type_label(vct: str) -> str:
    try:
        return get_type(vct).type_name("en")
    except CivicError:
        return vct


# --- what to disclose (section 6.4) ---------------------------------------------------------


@dataclass(frozen=True)
class Holding:
    """A credential the wallet could present: its id, type, and one copy parsed."""

    credential_id: str
    vct: str
    parsed: ParsedSdJwt
    claims: Mapping[str, Any]

    def __repr__(self) -> str:  # claims are personal data
        return f"Holding(id={self.credential_id!r}, vct={self.vct!r})"


def holding(credential_id: str, vct: str, sd_jwt: str) -> Holding:
    parsed = parse_sd_jwt(sd_jwt)
    return Holding(credential_id, vct, parsed, process_disclosures(parsed).claims)


@dataclass(frozen=True)
class PlannedPresentation:
    query_id: str
    credential_id: str
    vct: str
    claim_paths: tuple[ConcreteClaimPath, ...]
    disclosures: int


def plan_presentation(
    dcql: DcqlQuery, holdings: Sequence[Holding]
) -> tuple[PlannedPresentation, ...]:
    """Per answered credential query, the holding that satisfies it with the fewest
    disclosures (ties: the first held); ``dcql_unsatisfied`` when the wallet cannot answer."""
    by_id = {h.credential_id: h for h in holdings}
    held = [
        HeldCredential(id=h.credential_id, format=FORMAT_SD_JWT_VC, vct=h.vct, claims=h.claims)
        for h in holdings
    ]
    match = match_query(dcql, held)
    plan: list[PlannedPresentation] = []
    for query_id in match.selected:
        options = []
        for order, candidate in enumerate(match.candidates[query_id]):
            chosen = by_id[candidate.credential.id]
            count = len(select_disclosures(chosen.parsed, candidate.claim_paths))
            options.append((count, order, chosen, candidate.claim_paths))
        count, _, chosen, paths = min(options, key=lambda option: (option[0], option[1]))
        plan.append(PlannedPresentation(query_id, chosen.credential_id, chosen.vct, paths, count))
    return tuple(plan)


# --- consent ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentClaim:
    path: tuple[str | int, ...]
    name: str
    value: str

    def __repr__(self) -> str:
        return f"ConsentClaim(path={self.path!r})"


@dataclass(frozen=True)
class ConsentItem:
    query_id: str
    credential_id: str
    type_name: str
    issuer: str
    claims: tuple[ConsentClaim, ...]


@dataclass(frozen=True)
class ConsentSummary:
    verifier: str
    purpose: str | None
    accredited: bool
    response_host: str | None
    items: tuple[ConsentItem, ...]
    trust_size: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "verifier": self.verifier,
            "purpose": self.purpose,
            "accredited": self.accredited,
            "response_host": self.response_host,
            "trust_checkpoint_size": self.trust_size,
            "credentials": [
                {
                    "query": item.query_id,
                    "credential_id": item.credential_id,
                    "type": item.type_name,
                    "issuer": item.issuer,
                    "claims": [
                        {"path": list(claim.path), "name": claim.name, "value": claim.value}
                        for claim in item.claims
                    ],
                }
                for item in self.items
            ],
        }


def claim_label(vct: str, path: Sequence[str | int], lang: str) -> str:
    """A claim's display name in ``lang``; the dotted path for names the type lacks."""
    try:
        ctype = get_type(vct)
        names = [
            ctype.display_name(path[: i + 1], "ko" if lang == "ko" else "en")
            for i, component in enumerate(path)
            if isinstance(component, str)
        ]
    except CivicError:
        return _path_text(path)
    # Nested members read best with their parent: "Address › Metropolitan city or province".
    return " › ".join(dict.fromkeys(names)) if names else _path_text(path)


def claim_value_text(vct: str, path: Sequence[str | int], value: Any, lang: str) -> str:
    """A claim value for people (code lists by name, yes/no), compact JSON for structures."""
    if isinstance(value, dict | list):
        return json_dumps(value)
    try:
        return get_type(vct).display_value(path, value, "ko" if lang == "ko" else "en")
    except CivicError:
        return str(value)


def disclosed_claims(
    vct: str, claims: Mapping[str, Any], paths: Sequence[ConcreteClaimPath], lang: str
) -> tuple[ConsentClaim, ...]:
    out: list[ConsentClaim] = []
    for path in paths:
        selected = select_claims(claims, path)
        value = selected[0][1] if selected else None
        out.append(
            ConsentClaim(
                tuple(path),
                claim_label(vct, path, lang),
                claim_value_text(vct, path, value, lang),
            )
        )
    return tuple(out)


def consent_summary(
    *,
    verifier: str,
    purpose: str | None,
    accredited: bool,
    response_uri: str | None,
    plan: Sequence[PlannedPresentation],
    holdings: Mapping[str, Holding],
    type_names: Mapping[str, str],
    issuer_names: Mapping[str, str],
    trust_size: int | None,
    lang: str,
) -> ConsentSummary:
    items = tuple(
        ConsentItem(
            query_id=item.query_id,
            credential_id=item.credential_id,
            type_name=type_names[item.credential_id],
            issuer=issuer_names[item.credential_id],
            claims=disclosed_claims(
                item.vct, holdings[item.credential_id].claims, item.claim_paths, lang
            ),
        )
        for item in plan
    )
    host = urlsplit(response_uri).netloc if response_uri else None
    return ConsentSummary(verifier, purpose, accredited, host, items, trust_size)


# --- offline QR ---------------------------------------------------------------------------------


def parse_claim_list(text: str) -> tuple[tuple[str | int, ...], ...]:
    """``given_name,address.region``: comma-separated dotted paths; digits are array indexes."""
    paths: list[tuple[str | int, ...]] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        components = item.split(".")
        if any(not c for c in components):
            raise UsageError(ReasonCode.MALFORMED_INPUT, f"{item!r} is not a claim path")
        paths.append(tuple(int(c) if c.isascii() and c.isdigit() else c for c in components))
    if not paths:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "name at least one claim to disclose")
    return tuple(dict.fromkeys(paths))


def check_disclosable(held: Holding, paths: Sequence[tuple[str | int, ...]]) -> None:
    """Each path names a claim of this credential that holder disclosure can reveal."""
    for path in paths:
        if isinstance(path[0], str) and path[0] in REGISTERED_CLAIMS:
            raise UsageError(
                ReasonCode.CLAIM_NOT_DISCLOSABLE,
                f"{_path_text(path)} is always part of the credential, not a claim to choose",
            )
        if not select_claims(held.claims, path):
            raise UsageError(
                ReasonCode.CLAIM_MISSING, f"the credential has no claim {_path_text(path)}"
            )


def parse_challenge(text: str) -> tuple[str, str]:
    """A counter's challenge QR: ``{"aud": client_id, "nonce": ...}`` (verifier ``/challenges``)."""
    from civic.encoding import json_loads_object  # noqa: PLC0415

    document = json_loads_object(text, what="challenge")
    audience, nonce = document.get("aud"), document.get("nonce")
    if not isinstance(audience, str) or not audience or not isinstance(nonce, str) or not nonce:
        raise _malformed("the challenge needs aud and nonce")
    if len(nonce) > MAX_NONCE:
        raise _malformed("the challenge nonce is too long")
    return audience, nonce


# --- I/O ----------------------------------------------------------------------------------------


def fetch_request_object(http: Http, reference: RequestReference) -> str:
    answer = http.request(
        "GET",
        reference.request_uri,
        what="request object",
        headers={"Accept": f"application/{REQUEST_OBJECT_TYP}"},
    )
    if answer.status != 200:
        raise VerificationError(
            ReasonCode.VERIFIER_ERROR, f"fetching the request: {error_summary(answer)}"
        )
    try:
        return answer.body.decode("ascii").strip()
    except UnicodeDecodeError:
        raise _malformed("the request object is not a compact JWT") from None


def post_response(
    http: Http, request: PresentationRequest, vp_token: Mapping[str, list[str]]
) -> dict[str, Any]:
    """Section 8.2: ``direct_post``; the verifier's JSON answer (``{}`` if it sent none)."""
    form = {"vp_token": json_dumps(dict(vp_token))}
    if request.state is not None:
        form["state"] = request.state
    answer = http.request("POST", request.response_uri, what="response_uri", data=form)
    if answer.status != 200:
        raise VerificationError(
            ReasonCode.VERIFIER_ERROR, f"the verifier refused the response: {error_summary(answer)}"
        )
    if not answer.body.strip():
        return {}
    return answer.json_object("verifier answer")
