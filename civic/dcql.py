"""Digital Credentials Query Language: parsing, claims path pointers and wallet-side matching.

OpenID for Verifiable Presentations 1.0:

- section 6 (DCQL): :func:`parse_dcql` turns a ``dcql_query`` object into typed, frozen
  dataclasses and rejects every violation of sections 6.1-6.3 with ``MALFORMED_DCQL``: ids
  (``^[A-Za-z0-9_-]+$``, unique), non-empty arrays, ``claim_sets`` only with identified
  ``claims``, references that exist, booleans that are booleans. Unknown members are ignored
  (section 6). The format-specific ``meta`` members of appendix B are checked for the formats
  defined there (``dc+sd-jwt``: ``vct_values``; ``mso_mdoc``: ``doctype_value``; ``jwt_vc_json``
  and ``ldp_vc``: ``type_values``); other formats keep an opaque ``meta`` object.
- section 6.4 (selecting claims and credentials): :func:`match_query` lists, per credential
  query, the held credentials that match and the concrete claim paths each must disclose.
  With ``claim_sets`` the first satisfiable option wins (the verifier's order of preference);
  ``credential_sets`` are then evaluated the same way, required sets first-satisfiable, optional
  sets when possible. An unsatisfiable query raises ``DCQL_UNSATISFIED``.
- section 7 (claims path pointers): :func:`select_claims` applies a pointer to processed
  (disclosed) JSON claims: a string selects an object member, ``null`` every array element, a
  non-negative integer one element. Where section 7.1 says "abort processing and return an
  error" (e.g. a string applied to an array) and where nothing is selected, the claim counts as
  missing.

Decisions:

- A credential query without ``claims`` asks for no selectively disclosable claim at all
  (section 6.4.1): its matches carry no claim paths and the wallet discloses nothing, only the
  issuer-signed JWT and the KB-JWT.
- Two claims queries with the same path in one credential query are rejected as malformed
  (section 6.3 forbids verifiers to send them; ignoring one of the two would leave it unclear
  whose ``values`` apply).
- ``values`` matching is exact in type and value (section 6.3): ``1`` does not match ``true``
  nor ``1.0``; objects and arrays never match. Over a ``null`` path component, only the
  elements whose value matches are selected.
- Matching supports ``dc+sd-jwt`` only and compares ``vct`` exactly (no type inheritance).
  ``trusted_authorities`` match only when the held credential declares one of the listed
  ``(type, value)`` pairs; without it the credential is not offered (section 6.1.1: wallets
  should not reveal what the verifier would reject).
- The concrete claim paths are claim paths, not disclosures: the SD-JWT presenter adds the
  disclosures of their parent objects where those are selectively disclosable too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from civic.encoding import json_loads
from civic.errors import MalformedError, ReasonCode, UsageError, VerificationError

FORMAT_SD_JWT_VC: Final = "dc+sd-jwt"
FORMAT_MSO_MDOC: Final = "mso_mdoc"
FORMAT_JWT_VC_JSON: Final = "jwt_vc_json"
FORMAT_LDP_VC: Final = "ldp_vc"

MAX_ARRAY_ITEMS: Final = 256
"""Bound on every array of a query (credentials, claims, values, options, ...)."""
MAX_PATH_LENGTH: Final = 32

ClaimPathComponent = str | int | None
ClaimPathPointer = tuple[ClaimPathComponent, ...]
"""A claims path pointer (section 7): member names, ``None`` for all elements, indexes."""
ConcreteClaimPath = tuple[str | int, ...]
"""A pointer to exactly one claim: member names and array indexes."""
ClaimValue = str | int | bool

_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]+")


# --- the query model --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimsQuery:
    """Section 6.3."""

    path: ClaimPathPointer
    id: str | None = None
    values: tuple[ClaimValue, ...] | None = None
    intent_to_retain: bool | None = None
    """``mso_mdoc`` only (appendix B.2.4)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.id is not None:
            out["id"] = self.id
        out["path"] = list(self.path)
        if self.values is not None:
            out["values"] = list(self.values)
        if self.intent_to_retain is not None:
            out["intent_to_retain"] = self.intent_to_retain
        return out


@dataclass(frozen=True)
class TrustedAuthoritiesQuery:
    """Section 6.1.1."""

    type: str
    values: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "values": list(self.values)}


@dataclass(frozen=True)
class CredentialMeta:
    """The ``meta`` members this module understands (appendix B); others are dropped."""

    vct_values: tuple[str, ...] | None = None
    doctype_value: str | None = None
    type_values: tuple[tuple[str, ...], ...] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.vct_values is not None:
            out["vct_values"] = list(self.vct_values)
        if self.doctype_value is not None:
            out["doctype_value"] = self.doctype_value
        if self.type_values is not None:
            out["type_values"] = [list(option) for option in self.type_values]
        return out


@dataclass(frozen=True)
class CredentialQuery:
    """Section 6.1."""

    id: str
    format: str
    meta: CredentialMeta
    claims: tuple[ClaimsQuery, ...] | None = None
    claim_sets: tuple[tuple[str, ...], ...] | None = None
    multiple: bool = False
    require_cryptographic_holder_binding: bool = True
    trusted_authorities: tuple[TrustedAuthoritiesQuery, ...] | None = None

    @property
    def claim_paths(self) -> tuple[ClaimPathPointer, ...]:
        """Every claim path this query may ask for (whichever claim set is chosen)."""
        return tuple(claim.path for claim in self.claims or ())

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "format": self.format, "meta": self.meta.to_json()}
        if self.claims is not None:
            out["claims"] = [claim.to_json() for claim in self.claims]
        if self.claim_sets is not None:
            out["claim_sets"] = [list(option) for option in self.claim_sets]
        if self.multiple:
            out["multiple"] = True
        if not self.require_cryptographic_holder_binding:
            out["require_cryptographic_holder_binding"] = False
        if self.trusted_authorities is not None:
            out["trusted_authorities"] = [ta.to_json() for ta in self.trusted_authorities]
        return out


@dataclass(frozen=True)
class CredentialSetQuery:
    """Section 6.2."""

    options: tuple[tuple[str, ...], ...]
    required: bool = True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"options": [list(option) for option in self.options]}
        if not self.required:
            out["required"] = False
        return out


@dataclass(frozen=True)
class DcqlQuery:
    """Section 6: a parsed ``dcql_query``."""

    credentials: tuple[CredentialQuery, ...]
    credential_sets: tuple[CredentialSetQuery, ...] | None = None

    def credential(self, query_id: str) -> CredentialQuery:
        for query in self.credentials:
            if query.id == query_id:
                return query
        raise UsageError(ReasonCode.MALFORMED_DCQL, "no credential query with that id")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"credentials": [query.to_json() for query in self.credentials]}
        if self.credential_sets is not None:
            out["credential_sets"] = [cs.to_json() for cs in self.credential_sets]
        return out


# --- parsing ----------------------------------------------------------------------------------


def _malformed(where: str, problem: str) -> MalformedError:
    return MalformedError(ReasonCode.MALFORMED_DCQL, f"{where}: {problem}")


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(where, "must be an object")
    return value


def _array(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _malformed(where, "must be an array")
    if not value:
        raise _malformed(where, "must not be empty")
    if len(value) > MAX_ARRAY_ITEMS:
        raise _malformed(where, f"more than {MAX_ARRAY_ITEMS} elements")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _malformed(where, "must be a string")
    if not value:
        raise _malformed(where, "must not be empty")
    return value


def _identifier(value: object, where: str) -> str:
    text = _string(value, where)
    if not _IDENTIFIER.fullmatch(text):
        raise _malformed(where, "must consist of A-Z, a-z, 0-9, '_' and '-' only")
    return text


def _optional_bool(obj: Mapping[str, Any], name: str, where: str, default: bool) -> bool:
    if name not in obj:
        return default
    value = obj[name]
    if not isinstance(value, bool):
        raise _malformed(f"{where}.{name}", "must be a boolean")
    return value


def _string_array(value: object, where: str) -> tuple[str, ...]:
    return tuple(_string(item, f"{where}[{i}]") for i, item in enumerate(_array(value, where)))


def _identifier_list(value: object, where: str) -> tuple[str, ...]:
    ids = tuple(_identifier(item, f"{where}[{i}]") for i, item in enumerate(_array(value, where)))
    if len(set(ids)) != len(ids):
        raise _malformed(where, "lists an identifier twice")
    return ids


def _claim_path(value: object, where: str) -> ClaimPathPointer:
    components = _array(value, where)
    if len(components) > MAX_PATH_LENGTH:
        raise _malformed(where, f"longer than {MAX_PATH_LENGTH} components")
    for i, component in enumerate(components):
        if component is None or isinstance(component, str):
            continue
        if isinstance(component, int) and not isinstance(component, bool) and component >= 0:
            continue
        raise _malformed(f"{where}[{i}]", "must be a string, null or a non-negative integer")
    return tuple(components)


def _claim_values(value: object, where: str) -> tuple[ClaimValue, ...]:
    items = _array(value, where)
    for i, item in enumerate(items):
        if not isinstance(item, str | int):  # bool is an int
            raise _malformed(f"{where}[{i}]", "must be a string, integer or boolean")
    return tuple(items)


def _parse_meta(value: object, credential_format: str, where: str) -> CredentialMeta:
    meta = _object(value, where)
    if credential_format == FORMAT_SD_JWT_VC:
        if "vct_values" not in meta:
            raise _malformed(where, "vct_values is required for dc+sd-jwt")
        return CredentialMeta(vct_values=_string_array(meta["vct_values"], f"{where}.vct_values"))
    if credential_format == FORMAT_MSO_MDOC:
        if "doctype_value" not in meta:
            raise _malformed(where, "doctype_value is required for mso_mdoc")
        return CredentialMeta(
            doctype_value=_string(meta["doctype_value"], f"{where}.doctype_value")
        )
    if credential_format in (FORMAT_JWT_VC_JSON, FORMAT_LDP_VC):
        if "type_values" not in meta:
            raise _malformed(where, f"type_values is required for {credential_format}")
        options = _array(meta["type_values"], f"{where}.type_values")
        return CredentialMeta(
            type_values=tuple(
                _string_array(option, f"{where}.type_values[{i}]")
                for i, option in enumerate(options)
            )
        )
    return CredentialMeta()


def _parse_claims_query(value: object, credential_format: str, where: str) -> ClaimsQuery:
    obj = _object(value, where)
    claim_id = _identifier(obj["id"], f"{where}.id") if "id" in obj else None
    if "path" not in obj:
        raise _malformed(where, "path is required")
    path = _claim_path(obj["path"], f"{where}.path")
    if credential_format == FORMAT_MSO_MDOC and (
        len(path) != 2 or not all(isinstance(c, str) for c in path)
    ):
        raise _malformed(f"{where}.path", "an mso_mdoc path is a namespace and an element name")
    values = _claim_values(obj["values"], f"{where}.values") if "values" in obj else None
    intent_to_retain = None
    if credential_format == FORMAT_MSO_MDOC and "intent_to_retain" in obj:
        intent_to_retain = _optional_bool(obj, "intent_to_retain", where, False)
    return ClaimsQuery(path=path, id=claim_id, values=values, intent_to_retain=intent_to_retain)


def _parse_trusted_authority(value: object, where: str) -> TrustedAuthoritiesQuery:
    obj = _object(value, where)
    if "type" not in obj:
        raise _malformed(where, "type is required")
    if "values" not in obj:
        raise _malformed(where, "values is required")
    return TrustedAuthoritiesQuery(
        type=_string(obj["type"], f"{where}.type"),
        values=_string_array(obj["values"], f"{where}.values"),
    )


def _parse_credential_query(value: object, where: str) -> CredentialQuery:
    obj = _object(value, where)
    for required in ("id", "format", "meta"):
        if required not in obj:
            raise _malformed(where, f"{required} is required")
    query_id = _identifier(obj["id"], f"{where}.id")
    credential_format = _string(obj["format"], f"{where}.format")
    meta = _parse_meta(obj["meta"], credential_format, f"{where}.meta")

    claims: tuple[ClaimsQuery, ...] | None = None
    if "claims" in obj:
        items = _array(obj["claims"], f"{where}.claims")
        claims = tuple(
            _parse_claims_query(item, credential_format, f"{where}.claims[{i}]")
            for i, item in enumerate(items)
        )
        claim_ids = [claim.id for claim in claims if claim.id is not None]
        if len(set(claim_ids)) != len(claim_ids):
            raise _malformed(f"{where}.claims", "two claims queries share an id")
        paths = [claim.path for claim in claims]
        if len(set(paths)) != len(paths):
            raise _malformed(f"{where}.claims", "two claims queries point to the same claim")

    claim_sets: tuple[tuple[str, ...], ...] | None = None
    if "claim_sets" in obj:
        if claims is None:
            raise _malformed(f"{where}.claim_sets", "not allowed without claims")
        if any(claim.id is None for claim in claims):
            raise _malformed(f"{where}.claims", "every claims query needs an id with claim_sets")
        known = {claim.id for claim in claims}
        options = _array(obj["claim_sets"], f"{where}.claim_sets")
        parsed_options = []
        for i, option in enumerate(options):
            option_where = f"{where}.claim_sets[{i}]"
            ids = _identifier_list(option, option_where)
            for j, claim_id in enumerate(ids):
                if claim_id not in known:
                    raise _malformed(f"{option_where}[{j}]", "references no claims query")
            parsed_options.append(ids)
        claim_sets = tuple(parsed_options)

    trusted: tuple[TrustedAuthoritiesQuery, ...] | None = None
    if "trusted_authorities" in obj:
        items = _array(obj["trusted_authorities"], f"{where}.trusted_authorities")
        trusted = tuple(
            _parse_trusted_authority(item, f"{where}.trusted_authorities[{i}]")
            for i, item in enumerate(items)
        )

    return CredentialQuery(
        id=query_id,
        format=credential_format,
        meta=meta,
        claims=claims,
        claim_sets=claim_sets,
        multiple=_optional_bool(obj, "multiple", where, False),
        require_cryptographic_holder_binding=_optional_bool(
            obj, "require_cryptographic_holder_binding", where, True
        ),
        trusted_authorities=trusted,
    )


def _parse_credential_set(value: object, known: set[str], where: str) -> CredentialSetQuery:
    obj = _object(value, where)
    if "options" not in obj:
        raise _malformed(where, "options is required")
    options = _array(obj["options"], f"{where}.options")
    parsed_options = []
    for i, option in enumerate(options):
        option_where = f"{where}.options[{i}]"
        ids = _identifier_list(option, option_where)
        for j, query_id in enumerate(ids):
            if query_id not in known:
                raise _malformed(f"{option_where}[{j}]", "references no credential query")
        parsed_options.append(ids)
    return CredentialSetQuery(
        options=tuple(parsed_options), required=_optional_bool(obj, "required", where, True)
    )


def parse_dcql(obj: object) -> DcqlQuery:
    """Parse a ``dcql_query`` JSON value (already decoded). Raises ``MALFORMED_DCQL``."""
    top = _object(obj, "dcql_query")
    if "credentials" not in top:
        raise _malformed("dcql_query", "credentials is required")
    items = _array(top["credentials"], "credentials")
    credentials = tuple(
        _parse_credential_query(item, f"credentials[{i}]") for i, item in enumerate(items)
    )
    ids = [query.id for query in credentials]
    if len(set(ids)) != len(ids):
        raise _malformed("credentials", "two credential queries share an id")

    credential_sets: tuple[CredentialSetQuery, ...] | None = None
    if "credential_sets" in top:
        set_items = _array(top["credential_sets"], "credential_sets")
        credential_sets = tuple(
            _parse_credential_set(item, set(ids), f"credential_sets[{i}]")
            for i, item in enumerate(set_items)
        )
    return DcqlQuery(credentials=credentials, credential_sets=credential_sets)


def parse_dcql_json(text: str | bytes) -> DcqlQuery:
    """Parse a ``dcql_query`` from JSON text (strict JSON first: ``MALFORMED_JSON`` etc.)."""
    return parse_dcql(json_loads(text))


def dcql_for_claims(
    query_id: str,
    vct: str,
    paths: Iterable[Sequence[ClaimPathComponent]],
    *,
    require_cryptographic_holder_binding: bool = True,
) -> DcqlQuery:
    """A query for one ``dc+sd-jwt`` credential of type ``vct`` disclosing ``paths``.

    No paths means no selectively disclosable claims (section 6.4.1). Raises
    :class:`UsageError` (``MALFORMED_DCQL``) when the arguments do not make a valid query.
    """
    credential: dict[str, Any] = {
        "id": query_id,
        "format": FORMAT_SD_JWT_VC,
        "meta": {"vct_values": [vct]},
    }
    # A bare string is one member name, not a sequence of one-letter components.
    path_list = [[path] if isinstance(path, str) else list(path) for path in paths]
    if path_list:
        credential["claims"] = [{"path": path} for path in path_list]
    if not require_cryptographic_holder_binding:
        credential["require_cryptographic_holder_binding"] = False
    try:
        return parse_dcql({"credentials": [credential]})
    except MalformedError as exc:
        raise UsageError(exc.reason, exc.detail) from None


# --- claims path pointers ---------------------------------------------------------------------


def select_claims(
    claims: object, path: Sequence[ClaimPathComponent]
) -> tuple[tuple[ConcreteClaimPath, Any], ...]:
    """Apply a claims path pointer (section 7.1) to processed JSON claims.

    JSON objects may be any mapping and arrays lists or tuples (a frozen copy of the claims
    selects the same). Returns the selected claims as ``(concrete path, value)`` pairs in
    document order. An empty
    result means the claim is missing: nothing was selected, or processing hit an error
    (a member name applied to a non-object, an index or ``null`` to a non-array, a bad
    component, an empty pointer).
    """
    if not path:
        return ()
    selection: list[tuple[ConcreteClaimPath, Any]] = [((), claims)]
    for component in path:
        selected: list[tuple[ConcreteClaimPath, Any]] = []
        if isinstance(component, str):
            for prefix, node in selection:
                if not isinstance(node, Mapping):
                    return ()
                if component in node:
                    selected.append(((*prefix, component), node[component]))
        elif component is None:
            for prefix, node in selection:
                if not isinstance(node, list | tuple):
                    return ()
                selected.extend(((*prefix, index), item) for index, item in enumerate(node))
        elif isinstance(component, int) and not isinstance(component, bool) and component >= 0:
            for prefix, node in selection:
                if not isinstance(node, list | tuple):
                    return ()
                if component < len(node):
                    selected.append(((*prefix, component), node[component]))
        else:
            return ()
        selection = selected
    return tuple(selection)


def value_matches(claim: object, values: Sequence[ClaimValue]) -> bool:
    """Section 6.3: the claim's type and value both equal one of ``values``."""
    if not isinstance(claim, str | int):  # bool is an int; floats, objects, arrays never match
        return False
    return any(type(claim) is type(value) and claim == value for value in values)


# --- matching ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class HeldCredential:
    """A credential in the wallet, as matching sees it: ``claims`` is the full processed
    payload (every disclosure applied), ``holder_binding`` whether it has a ``cnf`` key."""

    id: str
    format: str
    vct: str
    claims: Mapping[str, Any]
    holder_binding: bool = True
    trusted_authorities: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    """``(type, value)`` pairs (section 6.1.1) this credential is known to satisfy."""

    def __repr__(self) -> str:  # claims are personal data
        return f"HeldCredential(id={self.id!r}, format={self.format!r}, vct={self.vct!r})"


@dataclass(frozen=True)
class CredentialMatch:
    """A held credential that satisfies one credential query, and what it must disclose."""

    credential: HeldCredential
    claim_paths: tuple[ConcreteClaimPath, ...]
    """Concrete paths of the claims to disclose, in query order; empty when the query has no
    ``claims`` (no selectively disclosable claim is asked for)."""
    claim_set: tuple[str, ...] | None = None
    """The ``claim_sets`` option chosen (claims query ids), when the query has claim sets."""


@dataclass(frozen=True)
class DcqlMatch:
    """The wallet's answer plan for a query (section 6.4)."""

    query: DcqlQuery
    candidates: Mapping[str, tuple[CredentialMatch, ...]]
    """Per credential query id (every one, in query order): the matching held credentials."""
    credential_set_options: tuple[tuple[str, ...] | None, ...]
    """Per credential set query: the option chosen, ``None`` for an unsatisfiable optional set."""
    selected: tuple[str, ...]
    """Credential query ids to answer: all of them without ``credential_sets``, else the union
    of the chosen options."""


def _resolve_claim(
    claim: ClaimsQuery, claims: Mapping[str, Any]
) -> tuple[ConcreteClaimPath, ...] | None:
    selected = select_claims(claims, claim.path)
    if claim.values is not None:
        values = claim.values
        selected = tuple(item for item in selected if value_matches(item[1], values))
    if not selected:
        return None
    return tuple(path for path, _ in selected)


def _credential_matches_meta(query: CredentialQuery, held: HeldCredential) -> bool:
    if query.format != FORMAT_SD_JWT_VC or held.format != FORMAT_SD_JWT_VC:
        return False
    if query.meta.vct_values is None or held.vct not in query.meta.vct_values:
        return False
    if query.require_cryptographic_holder_binding and not held.holder_binding:
        return False
    if query.trusted_authorities is not None:
        wanted = {(ta.type, value) for ta in query.trusted_authorities for value in ta.values}
        if not wanted & held.trusted_authorities:
            return False
    return True


def _union(groups: Iterable[tuple[ConcreteClaimPath, ...]]) -> tuple[ConcreteClaimPath, ...]:
    seen: dict[ConcreteClaimPath, None] = {}
    for group in groups:
        for path in group:
            seen.setdefault(path, None)
    return tuple(seen)


def match_credential_query(query: CredentialQuery, held: HeldCredential) -> CredentialMatch | None:
    """Whether ``held`` satisfies ``query`` (section 6.4.1), and with which claims."""
    if not _credential_matches_meta(query, held):
        return None
    if query.claims is None:
        return CredentialMatch(credential=held, claim_paths=())
    if query.claim_sets is None:
        resolved = []
        for claim in query.claims:
            paths = _resolve_claim(claim, held.claims)
            if paths is None:
                return None
            resolved.append(paths)
        return CredentialMatch(credential=held, claim_paths=_union(resolved))
    by_id = {claim.id: claim for claim in query.claims}
    cache: dict[str, tuple[ConcreteClaimPath, ...] | None] = {}
    for option in query.claim_sets:
        option_paths = []
        for claim_id in option:
            if claim_id not in cache:
                cache[claim_id] = _resolve_claim(by_id[claim_id], held.claims)
            paths = cache[claim_id]
            if paths is None:
                break
            option_paths.append(paths)
        else:
            return CredentialMatch(
                credential=held, claim_paths=_union(option_paths), claim_set=option
            )
    return None


def match_query(query: DcqlQuery, held: Iterable[HeldCredential]) -> DcqlMatch:
    """Plan the wallet's response to ``query`` from the ``held`` credentials.

    Raises ``DCQL_UNSATISFIED`` when a credential query (without ``credential_sets``) or a
    required credential set (with them) cannot be satisfied: the wallet then returns nothing
    (section 6.4.2).
    """
    wallet = tuple(held)
    candidates: dict[str, tuple[CredentialMatch, ...]] = {}
    for credential_query in query.credentials:
        matches = (match_credential_query(credential_query, h) for h in wallet)
        candidates[credential_query.id] = tuple(m for m in matches if m is not None)

    if query.credential_sets is None:
        missing = [query_id for query_id, found in candidates.items() if not found]
        if missing:
            raise VerificationError(
                ReasonCode.DCQL_UNSATISFIED,
                "no held credential matches credential quer"
                + ("y " if len(missing) == 1 else "ies ")
                + ", ".join(missing),
            )
        return DcqlMatch(
            query=query,
            candidates=MappingProxyType(candidates),
            credential_set_options=(),
            selected=tuple(candidates),
        )

    chosen: list[tuple[str, ...] | None] = []
    selected: dict[str, None] = {}
    for index, credential_set in enumerate(query.credential_sets):
        option = next(
            (opt for opt in credential_set.options if all(candidates[i] for i in opt)), None
        )
        if option is None and credential_set.required:
            raise VerificationError(
                ReasonCode.DCQL_UNSATISFIED,
                f"credential_sets[{index}] is required and no option can be satisfied",
            )
        chosen.append(option)
        for query_id in option or ():
            selected.setdefault(query_id, None)
    return DcqlMatch(
        query=query,
        candidates=MappingProxyType(candidates),
        credential_set_options=tuple(chosen),
        selected=tuple(selected),
    )
