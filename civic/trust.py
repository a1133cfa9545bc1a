"""The trust registry's pure core: signed accreditation events and the folded trust state.

Implements docs/registry.md, sections "Entries" (the signed-event format, the seven event types,
governance signatures by k of n keys, validation with its reason codes) and "TrustState queries"
(issuer keys, accredited verifiers, ``size`` and ``root``). The Merkle leaf of an entry is its
canonical JSON (RFC 9162 section 2.1.1 leaf hash); :class:`TrustState` keeps the compact range
(the roots of the perfect subtrees on the right edge) of the entries it folded, so its ``root``
is the RFC 9162 Merkle tree head of exactly those entries.

Decisions the document leaves open, taken here:

- Entries read from a log must be in canonical form (``parse_entry(..., require_canonical=True)``)
  so that one event has exactly one leaf. Every signature header is exactly ``alg``, ``typ``,
  ``kid``; two signatures naming one kid make the entry malformed; a signature whose payload is
  not the entry's event is ``governance_signature_invalid`` whoever signed it (raised by
  :func:`parse_entry` already). Signatures by kids that are not current governance keys are
  ignored (they count for nothing).
- Governance kids, like issuer kids, are never reused (``duplicate_kid``), and one public key
  may not sit under two governance kids (it would count twice toward the quorum).
- ``issuer.key.retire`` of a key already retired is ``key_retired``; a retired key may still be
  revoked. ``verifier.add`` for a known verifier re-accredits it (new key and policy, any
  revocation lifted) provided the kid is new for that verifier. A verifier used outside its
  ``[not_before, not_after]`` gets ``key_outside_window``; revocations apply whatever their
  ``revoked_at`` (it records when the compromise happened).
- The state is immutable from the outside and :meth:`TrustState.apply` costs O(log n): the
  maps are small persistent hash tries. Both :meth:`TrustState.apply` and
  :meth:`TrustState.apply_many` fold through one private, mutable builder that holds every
  check once; ``apply_many`` builds no intermediate states and merges its new map items into
  the tries in one pass at the end. Folding is dominated by the Ed25519 checks. A small fold
  takes a chunk of entries at a time, checks its signatures on every thread at once (libsodium
  releases the GIL; no Python work runs meanwhile, or threads leaving C would queue behind it
  for the GIL), then folds the chunk in order. A large one (a fresh sync) sends batches to
  checker processes (civic.sigcheck) and parses and folds while they check.
- Leaves are parsed with the strict JSON parser and proven canonical by re-encoding the event
  (through the C encoder :func:`civic.encoding.json_dumps_canonical` ends in, set up once),
  except the commonest one, ``issuer.key.add`` with a bare JWK: one pattern that admits only
  canonical JSON reads it, and its values then meet exactly the same validation.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import chain, islice
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

from civic.clock import Clock, RandomBytes, system_clock, system_random
from civic.encoding import (
    b64std_encode,
    b64url_decode,
    b64url_encode,
    json_dumps_canonical,
    json_loads,
    json_loads_object,
)
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError
from civic.jose import (
    ALGORITHMS,
    MAX_JWS_LENGTH,
    PublicKey,
    Signer,
    public_key_from_jwk,
    sign_jws,
)
from civic.merkle import EMPTY_ROOT, leaf_hash, node_hash
from civic.sigcheck import Checkers

EVENT_TYP = "civic-registry-event+jwt"
"""The ``typ`` of every governance signature over an event."""

MAX_ENTRY_BYTES = 256 * 1024
"""Longest entry accepted (its canonical JSON, or the bytes given to :func:`parse_entry`)."""

MAX_EVENT_BYTES = 8 * 1024
"""Longest event (canonical JSON): identifiers, one key and a policy fit easily."""

MAX_SIGNATURES = 16
MAX_STRING = 2048
MAX_CLAIM_PATH_LENGTH = 32
MAX_NUMERIC_DATE = 253_402_300_799
"""9999-12-31T23:59:59Z: later times are certainly mistakes."""

EVENT_ID_BYTES = 16

ClaimPathComponent = str | int | None
ClaimPath = tuple[ClaimPathComponent, ...]
"""A DCQL claims path pointer (OpenID4VP 1.0 section 7): names, indexes, ``None`` for all."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A regular expression rather than urlsplit: it is on the hot path of every folded entry.
# Hosts are ASCII (IDNs in their punycode form); a path or query may follow, never a fragment.
_URL = re.compile(
    r"(https|http)://([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
    r"(?::([0-9]{1,5}))?(?:[/?][^\s#\x00-\x1f\x7f]*)?"
)
_LOOPBACK = re.compile(r"localhost|127(?:\.[0-9]{1,3}){3}|\[::1\]")
_EVENT_ID = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")
"""base64url of exactly 16 bytes: 21 characters, then one whose low 4 bits are zero."""
_HEADER_MEMBERS = frozenset({"alg", "typ", "kid"})
_ENTRY_MEMBERS = frozenset({"event", "signatures"})


def _malformed(detail: str) -> MalformedError:
    return MalformedError(ReasonCode.REGISTRY_ENTRY_MALFORMED, detail)


# --- member validation ----------------------------------------------------------------------


def _text(value: object, name: str, *, limit: int = MAX_STRING) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise _malformed(f"{name} must be a non-empty string of at most {limit} characters")
    if _CONTROL.search(value):
        raise _malformed(f"{name} must not contain control characters")
    return value


def _numeric_date(value: object, name: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_NUMERIC_DATE:
        raise _malformed(f"{name} must be a NumericDate (integer seconds)")
    return value


def _quorum(value: object) -> int:
    if type(value) is not int or not 1 <= value <= MAX_SIGNATURES:
        raise _malformed(f"quorum must be an integer in [1, {MAX_SIGNATURES}]")
    return value


def _url(value: object, name: str) -> str:
    """An https URL, or http on a loopback host (for local deployments and tests)."""
    if not isinstance(value, str) or not value or len(value) > MAX_STRING:
        raise _malformed(f"{name} must be a non-empty string of at most {MAX_STRING} characters")
    # _URL admits no control character, so the separate search runs only to name the fault.
    match = _URL.fullmatch(value)
    if match is None:
        _text(value, name)
        raise _malformed(f"{name} must be an absolute http(s) URL with a host, no user or fragment")
    scheme, host, port = match.group(1, 2, 3)
    if port is not None and not 0 < int(port) < 65536:
        raise _malformed(f"{name} has a bad port")
    if scheme == "https" or _LOOPBACK.fullmatch(host):
        return value
    raise _malformed(f"{name} must be an https URL (http only for loopback)")


def _public_key(value: object, copy: bool) -> tuple[dict[str, Any], PublicKey]:
    if not isinstance(value, dict):
        raise MalformedError(ReasonCode.MALFORMED_JWK, "jwk must be a JSON object")
    # public_key_from_jwk raises malformed_jwk / unsupported_key_type / private_key_material.
    # The copy keeps a caller's later edits out of an event already parsed (JSON parsed here
    # has no other holder).
    return dict(value) if copy else value, public_key_from_jwk(value)


def _vct_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _malformed("vct must be a non-empty list of strings")
    for item in value:
        _text(item, "vct")
    items = tuple(value)
    if len(set(items)) != len(items):
        raise _malformed("vct lists a type twice")
    return items


def _claim_path(value: object) -> ClaimPath:
    if not isinstance(value, list) or not value or len(value) > MAX_CLAIM_PATH_LENGTH:
        raise _malformed(f"a claim path is a non-empty list of at most {MAX_CLAIM_PATH_LENGTH}")
    for component in value:
        if component is None or isinstance(component, str):
            continue
        if type(component) is not int or component < 0:
            raise _malformed("claim path components are strings, non-negative integers or null")
    return tuple(value)


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AllowedCredential:
    """One credential type a verifier may request, with the claim paths it may ask for."""

    vct: str
    claims: tuple[ClaimPath, ...]

    def to_json(self) -> dict[str, Any]:
        return {"vct": self.vct, "claims": [list(path) for path in self.claims]}

    def covers(self, path: Sequence[ClaimPathComponent]) -> bool:
        """True when ``path`` equals or lies beneath one of the accredited paths."""
        return any(_path_covers(allowed, path) for allowed in self.claims)


def _path_covers(allowed: ClaimPath, requested: Sequence[ClaimPathComponent]) -> bool:
    if len(requested) < len(allowed):
        return False
    for granted, asked in zip(allowed, requested, strict=False):
        if granted is None:
            # "all elements" covers any one element, and all of them.
            if asked is not None and (type(asked) is not int):
                return False
        elif type(granted) is not type(asked) or granted != asked:
            return False
    return True


@dataclass(frozen=True, slots=True)
class _EventBase:
    id: str
    time: int


@dataclass(frozen=True, slots=True)
class GovernanceKeyAdd(_EventBase):
    type: ClassVar[str] = "governance.key.add"
    kid: str
    jwk: Mapping[str, Any] = field(repr=False)
    public_key: PublicKey = field(repr=False)
    quorum: int | None = None


@dataclass(frozen=True, slots=True)
class GovernanceKeyRemove(_EventBase):
    type: ClassVar[str] = "governance.key.remove"
    kid: str
    quorum: int | None = None


@dataclass(frozen=True, slots=True)
class IssuerKeyAdd(_EventBase):
    type: ClassVar[str] = "issuer.key.add"
    issuer: str
    kid: str
    jwk: Mapping[str, Any] = field(repr=False)
    public_key: PublicKey = field(repr=False)
    vct: tuple[str, ...]
    status_base_url: str
    not_before: int
    not_after: int


@dataclass(frozen=True, slots=True)
class IssuerKeyRetire(_EventBase):
    type: ClassVar[str] = "issuer.key.retire"
    issuer: str
    kid: str
    retired_at: int


@dataclass(frozen=True, slots=True)
class IssuerKeyRevoke(_EventBase):
    type: ClassVar[str] = "issuer.key.revoke"
    issuer: str
    kid: str
    revoked_at: int


@dataclass(frozen=True, slots=True)
class VerifierAdd(_EventBase):
    type: ClassVar[str] = "verifier.add"
    verifier: str
    kid: str
    jwk: Mapping[str, Any] = field(repr=False)
    public_key: PublicKey = field(repr=False)
    purpose: str
    allowed: tuple[AllowedCredential, ...]
    not_before: int
    not_after: int


@dataclass(frozen=True, slots=True)
class VerifierRevoke(_EventBase):
    type: ClassVar[str] = "verifier.revoke"
    verifier: str
    revoked_at: int


Event = (
    GovernanceKeyAdd
    | GovernanceKeyRemove
    | IssuerKeyAdd
    | IssuerKeyRetire
    | IssuerKeyRevoke
    | VerifierAdd
    | VerifierRevoke
)

EVENT_TYPES: tuple[str, ...] = (
    "governance.key.add",
    "governance.key.remove",
    "issuer.key.add",
    "issuer.key.retire",
    "issuer.key.revoke",
    "verifier.add",
    "verifier.revoke",
)

_REQUIRED: dict[str, frozenset[str]] = {
    "governance.key.add": frozenset({"kid", "jwk"}),
    "governance.key.remove": frozenset({"kid"}),
    "issuer.key.add": frozenset(
        {"issuer", "kid", "jwk", "vct", "status_base_url", "not_before", "not_after"}
    ),
    "issuer.key.retire": frozenset({"issuer", "kid", "retired_at"}),
    "issuer.key.revoke": frozenset({"issuer", "kid", "revoked_at"}),
    "verifier.add": frozenset(
        {"verifier", "kid", "jwk", "purpose", "allowed", "not_before", "not_after"}
    ),
    "verifier.revoke": frozenset({"verifier", "revoked_at"}),
}
_OPTIONAL: dict[str, frozenset[str]] = {
    "governance.key.add": frozenset({"quorum"}),
    "governance.key.remove": frozenset({"quorum"}),
}
_COMMON = frozenset({"type", "id", "time"})
_REQUIRED_WITH_COMMON = {kind: members | _COMMON for kind, members in _REQUIRED.items()}
_ALLOWED = {
    kind: members | _OPTIONAL.get(kind, frozenset())
    for kind, members in _REQUIRED_WITH_COMMON.items()
}


def _window(event: Mapping[str, Any]) -> tuple[int, int]:
    not_before = _numeric_date(event["not_before"], "not_before")
    not_after = _numeric_date(event["not_after"], "not_after")
    if not_after < not_before:
        raise _malformed("not_after is before not_before")
    return not_before, not_after


def _allowed(value: object) -> tuple[AllowedCredential, ...]:
    if not isinstance(value, list) or not value:
        raise _malformed("allowed must be a non-empty list")
    result: list[AllowedCredential] = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"vct", "claims"}:
            raise _malformed('each allowed item is exactly {"vct", "claims"}')
        claims = item["claims"]
        if not isinstance(claims, list):
            raise _malformed("allowed claims must be a list of claim paths")
        paths = tuple(_claim_path(path) for path in claims)
        if len(set(paths)) != len(paths):
            raise _malformed("allowed claims list a path twice")
        result.append(AllowedCredential(_text(item["vct"], "vct"), paths))
    if len({item.vct for item in result}) != len(result):
        raise _malformed("allowed lists a vct twice")
    return tuple(result)


def parse_event(event: object) -> Event:
    """Validate an event object (docs/registry.md, "Event types"); ``registry_entry_malformed``."""
    return _parse_event(event, copy=True)


def _parse_event(event: object, *, copy: bool) -> Event:
    if not isinstance(event, dict):
        raise _malformed("event must be a JSON object")
    kind = event.get("type")
    if not isinstance(kind, str) or kind not in _REQUIRED:  # a list or object is unhashable
        raise _malformed("unknown event type")
    members = event.keys()
    required = _REQUIRED_WITH_COMMON[kind]
    if not required <= members:
        raise _malformed(f"{kind} is missing {', '.join(sorted(required - members))}")
    if not members <= _ALLOWED[kind]:
        raise _malformed(f"{kind} has unexpected members")
    event_id = event["id"]
    if not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id):
        raise _malformed("id must be the base64url of 16 random bytes")
    time = _numeric_date(event["time"], "time")
    if kind == "governance.key.add":
        jwk, key = _public_key(event["jwk"], copy)
        quorum = _quorum(event["quorum"]) if "quorum" in event else None
        return GovernanceKeyAdd(event_id, time, _text(event["kid"], "kid"), jwk, key, quorum)
    if kind == "governance.key.remove":
        quorum = _quorum(event["quorum"]) if "quorum" in event else None
        return GovernanceKeyRemove(event_id, time, _text(event["kid"], "kid"), quorum)
    if kind == "issuer.key.add":
        jwk, key = _public_key(event["jwk"], copy)
        not_before, not_after = _window(event)
        # Positional: the commonest event, and keywords cost a third more here.
        return IssuerKeyAdd(
            event_id,
            time,
            _url(event["issuer"], "issuer"),
            _text(event["kid"], "kid"),
            jwk,
            key,
            _vct_list(event["vct"]),
            _url(event["status_base_url"], "status_base_url"),
            not_before,
            not_after,
        )
    if kind == "issuer.key.retire":
        return IssuerKeyRetire(
            event_id,
            time,
            _url(event["issuer"], "issuer"),
            _text(event["kid"], "kid"),
            _numeric_date(event["retired_at"], "retired_at"),
        )
    if kind == "issuer.key.revoke":
        return IssuerKeyRevoke(
            event_id,
            time,
            _url(event["issuer"], "issuer"),
            _text(event["kid"], "kid"),
            _numeric_date(event["revoked_at"], "revoked_at"),
        )
    if kind == "verifier.add":
        jwk, key = _public_key(event["jwk"], copy)
        not_before, not_after = _window(event)
        return VerifierAdd(
            event_id,
            time,
            verifier=_text(event["verifier"], "verifier"),
            kid=_text(event["kid"], "kid"),
            jwk=jwk,
            public_key=key,
            purpose=_text(event["purpose"], "purpose"),
            allowed=_allowed(event["allowed"]),
            not_before=not_before,
            not_after=not_after,
        )
    return VerifierRevoke(
        event_id,
        time,
        _text(event["verifier"], "verifier"),
        _numeric_date(event["revoked_at"], "revoked_at"),
    )


def event_to_json(event: Event) -> dict[str, Any]:
    """The event as the JSON object it was parsed from."""
    out: dict[str, Any] = {"type": event.type, "id": event.id, "time": event.time}
    if isinstance(event, GovernanceKeyAdd | GovernanceKeyRemove):
        out["kid"] = event.kid
        if isinstance(event, GovernanceKeyAdd):
            out["jwk"] = dict(event.jwk)
        if event.quorum is not None:
            out["quorum"] = event.quorum
    elif isinstance(event, IssuerKeyAdd):
        out.update(
            issuer=event.issuer,
            kid=event.kid,
            jwk=dict(event.jwk),
            vct=list(event.vct),
            status_base_url=event.status_base_url,
            not_before=event.not_before,
            not_after=event.not_after,
        )
    elif isinstance(event, IssuerKeyRetire):
        out.update(issuer=event.issuer, kid=event.kid, retired_at=event.retired_at)
    elif isinstance(event, IssuerKeyRevoke):
        out.update(issuer=event.issuer, kid=event.kid, revoked_at=event.revoked_at)
    elif isinstance(event, VerifierAdd):
        out.update(
            verifier=event.verifier,
            kid=event.kid,
            jwk=dict(event.jwk),
            purpose=event.purpose,
            allowed=[item.to_json() for item in event.allowed],
            not_before=event.not_before,
            not_after=event.not_after,
        )
    else:
        out.update(verifier=event.verifier, revoked_at=event.revoked_at)
    return out


def new_event(
    type: str,
    *,
    now: Clock = system_clock,
    random: RandomBytes = system_random,
    **members: Any,
) -> dict[str, Any]:
    """A validated event object with a fresh random ``id`` and ``time = now()``.

    ``jwk`` may be given as a :class:`PublicKey`; claim paths in ``allowed`` may be tuples.
    """
    if "id" in members or "time" in members:
        raise UsageError(ReasonCode.REGISTRY_ENTRY_MALFORMED, "id and time are filled in here")
    if isinstance(members.get("jwk"), PublicKey):
        members["jwk"] = members["jwk"].to_jwk()
    if isinstance(members.get("vct"), tuple):
        members["vct"] = list(members["vct"])
    if "allowed" in members:
        members["allowed"] = _allowed_to_json(members["allowed"])
    event = {"type": type, "id": b64url_encode(random(EVENT_ID_BYTES)), "time": now(), **members}
    parse_event(event)
    return event


def _allowed_to_json(value: object) -> object:
    if not isinstance(value, list | tuple):
        return value
    out: list[object] = []
    for item in value:
        if isinstance(item, AllowedCredential):
            out.append(item.to_json())
        elif isinstance(item, Mapping) and isinstance(item.get("claims"), list | tuple):
            claims = [list(p) if isinstance(p, tuple) else p for p in item["claims"]]
            out.append({**item, "claims": claims})
        else:
            out.append(item)
    return out


# --- signed entries -------------------------------------------------------------------------


class _Signature(NamedTuple):
    # A tuple: one is built per signature of every folded entry.
    kid: str
    alg: str
    signing_input: bytes
    signature: bytes


@lru_cache(maxsize=256)
def _signature_header(header_b64: str) -> tuple[str, str]:
    """``(alg, kid)`` of a signature header. Cached: a log has a handful of distinct ones."""
    try:
        header = json_loads_object(b64url_decode(header_b64), what="JWS header")
    except MalformedError as error:
        raise _malformed(f"a signature header is not JSON ({error.reason.value})") from None
    if set(header) != _HEADER_MEMBERS:
        raise _malformed("a signature header must have exactly alg, typ and kid")
    if header["typ"] != EVENT_TYP:
        raise _malformed(f"a signature header typ is not {EVENT_TYP}")
    alg, kid = header["alg"], header["kid"]
    if not isinstance(alg, str) or alg not in ALGORITHMS or not isinstance(kid, str) or not kid:
        raise _malformed("a signature header has a bad alg or kid")
    return alg, kid


class SignedEntry:
    """An event with its governance signatures, as one log entry (docs/registry.md, "Entries").

    Build with :func:`parse_entry` or :func:`sign_event`. Immutable; the leaf bytes and hash are
    computed once.
    """

    __slots__ = ("_event_bytes", "_leaf", "_leaf_hash", "_signatures", "event", "signatures")

    event: Event
    signatures: tuple[str, ...]

    def __init__(
        self, event: Event, signatures: Sequence[str], *, _event_bytes: bytes | None = None
    ) -> None:
        self._event_bytes = (
            _event_bytes
            if _event_bytes is not None
            else json_dumps_canonical(event_to_json(event)).encode("utf-8")
        )
        if len(self._event_bytes) > MAX_EVENT_BYTES:
            raise MalformedError(ReasonCode.INPUT_TOO_LARGE, "event larger than the limit")
        self._signatures = _parse_signatures(signatures, b64url_encode(self._event_bytes))
        self.event = event
        self.signatures = tuple(signatures)
        # Canonical JSON sorts "event" before "signatures"; a list of JWS strings is canonical
        # as it is, so the leaf is assembled instead of re-serialising the whole entry.
        self._leaf = (
            b'{"event":'
            + self._event_bytes
            + b',"signatures":'
            + _json_string_list(self.signatures)
            + b"}"
        )
        if len(self._leaf) > MAX_ENTRY_BYTES:
            raise MalformedError(ReasonCode.INPUT_TOO_LARGE, "entry larger than the limit")
        self._leaf_hash: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        return {"event": event_to_json(self.event), "signatures": list(self.signatures)}

    def event_bytes(self) -> bytes:
        """The signed payload: ``json_dumps_canonical(event)`` as UTF-8."""
        return self._event_bytes

    def leaf_bytes(self) -> bytes:
        """The Merkle leaf: ``json_dumps_canonical(entry)`` as UTF-8."""
        return self._leaf

    def leaf_hash(self) -> bytes:
        if self._leaf_hash is None:
            self._leaf_hash = leaf_hash(self._leaf)
        return self._leaf_hash

    @property
    def signer_kids(self) -> tuple[str, ...]:
        return tuple(signature.kid for signature in self._signatures)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SignedEntry) and other._leaf == self._leaf

    def __hash__(self) -> int:
        return hash(self._leaf)

    def __repr__(self) -> str:
        return f"SignedEntry({self.event.type}, id={self.event.id}, kids={self.signer_kids})"


def _json_string_list(tokens: Sequence[str]) -> bytes:
    # Compact JWS are base64url and dots only (checked while parsing): nothing to escape.
    return ('["' + '","'.join(tokens) + '"]').encode("ascii")


def _parse_signatures(signatures: object, payload_b64: str) -> tuple[_Signature, ...]:
    """Parse the compact JWS list; each must carry ``payload_b64``, the entry's own event.

    Comparing the payload in its base64url form spares decoding it once per signature, and
    being equal to a canonical encoding proves it well-formed.
    """
    if not isinstance(signatures, list | tuple) or not signatures:
        raise _malformed("signatures must be a non-empty list")
    if len(signatures) > MAX_SIGNATURES:
        raise _malformed(f"more than {MAX_SIGNATURES} signatures")
    parsed: list[_Signature] = []
    kids: set[str] = set()
    for token in signatures:
        if not isinstance(token, str) or len(token) > MAX_JWS_LENGTH:
            raise _malformed("a signature is not a compact JWS string")
        parts = token.split(".")
        if len(parts) != 3:
            raise _malformed("a signature is not a compact JWS")
        header_b64, signed_payload, signature_b64 = parts
        alg, kid = _signature_header(header_b64)
        try:
            signature = b64url_decode(signature_b64)
        except MalformedError:
            raise _malformed("a signature has bad base64url") from None
        if signed_payload != payload_b64:
            raise VerificationError(
                ReasonCode.GOVERNANCE_SIGNATURE_INVALID, "a signature covers another event"
            )
        signing_input = token[: len(header_b64) + 1 + len(payload_b64)].encode("ascii")
        parsed.append(_Signature(kid, alg, signing_input, signature))
        kids.add(kid)
    if len(kids) != len(parsed):
        raise _malformed("two signatures name the same kid")
    return tuple(parsed)


# json_dumps_canonical through the C encoder it ends in, built once: JSONEncoder's set-up per
# call costs half as much as encoding an event. No cycle markers: parsed JSON has no cycles.
_C_CANONICAL_ENCODER = (
    None
    if c_make_encoder is None
    else c_make_encoder(None, None, encode_basestring, None, ":", ",", True, False, True)
)


def _canonical_json(value: Any) -> str:
    """``json_dumps_canonical(value)`` for a value parsed from JSON (no cycles, JSON types)."""
    if _C_CANONICAL_ENCODER is None:
        return json_dumps_canonical(value)
    return "".join(_C_CANONICAL_ENCODER(value, 0))


# The commonest leaf, issuer.key.add with a JWK of exactly its key members, is recognized by one
# pattern instead of the JSON parser plus a re-encoding. The pattern admits only canonical JSON
# (members in sorted order, no whitespace, strings without escapes, integers without sign or
# leading zeros; the caller rules out backslashes and control characters first), so a leaf it
# matches is the canonical JSON of the values it captures, and those values are exactly what
# the strict parser would have produced. They then go through the same validation.
_LEAF_STRING = r'"([^"]*)"'
_LEAF_INTEGER = r"(0|[1-9][0-9]{0,17})"
_LEAF_STRINGS = r'\["([^"]*(?:","[^"]*)*)"\]'
_ISSUER_KEY_ADD_LEAF = re.compile(
    r'\{"event":(\{"id":' + _LEAF_STRING
    + r',"issuer":' + _LEAF_STRING
    + r',"jwk":\{"crv":"(Ed25519|P-256)","kty":"(OKP|EC)","x":' + _LEAF_STRING
    + r'(?:,"y":' + _LEAF_STRING + r")?\}"
    + r',"kid":' + _LEAF_STRING
    + r',"not_after":' + _LEAF_INTEGER
    + r',"not_before":' + _LEAF_INTEGER
    + r',"status_base_url":' + _LEAF_STRING
    + r',"time":' + _LEAF_INTEGER
    + r',"type":"issuer\.key\.add","vct":' + _LEAF_STRINGS
    + r'\}),"signatures":' + _LEAF_STRINGS + r"\}"
)  # fmt: skip
_FLAG_ESCAPED = bytes(0xFF if byte < 0x20 or byte == 0x5C else byte for byte in range(256))
"""Changes exactly the bytes JSON strings hold only escaped (controls, backslash): without
them every quote is a delimiter. Translating without deletions is the fast path of
``bytes.translate``."""


def _recognize_leaf(raw: bytes) -> tuple[dict[str, Any], list[str], bytes] | None:
    """``(event, signatures, event bytes)`` of a leaf :data:`_ISSUER_KEY_ADD_LEAF` matches."""
    if not raw.isascii() or raw.translate(_FLAG_ESCAPED) != raw:
        return None
    match = _ISSUER_KEY_ADD_LEAF.fullmatch(raw.decode("ascii"))
    if match is None:
        return None
    (event_text, event_id, issuer, crv, kty, x, y, kid, not_after, not_before, status_base_url,
     time, vct, signatures) = match.groups()  # fmt: skip
    jwk = {"crv": crv, "kty": kty, "x": x}
    if y is not None:
        jwk["y"] = y
    event = {
        "id": event_id,
        "issuer": issuer,
        "jwk": jwk,
        "kid": kid,
        "not_after": int(not_after),
        "not_before": int(not_before),
        "status_base_url": status_base_url,
        "time": int(time),
        "type": "issuer.key.add",
        "vct": vct.split('","'),
    }
    return event, signatures.split('","'), raw[9 : 9 + len(event_text)]


def parse_entry(
    data: bytes | str | Mapping[str, Any], *, require_canonical: bool = False
) -> SignedEntry:
    """Parse a signed entry strictly. Signatures are checked later, against a trust state.

    ``require_canonical`` (for leaves read from a log) also demands that ``data`` be exactly the
    entry's canonical JSON, so that no event has two leaves.
    """
    if isinstance(data, bytes | str):
        try:
            raw = data.encode("utf-8") if isinstance(data, str) else data
        except UnicodeEncodeError:
            raise _malformed("entry is not JSON (malformed_utf8)") from None
        if len(raw) > MAX_ENTRY_BYTES:
            raise MalformedError(ReasonCode.INPUT_TOO_LARGE, "entry larger than the limit")
        recognized = _recognize_leaf(raw)
        if recognized is None:
            return _parse_entry_json(raw, require_canonical)
        event_json, signatures, event_bytes = recognized
        entry = SignedEntry(
            _parse_event(event_json, copy=False), signatures, _event_bytes=event_bytes
        )
        return _with_leaf(entry, raw, require_canonical)
    if not isinstance(data, Mapping):
        raise _malformed("entry must be JSON bytes, text or an object")
    return _entry_from_object(data, None, require_canonical)


def _parse_entry_json(raw: bytes, require_canonical: bool) -> SignedEntry:
    """:func:`parse_entry` of JSON bytes through the strict parser (any leaf)."""
    try:
        obj = json_loads(raw)
    except MalformedError as error:
        raise _malformed(f"entry is not JSON ({error.reason.value})") from None
    return _entry_from_object(obj, raw, require_canonical)


def _entry_from_object(obj: object, raw: bytes | None, require_canonical: bool) -> SignedEntry:
    if not isinstance(obj, Mapping) or obj.keys() != _ENTRY_MEMBERS:
        raise _malformed('an entry is exactly {"event", "signatures"}')
    event_json = obj["event"]
    # JSON parsed here is private to this call, so the event may keep its objects uncopied.
    event = _parse_event(event_json, copy=raw is None)
    try:
        event_text = (
            _canonical_json(event_json) if raw is not None else json_dumps_canonical(event_json)
        )
        event_bytes = event_text.encode("utf-8")
    except (TypeError, ValueError):
        raise _malformed("event is not JSON") from None
    signatures = obj["signatures"]
    if not isinstance(signatures, list):
        raise _malformed("signatures must be a non-empty list")
    entry = SignedEntry(event, signatures, _event_bytes=event_bytes)
    if raw is None:
        if require_canonical:
            raise _malformed("entry is not in canonical JSON form")
        return entry
    return _with_leaf(entry, raw, require_canonical)


def _with_leaf(entry: SignedEntry, raw: bytes, require_canonical: bool) -> SignedEntry:
    if require_canonical:
        if entry._leaf != raw:
            raise _malformed("entry is not in canonical JSON form")
        # The caller's bytes, equal to the assembled leaf: one copy of the leaf, not two.
        entry._leaf = raw
    return entry


def sign_event(
    event: Mapping[str, Any] | Event, signers: Sequence[tuple[str, Signer]]
) -> SignedEntry:
    """Sign an event with governance keys: one JWS per ``(kid, signer)``, in the order given."""
    if not signers:
        raise UsageError(ReasonCode.GOVERNANCE_QUORUM_NOT_MET, "at least one signer is needed")
    kids = [kid for kid, _ in signers]
    if len(set(kids)) != len(kids):
        raise UsageError(ReasonCode.REGISTRY_ENTRY_MALFORMED, "a kid is listed twice")
    if isinstance(event, Mapping):
        parsed = parse_event(dict(event))
        payload = json_dumps_canonical(dict(event)).encode("utf-8")
    else:
        parsed = event
        payload = json_dumps_canonical(event_to_json(event)).encode("utf-8")
    tokens = [sign_jws({"typ": EVENT_TYP, "kid": kid}, payload, signer) for kid, signer in signers]
    return SignedEntry(parsed, tokens, _event_bytes=payload)


# --- governance -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GovernanceConfig:
    """The genesis governance keys (by kid) and the quorum k, configured out of band."""

    keys: Mapping[str, PublicKey]
    quorum: int

    def __post_init__(self) -> None:
        keys = dict(self.keys)
        for kid, key in keys.items():
            if not isinstance(kid, str) or not kid or not isinstance(key, PublicKey):
                raise UsageError(ReasonCode.MALFORMED_JWK, "governance keys map kids to keys")
        if len(set(keys.values())) != len(keys):
            raise UsageError(ReasonCode.DUPLICATE_KID, "one key is listed under two kids")
        if type(self.quorum) is not int or not 1 <= self.quorum <= min(len(keys), MAX_SIGNATURES):
            # An entry carries at most MAX_SIGNATURES signatures: a larger quorum is a deadlock.
            raise UsageError(
                ReasonCode.GOVERNANCE_QUORUM_NOT_MET,
                f"quorum must be in [1, number of keys] and at most {MAX_SIGNATURES}",
            )
        object.__setattr__(self, "keys", keys)

    @classmethod
    def from_json(cls, value: object) -> GovernanceConfig:
        """From ``{"quorum": k, "keys": {"<kid>": <public JWK>, ...}}``."""
        if not isinstance(value, Mapping) or set(value) != {"quorum", "keys"}:
            raise MalformedError(
                ReasonCode.MALFORMED_INPUT, 'governance config is {"quorum", "keys"}'
            )
        keys = value["keys"]
        if not isinstance(keys, Mapping) or not keys:
            raise MalformedError(ReasonCode.MALFORMED_INPUT, "governance keys must be an object")
        parsed = {kid: public_key_from_jwk(jwk) for kid, jwk in keys.items()}
        quorum = value["quorum"]
        if type(quorum) is not int:
            raise MalformedError(ReasonCode.MALFORMED_INPUT, "quorum must be an integer")
        try:
            return cls(parsed, quorum)
        except UsageError as error:
            raise MalformedError(error.reason, error.detail) from None

    def to_json(self) -> dict[str, Any]:
        return {
            "quorum": self.quorum,
            "keys": {kid: key.to_jwk() for kid, key in sorted(self.keys.items())},
        }


# --- accredited keys and verifiers ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuerKey:
    """An issuer key as accredited by the registry; indexes point at the entries that set it."""

    issuer: str
    kid: str
    public_key: PublicKey
    vct: tuple[str, ...]
    status_base_url: str
    not_before: int
    not_after: int
    added_index: int
    retired_at: int | None = None
    retired_index: int | None = None
    revoked_at: int | None = None
    revoked_index: int | None = None

    @property
    def jwk(self) -> dict[str, str]:
        return self.public_key.to_jwk()

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "retired" if self.retired_at is not None else "active"

    def to_json(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "kid": self.kid,
            "jwk": self.jwk,
            "vct": list(self.vct),
            "status_base_url": self.status_base_url,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "status": self.status,
            "retired_at": self.retired_at,
            "revoked_at": self.revoked_at,
            "entries": [
                i
                for i in (self.added_index, self.retired_index, self.revoked_index)
                if i is not None
            ],
        }


@dataclass(frozen=True, slots=True)
class AccreditedVerifier:
    """A verifier (by its OpenID4VP ``client_id``), its request-signing key and its policy."""

    verifier: str
    kid: str
    public_key: PublicKey
    purpose: str
    allowed: tuple[AllowedCredential, ...]
    not_before: int
    not_after: int
    added_index: int
    kids: frozenset[str]
    """Every kid this verifier has been accredited with (kids are never reused)."""
    revoked_at: int | None = None
    revoked_index: int | None = None

    @property
    def jwk(self) -> dict[str, str]:
        return self.public_key.to_jwk()

    def allowed_for(self, vct: str) -> AllowedCredential | None:
        for item in self.allowed:
            if item.vct == vct:
                return item
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "verifier": self.verifier,
            "kid": self.kid,
            "jwk": self.jwk,
            "purpose": self.purpose,
            "allowed": [item.to_json() for item in self.allowed],
            "not_before": self.not_before,
            "not_after": self.not_after,
            "status": "revoked" if self.revoked_at is not None else "active",
            "revoked_at": self.revoked_at,
            "entries": [i for i in (self.added_index, self.revoked_index) if i is not None],
        }


# --- a small persistent hash map ------------------------------------------------------------

_K = TypeVar("_K")
_V = TypeVar("_V")
_BITS = 5
_MASK = (1 << _BITS) - 1
_HASH_BITS = 64
_HASH_MASK = (1 << _HASH_BITS) - 1
_BUCKET_MAX = 8
_EMPTY_NODE: tuple[Any, ...] = (None,) * (1 << _BITS)


def _node_set(
    node: tuple[Any, ...], digest: int, shift: int, key: Any, value: Any
) -> tuple[tuple[Any, ...], bool]:
    index = (digest >> shift) & _MASK
    child = node[index]
    if child is None:
        new_child: Any = {key: value}
        added = True
    elif type(child) is dict:
        added = key not in child
        if added and len(child) >= _BUCKET_MAX and shift + _BITS < _HASH_BITS:
            new_child = _EMPTY_NODE
            for old_key, old_value in (*child.items(), (key, value)):
                new_child, _ = _node_set(
                    new_child, hash(old_key) & _HASH_MASK, shift + _BITS, old_key,
                    old_value,
                )  # fmt: skip
        else:
            new_child = dict(child)
            new_child[key] = value
    else:
        new_child, added = _node_set(child, digest, shift + _BITS, key, value)
    copied = list(node)
    copied[index] = new_child
    return tuple(copied), added


def _node_merge(
    node: tuple[Any, ...], items: Sequence[tuple[int, Any, Any]], shift: int
) -> tuple[tuple[Any, ...], int]:
    """``node`` with every ``(digest, key, value)`` set (distinct keys); and how many are new.

    Copies each node once. The result has the shape a sequence of :func:`_node_set` gives: a
    bucket becomes a node exactly when more than ``_BUCKET_MAX`` keys share its prefix (above
    the last level).
    """
    groups: list[list[tuple[int, Any, Any]]] = [[] for _ in node]
    for item in items:
        groups[(item[0] >> shift) & _MASK].append(item)
    copied = list(node)
    added = 0
    deeper = shift + _BITS < _HASH_BITS
    for index, group in enumerate(groups):
        if not group:
            continue
        child = copied[index]
        if child is None:
            added += len(group)
            if deeper and len(group) > _BUCKET_MAX:
                copied[index], _ = _node_merge(_EMPTY_NODE, group, shift + _BITS)
            else:
                copied[index] = {key: value for _, key, value in group}
        elif type(child) is dict:
            bucket = dict(child)
            for _, key, value in group:
                bucket[key] = value
            added += len(bucket) - len(child)
            if deeper and len(bucket) > _BUCKET_MAX:
                spread = [(hash(key) & _HASH_MASK, key, value) for key, value in bucket.items()]
                copied[index], _ = _node_merge(_EMPTY_NODE, spread, shift + _BITS)
            else:
                copied[index] = bucket
        else:
            copied[index], more = _node_merge(child, group, shift + _BITS)
            added += more
    return tuple(copied), added


def _node_items(node: tuple[Any, ...]) -> Iterator[tuple[Any, Any]]:
    for child in node:
        if child is None:
            continue
        if type(child) is dict:
            yield from child.items()
        else:
            yield from _node_items(child)


class _PersistentMap(Generic[_K, _V]):
    """A hash trie (32-way, small dict buckets at the leaves): ``set`` copies O(log n) nodes.

    Lets every :class:`TrustState` share all unchanged structure with its predecessor.
    """

    __slots__ = ("_length", "_root")

    def __init__(self, root: tuple[Any, ...] = _EMPTY_NODE, length: int = 0) -> None:
        self._root = root
        self._length = length

    def get(self, key: _K) -> _V | None:
        if not self._length:
            return None
        digest = hash(key) & _HASH_MASK
        node = self._root
        shift = 0
        while True:
            child = node[(digest >> shift) & _MASK]
            if child is None:
                return None
            if type(child) is dict:
                value: _V | None = child.get(key)
                return value
            node = child
            shift += _BITS

    def __contains__(self, key: _K) -> bool:
        return self.get(key) is not None

    def set(self, key: _K, value: _V) -> _PersistentMap[_K, _V]:
        digest = hash(key) & _HASH_MASK
        root, added = _node_set(self._root, digest, 0, key, value)
        return _PersistentMap(root, self._length + added)

    def update(self, items: Mapping[_K, _V]) -> _PersistentMap[_K, _V]:
        """The map with every item of ``items`` set: one pass, each changed node copied once."""
        if not items:
            return self
        spread = [(hash(key) & _HASH_MASK, key, value) for key, value in items.items()]
        root, added = _node_merge(self._root, spread, 0)
        return _PersistentMap(root, self._length + added)

    def items(self) -> Iterator[tuple[_K, _V]]:
        return _node_items(self._root)

    def __len__(self) -> int:
        return self._length


# --- compact ranges (RFC 9162 tree heads, incrementally) -----------------------------------


def compact_range_append(
    compact_range: Sequence[bytes], size: int, leaf_hashes: Iterable[bytes]
) -> tuple[bytes, ...]:
    """Extend the right-edge subtree roots of a tree of ``size`` leaves with new leaf hashes.

    The compact range of ``[0, size)`` holds the roots of the perfect subtrees of
    :func:`civic.merkle.root_keys` (one per set bit of ``size``), left to right.
    """
    if len(compact_range) != size.bit_count():
        raise UsageError(ReasonCode.INDEX_OUT_OF_RANGE, "compact range does not fit the size")
    stack = list(compact_range)
    for digest in leaf_hashes:
        current = digest
        index = size
        while index & 1:
            current = node_hash(stack.pop(), current)
            index >>= 1
        stack.append(current)
        size += 1
    return tuple(stack)


def compact_range_root(compact_range: Sequence[bytes]) -> bytes:
    """The RFC 9162 root: the subtree roots folded from the right."""
    if not compact_range:
        return EMPTY_ROOT
    root = compact_range[-1]
    for digest in reversed(compact_range[:-1]):
        root = node_hash(digest, root)
    return root


# --- the trust state ------------------------------------------------------------------------

_CHUNK = 256
"""Entries whose signatures are checked together, on every thread at once."""

_PROCESS_CHUNK = 1024
"""Entries per batch sent to the checker processes (a batch is about a megabyte to pickle)."""

_PROCESS_MIN_ENTRIES = 8192
"""Folds of fewer entries check signatures on threads. A checker process costs a fraction of a
second to start (a fresh interpreter importing the crypto libraries); it pays back only when the
checks it takes off the folding thread cost more than that."""

_PIPELINE_DEPTH = 2
"""Batches in the checker processes while this thread parses and folds: one would leave them
idle while this thread catches up on a slow batch."""


def _verify_signature(key: PublicKey, signature: _Signature) -> bool:
    return key.alg == signature.alg and key.verify(signature.signing_input, signature.signature)


def _verify_all(tasks: Sequence[tuple[PublicKey, _Signature]]) -> list[bool]:
    return [_verify_signature(key, signature) for key, signature in tasks]


def _default_workers() -> int:
    # The calling thread checks a share of the signatures too.
    return min(7, (os.cpu_count() or 1) - 1)


@dataclass(frozen=True, slots=True)
class _Checked:
    """Outcomes of a chunk's signatures checked ahead of folding, for :class:`_Folding`.

    ``outcomes`` follows the chunk's entries in order and, within each, its signatures whose
    kid is in ``keys`` (the governance keys when the chunk was checked), in order. An empty
    ``keys`` checked nothing ahead: folding then checks every signature itself.
    """

    keys: Mapping[str, PublicKey]
    outcomes: list[bool]


_NOTHING_CHECKED = _Checked({}, [])


def _signature_tasks(
    chunk: Sequence[SignedEntry], keys: Mapping[str, PublicKey]
) -> list[tuple[PublicKey, _Signature]]:
    """The chunk's signatures by ``keys``, in :class:`_Checked` order. Items that are not
    entries are skipped here; folding rejects them in their turn."""
    tasks: list[tuple[PublicKey, _Signature]] = []
    for entry in chunk:
        if isinstance(entry, SignedEntry):
            for signature in entry._signatures:
                key = keys.get(signature.kid)
                if key is not None:
                    tasks.append((key, signature))
    return tasks


def _preverify(
    chunk: Sequence[SignedEntry],
    keys: Mapping[str, PublicKey],
    pool: ThreadPoolExecutor,
    workers: int,
) -> _Checked:
    """Check the chunk's signatures by ``keys`` on the pool's threads and this one.

    Each thread spends nearly all its time inside libsodium, which releases the GIL, so the
    threads do not queue for it (they would behind a thread running Python code).
    """
    tasks = _signature_tasks(chunk, keys)
    step = -(-len(tasks) // (workers + 1)) or 1
    slices = [tasks[i : i + step] for i in range(0, len(tasks), step)]
    futures = [pool.submit(_verify_all, part) for part in slices[1:]]
    outcomes = _verify_all(slices[0]) if slices else []
    for future in futures:
        outcomes.extend(future.result())
    return _Checked(keys, outcomes)


def _send_checks(
    chunk: Sequence[SignedEntry], keys: Mapping[str, PublicKey], checkers: Checkers
) -> Callable[[], _Checked]:
    """Send the chunk's signatures by ``keys`` to ``checkers``; the result gives their
    :class:`_Checked` once they are done (or nothing checked, should a checker fail)."""
    checks = [
        (key.alg, key.raw, signature.alg, signature.signing_input, signature.signature)
        for key, signature in _signature_tasks(chunk, keys)
    ]
    outcomes = checkers.submit(checks)

    def checked() -> _Checked:
        answer = outcomes()
        return _NOTHING_CHECKED if answer is None else _Checked(keys, [b == 1 for b in answer])

    return checked


class _Folding:
    """The successor of ``base`` being built by one :meth:`TrustState.apply` or ``apply_many``.

    Mutable and private to that call: the issuers, verifiers and event ids an entry changes
    collect in plain dicts (an issuer's key map is copied from ``base`` once, then updated in
    place) and :meth:`freeze` merges them into ``base``'s persistent maps in one pass. A call
    that raises drops it, so ``base`` and every state before it stay as they were. Every check
    of an entry is here, once, for both ways of folding.
    """

    __slots__ = (
        "_checked",
        "_cursor",
        "_hashed",
        "base",
        "event_ids",
        "governance",
        "governance_kids",
        "issuers",
        "size",
        "stack",
        "verifiers",
    )

    def __init__(
        self,
        base: TrustState,
        hashed: Callable[[], tuple[int, tuple[bytes, ...]]] | None = None,
    ) -> None:
        self.base = base
        self._hashed = hashed
        self.governance = base._governance
        self.governance_kids = base._governance_kids
        self.size = base._size
        self.stack = list(base._range)
        self.issuers: dict[str, dict[str, IssuerKey]] = {}
        self.verifiers: dict[str, AccreditedVerifier] = {}
        self.event_ids: dict[str, int] = {}
        self._checked: _Checked | None = None
        self._cursor = 0

    def expect(self, checked: _Checked) -> None:
        """Outcomes for the entries about to be added (see :func:`_preverify`)."""
        self._checked = checked
        self._cursor = 0

    def freeze(self) -> TrustState:
        base = self.base
        if self.size == base._size:
            return base
        state = object.__new__(TrustState)
        state._governance = self.governance
        state._governance_kids = self.governance_kids
        state._issuers = base._issuers.update(self.issuers)
        state._verifiers = base._verifiers.update(self.verifiers)
        state._event_ids = base._event_ids.update(self.event_ids)
        state._size = self.size
        if self._hashed is None:
            state._range = tuple(self.stack)
        else:
            size, state._range = self._hashed()
            if size != self.size or len(state._range) != size.bit_count():
                raise UsageError(ReasonCode.INDEX_OUT_OF_RANGE, "hashed leaves do not match")
        return state

    def add(self, entry: SignedEntry) -> None:
        """Fold ``entry``; raises with its reason code and log index."""
        if not isinstance(entry, SignedEntry):
            raise UsageError(ReasonCode.MALFORMED_INPUT, "apply needs a SignedEntry")
        event = entry.event
        try:
            if event.id in self.event_ids or event.id in self.base._event_ids:
                raise VerificationError(
                    ReasonCode.REGISTRY_ENTRY_DUPLICATE, "event id already in the log"
                )
            self._check_signatures(entry)
            if isinstance(event, IssuerKeyAdd | IssuerKeyRetire | IssuerKeyRevoke):
                self._fold_issuer(event)
            elif isinstance(event, VerifierAdd | VerifierRevoke):
                self._fold_verifier(event)
            else:
                self._fold_governance(event)
        except CivicError as error:
            # The same class and reason, with the log index for operators.
            raise type(error)(error.reason, f"entry {self.size}: {error.detail}") from None
        index = self.size
        self.event_ids[event.id] = index
        self.size = index + 1
        if self._hashed is None:
            digest, stack = entry.leaf_hash(), self.stack
            while index & 1:
                digest = node_hash(stack.pop(), digest)
                index >>= 1
            stack.append(digest)

    def _check_signatures(self, entry: SignedEntry) -> None:
        keys = self.governance.keys
        checked = self._checked
        valid = 0
        for signature in entry._signatures:
            # Consume this signature's outcome, if it has one, whatever happens to it next.
            checked_key: PublicKey | None = None
            outcome = False
            if checked is not None:
                checked_key = checked.keys.get(signature.kid)
                if checked_key is not None:
                    outcome = checked.outcomes[self._cursor]
                    self._cursor += 1
            key = keys.get(signature.kid)
            if key is None:
                continue
            # The governance keys may have changed since the chunk was checked.
            ok = outcome if key is checked_key else _verify_signature(key, signature)
            if not ok:
                raise VerificationError(
                    ReasonCode.GOVERNANCE_SIGNATURE_INVALID,
                    f"governance signature by {signature.kid!r} does not verify",
                )
            # Kids within an entry are distinct (parsing) and so are the keys of distinct
            # governance kids (GovernanceConfig, governance.key.add): counting valid signatures
            # counts distinct keys.
            valid += 1
        if valid < self.governance.quorum:
            raise VerificationError(
                ReasonCode.GOVERNANCE_QUORUM_NOT_MET,
                f"{valid} valid governance signatures, {self.governance.quorum} needed",
            )

    def _fold_governance(self, event: GovernanceKeyAdd | GovernanceKeyRemove) -> None:
        keys = dict(self.governance.keys)
        if isinstance(event, GovernanceKeyAdd):
            if event.kid in self.governance_kids:
                raise VerificationError(ReasonCode.DUPLICATE_KID, "governance kid already used")
            if event.public_key in set(keys.values()):
                raise VerificationError(
                    ReasonCode.DUPLICATE_KID, "key is already a governance key under another kid"
                )
            keys[event.kid] = event.public_key
        else:
            if event.kid not in keys:
                raise VerificationError(ReasonCode.KEY_UNKNOWN, "no current governance key kid")
            del keys[event.kid]
        quorum = event.quorum if event.quorum is not None else self.governance.quorum
        if quorum > len(keys):
            raise VerificationError(
                ReasonCode.GOVERNANCE_QUORUM_NOT_MET,
                f"{len(keys)} governance keys would remain for a quorum of {quorum}",
            )
        self.governance = GovernanceConfig(keys, quorum)
        self.governance_kids = self.governance_kids | {event.kid}

    def _issuer_keys(self, issuer: str) -> dict[str, IssuerKey] | None:
        """The issuer's key map owned by this folding (copied from ``base`` on first use)."""
        keys = self.issuers.get(issuer)
        if keys is None:
            known = self.base._issuers.get(issuer)
            if known is not None:
                keys = self.issuers[issuer] = dict(known)
        return keys

    def _fold_issuer(self, event: IssuerKeyAdd | IssuerKeyRetire | IssuerKeyRevoke) -> None:
        keys = self._issuer_keys(event.issuer)
        if isinstance(event, IssuerKeyAdd):
            if keys is None:
                keys = self.issuers[event.issuer] = {}
            elif event.kid in keys:
                raise VerificationError(ReasonCode.DUPLICATE_KID, "issuer already has this kid")
            keys[event.kid] = IssuerKey(
                event.issuer,
                event.kid,
                event.public_key,
                event.vct,
                event.status_base_url,
                event.not_before,
                event.not_after,
                self.size,
            )
            return
        if keys is None:
            raise VerificationError(ReasonCode.ISSUER_UNKNOWN, "issuer is not in the registry")
        key = keys.get(event.kid)
        if key is None:
            raise VerificationError(ReasonCode.KEY_UNKNOWN, "issuer has no key with this kid")
        if key.revoked_at is not None:
            raise VerificationError(ReasonCode.KEY_REVOKED, "issuer key is already revoked")
        if isinstance(event, IssuerKeyRetire):
            if key.retired_at is not None:
                raise VerificationError(ReasonCode.KEY_RETIRED, "issuer key is already retired")
            keys[event.kid] = replace(key, retired_at=event.retired_at, retired_index=self.size)
        else:
            keys[event.kid] = replace(key, revoked_at=event.revoked_at, revoked_index=self.size)

    def _fold_verifier(self, event: VerifierAdd | VerifierRevoke) -> None:
        known = self.verifiers.get(event.verifier)
        if known is None:
            known = self.base._verifiers.get(event.verifier)
        if isinstance(event, VerifierAdd):
            if known is not None and event.kid in known.kids:
                raise VerificationError(ReasonCode.DUPLICATE_KID, "verifier already used this kid")
            self.verifiers[event.verifier] = AccreditedVerifier(
                verifier=event.verifier,
                kid=event.kid,
                public_key=event.public_key,
                purpose=event.purpose,
                allowed=event.allowed,
                not_before=event.not_before,
                not_after=event.not_after,
                added_index=self.size,
                kids=(known.kids if known is not None else frozenset()) | {event.kid},
            )
            return
        if known is None:
            raise VerificationError(ReasonCode.VERIFIER_UNKNOWN, "verifier is not in the registry")
        if known.revoked_at is not None:
            raise VerificationError(ReasonCode.VERIFIER_REVOKED, "verifier is already revoked")
        self.verifiers[event.verifier] = replace(
            known, revoked_at=event.revoked_at, revoked_index=self.size
        )


class TrustState:
    """The registry's entries folded into queryable trust (docs/registry.md).

    Immutable: :meth:`apply` returns a new state and leaves this one as it was, sharing all
    unchanged structure, so a caller that hits an error keeps its previous state for free.
    """

    __slots__ = (
        "_event_ids",
        "_governance",
        "_governance_kids",
        "_issuers",
        "_range",
        "_size",
        "_verifiers",
    )

    _governance: GovernanceConfig
    _governance_kids: frozenset[str]
    _issuers: _PersistentMap[str, Mapping[str, IssuerKey]]
    _verifiers: _PersistentMap[str, AccreditedVerifier]
    _event_ids: _PersistentMap[str, int]
    _size: int
    _range: tuple[bytes, ...]

    def __init__(self) -> None:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "use TrustState.genesis(config)")

    @classmethod
    def genesis(cls, config: GovernanceConfig) -> TrustState:
        if not isinstance(config, GovernanceConfig):
            raise UsageError(ReasonCode.MALFORMED_INPUT, "genesis needs a GovernanceConfig")
        state = object.__new__(cls)
        state._governance = config
        state._governance_kids = frozenset(config.keys)
        state._issuers = _PersistentMap()
        state._verifiers = _PersistentMap()
        state._event_ids = _PersistentMap()
        state._size = 0
        state._range = ()
        return state

    # -- reading ----------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of entries folded."""
        return self._size

    @property
    def root(self) -> bytes:
        """RFC 9162 root of the folded entries' leaves."""
        return compact_range_root(self._range)

    @property
    def compact_range(self) -> tuple[bytes, ...]:
        return self._range

    @property
    def governance(self) -> GovernanceConfig:
        """The current governance keys and quorum."""
        return self._governance

    def issuer_key(self, issuer: str, kid: str) -> IssuerKey | None:
        keys = self._issuers.get(issuer)
        return None if keys is None else keys.get(kid)

    def issuer_keys(self, issuer: str) -> tuple[IssuerKey, ...]:
        keys = self._issuers.get(issuer)
        return () if keys is None else tuple(sorted(keys.values(), key=lambda k: k.added_index))

    def issuers(self) -> tuple[IssuerKey, ...]:
        """Every issuer key, by issuer then in the order added."""
        keys = [key for _, by_kid in self._issuers.items() for key in by_kid.values()]
        return tuple(sorted(keys, key=lambda k: (k.issuer, k.added_index)))

    def verifier(self, client_id: str) -> AccreditedVerifier | None:
        return self._verifiers.get(client_id)

    def verifiers(self) -> tuple[AccreditedVerifier, ...]:
        return tuple(sorted((v for _, v in self._verifiers.items()), key=lambda v: v.verifier))

    def check_issuer_key(
        self, issuer: str, kid: str, vct: str, issued_at: int | None, now: int
    ) -> IssuerKey:
        """The key if a credential of ``vct`` issued at ``issued_at`` may be trusted ``now``.

        A credential without ``iat`` cannot show it predates a retirement.
        """
        keys = self._issuers.get(issuer)
        if keys is None:
            raise VerificationError(ReasonCode.ISSUER_UNKNOWN, "issuer is not accredited")
        key = keys.get(kid)
        if key is None:
            raise VerificationError(ReasonCode.KEY_UNKNOWN, "issuer has no key with this kid")
        if key.revoked_at is not None:
            raise VerificationError(ReasonCode.KEY_REVOKED, "issuer key is revoked")
        if vct not in key.vct:
            raise VerificationError(
                ReasonCode.KEY_NOT_ACCREDITED_FOR_VCT, "issuer key is not accredited for this vct"
            )
        if not key.not_before <= now <= key.not_after:
            raise VerificationError(
                ReasonCode.KEY_OUTSIDE_WINDOW, "issuer key is outside its validity window"
            )
        if key.retired_at is not None and (issued_at is None or issued_at >= key.retired_at):
            raise VerificationError(
                ReasonCode.KEY_RETIRED, "credential issued after the key was retired"
            )
        return key

    def check_verifier_request(
        self,
        client_id: str,
        vct: str,
        claim_paths: Iterable[Sequence[ClaimPathComponent]],
        now: int,
    ) -> AccreditedVerifier:
        """The verifier if it may ask for these claims of ``vct`` now."""
        verifier = self._verifiers.get(client_id)
        if verifier is None:
            raise VerificationError(ReasonCode.VERIFIER_UNKNOWN, "verifier is not accredited")
        if verifier.revoked_at is not None:
            raise VerificationError(ReasonCode.VERIFIER_REVOKED, "verifier is revoked")
        if not verifier.not_before <= now <= verifier.not_after:
            raise VerificationError(
                ReasonCode.KEY_OUTSIDE_WINDOW, "verifier is outside its validity window"
            )
        allowed = verifier.allowed_for(vct)
        if allowed is None:
            raise VerificationError(
                ReasonCode.VERIFIER_CLAIMS_NOT_ACCREDITED, "verifier may not request this vct"
            )
        for path in claim_paths:
            if not allowed.covers(tuple(path)):
                raise VerificationError(
                    ReasonCode.VERIFIER_CLAIMS_NOT_ACCREDITED,
                    "verifier may not request a claim it asked for",
                )
        return verifier

    def to_json(self) -> dict[str, Any]:
        """A summary for display: governance, issuer keys, verifiers (public data only)."""
        return {
            "size": self._size,
            "root": b64std_encode(self.root),
            "governance": self._governance.to_json(),
            "issuers": [key.to_json() for key in self.issuers()],
            "verifiers": [verifier.to_json() for verifier in self.verifiers()],
        }

    # -- folding ----------------------------------------------------------------------------

    def apply(self, entry: SignedEntry) -> TrustState:
        """The state after ``entry``; raises with the entry's reason code, changing nothing."""
        folding = _Folding(self)
        folding.add(entry)
        return folding.freeze()

    def apply_many(
        self, entries: Iterable[SignedEntry], *, workers: int | None = None
    ) -> TrustState:
        """Fold entries in order: the same result and errors as chained :meth:`apply`, faster.

        ``entries`` is consumed lazily, a chunk at a time. The signatures by the current
        governance keys are checked ahead of folding by ``workers`` helpers (default: one per
        further CPU, at most 7; 0 checks them inline): for a fold of at least
        ``_PROCESS_MIN_ENTRIES`` (``entries`` sized, or a log sync that knows its count) they
        are processes, which check batch after batch while this thread parses and folds;
        otherwise threads, which check each chunk together with this thread before it is
        folded. Should the governance keys change inside a chunk, an entry signed by a key
        other than the one checked verifies inline. No intermediate state is built: the new
        issuers, verifiers and event ids join the persistent maps once, at the end.
        """
        expected = len(entries) if isinstance(entries, Sized) else None
        return self._apply_many(entries, workers, None, expected)

    def _apply_many(
        self,
        entries: Iterable[SignedEntry],
        workers: int | None,
        hashed: Callable[[], tuple[int, tuple[bytes, ...]]] | None,
        expected: int | None,
    ) -> TrustState:
        """:meth:`apply_many`; ``hashed`` is for a caller that hashes the leaves anyway.

        ``hashed()`` gives the tree size and compact range of ``self``'s leaves plus every
        entry taken from ``entries`` (civic.logsync hashes them to check the log's root):
        the folding then leaves the Merkle hashing to it. ``expected`` is how many entries
        ``entries`` will give, when known.
        """
        workers = _default_workers() if workers is None else workers
        folding = _Folding(self, hashed)
        iterator = iter(entries)
        if workers >= 1 and expected is not None and expected >= _PROCESS_MIN_ENTRIES:
            _fold_pipelined(folding, iterator, workers)
            return folding.freeze()
        chunk = list(islice(iterator, _CHUNK))
        if workers < 1 or len(chunk) < _CHUNK // 4:
            for entry in chain(chunk, iterator):
                folding.add(entry)
            return folding.freeze()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="civic-trust") as pool:
            while chunk:
                folding.expect(_preverify(chunk, folding.governance.keys, pool, workers))
                for entry in chunk:
                    folding.add(entry)
                chunk = list(islice(iterator, _CHUNK))
        return folding.freeze()

    def __repr__(self) -> str:
        return f"TrustState(size={self._size}, root={b64std_encode(self.root)})"


def _fold_pipelined(folding: _Folding, entries: Iterator[SignedEntry], workers: int) -> None:
    """Fold ``entries`` while ``workers`` checker processes (civic.sigcheck) check ahead.

    This thread takes batch k+2 from ``entries`` (parsing it) and folds batch k while the
    checkers work on batch k+1. Batches are checked with the governance keys current when they
    were sent; :meth:`_Folding._check_signatures` checks inline any signature whose key has
    changed since, and every signature of a batch whose checker failed.
    """
    ahead: deque[tuple[list[SignedEntry], Callable[[], _Checked]]] = deque()
    with Checkers(workers) as checkers:
        while True:
            while len(ahead) < _PIPELINE_DEPTH:
                batch = list(islice(entries, _PROCESS_CHUNK))
                if not batch:
                    break
                keys = folding.governance.keys
                ahead.append((batch, _send_checks(batch, keys, checkers)))
            if not ahead:
                return
            batch, checked = ahead.popleft()
            folding.expect(checked())
            for entry in batch:
                folding.add(entry)
