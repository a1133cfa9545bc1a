"""Declarative verifier policies: which credentials a counter asks for, and what must hold.

A policy is one JSON or YAML document per counter (issue 5, "Policies"). It names exactly the
claims the counter needs; the OpenID4VP request is derived from it (OpenID4VP 1.0 section 6,
DCQL, through :mod:`civic.dcql`), so the verifier never asks for more than its policy lists,
and :func:`Policy.evaluate` decides over the disclosed claims alone (section 6.4.1: claims not
requested are not looked at).

Document (JSON or YAML; unknown members are refused, a typo must not weaken a policy)::

    id: bar-entry                    # [A-Za-z0-9_-]+
    name: Bar entry                  # for staff
    purpose: Check that the guest is 19 or older
    status_unavailable: undetermined # or "accept": an unreachable status list is tolerated
    key_binding: true                # a KB-JWT is required (default)
    require_status: true             # a credential without a status claim fails (default)
    max_presentation_age: 300        # seconds a KB-JWT iat may lie in the past
    credentials:
      - id: residency                # the DCQL credential query id
        vct: [urn:civic:vct:residency:1]
        claims:
          - path: [age_over_19]
            equals: true

Each claim names a claims path pointer (section 7: member names, array indexes, ``null`` for
every element) and at most one predicate: ``equals`` (exact in type and value, as DCQL
``values``), ``in`` (a list of scalars), or one or two of ``gte``/``gt``/``lte``/``lt`` (numbers,
or RFC 3339 full-dates compared as dates). A claim without a predicate is requested for staff
to see. Over a ``null`` component the predicate must hold for at least one selected element.
Age ranges are expressed with the ``age_over_N`` flags of the residency credential (and the
youth allowance's ``eligibility.age_19_to_34`` fact), never with a birth date.

Everything here is pure: :func:`parse_policy_text` takes the text, never a path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import yaml

from civic.credentials.dates import is_full_date
from civic.dcql import (
    ClaimPathPointer,
    DcqlQuery,
    parse_dcql,
    select_claims,
)
from civic.encoding import json_loads
from civic.errors import CivicError, MalformedError, ReasonCode

StatusUnavailable = Literal["undetermined", "accept"]
Comparison = Literal["gte", "gt", "lte", "lt"]

DEFAULT_MAX_PRESENTATION_AGE: Final = 300
MAX_POLICY_TEXT: Final = 64 * 1024
MAX_CREDENTIALS: Final = 8
MAX_CLAIMS: Final = 64
MAX_IN_VALUES: Final = 256

_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOP_MEMBERS = frozenset(
    {
        "id",
        "name",
        "purpose",
        "credentials",
        "status_unavailable",
        "key_binding",
        "require_status",
        "max_presentation_age",
    }
)
_CREDENTIAL_MEMBERS = frozenset({"id", "vct", "claims"})
_COMPARISONS: Final[tuple[Comparison, ...]] = ("gte", "gt", "lte", "lt")
_CLAIM_MEMBERS = frozenset({"path", "equals", "in", *_COMPARISONS})

Scalar = str | int | float | bool


def _malformed(detail: str) -> MalformedError:
    return MalformedError(ReasonCode.MALFORMED_POLICY, detail)


# --- the model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Predicate:
    """What one claim must satisfy. Exactly one of the three forms is set."""

    equals: Scalar | None = None
    one_of: tuple[Scalar, ...] | None = None
    bounds: tuple[tuple[Comparison, int | float | str], ...] = ()

    def holds(self, value: object) -> bool:
        if self.equals is not None:
            return _same(value, self.equals)
        if self.one_of is not None:
            return any(_same(value, option) for option in self.one_of)
        return all(_compare(value, op, bound) for op, bound in self.bounds)

    def describe(self) -> str:
        """The predicate's form without its constants (reports stay value-free)."""
        if self.equals is not None:
            return "equals"
        if self.one_of is not None:
            return "in"
        return "+".join(op for op, _ in self.bounds)

    def to_json(self) -> dict[str, Any]:
        if self.equals is not None:
            return {"equals": self.equals}
        if self.one_of is not None:
            return {"in": list(self.one_of)}
        return dict(self.bounds)


def _same(value: object, expected: Scalar) -> bool:
    # 1 is not true and 1.0 is not 1 in a credential: compare type and value, as DCQL does.
    return type(value) is type(expected) and value == expected


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(value: object, op: Comparison, bound: int | float | str) -> bool:
    if isinstance(bound, str):
        # Full-dates in YYYY-MM-DD compare correctly as strings once both are valid dates.
        if not is_full_date(value):
            return False
        assert isinstance(value, str)
        left: Any = value
    elif _is_number(value):
        left = value
    else:
        return False
    if op == "gte":
        return bool(left >= bound)
    if op == "gt":
        return bool(left > bound)
    if op == "lte":
        return bool(left <= bound)
    return bool(left < bound)


@dataclass(frozen=True)
class ClaimRequirement:
    path: ClaimPathPointer
    predicate: Predicate | None = None

    def label(self, credential_id: str) -> str:
        """``<credential id>:<path> <predicate form>``: names a rule, never a claim value."""
        path = ".".join("*" if c is None else str(c) for c in self.path)
        form = f" {self.predicate.describe()}" if self.predicate is not None else " disclosed"
        return f"{credential_id}:{path}{form}"


@dataclass(frozen=True)
class CredentialRequirement:
    id: str
    vct: tuple[str, ...]
    claims: tuple[ClaimRequirement, ...]

    @property
    def paths(self) -> tuple[ClaimPathPointer, ...]:
        return tuple(claim.path for claim in self.claims)


@dataclass(frozen=True)
class PolicyOutcome:
    """How the disclosed claims fared. ``failed`` lists rule labels, never claim values."""

    satisfied: bool
    reason: ReasonCode | None
    failed: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    id: str
    name: str
    purpose: str
    credentials: tuple[CredentialRequirement, ...]
    status_unavailable: StatusUnavailable = "undetermined"
    key_binding: bool = True
    require_status: bool = True
    max_presentation_age: int = DEFAULT_MAX_PRESENTATION_AGE

    def credential(self, query_id: str) -> CredentialRequirement | None:
        for requirement in self.credentials:
            if requirement.id == query_id:
                return requirement
        return None

    def dcql(self) -> DcqlQuery:
        """The DCQL query (OpenID4VP 1.0 section 6) asking for exactly this policy's claims."""
        return parse_dcql(self.dcql_json())

    def dcql_json(self) -> dict[str, Any]:
        queries: list[dict[str, Any]] = []
        for requirement in self.credentials:
            query: dict[str, Any] = {
                "id": requirement.id,
                "format": "dc+sd-jwt",
                "meta": {"vct_values": list(requirement.vct)},
            }
            if requirement.claims:
                query["claims"] = [{"path": list(path)} for path in requirement.paths]
            if not self.key_binding:
                query["require_cryptographic_holder_binding"] = False
            queries.append(query)
        return {"credentials": queries}

    def evaluate(self, claims_by_query: Mapping[str, Mapping[str, Any]]) -> PolicyOutcome:
        """Decide over the processed, disclosed claims of each credential (by query id).

        A requested claim that was not disclosed gives ``claim_missing``; a predicate that does
        not hold gives ``policy_not_satisfied``; a credential query with no claims at all gives
        ``dcql_unsatisfied``. Every failure is listed, the first one's code is the reason.
        """
        failed: list[str] = []
        reason: ReasonCode | None = None
        for requirement in self.credentials:
            claims = claims_by_query.get(requirement.id)
            if claims is None:
                failed.append(f"{requirement.id}: not presented")
                reason = reason or ReasonCode.DCQL_UNSATISFIED
                continue
            for claim in requirement.claims:
                values = [value for _, value in select_claims(claims, claim.path)]
                if not values:
                    failed.append(claim.label(requirement.id))
                    reason = reason or ReasonCode.CLAIM_MISSING
                elif claim.predicate is not None and not any(
                    claim.predicate.holds(value) for value in values
                ):
                    failed.append(claim.label(requirement.id))
                    reason = reason or ReasonCode.POLICY_NOT_SATISFIED
        return PolicyOutcome(not failed, reason, tuple(failed))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "purpose": self.purpose,
            "status_unavailable": self.status_unavailable,
            "key_binding": self.key_binding,
            "require_status": self.require_status,
            "max_presentation_age": self.max_presentation_age,
            "credentials": [
                {
                    "id": requirement.id,
                    "vct": list(requirement.vct),
                    "claims": [
                        {
                            "path": list(claim.path),
                            **(claim.predicate.to_json() if claim.predicate else {}),
                        }
                        for claim in requirement.claims
                    ],
                }
                for requirement in self.credentials
            ],
        }


# --- parsing ----------------------------------------------------------------------------------


def _text(value: object, name: str, limit: int = 200) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise _malformed(f"{name} must be a non-empty string of at most {limit} characters")
    return value


def _identifier(value: object, name: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise _malformed(f"{name} must match [A-Za-z0-9_-]{{1,64}}")
    return value


def _scalar(value: object, name: str) -> Scalar:
    if isinstance(value, bool | str | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise _malformed(f"{name} must be a string, number or boolean")


def _bound(value: object, op: str) -> int | float | str:
    if isinstance(value, str):
        if not is_full_date(value):
            raise _malformed(f"{op} takes a number or a YYYY-MM-DD date")
        return value
    if _is_number(value) and math.isfinite(float(value)):  # type: ignore[arg-type]
        return value  # type: ignore[return-value]
    raise _malformed(f"{op} takes a number or a YYYY-MM-DD date")


def _path(value: object) -> ClaimPathPointer:
    if not isinstance(value, list) or not value or len(value) > 32:
        raise _malformed("a claim path is a non-empty list of at most 32 components")
    for component in value:
        if component is None or isinstance(component, str):
            continue
        if type(component) is not int or component < 0:
            raise _malformed("path components are names, array indexes or null")
    return tuple(value)


def _predicate(claim: Mapping[str, Any]) -> Predicate | None:
    forms = [name for name in ("equals", "in") if name in claim]
    comparisons = [op for op in _COMPARISONS if op in claim]
    if len(forms) + (1 if comparisons else 0) > 1:
        raise _malformed("a claim has at most one predicate (equals, in, or bounds)")
    if "equals" in claim:
        return Predicate(equals=_scalar(claim["equals"], "equals"))
    if "in" in claim:
        options = claim["in"]
        if not isinstance(options, list) or not 0 < len(options) <= MAX_IN_VALUES:
            raise _malformed(f"in takes a list of 1 to {MAX_IN_VALUES} values")
        return Predicate(one_of=tuple(_scalar(option, "in") for option in options))
    if not comparisons:
        return None
    if {"gte", "gt"} <= set(comparisons) or {"lte", "lt"} <= set(comparisons):
        raise _malformed("at most one lower and one upper bound")
    bounds = tuple((op, _bound(claim[op], op)) for op in comparisons)
    if len({type(bound) is str for _, bound in bounds}) > 1:
        raise _malformed("bounds are both numbers or both dates")
    return Predicate(bounds=bounds)


def _claim(value: object) -> ClaimRequirement:
    if not isinstance(value, dict):
        raise _malformed("each claim is an object with a path")
    unknown = set(value) - _CLAIM_MEMBERS
    if unknown or "path" not in value:
        raise _malformed("a claim has a path and at most one predicate, nothing else")
    return ClaimRequirement(_path(value["path"]), _predicate(value))


def _credential(value: object) -> CredentialRequirement:
    if not isinstance(value, dict) or set(value) - _CREDENTIAL_MEMBERS:
        raise _malformed("each credential is an object with id, vct and claims")
    if not {"id", "vct"} <= set(value):
        raise _malformed("a credential needs an id and its vct")
    vct = value["vct"]
    vct_list = [vct] if isinstance(vct, str) else vct
    if not isinstance(vct_list, list) or not vct_list:
        raise _malformed("vct is a string or a non-empty list of strings")
    claims = value.get("claims", [])
    if not isinstance(claims, list) or len(claims) > MAX_CLAIMS:
        raise _malformed(f"claims is a list of at most {MAX_CLAIMS}")
    parsed = tuple(_claim(claim) for claim in claims)
    if len({claim.path for claim in parsed}) != len(parsed):
        raise _malformed("a claim path is listed twice")
    return CredentialRequirement(
        _identifier(value["id"], "credential id"),
        tuple(_text(item, "vct") for item in vct_list),
        parsed,
    )


def parse_policy(document: object) -> Policy:
    """Validate a policy document (already decoded from JSON or YAML)."""
    if not isinstance(document, dict):
        raise _malformed("a policy is an object")
    unknown = set(document) - _TOP_MEMBERS
    if unknown:
        raise _malformed(f"unknown policy members: {', '.join(sorted(map(str, unknown)))}")
    if not {"id", "credentials"} <= set(document):
        raise _malformed("a policy needs an id and its credentials")
    credentials = document["credentials"]
    if not isinstance(credentials, list) or not 0 < len(credentials) <= MAX_CREDENTIALS:
        raise _malformed(f"credentials is a list of 1 to {MAX_CREDENTIALS}")
    parsed = tuple(_credential(item) for item in credentials)
    if len({item.id for item in parsed}) != len(parsed):
        raise _malformed("two credentials share an id")
    status_unavailable = document.get("status_unavailable", "undetermined")
    if status_unavailable not in ("undetermined", "accept"):
        raise _malformed('status_unavailable is "undetermined" or "accept"')
    flags = {}
    for name in ("key_binding", "require_status"):
        flag = document.get(name, True)
        if not isinstance(flag, bool):
            raise _malformed(f"{name} is a boolean")
        flags[name] = flag
    max_age = document.get("max_presentation_age", DEFAULT_MAX_PRESENTATION_AGE)
    if type(max_age) is not int or not 10 <= max_age <= 86_400:
        raise _malformed("max_presentation_age is an integer number of seconds in [10, 86400]")
    policy_id = _identifier(document["id"], "id")
    policy = Policy(
        id=policy_id,
        name=_text(document.get("name", policy_id), "name"),
        purpose=_text(document.get("purpose", policy_id), "purpose", limit=500),
        credentials=parsed,
        status_unavailable=status_unavailable,
        key_binding=flags["key_binding"],
        require_status=flags["require_status"],
        max_presentation_age=max_age,
    )
    try:
        policy.dcql()
    except CivicError as error:
        raise _malformed(f"the derived DCQL query is invalid: {error.detail}") from None
    return policy


class _StrictLoader(yaml.SafeLoader):
    """YAML 1.1 safe loading that refuses duplicate keys (as our strict JSON does)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise _malformed("duplicate key in the policy")
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_policy_text(text: str | bytes, *, format: Literal["json", "yaml"]) -> Policy:
    """Parse a policy from JSON (strict) or YAML (safe, no duplicate keys) text."""
    if len(text) > MAX_POLICY_TEXT:
        raise MalformedError(ReasonCode.INPUT_TOO_LARGE, "policy text over the limit")
    if format == "json":
        try:
            return parse_policy(json_loads(text))
        except MalformedError as error:
            if error.reason is ReasonCode.MALFORMED_POLICY:
                raise
            raise _malformed(f"policy is not JSON ({error.reason.value})") from None
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError:
        raise _malformed("policy is not valid YAML") from None
    except (UnicodeDecodeError, RecursionError):
        raise _malformed("policy is not valid YAML text") from None
    return parse_policy(document)
