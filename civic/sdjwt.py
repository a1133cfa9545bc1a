"""Selective Disclosure for JWTs (RFC 9901): issuance, holder presentation, verification.

Issuance (RFC 9901 section 4) takes claims in which selectively disclosable parts are wrapped in
:class:`SD`: an object member whose *key* is ``SD("name")``, or an array element ``SD(value)``.
Wrapped values may themselves contain :class:`SD` (recursive disclosures, section 4.2.6). Each
object with disclosable members also receives decoy digests (section 4.2.5), and ``_sd`` arrays
are sorted so that digest order reveals nothing about claim order.

Presentation (section 5) keeps the disclosures that reveal the requested claim paths (and every
disclosure on the way to them) and appends a Key Binding JWT (section 4.3) over ``sd_hash``.

Verification follows section 7.1 and 7.3 and is split into stages so that a verifier can report
each one as a check: :func:`parse_sd_jwt`, :func:`verify_issuer_signature`,
:func:`check_validity_window`, :func:`process_disclosures`, :func:`verify_key_binding`.
:func:`verify_sd_jwt` runs them all.

A claim path is a tuple of object keys (``str``) and array positions (``int``), as in
OpenID4VP's claims path pointers without wildcards.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any, NamedTuple

from civic.clock import Clock, RandomBytes, random_below, system_clock, system_random
from civic.encoding import (
    MAX_JSON_DEPTH,
    b64url_decode_py,
    b64url_encode,
    json_dumps,
    json_loads_py,
    speedups,
)
from civic.errors import MalformedError, ReasonCode, UsageError, VerificationError
from civic.jose import (
    Jws,
    PublicKey,
    Signer,
    check_header,
    parse_jws,
    public_key_from_jwk,
    sign_jwt,
)

ClaimPath = tuple[str | int, ...]

SD_ALG = "sha-256"
KB_JWT_TYP = "kb+jwt"
MAX_PRESENTATION_LENGTH = 256 * 1024
MAX_DISCLOSURES = 1024
MAX_CLAIM_DEPTH = MAX_JSON_DEPTH
"""Deepest nesting of processed claims, counting the levels that disclosures add: each
disclosure is bounded as JSON, but a chain of them (a value holding the next one's digest)
is bounded only here."""
_RESERVED_NAMES = frozenset({"_sd", "..."})
_SALT_BYTES = 16  # 128 bits, as RFC 9901 section 9.3 recommends
_STD_TO_URL = bytes.maketrans(b"+/", b"-_")


@dataclass(frozen=True, slots=True)
class SD:
    """Marks a claim selectively disclosable: a dict key ``SD("name")`` or an element ``SD(v)``."""

    value: Any


def _sha256_b64url(text: str) -> str:
    # A SHA-256 digest is 32 bytes: 43 base64 characters and one '=' of padding.
    encoded = binascii.b2a_base64(sha256(text.encode("ascii")).digest(), newline=False)
    return encoded[:43].translate(_STD_TO_URL).decode("ascii")


def disclosure_digest(disclosure: str) -> str:
    """Digest of a disclosure as sent (section 4.2.3): base64url(SHA-256(ASCII of the string))."""
    return _sha256_b64url(disclosure)


def sd_hash(presentation_prefix: str) -> str:
    """Hash bound into the KB-JWT: over everything up to and including the last ``~``."""
    return _sha256_b64url(presentation_prefix)


# --- issuance ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Issuance:
    random: RandomBytes
    decoys: tuple[int, int]
    disclosures: list[str] = field(default_factory=list)

    def salt(self) -> str:
        return b64url_encode(self.random(_SALT_BYTES))

    def disclose(self, content: list[Any]) -> str:
        encoded = b64url_encode(json_dumps(content).encode("utf-8"))
        self.disclosures.append(encoded)
        return disclosure_digest(encoded)

    def decoy_digests(self) -> list[str]:
        low, high = self.decoys
        count = low + random_below(high - low + 1, self.random) if high > low else low
        return [
            b64url_encode(hashlib.sha256(self.random(_SALT_BYTES)).digest()) for _ in range(count)
        ]

    def encode(self, value: Any) -> Any:
        if isinstance(value, dict):
            return self._encode_object(value)
        if isinstance(value, list):
            return [self._encode_element(item) for item in value]
        if isinstance(value, SD):
            raise UsageError(ReasonCode.MALFORMED_INPUT, "SD() wraps an object key or an element")
        return value

    def _encode_element(self, item: Any) -> Any:
        if isinstance(item, SD):
            return {"...": self.disclose([self.salt(), self.encode(item.value)])}
        return self.encode(item)

    def _encode_object(self, obj: Mapping[Any, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        digests: list[str] = []
        for key, value in obj.items():
            if isinstance(key, SD):
                name = key.value
                if not isinstance(name, str) or name in _RESERVED_NAMES:
                    raise UsageError(ReasonCode.RESERVED_CLAIM_NAME, "invalid disclosable name")
                digests.append(self.disclose([self.salt(), name, self.encode(value)]))
            elif isinstance(key, str):
                if key in _RESERVED_NAMES:
                    raise UsageError(ReasonCode.RESERVED_CLAIM_NAME, f"claim name {key!r}")
                out[key] = self.encode(value)
            else:
                raise UsageError(ReasonCode.MALFORMED_INPUT, "claim names must be strings")
        if digests:
            digests.extend(self.decoy_digests())
            out["_sd"] = sorted(digests)
        return out


def issue_sd_jwt(
    claims: Mapping[Any, Any],
    signer: Signer,
    *,
    header: Mapping[str, Any],
    holder_key: PublicKey | None = None,
    decoys: tuple[int, int] = (1, 4),
    random: RandomBytes = system_random,
) -> str:
    """Sign an SD-JWT: ``<issuer-JWS>~<disclosure>~...~``.

    ``decoys`` is the inclusive range of decoy digests added to each object that has
    disclosable members. ``holder_key`` becomes ``cnf.jwk`` (RFC 7800) for key binding.
    """
    issuance = _Issuance(random=random, decoys=decoys)
    payload = issuance.encode(dict(claims))
    if "_sd_alg" in payload or ("cnf" in payload and holder_key is not None):
        raise UsageError(ReasonCode.RESERVED_CLAIM_NAME, "_sd_alg and cnf are set by the issuer")
    payload["_sd_alg"] = SD_ALG
    if holder_key is not None:
        payload["cnf"] = {"jwk": holder_key.to_jwk()}
    jws = sign_jwt(header, payload, signer)
    return "~".join([jws, *issuance.disclosures, ""])


# --- parsing -------------------------------------------------------------------------------


class Disclosure(NamedTuple):
    """One decoded disclosure: ``name`` is ``None`` for an array element."""

    encoded: str
    digest: str
    salt: str
    name: str | None
    value: Any


class ParsedSdJwt(NamedTuple):
    """An SD-JWT or SD-JWT+KB split into its parts. Nothing is verified yet."""

    jws: Jws
    payload: dict[str, Any]
    disclosures: tuple[Disclosure, ...]
    kb_jwt: str | None
    presentation_prefix: str  # up to and including the last '~': the input of sd_hash


def parse_disclosure(encoded: str) -> Disclosure:
    return _parse_disclosures((encoded,))[0]


def parse_disclosures_py(encoded_disclosures: Iterable[str]) -> tuple[Disclosure, ...]:
    # One loop for all of a presentation's disclosures: per disclosure, the ASCII bytes serve
    # both the base64url decode and the digest.
    parsed: list[Disclosure] = []
    for encoded in encoded_disclosures:
        if not encoded:
            raise MalformedError(ReasonCode.MALFORMED_DISCLOSURE, "empty disclosure")
        try:
            ascii_bytes = encoded.encode("ascii")
        except UnicodeEncodeError:
            raise MalformedError(ReasonCode.MALFORMED_DISCLOSURE, "non-ASCII base64url") from None
        try:
            content = json_loads_py(b64url_decode_py(ascii_bytes))
        except MalformedError as exc:
            raise MalformedError(ReasonCode.MALFORMED_DISCLOSURE, exc.detail) from None
        size = len(content) if type(content) is list else 0
        if size == 3:
            salt, name, value = content
            if type(salt) is not str:
                raise MalformedError(
                    ReasonCode.MALFORMED_DISCLOSURE, "disclosure salt is not a string"
                )
            if type(name) is not str:
                raise MalformedError(ReasonCode.MALFORMED_DISCLOSURE, "claim name is not a string")
            if name in _RESERVED_NAMES:
                raise MalformedError(
                    ReasonCode.RESERVED_CLAIM_NAME, f"disclosed claim name {name!r}"
                )
        elif size == 2:
            salt, value = content
            name = None
            if type(salt) is not str:
                raise MalformedError(
                    ReasonCode.MALFORMED_DISCLOSURE, "disclosure salt is not a string"
                )
        else:
            raise MalformedError(
                ReasonCode.MALFORMED_DISCLOSURE, "disclosure is not a 2 or 3 array"
            )
        # base64url(SHA-256) as in _sha256_b64url, from the bytes already at hand.
        digest = binascii.b2a_base64(sha256(ascii_bytes).digest(), newline=False)
        parsed.append(
            Disclosure(
                encoded, digest[:43].translate(_STD_TO_URL).decode("ascii"), salt, name, value
            )
        )
    return tuple(parsed)


_parse_disclosures: Callable[[Sequence[str]], tuple[Disclosure, ...]] = parse_disclosures_py
if speedups is not None:  # the C version of parse_disclosures_py (civic/_speedups.c)
    speedups.configure_disclosures(Disclosure, _RESERVED_NAMES, VerificationError)
    _parse_disclosures = speedups.parse_disclosures


def parse_sd_jwt(text: str) -> ParsedSdJwt:
    """Split ``<JWS>~<D1>~...~<Dn>~[<KB-JWT>]`` (RFC 9901 section 4)."""
    if not isinstance(text, str):
        raise MalformedError(ReasonCode.MALFORMED_SD_JWT, "SD-JWT is not a string")
    if len(text) > MAX_PRESENTATION_LENGTH:
        raise MalformedError(ReasonCode.INPUT_TOO_LARGE, "SD-JWT longer than the limit")
    first = text.find("~")
    if first < 0:
        raise MalformedError(ReasonCode.MALFORMED_SD_JWT, "SD-JWT has no '~' separator")
    # Only the part after the issuer JWS is split: the JWS is most of the text.
    parts = text[first + 1 :].split("~")  # disclosures, then the KB-JWT or ""
    if len(parts) - 1 > MAX_DISCLOSURES:
        raise MalformedError(ReasonCode.INPUT_TOO_LARGE, "too many disclosures")
    try:
        jws = parse_jws(text[:first])
        payload = jws.payload_json()
    except MalformedError as exc:
        raise MalformedError(exc.reason, f"issuer-signed JWT: {exc.detail}") from None
    kb_jwt = parts.pop() or None
    disclosures = _parse_disclosures(parts)
    return ParsedSdJwt(jws, payload, disclosures, kb_jwt, text[: text.rfind("~") + 1])


# --- verification stages -------------------------------------------------------------------


def verify_issuer_signature(
    parsed: ParsedSdJwt, key: PublicKey, *, typ: str | None, understood_crit: Iterable[str] = ()
) -> None:
    """Section 7.1 step 2: the issuer-signed JWT, with the algorithm pinned to ``key``."""
    check_header(parsed.jws.header, key, typ=typ, understood_crit=understood_crit)
    if not key.verify(parsed.jws.signing_input, parsed.jws.signature):
        raise VerificationError(ReasonCode.SIGNATURE_INVALID, "issuer signature does not verify")


def _numeric_date(payload: Mapping[str, Any], name: str) -> int | float | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedError(ReasonCode.MALFORMED_SD_JWT, f"{name} is not a NumericDate")
    return value


def check_validity_window(payload: Mapping[str, Any], *, now: int, skew: int) -> None:
    """``exp``, ``nbf`` and ``iat`` against ``now``, allowing ``skew`` seconds of clock drift."""
    exp = _numeric_date(payload, "exp")
    if exp is not None and now - skew >= exp:
        raise VerificationError(ReasonCode.EXPIRED, "credential has expired")
    nbf = _numeric_date(payload, "nbf")
    if nbf is not None and now + skew < nbf:
        raise VerificationError(ReasonCode.NOT_YET_VALID, "credential is not yet valid")
    iat = _numeric_date(payload, "iat")
    if iat is not None and now + skew < iat:
        raise VerificationError(ReasonCode.IAT_IN_FUTURE, "credential issued in the future")


class ProcessedClaims(NamedTuple):
    """The payload with disclosures substituted (section 7.1 step 3) and their claim paths."""

    claims: dict[str, Any]
    disclosed: tuple[ClaimPath, ...]


class _Resolver:
    __slots__ = ("by_digest", "digests", "disclosed", "seen")

    def __init__(self, disclosures: Sequence[Disclosure]) -> None:
        self.by_digest = {disclosure.digest: disclosure for disclosure in disclosures}
        if len(self.by_digest) != len(disclosures):
            raise VerificationError(ReasonCode.DISCLOSURE_DUPLICATE, "disclosure sent twice")
        self.seen: set[str] = set()
        self.disclosed: list[ClaimPath] = []
        self.digests: list[str] = []  # parallel to ``disclosed``

    def _lookup(self, digest: object) -> Disclosure | None:
        if not isinstance(digest, str):
            raise MalformedError(ReasonCode.MALFORMED_SD_JWT, "digest is not a string")
        if digest in self.seen:
            raise VerificationError(ReasonCode.DIGEST_DUPLICATE, "digest appears twice")
        self.seen.add(digest)
        return self.by_digest.get(digest)

    def value(self, node: Any, path: ClaimPath) -> Any:
        kind = type(node)
        if kind is dict:
            return self.object(node, path)
        if kind is list:
            return self.array(node, path)
        return node

    def object(self, node: dict[str, Any], path: ClaimPath) -> dict[str, Any]:
        if len(path) >= MAX_CLAIM_DEPTH:
            raise MalformedError(ReasonCode.NESTING_TOO_DEEP, "claims nested too deeply")
        # Scalars are most of a payload: copied in one go, then containers replaced in order.
        out = node.copy()
        for key, value in node.items():
            kind = type(value)
            if kind is dict or kind is list:
                if key in _RESERVED_NAMES:
                    if key == "_sd":
                        continue
                    raise MalformedError(
                        ReasonCode.MALFORMED_SD_JWT, "'...' outside an array element"
                    )
                out[key] = (
                    self.object(value, (*path, key))
                    if kind is dict
                    else self.array(value, (*path, key))
                )
            elif key == "...":
                raise MalformedError(ReasonCode.MALFORMED_SD_JWT, "'...' outside an array element")
        digests = out.pop("_sd", None)
        if digests is None:
            return out
        if not isinstance(digests, list):
            raise MalformedError(ReasonCode.MALFORMED_SD_JWT, "_sd is not an array")
        # _lookup, inlined: an object's _sd array is the bulk of all digests.
        seen, by_digest = self.seen, self.by_digest
        for digest in digests:
            if not isinstance(digest, str):
                raise MalformedError(ReasonCode.MALFORMED_SD_JWT, "digest is not a string")
            if digest in seen:
                raise VerificationError(ReasonCode.DIGEST_DUPLICATE, "digest appears twice")
            seen.add(digest)
            disclosure = by_digest.get(digest)
            if disclosure is None:
                continue  # undisclosed claim or decoy
            name = disclosure.name
            if name is None:
                raise VerificationError(
                    ReasonCode.MALFORMED_DISCLOSURE, "array-element disclosure used for an object"
                )
            if name in out:
                raise VerificationError(ReasonCode.CLAIM_NAME_COLLISION, f"claim {name!r} twice")
            claim_path = (*path, name)
            self.disclosed.append(claim_path)
            self.digests.append(digest)
            value = disclosure.value
            kind = type(value)
            out[name] = (
                value if kind is not dict and kind is not list else self.value(value, claim_path)
            )
        return out

    def array(self, node: list[Any], path: ClaimPath) -> list[Any]:
        if len(path) >= MAX_CLAIM_DEPTH:
            raise MalformedError(ReasonCode.NESTING_TOO_DEEP, "claims nested too deeply")
        out: list[Any] = []
        for item in node:
            if isinstance(item, dict) and "..." in item:
                if len(item) != 1:
                    raise MalformedError(ReasonCode.MALFORMED_SD_JWT, "'...' with other members")
                disclosure = self._lookup(item["..."])
                if disclosure is None:
                    continue
                if disclosure.name is not None:
                    raise VerificationError(
                        ReasonCode.MALFORMED_DISCLOSURE, "object disclosure used for an element"
                    )
                element_path = (*path, len(out))
                self.disclosed.append(element_path)
                self.digests.append(disclosure.digest)
                out.append(self.value(disclosure.value, element_path))
            else:
                out.append(self.value(item, (*path, len(out))))
        return out


def resolve_disclosures_py(
    payload: dict[str, Any], disclosures: tuple[Disclosure, ...]
) -> tuple[dict[str, Any], list[ClaimPath], list[str]]:
    """The payload with every referenced disclosure substituted, the claim path of each
    disclosure found, and its digest (parallel lists, in the order found)."""
    resolver = _Resolver(disclosures)
    claims = resolver.object(payload, ())
    return claims, resolver.disclosed, resolver.digests


_resolve_disclosures: Callable[
    [dict[str, Any], tuple[Disclosure, ...]], tuple[dict[str, Any], list[ClaimPath], list[str]]
] = resolve_disclosures_py
if speedups is not None:  # the C version of resolve_disclosures_py (civic/_speedups.c)
    _resolve_disclosures = speedups.resolve_disclosures


def process_disclosures(parsed: ParsedSdJwt) -> ProcessedClaims:
    """Substitute disclosures into the payload, rejecting duplicates and unreferenced ones."""
    sd_alg = parsed.payload.get("_sd_alg", SD_ALG)
    if sd_alg != SD_ALG:
        raise VerificationError(ReasonCode.SD_ALG_UNSUPPORTED, "only sha-256 digests")
    claims, disclosed, _ = _resolve_disclosures(parsed.payload, parsed.disclosures)
    claims.pop("_sd_alg", None)
    # Digests and disclosures are unique, so each disclosure found was recorded once.
    if len(disclosed) != len(parsed.disclosures):
        raise VerificationError(
            ReasonCode.DISCLOSURE_UNREFERENCED, "a disclosure is not referenced by any digest"
        )
    return ProcessedClaims(claims, tuple(disclosed))


@dataclass(frozen=True, slots=True)
class KeyBindingExpectation:
    """What the verifier requires of the Key Binding JWT (RFC 9901 section 7.3)."""

    audience: str
    nonce: str
    max_age: int = 300
    consume_nonce: Callable[[str], bool] | None = None
    """Records the nonce as used; returns False if it was used before (single use)."""


def holder_key_of(payload: Mapping[str, Any]) -> PublicKey:
    cnf = payload.get("cnf")
    if not isinstance(cnf, dict) or "jwk" not in cnf:
        raise VerificationError(ReasonCode.CNF_MISSING, "no cnf.jwk holder key")
    return public_key_from_jwk(cnf["jwk"])


def verify_key_binding(
    parsed: ParsedSdJwt,
    holder_key: PublicKey,
    expected: KeyBindingExpectation,
    *,
    now: int,
    skew: int,
) -> dict[str, Any]:
    """Section 7.3: typ, signature by ``cnf``, iat freshness, aud, nonce, sd_hash; then spend the
    nonce. Returns the KB-JWT claims."""
    if parsed.kb_jwt is None:
        raise VerificationError(ReasonCode.KB_JWT_MISSING, "key binding JWT required")
    try:
        kb = parse_jws(parsed.kb_jwt)
        claims = kb.payload_json()
    except MalformedError as exc:
        raise MalformedError(ReasonCode.KB_JWT_MALFORMED, exc.detail) from None
    try:
        check_header(kb.header, holder_key, typ=KB_JWT_TYP)
    except VerificationError as exc:
        reason = ReasonCode.KB_JWT_TYP if exc.reason is ReasonCode.TYP_MISMATCH else exc.reason
        raise VerificationError(reason, f"key binding JWT: {exc.detail}") from None
    if not holder_key.verify(kb.signing_input, kb.signature):
        raise VerificationError(ReasonCode.KB_JWT_SIGNATURE_INVALID, "not signed by the cnf key")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        raise MalformedError(ReasonCode.KB_JWT_MALFORMED, "KB-JWT iat missing")
    if iat > now + skew:
        raise VerificationError(ReasonCode.KB_JWT_IAT_IN_FUTURE, "KB-JWT issued in the future")
    if iat < now - expected.max_age - skew:
        raise VerificationError(ReasonCode.KB_JWT_IAT_STALE, "KB-JWT too old")
    aud = claims.get("aud")
    if not isinstance(aud, str) or not hmac.compare_digest(
        aud.encode("utf-8"), expected.audience.encode("utf-8")
    ):
        raise VerificationError(ReasonCode.KB_JWT_AUD_MISMATCH, "KB-JWT aud is not this verifier")
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not hmac.compare_digest(
        nonce.encode("utf-8"), expected.nonce.encode("utf-8")
    ):
        raise VerificationError(ReasonCode.KB_JWT_NONCE_MISMATCH, "KB-JWT nonce does not match")
    presented_hash = claims.get("sd_hash")
    if not isinstance(presented_hash, str) or not hmac.compare_digest(
        presented_hash.encode("ascii", "replace"),
        sd_hash(parsed.presentation_prefix).encode("ascii"),
    ):
        raise VerificationError(ReasonCode.KB_JWT_SD_HASH_MISMATCH, "sd_hash does not match")
    # Spend the nonce last: a forged or broken presentation must not burn a valid nonce.
    if expected.consume_nonce is not None and not expected.consume_nonce(nonce):
        raise VerificationError(ReasonCode.KB_JWT_NONCE_REUSED, "nonce already used")
    return claims


class VerifiedSdJwt(NamedTuple):
    header: Mapping[str, Any]
    payload: dict[str, Any]  # as signed, with digests
    claims: dict[str, Any]  # processed: disclosed claims substituted
    disclosed: tuple[ClaimPath, ...]
    key_binding: dict[str, Any] | None


def verify_sd_jwt(
    text: str | ParsedSdJwt,
    issuer_key: PublicKey,
    *,
    typ: str | None,
    key_binding: KeyBindingExpectation | None,
    now: Clock = system_clock,
    skew: int = 60,
) -> VerifiedSdJwt:
    """Verify an SD-JWT (+KB) completely. ``key_binding=None`` means none is required."""
    parsed = parse_sd_jwt(text) if isinstance(text, str) else text
    verify_issuer_signature(parsed, issuer_key, typ=typ)
    at = now()
    check_validity_window(parsed.payload, now=at, skew=skew)
    processed = process_disclosures(parsed)
    kb_claims = None
    if key_binding is not None:
        holder = holder_key_of(parsed.payload)
        kb_claims = verify_key_binding(parsed, holder, key_binding, now=at, skew=skew)
    return VerifiedSdJwt(
        parsed.jws.header, parsed.payload, processed.claims, processed.disclosed, kb_claims
    )


# --- holder presentation -------------------------------------------------------------------


def disclosure_paths(parsed: ParsedSdJwt) -> dict[str, ClaimPath]:
    """For a holder with every disclosure: the claim path each disclosure reveals, by digest."""
    _, disclosed, digests = _resolve_disclosures(parsed.payload, parsed.disclosures)
    return dict(zip(digests, disclosed, strict=True))


def _is_prefix(prefix: ClaimPath, path: ClaimPath) -> bool:
    return len(prefix) <= len(path) and path[: len(prefix)] == prefix


def select_disclosures(parsed: ParsedSdJwt, reveal: Iterable[ClaimPath]) -> list[Disclosure]:
    """The fewest disclosures that reveal every path in ``reveal``: each path's own disclosure,
    the disclosures of its ancestors, and those of everything beneath it."""
    wanted = [tuple(p) for p in reveal]
    paths = disclosure_paths(parsed)
    return [
        d
        for d in parsed.disclosures
        if any(_is_prefix(paths[d.digest], w) or _is_prefix(w, paths[d.digest]) for w in wanted)
    ]


def create_presentation(
    sd_jwt: str,
    *,
    reveal: Iterable[ClaimPath],
    holder: Signer | None,
    audience: str | None = None,
    nonce: str | None = None,
    now: Clock = system_clock,
) -> str:
    """Holder side (section 5): keep only the disclosures needed for ``reveal`` and, with a
    ``holder`` signer, append a KB-JWT for ``audience`` and ``nonce``."""
    parsed = parse_sd_jwt(sd_jwt)
    if parsed.kb_jwt is not None:
        raise UsageError(ReasonCode.KB_JWT_UNEXPECTED, "present from the issued SD-JWT")
    chosen = select_disclosures(parsed, reveal)
    prefix = "~".join([sd_jwt.split("~", 1)[0], *(d.encoded for d in chosen), ""])
    if holder is None:
        return prefix
    if audience is None or nonce is None:
        raise UsageError(ReasonCode.KB_JWT_MALFORMED, "key binding needs an audience and a nonce")
    kb_claims = {"iat": now(), "aud": audience, "nonce": nonce, "sd_hash": sd_hash(prefix)}
    return prefix + sign_jwt({"typ": KB_JWT_TYP}, kb_claims, holder)
