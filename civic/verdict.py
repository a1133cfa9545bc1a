"""The verification checklist: one presentation (or one OpenID4VP response) in, a verdict out.

Implements DESIGN.md "Verification, as a checklist" and issue 5 ("Verdicts"), over:

- RFC 9901 section 7.1 and 7.3 (SD-JWT and KB-JWT verification, :mod:`civic.sdjwt`),
- draft-ietf-oauth-sd-jwt-vc section 3 (``dc+sd-jwt``, never-disclosable claims),
- draft-ietf-oauth-status-list sections 5.1, 6.2 and 8.3 (the status check),
- OpenID4VP 1.0 section 8.1 (``vp_token`` keyed by the DCQL credential query id, each an array
  of presentations) and section 14.1 (nonce binding against replay),
- docs/registry.md "TrustState queries" (issuer key accredited for the ``vct``, inside its
  window, not revoked; a retired key covers credentials issued before retirement).

Every verdict is ``valid``, ``invalid`` or ``undetermined`` and lists its checks in order, each
``passed``, ``failed``, ``skipped`` or ``undetermined`` with a stable reason code:

    trust -> presentations -> per credential: parse -> issuer_key -> signature -> time ->
    disclosures -> key_binding -> status -> schema -> (all credentials) policy

Rules, in the order they are applied to the outcome:

1. any failed check makes the verdict ``invalid`` (the presentation is wrong, whatever else);
2. otherwise any undetermined check makes it ``undetermined``: trust older than its maximum age,
   an unreachable or expired status list (unless the policy says ``status_unavailable:
   accept``), a status list that does not verify, an issuer or kid the *stale* trust state does
   not know (it may have been accredited since). Stale trust never yields ``valid``;
3. otherwise ``valid``.

After a failed check the remaining ones are listed as ``skipped``. Revocations, retirements,
windows and accredited types are permanent facts of the log, so a stale trust state that
rejects a key still makes the verdict ``invalid``.

Status lists are fetched only under the ``status_base_url`` accredited for the issuer key that
signed the credential, and verified with that same key: an issuer cannot point verifiers at a
list it does not control, nor sign another issuer's list.

The nonce is spent once per verification, by the first KB-JWT that passes every other key
binding check (all presentations of one response share the request's nonce). ``consume_nonce``
returns False for a nonce already spent and may raise a :class:`CivicError` (e.g.
``nonce_unknown``) that becomes the key binding check's reason.

Reports carry the disclosed values only of the claims the policy requested, and only when the
verdict is not ``invalid``; ``repr`` never shows them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property, lru_cache, partial
from typing import Any, Protocol
from urllib.parse import unquote

from civic.credentials import get_type, validate_claims
from civic.dcql import select_claims
from civic.errors import CivicError, MalformedError, ReasonCode, VerificationError
from civic.jose import PublicKey
from civic.logsync import TrustSnapshot
from civic.policy import Policy, PolicyOutcome
from civic.qr import is_packed, unpack
from civic.sdjwt import (
    KeyBindingExpectation,
    ParsedSdJwt,
    check_validity_window,
    holder_key_of,
    parse_sd_jwt,
    process_disclosures,
    verify_issuer_signature,
    verify_key_binding,
)
from civic.sdjwtvc import (
    REGISTERED_CLAIMS,
    VC_TYP,
    CredentialHeader,
    check_vc_disclosures,
    credential_header,
)
from civic.statuslist import (
    Status,
    StatusReference,
    VerifiedStatusList,
    parse_status_claim,
    status_of,
    verify_status_list_token,
)

DEFAULT_SKEW = 60

CHECK_NAMES: tuple[str, ...] = (
    "trust",
    "presentations",
    "parse",
    "issuer_key",
    "signature",
    "time",
    "disclosures",
    "key_binding",
    "status",
    "schema",
    "policy",
)
"""Every check name a verdict may contain, in checklist order."""

# A status list that cannot be had (or only an expired one): a policy may tolerate these.
_STATUS_UNAVAILABLE = frozenset(
    {ReasonCode.STATUS_LIST_UNAVAILABLE, ReasonCode.STATUS_LIST_EXPIRED}
)
_UNKNOWN_TO_STALE_TRUST = frozenset({ReasonCode.ISSUER_UNKNOWN, ReasonCode.KEY_UNKNOWN})


# --- what the checklist needs from outside ------------------------------------------------------


class AccreditedKey(Protocol):
    """An issuer key as the trust state accredits it (``civic.trust.IssuerKey`` is one)."""

    @property
    def public_key(self) -> PublicKey: ...

    @property
    def status_base_url(self) -> str: ...


class TrustView(Protocol):
    """The trust the verdict rests on: a synced snapshot or an offline bundle."""

    @property
    def checkpoint_size(self) -> int | None: ...

    def is_stale(self, now: int) -> bool: ...

    def check_issuer_key(
        self, issuer: str, kid: str, vct: str, issued_at: int | None, now: int
    ) -> AccreditedKey:
        """Raise ``VerificationError`` with the trust state's reason code, as
        ``civic.trust.TrustState.check_issuer_key`` does."""
        ...


class StatusFetcher(Protocol):
    """Fetches Status List Tokens. A fetcher that caches tokens may also define
    ``forget(uri, token)``: the checklist calls it for a token that failed verification."""

    def fetch(self, uri: str) -> str:
        """The Status List Token at ``uri``; raise ``status_list_unavailable`` when it cannot
        be had (network, HTTP status, size cap)."""
        ...


@dataclass(frozen=True)
class SnapshotTrust:
    """:class:`TrustView` over a :class:`civic.logsync.TrustSnapshot`.

    Freshness: a snapshot flagged stale by ``verify_bundle`` is stale; with witnesses, the
    snapshot is stale once a witness quorum last vouched more than ``max_age`` seconds ago;
    without witnesses, only a live sync can vouch for freshness (``synced_at``).
    """

    snapshot: TrustSnapshot
    max_age: int
    synced_at: int | None = None

    @property
    def checkpoint_size(self) -> int | None:
        return self.snapshot.size

    def is_stale(self, now: int) -> bool:
        if self.snapshot.stale:
            return True
        if self.snapshot.witness_quorum > 0:
            age = self.snapshot.age_at(now)
            return age is None or age > self.max_age
        return self.synced_at is None or now - self.synced_at > self.max_age

    def check_issuer_key(
        self, issuer: str, kid: str, vct: str, issued_at: int | None, now: int
    ) -> AccreditedKey:
        return self.snapshot.state.check_issuer_key(issuer, kid, vct, issued_at, now)


class StatusListCache:
    """Status List Tokens already verified, so that the same token is not verified again for
    every credential that points at it (its signature, claims and list decoding cost more than
    all of a presentation's other checks but the two signatures).

    An entry is keyed by everything its verification depended on (the token text, the key's
    algorithm and bytes, the expected URI, the skew) and reused only at a time not before the
    one it was verified at, where the checks that ``now`` decides still hold, all but ``exp``,
    which is checked again. Anything else verifies the token from scratch, failures included
    (they are never cached). At most ``max_entries`` tokens are kept, the oldest dropped first.
    """

    def __init__(self, max_entries: int = 256) -> None:
        self._max_entries = max_entries
        self._entries: dict[tuple[str, str, bytes, str, int], tuple[int, VerifiedStatusList]] = {}
        self._lock = threading.Lock()

    def verify(
        self, token: str, *, key: PublicKey, expected_uri: str, now: int, skew: int
    ) -> VerifiedStatusList:
        entry_key = (token, key.alg, key.raw, expected_uri, skew)
        entry = self._entries.get(entry_key)
        if entry is not None:
            verified_at, verified = entry
            if verified_at <= now and (verified.exp is None or now - skew < verified.exp):
                return verified
        verified = verify_status_list_token(
            token, key=key, expected_uri=expected_uri, now=lambda: now, skew=skew
        )
        with self._lock:
            if len(self._entries) >= self._max_entries:
                del self._entries[next(iter(self._entries))]
            self._entries[entry_key] = (now, verified)
        return verified


# --- the verdict ----------------------------------------------------------------------------------


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNDETERMINED = "undetermined"


class Result(StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    UNDETERMINED = "undetermined"


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Outcome
    reason: ReasonCode | None = None
    credential: str | None = None
    """The DCQL credential query id this check is about, if any."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "outcome": self.outcome.value,
            "reason": self.reason.value if self.reason is not None else None,
            "credential": self.credential,
        }

    @cached_property
    def json_text(self) -> str:
        """:meth:`to_json` as compact JSON text, computed once per (interned) check."""
        return _JSON_TEXT.encode(self.to_json())


_JSON_TEXT = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
"""Compact JSON with non-ASCII kept, refusing NaN: what Starlette's JSONResponse writes."""

_interned_checks: dict[tuple[str, Outcome, ReasonCode | None, str | None], Check] = {}
_MAX_INTERNED_CHECKS = 4096


def _check(name: str, outcome: Outcome, reason: ReasonCode | None, query: str | None) -> Check:
    """``Check(name, outcome, reason, query)``, one shared instance per value: a checklist
    records the same few checks every time, and a shared check keeps its JSON text."""
    key = (name, outcome, reason, query)
    check = _interned_checks.get(key)
    if check is None:
        check = Check(name, outcome, reason, query)
        if len(_interned_checks) < _MAX_INTERNED_CHECKS:  # names and queries come from policies
            _interned_checks[key] = check
    return check


@dataclass(frozen=True)
class DisclosedClaim:
    path: tuple[str | int, ...]
    value: Any = field(repr=False)


@dataclass(frozen=True)
class CredentialReport:
    query: str | None
    issuer: str | None
    vct: str | None
    kid: str | None
    claims: tuple[DisclosedClaim, ...] = ()

    def to_json(self, *, include_claims: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "query": self.query,
            "issuer": self.issuer,
            "vct": self.vct,
            "kid": self.kid,
        }
        if include_claims:
            out["claims"] = [_claim_json(self.vct, claim) for claim in self.claims]
        return out


def _claim_json(vct: str | None, claim: DisclosedClaim) -> dict[str, Any]:
    item: dict[str, Any] = {"path": list(claim.path), "value": claim.value}
    label = _label(vct, claim.path)
    if label is not None:
        item["label"] = {"en": label[0], "ko": label[1]}
    return item


@lru_cache(maxsize=1024)
def _label(vct: str | None, path: tuple[str | int, ...]) -> tuple[str, str] | None:
    """A claim's display names (en, ko); None for an unknown type or path, whose path says
    enough. Cached: every verdict of a policy shows the same few claims."""
    try:
        ctype = get_type(vct)
        return ctype.display_name(path, "en"), ctype.display_name(path, "ko")
    except CivicError:
        return None


@dataclass(frozen=True)
class Verdict:
    result: Result
    checks: tuple[Check, ...]
    credentials: tuple[CredentialReport, ...]
    policy_id: str
    policy: PolicyOutcome | None
    checkpoint_size: int | None
    verified_at: int

    @property
    def reason(self) -> ReasonCode | None:
        """The reason of the first failed check, else of the first undetermined one."""
        for wanted in (Outcome.FAILED, Outcome.UNDETERMINED):
            for check in self.checks:
                if check.outcome is wanted:
                    return check.reason
        return None

    @property
    def reasons(self) -> tuple[ReasonCode, ...]:
        """Every reason code the checks gave, in order, without repeats (for audit logs)."""
        seen: dict[ReasonCode, None] = {}
        for check in self.checks:
            if check.reason is not None:
                seen.setdefault(check.reason)
        return tuple(seen)

    def _head_json(self) -> dict[str, Any]:
        """The members before ``checks``, in the order both JSON forms give them."""
        return {
            "result": self.result.value,
            "reason": self.reason.value if self.reason is not None else None,
            "policy": {
                "id": self.policy_id,
                "satisfied": self.policy.satisfied if self.policy is not None else None,
                "failed": list(self.policy.failed) if self.policy is not None else [],
            },
        }

    def to_json(self, *, include_claims: bool = True) -> dict[str, Any]:
        """The verdict as JSON. ``include_claims=False`` for anything that is stored or logged."""
        return {
            **self._head_json(),
            "checks": [check.to_json() for check in self.checks],
            "credentials": [c.to_json(include_claims=include_claims) for c in self.credentials],
            "checkpoint_size": self.checkpoint_size,
            "verified_at": self.verified_at,
        }

    def to_json_text(self) -> str:
        """``to_json()`` as compact JSON text (non-ASCII kept, NaN refused), byte for byte what
        ``JSONResponse(verdict.to_json())`` sends, with each check's text made once: encoding
        the whole verdict afresh cost more than some of its checks."""
        head = _JSON_TEXT.encode(self._head_json())
        tail = _JSON_TEXT.encode(
            {
                "credentials": [c.to_json() for c in self.credentials],
                "checkpoint_size": self.checkpoint_size,
                "verified_at": self.verified_at,
            }
        )
        checks = ",".join([check.json_text for check in self.checks])
        return f'{head[:-1]},"checks":[{checks}],{tail[1:]}'


# --- the checklist ----------------------------------------------------------------------------


class _ConsumeOnce:
    """Spend the nonce on the first call; later calls in the same verification get the same
    answer (every presentation of one response is bound to the same nonce)."""

    def __init__(self, consume: Callable[[str], bool]) -> None:
        self._consume = consume
        self._result: bool | None = None

    def __call__(self, nonce: str) -> bool:
        if self._result is None:
            self._result = self._consume(nonce)
        return self._result


@dataclass
class _Credential:
    query: str | None
    text: str
    parsed: ParsedSdJwt | None = None
    header: CredentialHeader | None = None
    key: AccreditedKey | None = None
    claims: dict[str, Any] | None = None
    stopped: bool = False


@dataclass
class _Run:
    policy: Policy
    trust: TrustView
    status: StatusFetcher
    audience: str
    nonce: str
    consume: _ConsumeOnce | None
    now: int
    skew: int
    status_cache: StatusListCache | None = None
    stale: bool = False
    halted: bool = False
    checks: list[Check] = field(default_factory=list)

    def record(
        self, name: str, outcome: Outcome, reason: ReasonCode | None, query: str | None
    ) -> None:
        self.checks.append(_check(name, outcome, reason, query))
        if outcome is Outcome.FAILED:
            self.halted = True

    def step(self, credential: _Credential, name: str, action: Callable[[], None]) -> bool:
        """Run one check; on failure record it, skip the credential's remaining checks."""
        if self.halted or credential.stopped:
            self.record(name, Outcome.SKIPPED, None, credential.query)
            return False
        try:
            action()
        except CivicError as error:
            self.record(name, Outcome.FAILED, error.reason, credential.query)
            credential.stopped = True
            return False
        self.record(name, Outcome.PASSED, None, credential.query)
        return True

    # -- the per-credential stages, in order ----------------------------------------------------

    def parse(self, credential: _Credential, assign: Callable[[str], str] | None) -> None:
        text = credential.text
        if is_packed(text):
            text = unpack(text)
        credential.parsed = parse_sd_jwt(text)
        credential.header = header = credential_header(credential.parsed)
        if assign is not None:
            credential.query = assign(header.vct)
        requirement = self.policy.credential(credential.query or "")
        if requirement is None or header.vct not in requirement.vct:
            raise VerificationError(
                ReasonCode.DCQL_UNSATISFIED, "credential type not requested by this query"
            )

    def issuer_key(self, credential: _Credential) -> None:
        if self.halted or credential.stopped:
            self.record("issuer_key", Outcome.SKIPPED, None, credential.query)
            return
        assert credential.parsed is not None and credential.header is not None
        header = credential.header
        try:
            if header.kid is None:
                raise VerificationError(ReasonCode.KEY_UNKNOWN, "credential header has no kid")
            iat = credential.parsed.payload.get("iat")
            issued_at = iat if type(iat) is int else None
            credential.key = self.trust.check_issuer_key(
                header.issuer, header.kid, header.vct, issued_at, self.now
            )
        except CivicError as error:
            if self.stale and error.reason in _UNKNOWN_TO_STALE_TRUST:
                # A stale state cannot know keys accredited since: not proof of anything.
                self.record("issuer_key", Outcome.UNDETERMINED, error.reason, credential.query)
            else:
                self.record("issuer_key", Outcome.FAILED, error.reason, credential.query)
            credential.stopped = True
            return
        self.record("issuer_key", Outcome.PASSED, None, credential.query)

    def signature(self, credential: _Credential) -> None:
        assert credential.parsed is not None and credential.key is not None
        verify_issuer_signature(credential.parsed, credential.key.public_key, typ=VC_TYP)

    def time(self, credential: _Credential) -> None:
        assert credential.parsed is not None
        check_validity_window(credential.parsed.payload, now=self.now, skew=self.skew)

    def disclosures(self, credential: _Credential) -> None:
        assert credential.parsed is not None
        processed = process_disclosures(credential.parsed)
        check_vc_disclosures(processed.disclosed)
        credential.claims = processed.claims

    def key_binding(self, credential: _Credential) -> None:
        if self.halted or credential.stopped:
            self.record("key_binding", Outcome.SKIPPED, None, credential.query)
            return
        assert credential.parsed is not None
        if not self.policy.key_binding and credential.parsed.kb_jwt is None:
            self.record("key_binding", Outcome.SKIPPED, None, credential.query)
            return

        def check() -> None:
            assert credential.parsed is not None
            holder = holder_key_of(credential.parsed.payload)
            expectation = KeyBindingExpectation(
                audience=self.audience,
                nonce=self.nonce,
                max_age=self.policy.max_presentation_age,
                consume_nonce=self.consume,
            )
            verify_key_binding(credential.parsed, holder, expectation, now=self.now, skew=self.skew)

        self.step(credential, "key_binding", check)

    def status_check(self, credential: _Credential) -> None:
        if self.halted or credential.stopped:
            self.record("status", Outcome.SKIPPED, None, credential.query)
            return
        assert credential.parsed is not None and credential.key is not None
        query = credential.query
        claim = credential.parsed.payload.get("status")
        if claim is None:
            if self.policy.require_status:
                self.record("status", Outcome.FAILED, ReasonCode.STATUS_CLAIM_MISSING, query)
                credential.stopped = True
            else:
                self.record("status", Outcome.SKIPPED, None, query)
            return
        key = credential.key
        try:
            reference = accredited_status_reference(claim, key.status_base_url)
        except CivicError as error:
            self.record("status", Outcome.FAILED, error.reason, query)
            credential.stopped = True
            return
        token: str | None = None
        try:
            token = self.status.fetch(reference.uri)
            if self.status_cache is not None:
                verified = self.status_cache.verify(
                    token,
                    key=key.public_key,
                    expected_uri=reference.uri,
                    now=self.now,
                    skew=self.skew,
                )
            else:
                verified = verify_status_list_token(
                    token,
                    key=key.public_key,
                    expected_uri=reference.uri,
                    now=lambda: self.now,
                    skew=self.skew,
                )
        except CivicError as error:
            if token is not None:
                # A fetcher that caches must not keep serving a token that does not verify
                # (forged, another list's, broken): the next verdict fetches afresh.
                forget = getattr(self.status, "forget", None)
                if callable(forget):
                    forget(reference.uri, token)
            # A list that cannot be had or does not verify leaves the status unknown: not the
            # holder's fault, and never a reason to say valid.
            tolerated = self.policy.status_unavailable == "accept"
            if error.reason in _STATUS_UNAVAILABLE and tolerated:
                self.record("status", Outcome.SKIPPED, error.reason, query)
            else:
                self.record("status", Outcome.UNDETERMINED, error.reason, query)
            return
        try:
            value = status_of(verified, reference)
            if value is Status.INVALID:
                raise VerificationError(ReasonCode.STATUS_INVALID, "credential is revoked")
            if value is Status.SUSPENDED:
                raise VerificationError(ReasonCode.STATUS_SUSPENDED, "credential is suspended")
            if value is not Status.VALID:
                raise VerificationError(
                    ReasonCode.STATUS_VALUE_UNKNOWN, "application-specific status value"
                )
        except CivicError as error:
            self.record("status", Outcome.FAILED, error.reason, query)
            credential.stopped = True
            return
        self.record("status", Outcome.PASSED, None, query)

    def schema(self, credential: _Credential) -> None:
        assert credential.header is not None and credential.claims is not None
        subject = {k: v for k, v in credential.claims.items() if k not in REGISTERED_CLAIMS}
        validate_claims(credential.header.vct, subject, partial=True)


def accredited_status_reference(claim: object, status_base_url: str) -> StatusReference:
    """A credential's ``status`` claim, parsed and held to the status base URL its issuer key
    is accredited with (plain http only where that base is itself http, i.e. loopback)."""
    reference = parse_status_claim(
        claim, unsafe_allow_http_loopback=status_base_url.startswith("http://")
    )
    if not status_uri_within(reference.uri, status_base_url):
        raise VerificationError(
            ReasonCode.STATUS_URI_NOT_ACCREDITED,
            "status list URI outside the issuer's accredited status base URL",
        )
    return reference


def status_uri_within(uri: str, base: str) -> bool:
    """Whether ``uri`` lies under ``base``: equal, or below it at a path segment boundary,
    with no dot segments that could climb out of it.

    Dot segments count in every spelling a server may resolve: percent-encoded (``%2e%2e``
    is ``..`` once normalized, RFC 3986 section 6.2.2.2), with an encoded slash (``..%2f``)
    or a backslash as the separator."""
    if uri == base:
        return True
    prefix = base if base.endswith("/") else base + "/"
    if not uri.startswith(prefix):
        return False
    path = unquote(uri[len(prefix) :].split("?", 1)[0]).replace("\\", "/")
    return all(segment not in (".", "..") for segment in path.split("/"))


def _run_checklist(
    presentations: Sequence[tuple[str | None, str]],
    *,
    assign_by_vct: bool,
    run: _Run,
    structure_error: CivicError | None,
) -> Verdict:
    stale = run.trust.is_stale(run.now)
    run.stale = stale
    run.record(
        "trust",
        Outcome.UNDETERMINED if stale else Outcome.PASSED,
        ReasonCode.TRUST_STALE if stale else None,
        None,
    )
    if structure_error is not None:
        run.record("presentations", Outcome.FAILED, structure_error.reason, None)
    else:
        run.record("presentations", Outcome.PASSED, None, None)

    unassigned = [requirement.id for requirement in run.policy.credentials]

    def assign(vct: str) -> str:
        for query_id in unassigned:
            requirement = run.policy.credential(query_id)
            if requirement is not None and vct in requirement.vct:
                unassigned.remove(query_id)
                return query_id
        raise VerificationError(
            ReasonCode.DCQL_UNSATISFIED, "a presentation of a type the policy does not request"
        )

    credentials = [_Credential(query, text) for query, text in presentations]
    for credential in credentials:
        run.step(
            credential,
            "parse",
            partial(run.parse, credential, assign if assign_by_vct else None),
        )
        run.issuer_key(credential)
        for name, stage in (
            ("signature", run.signature),
            ("time", run.time),
            ("disclosures", run.disclosures),
        ):
            run.step(credential, name, partial(stage, credential))
        run.key_binding(credential)
        run.status_check(credential)
        run.step(credential, "schema", partial(run.schema, credential))

    outcome: PolicyOutcome | None = None
    complete = all(c.claims is not None and not c.stopped for c in credentials)
    if run.halted or not complete:
        run.record("policy", Outcome.SKIPPED, None, None)
    else:
        claims_by_query = {c.query: c.claims for c in credentials if c.query and c.claims}
        outcome = run.policy.evaluate(claims_by_query)
        run.record(
            "policy",
            Outcome.PASSED if outcome.satisfied else Outcome.FAILED,
            outcome.reason,
            None,
        )

    outcomes = {check.outcome for check in run.checks}
    if Outcome.FAILED in outcomes:
        result = Result.INVALID
    elif Outcome.UNDETERMINED in outcomes:
        result = Result.UNDETERMINED
    else:
        result = Result.VALID
    reports = tuple(
        _report(c, run.policy, include_claims=result is not Result.INVALID) for c in credentials
    )
    return Verdict(
        result=result,
        checks=tuple(run.checks),
        credentials=reports,
        policy_id=run.policy.id,
        policy=outcome,
        checkpoint_size=run.trust.checkpoint_size,
        verified_at=run.now,
    )


def _report(credential: _Credential, policy: Policy, *, include_claims: bool) -> CredentialReport:
    header = credential.header
    claims: list[DisclosedClaim] = []
    requirement = policy.credential(credential.query or "")
    if include_claims and credential.claims is not None and requirement is not None:
        for claim in requirement.claims:
            for path, value in select_claims(credential.claims, claim.path):
                claims.append(DisclosedClaim(path, value))
    return CredentialReport(
        query=credential.query,
        issuer=header.issuer if header else None,
        vct=header.vct if header else None,
        kid=header.kid if header else None,
        claims=tuple(claims),
    )


def _new_run(
    *,
    trust: TrustView,
    status: StatusFetcher,
    policy: Policy,
    audience: str,
    nonce: str,
    consume_nonce: Callable[[str], bool] | None,
    now: int,
    skew: int,
    status_cache: StatusListCache | None,
) -> _Run:
    return _Run(
        policy=policy,
        trust=trust,
        status=status,
        audience=audience,
        nonce=nonce,
        consume=_ConsumeOnce(consume_nonce) if consume_nonce is not None else None,
        now=now,
        skew=skew,
        status_cache=status_cache,
    )


def verify_presentations(
    texts: Sequence[str],
    *,
    trust: TrustView,
    status: StatusFetcher,
    policy: Policy,
    audience: str,
    nonce: str,
    consume_nonce: Callable[[str], bool] | None,
    now: int,
    skew: int = DEFAULT_SKEW,
    status_cache: StatusListCache | None = None,
) -> Verdict:
    """Verify presentations shown offline (scanned QR text, packed or raw SD-JWT+KB), one per
    credential the policy asks for, matched to its credential queries by ``vct``."""
    run = _new_run(
        trust=trust,
        status=status,
        policy=policy,
        audience=audience,
        nonce=nonce,
        consume_nonce=consume_nonce,
        now=now,
        skew=skew,
        status_cache=status_cache,
    )
    error: CivicError | None = None
    items: list[tuple[str | None, str]] = []
    if not isinstance(texts, list | tuple) or not all(isinstance(t, str) for t in texts):
        error = MalformedError(ReasonCode.MALFORMED_INPUT, "presentations are strings")
    elif len(texts) != len(policy.credentials):
        error = VerificationError(
            ReasonCode.DCQL_UNSATISFIED,
            f"{len(texts)} presentations for {len(policy.credentials)} requested credentials",
        )
    else:
        items = [(None, text) for text in texts]
    return _run_checklist(items, assign_by_vct=True, run=run, structure_error=error)


def verify_presentation(
    text: str,
    *,
    trust: TrustView,
    status: StatusFetcher,
    policy: Policy,
    audience: str,
    nonce: str,
    consume_nonce: Callable[[str], bool] | None,
    now: int,
    skew: int = DEFAULT_SKEW,
    status_cache: StatusListCache | None = None,
) -> Verdict:
    """Verify one presentation (offline QR text or raw SD-JWT+KB) against ``policy``."""
    return verify_presentations(
        [text],
        trust=trust,
        status=status,
        policy=policy,
        audience=audience,
        nonce=nonce,
        consume_nonce=consume_nonce,
        now=now,
        skew=skew,
        status_cache=status_cache,
    )


def parse_vp_token(vp_token: object, policy: Policy) -> list[tuple[str | None, str]]:
    """OpenID4VP 1.0 section 8.1: a JSON object keyed by credential query id, each value an
    array of exactly one presentation (no query sets ``multiple``), every query answered."""
    if not isinstance(vp_token, Mapping):
        raise MalformedError(ReasonCode.MALFORMED_VP_TOKEN, "vp_token is not a JSON object")
    known = {requirement.id for requirement in policy.credentials}
    if set(vp_token) - known:
        raise MalformedError(ReasonCode.MALFORMED_VP_TOKEN, "vp_token answers an unknown query")
    items: list[tuple[str | None, str]] = []
    for requirement in policy.credentials:
        entry = vp_token.get(requirement.id)
        if entry is None:
            raise VerificationError(
                ReasonCode.DCQL_UNSATISFIED, "a requested credential was not presented"
            )
        if not isinstance(entry, list) or len(entry) != 1 or not isinstance(entry[0], str):
            raise MalformedError(
                ReasonCode.MALFORMED_VP_TOKEN, "each query takes an array of one presentation"
            )
        items.append((requirement.id, entry[0]))
    return items


def verify_vp_token(
    vp_token: object,
    *,
    trust: TrustView,
    status: StatusFetcher,
    policy: Policy,
    audience: str,
    nonce: str,
    consume_nonce: Callable[[str], bool] | None,
    now: int,
    skew: int = DEFAULT_SKEW,
    status_cache: StatusListCache | None = None,
) -> Verdict:
    """Verify an OpenID4VP ``vp_token`` (already JSON-decoded) answering ``policy.dcql()``."""
    run = _new_run(
        trust=trust,
        status=status,
        policy=policy,
        audience=audience,
        nonce=nonce,
        consume_nonce=consume_nonce,
        now=now,
        skew=skew,
        status_cache=status_cache,
    )
    try:
        items = parse_vp_token(vp_token, policy)
    except CivicError as error:
        return _run_checklist([], assign_by_vct=False, run=run, structure_error=error)
    return _run_checklist(items, assign_by_vct=False, run=run, structure_error=None)


def rejected(
    policy_id: str, reason: ReasonCode, *, now: int, checkpoint_size: int | None = None
) -> Verdict:
    """The verdict for input that never reached the checklist (an unreadable QR image, a
    request body that is not a presentation): ``invalid`` with one failed ``parse`` check."""
    return Verdict(
        result=Result.INVALID,
        checks=(Check("parse", Outcome.FAILED, reason),),
        credentials=(),
        policy_id=policy_id,
        policy=None,
        checkpoint_size=checkpoint_size,
        verified_at=now,
    )
