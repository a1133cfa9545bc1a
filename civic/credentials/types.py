"""The civic credential types (SD-JWT VC ``vct`` values), their JSON Schemas and claim checks.

- SD-JWT VC (draft-ietf-oauth-sd-jwt-vc, section 3.2.2): each type is named by a ``vct`` URN.
  The registered JWT and SD-JWT VC claims (``iss``, ``vct``, ``cnf``, ``status``, ``exp``,
  ``nbf``, ``iat``; section 3.2.2.2) are never selectively disclosable and sit outside the
  schemas; every subject claim is selectively disclosable (RFC 9901 section 4.2), nested
  members individually too.
- JSON Schema draft 2020-12 (Core and Validation), with ``format: date`` asserted as an RFC 3339
  full-date (Validation section 7.3.1) rather than left as an annotation.

:func:`validate_claims` accepts the processed payload (registered claims are set aside) or the
subject claims alone. With ``partial=True`` it checks a presentation, where any claim may be
undisclosed: types, value sets and unknown members are still checked, presence is not.
Errors name the JSON path and the rule, never a value. The resident registration number
(주민등록번호) is refused under any member name we can recognise and in any string value.

Addresses are stored romanized (Revised Romanization: ``{"region": "Seoul", "locality":
"Mapo-gu"}``), not in Hangul: the values are stable codes that policies compare exactly and
that the schema can enumerate (17 regions, Seoul's 25 districts); Korean display names come
from :mod:`.valuesets`. Personal names stay in Hangul, as on Korean identity documents.
"""

from __future__ import annotations

import importlib.resources
import math
import re
import threading
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from civic.credentials import examples, valuesets
from civic.credentials.dates import is_full_date
from civic.encoding import json_loads_object
from civic.errors import ReasonCode, UsageError, VerificationError
from civic.sdjwtvc import REGISTERED_CLAIMS

Lang = Literal["en", "ko"]
LANGUAGES: Final[tuple[Lang, ...]] = ("en", "ko")

ClaimPath = tuple[str, ...]
"""A path to a subject claim: object member names from the top level down."""

RESIDENCY_VCT: Final = "urn:civic:vct:residency:1"
YOUTH_ALLOWANCE_VCT: Final = "urn:civic:vct:youth-allowance:1"
VACCINATION_VCT: Final = "urn:civic:vct:vaccination:1"


MAX_REPORTED_ERRORS: Final = 5

_YES_NO: Final[dict[Lang, tuple[str, str]]] = {"en": ("Yes", "No"), "ko": ("예", "아니요")}


@dataclass(frozen=True, eq=False)
class CredentialType:
    """One credential type: identifiers, display names, schema, disclosure policy, example."""

    vct: str
    key: str
    names: tuple[str, str]
    """(English, Korean) name of the type."""
    claim_names: Mapping[ClaimPath, tuple[str, str]]
    """(English, Korean) name of every subject claim path."""
    value_names: Mapping[ClaimPath, valuesets.Names]
    """Display names of coded values, for the claim paths that hold codes."""
    schema: Mapping[str, Any]
    disclosable_paths: tuple[ClaimPath, ...]
    """Every subject claim path, parents before members: all are selectively disclosable."""
    example: Mapping[str, Any]

    def type_name(self, lang: Lang = "en") -> str:
        return self.names[_lang_index(lang)]

    def display_name(self, path: str | Sequence[str | int | None], lang: Lang = "en") -> str:
        """Name of a claim for people. ``path`` is a member name or a claim path; array
        components (``None``, indexes) are skipped, as elements share their array's name."""
        names = self.claim_names.get(_claim_path(path))
        if names is None:
            raise UsageError(
                ReasonCode.MALFORMED_INPUT, f"no claim path of that name in {self.key}"
            )
        return names[_lang_index(lang)]

    def display_value(
        self, path: str | Sequence[str | int | None], value: object, lang: Lang = "en"
    ) -> str:
        """A claim value for people: code lists by name, booleans as yes/no, else as is."""
        index = _lang_index(lang)
        table = self.value_names.get(_claim_path(path))
        if table is not None and isinstance(value, str) and value in table:
            return table[value][index]
        if isinstance(value, bool):
            yes, no = _YES_NO[LANGUAGES[index]]
            return yes if value else no
        return str(value)

    def example_claims(self) -> dict[str, Any]:
        """A fresh, mutable copy of the example subject claims."""
        claims: dict[str, Any] = _thaw(self.example)
        return claims

    def schema_json(self) -> dict[str, Any]:
        """A fresh, mutable copy of the JSON Schema (e.g. to publish in issuer metadata)."""
        schema: dict[str, Any] = _thaw(self.schema)
        return schema

    def __repr__(self) -> str:
        return f"CredentialType(vct={self.vct!r}, key={self.key!r})"


def _lang_index(lang: str) -> int:
    if lang == "en":
        return 0
    if lang == "ko":
        return 1
    raise UsageError(ReasonCode.MALFORMED_INPUT, "display language must be 'en' or 'ko'")


def _claim_path(path: str | Sequence[str | int | None]) -> ClaimPath:
    if isinstance(path, str):
        return (path,)
    return tuple(component for component in path if isinstance(component, str))


# --- schemas and validators -------------------------------------------------------------------

_DATE_CHECKER = FormatChecker(formats=())
_DATE_CHECKER.checks("date")(is_full_date)


def _load_schema(key: str) -> dict[str, Any]:
    resource = importlib.resources.files("civic.credentials").joinpath("schemas", f"{key}.json")
    schema = json_loads_object(resource.read_text(encoding="utf-8"), what="schema")
    Draft202012Validator.check_schema(schema)
    return schema


def _without_required(schema: Any) -> Any:
    """The schema with presence requirements dropped, for selectively disclosed claims.

    ``required`` inside ``if`` is kept: there it is a condition ("the region is disclosed and
    is Seoul"), and dropping it would make the condition true for every undisclosed region.
    """
    if isinstance(schema, list):
        return [_without_required(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword == "required":
            continue
        if keyword == "if" or keyword in ("const", "enum", "examples", "default"):
            result[keyword] = value
        elif keyword in ("properties", "$defs", "patternProperties", "dependentSchemas"):
            result[keyword] = {name: _without_required(sub) for name, sub in value.items()}
        else:
            result[keyword] = _without_required(value)
    return result


def _property_paths(schema: Mapping[str, Any], prefix: ClaimPath = ()) -> Iterator[ClaimPath]:
    for name, sub in schema.get("properties", {}).items():
        path = (*prefix, name)
        yield path
        if isinstance(sub, dict):
            yield from _property_paths(sub, path)


@dataclass(frozen=True)
class _Validators:
    full: Draft202012Validator
    partial: Draft202012Validator


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _make_type(
    *,
    vct: str,
    key: str,
    names: tuple[str, str],
    claim_names: dict[ClaimPath, tuple[str, str]],
    value_names: dict[ClaimPath, valuesets.Names],
    example: dict[str, Any],
) -> tuple[CredentialType, _Validators]:
    schema = _load_schema(key)
    paths = tuple(_property_paths(schema))
    if set(paths) != set(claim_names):  # pragma: no cover - caught by the unit tests
        raise AssertionError(f"display names of {key} do not cover its schema")
    ctype = CredentialType(
        vct=vct,
        key=key,
        names=names,
        claim_names=MappingProxyType(claim_names),
        value_names=MappingProxyType(value_names),
        schema=_freeze(schema),
        disclosable_paths=paths,
        example=_freeze(example),
    )
    validators = _Validators(
        full=Draft202012Validator(schema, format_checker=_DATE_CHECKER),
        partial=Draft202012Validator(_without_required(schema), format_checker=_DATE_CHECKER),
    )
    return ctype, validators


_PERSON_NAMES: Final[dict[ClaimPath, tuple[str, str]]] = {
    ("family_name",): ("Family name", "성"),
    ("given_name",): ("Given name", "이름"),
}

_RESIDENCY, _RESIDENCY_VALIDATORS = _make_type(
    vct=RESIDENCY_VCT,
    key="residency",
    names=("Residency certificate", "거주 증명서"),
    claim_names={
        **_PERSON_NAMES,
        ("birth_date",): ("Date of birth", "생년월일"),
        ("address",): ("Address", "주소"),
        ("address", "region"): ("Metropolitan city or province", "시·도"),
        ("address", "locality"): ("City, county or district", "시·군·구"),
        ("resident_since",): ("Resident since", "전입일"),
        ("age_over_14",): ("Aged 14 or over", "만 14세 이상"),
        ("age_over_18",): ("Aged 18 or over", "만 18세 이상"),
        ("age_over_19",): ("Aged 19 or over", "만 19세 이상"),
        ("age_over_65",): ("Aged 65 or over", "만 65세 이상"),
    },
    value_names={
        ("address", "region"): valuesets.REGIONS,
        ("address", "locality"): valuesets.SEOUL_DISTRICTS,
    },
    example=examples.RESIDENCY_EXAMPLE,
)

_YOUTH_ALLOWANCE, _YOUTH_ALLOWANCE_VALIDATORS = _make_type(
    vct=YOUTH_ALLOWANCE_VCT,
    key="youth_allowance",
    names=("Seoul Youth Allowance", "서울시 청년수당"),
    claim_names={
        **_PERSON_NAMES,
        ("programme_id",): ("Programme", "사업"),
        ("monthly_amount",): ("Monthly amount", "월 지급액"),
        ("currency",): ("Currency", "통화"),
        ("period",): ("Support period", "지원 기간"),
        ("period", "start"): ("First month from", "지원 시작일"),
        ("period", "end"): ("Last day", "지원 종료일"),
        ("allowance_status",): ("Allowance status", "수당 지급 상태"),
        ("eligibility",): ("Eligibility", "자격 요건"),
        ("eligibility", "age_19_to_34"): ("Aged 19 to 34", "만 19~34세"),
        ("eligibility", "seoul_resident"): ("Resident in Seoul", "서울시 거주"),
        ("eligibility", "not_employed_full_time"): (
            "Not in full-time employment",
            "미취업 또는 단기 근로",
        ),
        ("eligibility", "household_income_within_150_percent_median"): (
            "Household income at most 150% of the median income",
            "가구 중위소득 150% 이하",
        ),
        ("eligibility", "not_enrolled_as_student"): (
            "Not enrolled as a student",
            "재학 중 아님",
        ),
    },
    value_names={
        ("allowance_status",): valuesets.ALLOWANCE_STATUS,
        ("programme_id",): valuesets.PROGRAMMES,
    },
    example=examples.YOUTH_ALLOWANCE_EXAMPLE,
)

_VACCINATION, _VACCINATION_VALIDATORS = _make_type(
    vct=VACCINATION_VCT,
    key="vaccination",
    names=("Vaccination certificate", "예방접종 증명서"),
    claim_names={
        **_PERSON_NAMES,
        ("birth_date",): ("Date of birth", "생년월일"),
        ("vaccination",): ("Vaccination", "예방접종"),
        ("vaccination", "tg"): ("Disease or agent targeted", "대상 질병"),
        ("vaccination", "vp"): ("Vaccine or prophylaxis", "백신 종류"),
        ("vaccination", "mp"): ("Vaccine product", "백신 제품명"),
        ("vaccination", "ma"): (
            "Marketing authorisation holder or manufacturer",
            "판매 허가권자 또는 제조사",
        ),
        ("vaccination", "dn"): ("Dose number", "접종 차수"),
        ("vaccination", "sd"): ("Total doses in the series", "전체 접종 횟수"),
        ("vaccination", "dt"): ("Date of vaccination", "접종일"),
        ("vaccination", "co"): ("Country of vaccination", "접종 국가"),
        ("vaccination", "is"): ("Certificate issuer", "증명서 발급 기관"),
        ("vaccination", "ci"): ("Unique certificate identifier", "증명서 고유 식별자"),
    },
    value_names={
        ("vaccination", "tg"): valuesets.DISEASE_AGENT_TARGETED,
        ("vaccination", "vp"): valuesets.VACCINE_PROPHYLAXIS,
        ("vaccination", "mp"): valuesets.VACCINE_MEDICINAL_PRODUCT,
        ("vaccination", "ma"): valuesets.VACCINE_MAH_MANF,
        ("vaccination", "co"): valuesets.COUNTRY_NAMES,
    },
    example=examples.VACCINATION_EXAMPLE,
)

CREDENTIAL_TYPES: Final[Mapping[str, CredentialType]] = MappingProxyType(
    {t.vct: t for t in (_RESIDENCY, _YOUTH_ALLOWANCE, _VACCINATION)}
)
"""The registry of credential types, by ``vct``."""

_VALIDATORS: Final[Mapping[str, _Validators]] = MappingProxyType(
    {
        RESIDENCY_VCT: _RESIDENCY_VALIDATORS,
        YOUTH_ALLOWANCE_VCT: _YOUTH_ALLOWANCE_VALIDATORS,
        VACCINATION_VCT: _VACCINATION_VALIDATORS,
    }
)


def get_type(vct: object) -> CredentialType:
    ctype = CREDENTIAL_TYPES.get(vct) if isinstance(vct, str) else None
    if ctype is None:
        raise VerificationError(ReasonCode.VCT_UNKNOWN, "credential type (vct) is not known")
    return ctype


def get_type_by_key(key: str) -> CredentialType:
    for ctype in CREDENTIAL_TYPES.values():
        if ctype.key == key:
            return ctype
    raise UsageError(ReasonCode.VCT_UNKNOWN, "no credential type has that key")


# --- claim checks -----------------------------------------------------------------------------

_SAFE_MEMBER = re.compile(r"[A-Za-z_][A-Za-z0-9_#]{0,63}")
_RRN_VALUE = re.compile(r"[0-9]{6}\s*[-\u2010-\u2015\u2212]\s*[0-9]{7}")
_RRN_KEY_TOKENS = frozenset({"rrn", "jumin", "juminbunho", "juminbeonho"})
_RRN_KEY_PARTS = ("residentregistration", "주민등록", "주민번호")
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def _schema_invalid(detail: str) -> VerificationError:
    return VerificationError(ReasonCode.SCHEMA_INVALID, detail)


def _json_path(components: Sequence[object]) -> str:
    """``$.address.region``; member names that do not look like identifiers are shown as
    ``[?]`` because a member name supplied by the input could itself carry personal data."""
    out = ["$"]
    for component in components:
        if isinstance(component, int) and not isinstance(component, bool):
            out.append(f"[{component}]")
        elif isinstance(component, str) and _SAFE_MEMBER.fullmatch(component):
            out.append(f".{component}")
        else:
            out.append("[?]")
    return "".join(out)


def _is_rrn_key(name: str) -> bool:
    folded = unicodedata.normalize("NFKC", name).casefold()
    squashed = re.sub(r"[^0-9a-z가-힣]", "", folded)
    tokens = set(re.split(r"[^0-9a-z가-힣]+", folded))
    return bool(tokens & _RRN_KEY_TOKENS) or any(part in squashed for part in _RRN_KEY_PARTS)


def _has_forbidden_character(text: str) -> bool:
    # Control characters would also slip past anchored schema patterns ('$' matches before a
    # final newline); bidi controls can make a name display as something else.
    return any(
        unicodedata.category(char) in ("Cc", "Cs") or char in _BIDI_CONTROLS for char in text
    )


def _screen(claims: dict[Any, Any]) -> None:
    """Checks the schema language cannot express: JSON value types, no resident registration
    number anywhere (member names and string values, after NFKC so full-width digits count),
    no control characters."""
    stack: list[tuple[tuple[object, ...], Any]] = [((), claims)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            for name, child in node.items():
                if not isinstance(name, str):
                    raise _schema_invalid(f"{_json_path(path)}: member name is not a string")
                member_path = (*path, name)
                if _is_rrn_key(name):
                    raise _schema_invalid(
                        f"{_json_path(member_path)}: resident registration numbers are never"
                        " carried (forbidden member name)"
                    )
                if _has_forbidden_character(name) or _RRN_VALUE.search(
                    unicodedata.normalize("NFKC", name)
                ):
                    raise _schema_invalid(f"{_json_path(path)}: forbidden member name")
                stack.append((member_path, child))
        elif isinstance(node, list):
            stack.extend(((*path, index), child) for index, child in enumerate(node))
        elif isinstance(node, str):
            if _RRN_VALUE.search(unicodedata.normalize("NFKC", node)):
                raise _schema_invalid(
                    f"{_json_path(path)}: value shaped like a resident registration number"
                )
            if _has_forbidden_character(node):
                raise _schema_invalid(f"{_json_path(path)}: control character in string")
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise _schema_invalid(f"{_json_path(path)}: number is not finite")
        elif node is not None and not isinstance(node, bool | int):
            raise _schema_invalid(f"{_json_path(path)}: not a JSON value")


_KEYWORDS_WITH_SAFE_PARAMETER = frozenset(
    {"type", "format", "minimum", "maximum", "minLength", "maxLength", "pattern"}
)


def _describe(error: ValidationError) -> str:
    keyword = str(error.validator)
    where = _json_path(list(error.absolute_path))
    instance = error.instance
    required = error.validator_value
    if keyword == "required" and isinstance(instance, dict) and isinstance(required, list):
        missing = [
            name
            for name in required
            if name not in instance and isinstance(name, str) and _SAFE_MEMBER.fullmatch(name)
        ]
        return f"{where}: required member missing ({', '.join(missing)})"
    if keyword == "additionalProperties" and isinstance(instance, dict):
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        extra = sorted(name for name in instance if name not in known)
        shown = [name if _SAFE_MEMBER.fullmatch(name) else "?" for name in extra]
        return f"{where}: unexpected member ({', '.join(shown)})"
    if keyword in ("enum", "const"):
        return f"{where}: {keyword} (value not in the allowed set)"
    if keyword in _KEYWORDS_WITH_SAFE_PARAMETER:
        return f"{where}: {keyword} {error.validator_value}"
    return f"{where}: {keyword}"


def validate_claims(vct: str, claims: object, *, partial: bool = False) -> None:
    """Check claims of type ``vct`` against its schema; raise on the first problem found.

    ``claims`` may be the whole processed SD-JWT VC payload: the registered claims
    (:data:`REGISTERED_CLAIMS`) are set aside, except that a ``vct`` member must equal
    ``vct``. ``partial=True`` is for presentations: undisclosed claims are not missing.

    Raises :class:`VerificationError` with ``VCT_UNKNOWN`` or ``SCHEMA_INVALID``; the detail
    names up to :data:`MAX_REPORTED_ERRORS` violations as JSON path and rule.
    """
    get_type(vct)
    validators = _VALIDATORS[vct]
    if not isinstance(claims, Mapping):
        raise _schema_invalid("$: claims are not a JSON object")
    if "vct" in claims and claims["vct"] != vct:
        raise _schema_invalid("$.vct: does not match the credential type")
    subject = {name: value for name, value in claims.items() if name not in REGISTERED_CLAIMS}
    shape = _shape(subject, [_MEMO_MAX_NODES])
    key = (vct, partial, shape) if shape is not None else None
    if key is not None and key in _known_valid:
        return
    _screen(subject)
    validator = validators.partial if partial else validators.full
    errors = sorted(
        (_describe(error) for error in validator.iter_errors(subject)),
    )
    if errors:
        shown = "; ".join(errors[:MAX_REPORTED_ERRORS])
        more = len(errors) - MAX_REPORTED_ERRORS
        raise _schema_invalid(shown + (f"; and {more} more" if more > 0 else ""))
    if key is not None:
        with _known_valid_lock:
            if len(_known_valid) >= _MEMO_MAX_ENTRIES:
                del _known_valid[next(iter(_known_valid))]
            _known_valid[key] = None


# Subjects found valid, by exact shape: a verifier sees the same few disclosures (age_over_19
# true, a dose number) over and over, and the checks above (NFKC screening, jsonschema) cost
# more than the SD-JWT around them. The checks are pure functions of (vct, partial, subject),
# so a subject equal in every value and type gets the same answer; invalid ones are never
# stored, and their error detail is always computed afresh. Only subjects without string
# values are kept: names, birth dates and places are a citizen's data, which the verifier
# holds no longer than the request.
_MEMO_MAX_ENTRIES: Final = 1024
_MEMO_MAX_NODES: Final = 64
_known_valid: dict[tuple[str, bool, object], None] = {}
_known_valid_lock = threading.Lock()
_SCALARS: Final = (int, float, bool, type(None))


def _shape(node: object, budget: list[int]) -> object:
    """A hashable stand-in for a JSON value that two values share only if every member name,
    member order, value and exact type agree (``True`` is not ``1``, ``1.0`` is not ``1``,
    a tuple or a ``str`` subclass is nothing); None for a value holding a string (personal
    data is not kept), anything else, or more than ``budget[0]`` nodes."""
    budget[0] -= 1
    if budget[0] < 0:
        return None
    kind = type(node)
    if kind in _SCALARS:
        return (kind, node)
    if kind is dict:
        members: list[object] = [dict]
        for name, child in node.items():  # type: ignore[attr-defined]
            if type(name) is not str or len(name) > 4096:
                return None
            child_shape = _shape(child, budget)
            if child_shape is None:
                return None
            members += (name, child_shape)
        return tuple(members)
    if kind is list:
        items: list[object] = [list]
        for child in node:  # type: ignore[attr-defined]
            child_shape = _shape(child, budget)
            if child_shape is None:
                return None
            items.append(child_shape)
        return tuple(items)
    return None
