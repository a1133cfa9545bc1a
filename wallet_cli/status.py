"""Is a held credential still good? The registry's view of its issuer key and the issuer's
Token Status List (draft-ietf-oauth-status-list sections 6.2, 8.3), checked as a verifier
would (:mod:`civic.verdict` "status"): the list must lie under the issuer key's accredited
status base URL and be signed by that key; ``invalid`` and ``suspended`` are reported as such.

Every copy of a batch has its own status entry, so each copy is checked; lists are fetched
once per URI and command. :func:`copy_status` is pure given a ``fetch`` function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from civic.errors import CivicError, ReasonCode, VerificationError
from civic.sdjwt import parse_sd_jwt
from civic.sdjwtvc import credential_header
from civic.statuslist import (
    Status,
    status_of,
    verify_status_list_token,
)
from civic.trust import TrustState
from civic.verdict import accredited_status_reference
from wallet_cli.http import Http, error_summary


@dataclass(frozen=True)
class CopyStatus:
    """``valid``, ``invalid``, ``suspended`` or ``unknown``, with the reason when not valid."""

    value: str
    reason: str | None = None

    def text(self) -> str:
        return self.value + (f" ({self.reason})" if self.reason else "")


def copy_status(
    sd_jwt: str, state: TrustState, fetch: Callable[[str], str], *, now: int
) -> CopyStatus:
    try:
        parsed = parse_sd_jwt(sd_jwt)
        header = credential_header(parsed)
        issued_at = parsed.payload.get("iat")
        key = state.check_issuer_key(
            header.issuer,
            header.kid or "",
            header.vct,
            issued_at if type(issued_at) is int else None,
            now,
        )
    except CivicError as error:
        # A verifier would reject the credential outright: the registry withdrew the key.
        return CopyStatus("invalid", error.reason.value)
    claim = parsed.payload.get("status")
    if claim is None:
        return CopyStatus("valid", "no status list")
    try:
        reference = accredited_status_reference(claim, key.status_base_url)
    except CivicError as error:
        return CopyStatus("invalid", error.reason.value)
    try:
        verified = verify_status_list_token(
            fetch(reference.uri), key=key.public_key, expected_uri=reference.uri, now=lambda: now
        )
        value = status_of(verified, reference)
    except CivicError as error:
        return CopyStatus("unknown", error.reason.value)
    if value is Status.VALID:
        return CopyStatus("valid")
    if value is Status.INVALID:
        return CopyStatus("invalid", ReasonCode.STATUS_INVALID.value)
    if value is Status.SUSPENDED:
        return CopyStatus("suspended", ReasonCode.STATUS_SUSPENDED.value)
    return CopyStatus("unknown", ReasonCode.STATUS_VALUE_UNKNOWN.value)


class StatusLists:
    """Fetches Status List Tokens over HTTP, once per URI."""

    def __init__(self, http: Http) -> None:
        self._http = http
        self._tokens: dict[str, str] = {}

    def fetch(self, uri: str) -> str:
        token = self._tokens.get(uri)
        if token is None:
            try:
                answer = self._http.request(
                    "GET", uri, what="status list", headers={"Accept": "application/statuslist+jwt"}
                )
            except CivicError as error:
                raise VerificationError(
                    ReasonCode.STATUS_LIST_UNAVAILABLE, f"status list: {error.detail}"
                ) from None
            if answer.status != 200:
                raise VerificationError(
                    ReasonCode.STATUS_LIST_UNAVAILABLE, f"status list: {error_summary(answer)}"
                )
            try:
                token = answer.body.decode("ascii").strip()
            except UnicodeDecodeError:
                raise VerificationError(
                    ReasonCode.STATUS_LIST_MALFORMED, "the status list is not a JWT"
                ) from None
            self._tokens[uri] = token
        return token


def summarize(statuses: list[CopyStatus]) -> str:
    """One word for the credential: the worst status among its copies."""
    for value in ("invalid", "suspended", "unknown"):
        if any(s.value == value for s in statuses):
            return value
    return "valid"
