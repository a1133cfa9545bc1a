"""SD-JWT VC (draft-ietf-oauth-sd-jwt-vc) on top of :mod:`civic.sdjwt`.

The profile fixes the header ``typ`` to ``dc+sd-jwt`` (section 3.2.1), requires ``iss`` and
``vct`` (section 3.2.2.2), binds the holder with ``cnf.jwk``, and forbids selective disclosure of
``iss``, ``nbf``, ``exp``, ``cnf``, ``vct``, ``vct#integrity`` and ``status`` (section 3.2.2.2): a
presentation that discloses any of them is rejected. ``kid`` in the header names the issuer key
in the registry; resolving it to a trusted key is the caller's job (the trust state).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from civic.clock import Clock, RandomBytes, system_clock, system_random
from civic.errors import MalformedError, ReasonCode, UsageError, VerificationError
from civic.jose import PublicKey, Signer
from civic.sdjwt import (
    SD,
    ClaimPath,
    KeyBindingExpectation,
    ParsedSdJwt,
    VerifiedSdJwt,
    issue_sd_jwt,
    parse_sd_jwt,
    verify_sd_jwt,
)

VC_TYP = "dc+sd-jwt"
NEVER_DISCLOSABLE = frozenset({"iss", "nbf", "exp", "cnf", "vct", "vct#integrity", "status"})
REGISTERED_CLAIMS = NEVER_DISCLOSABLE | {"iat", "sub", "jti"}


def all_disclosable(value: Any) -> Any:
    """Wrap every object member and array element, recursively, in :class:`SD`.

    Recursive disclosure lets a holder reveal ``address.region`` without ``address.locality``,
    and hides even the existence of claims it does not reveal.
    """
    if isinstance(value, Mapping):
        return {SD(key): all_disclosable(child) for key, child in value.items()}
    if isinstance(value, list):
        return [SD(all_disclosable(child)) for child in value]
    return value


def issue_credential(
    *,
    issuer: str,
    vct: str,
    subject_claims: Mapping[str, Any],
    signer: Signer,
    kid: str,
    holder_key: PublicKey,
    lifetime: int,
    status: Mapping[str, Any] | None = None,
    not_before: int | None = None,
    now: Clock = system_clock,
    random: RandomBytes = system_random,
    decoys: tuple[int, int] = (1, 4),
) -> str:
    """Issue an SD-JWT VC in which every subject claim is selectively disclosable."""
    clash = REGISTERED_CLAIMS & subject_claims.keys()
    if clash:
        raise UsageError(ReasonCode.RESERVED_CLAIM_NAME, f"registered claims {sorted(clash)}")
    issued_at = now()
    claims: dict[Any, Any] = {"iss": issuer, "iat": issued_at, "exp": issued_at + lifetime}
    if not_before is not None:
        claims["nbf"] = not_before
    claims["vct"] = vct
    if status is not None:
        claims["status"] = dict(status)
    claims.update(all_disclosable(dict(subject_claims)))
    return issue_sd_jwt(
        claims,
        signer,
        header={"typ": VC_TYP, "kid": kid},
        holder_key=holder_key,
        decoys=decoys,
        random=random,
    )


class CredentialHeader(NamedTuple):
    """What a verifier reads before it can pick a key: unverified, for the trust lookup only."""

    issuer: str
    vct: str
    kid: str | None


def credential_header(parsed: ParsedSdJwt) -> CredentialHeader:
    issuer, vct, kid = (
        parsed.payload.get("iss"),
        parsed.payload.get("vct"),
        parsed.jws.header.get("kid"),
    )
    if not isinstance(issuer, str) or not issuer:
        raise MalformedError(ReasonCode.MALFORMED_SD_JWT, "iss missing")
    if not isinstance(vct, str) or not vct:
        raise MalformedError(ReasonCode.MALFORMED_SD_JWT, "vct missing")
    if kid is not None and not isinstance(kid, str):
        raise MalformedError(ReasonCode.MALFORMED_SD_JWT, "kid is not a string")
    # Unverified yet, these three go into verdicts, audit rows and log lines: control
    # characters (a NUL, which PostgreSQL text refuses; a newline, which forges a log line)
    # and other non-printable characters are refused here, before anything records them.
    if not (issuer.isprintable() and vct.isprintable() and (kid is None or kid.isprintable())):
        raise MalformedError(ReasonCode.MALFORMED_SD_JWT, "iss, vct or kid is not printable")
    return CredentialHeader(issuer, vct, kid)


class VerifiedCredential(NamedTuple):
    header: CredentialHeader
    claims: dict[str, Any]  # everything processed, registered claims included
    disclosed: tuple[ClaimPath, ...]
    key_binding: dict[str, Any] | None
    sd_jwt: VerifiedSdJwt

    @property
    def subject_claims(self) -> dict[str, Any]:
        return {k: v for k, v in self.claims.items() if k not in REGISTERED_CLAIMS}

    @property
    def status(self) -> Any:
        return self.claims.get("status")


_NEVER_DISCLOSABLE_PATHS = frozenset((name,) for name in NEVER_DISCLOSABLE)


def check_vc_disclosures(disclosed: tuple[ClaimPath, ...]) -> None:
    if _NEVER_DISCLOSABLE_PATHS.isdisjoint(disclosed):
        return
    for path in disclosed:  # the first offender, in order, names the error
        if path in _NEVER_DISCLOSABLE_PATHS:
            raise VerificationError(
                ReasonCode.CLAIM_NOT_DISCLOSABLE, f"{path[0]} must not be selectively disclosed"
            )


def verify_credential(
    text: str | ParsedSdJwt,
    issuer_key: PublicKey,
    *,
    key_binding: KeyBindingExpectation | None,
    now: Clock = system_clock,
    skew: int = 60,
) -> VerifiedCredential:
    """Verify an SD-JWT VC presentation with an issuer key the caller already trusts."""
    parsed = parse_sd_jwt(text) if isinstance(text, str) else text
    header = credential_header(parsed)
    verified = verify_sd_jwt(
        parsed, issuer_key, typ=VC_TYP, key_binding=key_binding, now=now, skew=skew
    )
    check_vc_disclosures(verified.disclosed)
    return VerifiedCredential(
        header, verified.claims, verified.disclosed, verified.key_binding, verified
    )
