"""Credential types, schemas, display names, age flags and youth allowance rules."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from importlib import resources
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from civic.credentials import (
    AGE_THRESHOLDS,
    CREDENTIAL_TYPES,
    NEVER_DISCLOSABLE,
    RESIDENCY_VCT,
    VACCINATION_VCT,
    YOUTH_ALLOWANCE_VCT,
    age_on,
    age_over_flags,
    check_youth_allowance_rules,
    enforce_youth_allowance_rules,
    examples,
    get_type,
    get_type_by_key,
    last_day_of_period,
    types,
    validate_claims,
    valuesets,
)
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError

HANGUL = re.compile(r"[가-힣]")


def residency() -> dict[str, Any]:
    return get_type(RESIDENCY_VCT).example_claims()


def youth() -> dict[str, Any]:
    return get_type(YOUTH_ALLOWANCE_VCT).example_claims()


def vaccination() -> dict[str, Any]:
    return get_type(VACCINATION_VCT).example_claims()


def schema_invalid(vct: str, claims: object, *, partial: bool = False) -> str:
    with pytest.raises(VerificationError) as info:
        validate_claims(vct, claims, partial=partial)
    assert info.value.reason is ReasonCode.SCHEMA_INVALID
    return info.value.detail


def walk_schemas(schema: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


# --- registry -----------------------------------------------------------------------------------


def test_registry_holds_the_three_types_by_vct() -> None:
    assert set(CREDENTIAL_TYPES) == {
        "urn:civic:vct:residency:1",
        "urn:civic:vct:youth-allowance:1",
        "urn:civic:vct:vaccination:1",
    }
    keys = {ctype.vct: ctype.key for ctype in CREDENTIAL_TYPES.values()}
    assert keys == {
        RESIDENCY_VCT: "residency",
        YOUTH_ALLOWANCE_VCT: "youth_allowance",
        VACCINATION_VCT: "vaccination",
    }
    for ctype in CREDENTIAL_TYPES.values():
        assert get_type(ctype.vct) is ctype
        assert get_type_by_key(ctype.key) is ctype


@pytest.mark.parametrize("vct", ["urn:civic:vct:residency:2", "", "residency", None, 3])
def test_unknown_vct_is_vct_unknown(vct: Any) -> None:
    with pytest.raises(VerificationError) as info:
        get_type(vct)
    assert info.value.reason is ReasonCode.VCT_UNKNOWN
    with pytest.raises(VerificationError) as info:
        validate_claims(vct, residency())
    assert info.value.reason is ReasonCode.VCT_UNKNOWN


def test_unknown_key_is_usage_error() -> None:
    with pytest.raises(UsageError):
        get_type_by_key("passport")


# --- schemas ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["residency", "youth_allowance", "vaccination"])
def test_schema_files_are_draft_2020_12_and_closed(key: str) -> None:
    text = resources.files("civic.credentials").joinpath("schemas", f"{key}.json").read_text()
    schema = json.loads(text)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    objects = [s for s in walk_schemas(schema) if s.get("type") == "object"]
    assert objects
    for obj in objects:
        assert obj.get("additionalProperties") is False
    assert get_type_by_key(key).schema_json() == schema


def test_schemas_leave_out_the_registered_claims() -> None:
    for ctype in CREDENTIAL_TYPES.values():
        top_level = set(ctype.schema["properties"])
        assert not top_level & set(NEVER_DISCLOSABLE)


def test_every_personal_claim_is_disclosable_and_no_registered_claim_is() -> None:
    for ctype in CREDENTIAL_TYPES.values():
        paths = set(ctype.disclosable_paths)
        leaves: list[tuple[str, ...]] = []
        stack: list[tuple[tuple[str, ...], Any]] = [((), ctype.example_claims())]
        while stack:
            prefix, node = stack.pop()
            for name, value in node.items():
                leaves.append((*prefix, name))
                if isinstance(value, dict):
                    stack.append(((*prefix, name), value))
        assert set(leaves) == paths
        assert not any(path[0] in NEVER_DISCLOSABLE for path in paths)
        # Parents come before their members, so an issuer can build recursive disclosures.
        for index, path in enumerate(ctype.disclosable_paths):
            if len(path) > 1:
                assert ctype.disclosable_paths.index(path[:-1]) < index


def test_no_schema_has_a_member_for_a_resident_registration_number() -> None:
    for ctype in CREDENTIAL_TYPES.values():
        for path in ctype.disclosable_paths:
            assert "rrn" not in path[-1].lower()
            assert "registration" not in path[-1].lower()


def enum_of(ctype_key: str, *path: str) -> list[str]:
    node: Any = get_type_by_key(ctype_key).schema_json()
    for name in path:
        node = node["properties"][name]
    return list(node["enum"])


def test_schema_enums_are_the_value_sets() -> None:
    def vacc(field: str) -> list[str]:
        return enum_of("vaccination", "vaccination", field)

    assert vacc("tg") == list(valuesets.DISEASE_AGENT_TARGETED) == ["840539006"]
    assert vacc("vp") == list(valuesets.VACCINE_PROPHYLAXIS)
    assert {"1119305005", "1119349007", "J07BX03"} <= set(vacc("vp"))
    assert vacc("mp") == list(valuesets.VACCINE_MEDICINAL_PRODUCT)
    assert {"EU/1/20/1528", "EU/1/20/1507", "EU/1/21/1529", "EU/1/20/1525"} <= set(vacc("mp"))
    assert vacc("ma") == list(valuesets.VACCINE_MAH_MANF)
    assert vacc("co") == list(valuesets.COUNTRY_CODES)
    assert len(set(vacc("co"))) == 250
    assert all(re.fullmatch(r"[A-Z]{2}", code) for code in vacc("co"))
    assert set(valuesets.COUNTRY_NAMES) <= set(vacc("co"))
    assert enum_of("residency", "address", "region") == list(valuesets.REGIONS)
    assert len(valuesets.REGIONS) == 17
    seoul = get_type_by_key("residency").schema_json()["properties"]["address"]["then"]
    assert seoul["properties"]["locality"]["enum"] == list(valuesets.SEOUL_DISTRICTS)
    assert len(valuesets.SEOUL_DISTRICTS) == 25
    assert enum_of("youth_allowance", "allowance_status") == ["active", "suspended", "ended"]
    assert enum_of("youth_allowance", "currency") == ["KRW"]


# --- display names ----------------------------------------------------------------------------


def test_every_claim_path_and_type_has_english_and_korean_names() -> None:
    for ctype in CREDENTIAL_TYPES.values():
        assert HANGUL.search(ctype.type_name("ko"))
        assert ctype.type_name("en").isascii()
        for path in ctype.disclosable_paths:
            assert ctype.display_name(path, lang="en")
            assert HANGUL.search(ctype.display_name(path, lang="ko")), path


def test_display_names_by_member_name_and_by_path() -> None:
    res = get_type(RESIDENCY_VCT)
    assert res.display_name("birth_date", lang="ko") == "생년월일"
    assert res.display_name(("address", "region"), lang="ko") == "시·도"
    # DCQL pointers may carry array components; they share their array's name.
    assert res.display_name(["address", None, "locality"], lang="en") == "City, county or district"
    with pytest.raises(UsageError):
        res.display_name("resident_registration_number")
    with pytest.raises(UsageError):
        res.display_name("birth_date", lang="fr")  # type: ignore[arg-type]


def test_coded_values_display_in_both_languages() -> None:
    res = get_type(RESIDENCY_VCT)
    vac = get_type(VACCINATION_VCT)
    ya = get_type(YOUTH_ALLOWANCE_VCT)
    assert res.display_value(("address", "region"), "Seoul", lang="ko") == "서울특별시"
    assert res.display_value(("address", "locality"), "Mapo-gu", lang="ko") == "마포구"
    assert res.display_value("age_over_19", True, lang="ko") == "예"
    assert res.display_value("age_over_65", False, lang="en") == "No"
    assert vac.display_value(("vaccination", "mp"), "EU/1/20/1528", lang="ko") == "코미나티"
    assert vac.display_value(("vaccination", "tg"), "840539006", lang="en") == "COVID-19"
    assert vac.display_value(("vaccination", "co"), "KR", lang="ko") == "대한민국"
    assert vac.display_value(("vaccination", "co"), "LU", lang="ko") == "LU"
    assert ya.display_value("allowance_status", "suspended", lang="ko") == "지급 정지"
    for table in (
        valuesets.DISEASE_AGENT_TARGETED,
        valuesets.VACCINE_PROPHYLAXIS,
        valuesets.VACCINE_MEDICINAL_PRODUCT,
        valuesets.VACCINE_MAH_MANF,
        valuesets.COUNTRY_NAMES,
        valuesets.REGIONS,
        valuesets.SEOUL_DISTRICTS,
        valuesets.ALLOWANCE_STATUS,
        valuesets.PROGRAMMES,
    ):
        for english, korean in table.values():
            assert english
            assert korean


# --- examples and validation ------------------------------------------------------------------


def test_examples_are_valid_realistic_and_fresh_copies() -> None:
    for ctype in CREDENTIAL_TYPES.values():
        claims = ctype.example_claims()
        validate_claims(ctype.vct, claims)
        assert HANGUL.search(claims["family_name"])
        assert HANGUL.search(claims["given_name"])
        claims["family_name"] = "changed"
        assert ctype.example_claims()["family_name"] != "changed"
    validate_claims(RESIDENCY_VCT, dict(examples.RESIDENCY_EXAMPLE_BUSAN))
    assert residency()["address"] == {"region": "Seoul", "locality": "Mapo-gu"}


def test_example_age_flags_agree_with_the_birth_dates() -> None:
    for example in (examples.RESIDENCY_EXAMPLE, examples.RESIDENCY_EXAMPLE_BUSAN):
        flags = age_over_flags(example["birth_date"], date(2025, 6, 1))
        assert {name: example[name] for name in flags} == flags


def test_processed_payload_with_registered_claims_validates() -> None:
    payload = {
        **residency(),
        "iss": "https://mapo.example.go.kr",
        "vct": RESIDENCY_VCT,
        "cnf": {"jwk": {"kty": "OKP", "crv": "Ed25519", "x": "abc"}},
        "status": {"status_list": {"idx": 7, "uri": "https://example.go.kr/status/1"}},
        "iat": 1_750_000_000,
        "nbf": 1_750_000_000,
        "exp": 1_780_000_000,
    }
    validate_claims(RESIDENCY_VCT, payload)
    detail = schema_invalid(RESIDENCY_VCT, {**payload, "vct": YOUTH_ALLOWANCE_VCT})
    assert detail.startswith("$.vct")
    # SD-JWT internals must have been processed away before schema validation.
    assert "$: unexpected member (_sd)" in schema_invalid(RESIDENCY_VCT, {**payload, "_sd": []})


def with_change(claims: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    node = claims
    for name in path[:-1]:
        node = node[name]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return claims


DELETE = object()

INVALID_CASES = [
    # (type, path, bad value, expected detail)
    (residency, ("birth_date",), "1998-02-30", "$.birth_date: format date"),
    (residency, ("birth_date",), "19980315", "$.birth_date: format date"),
    (residency, ("birth_date",), "١٩٩٨-٠٣-١٥", "$.birth_date: format date"),
    (residency, ("resident_since",), "2021-09-01T00:00:00Z", "$.resident_since: format date"),
    (residency, ("address", "region"), "Tokyo", "$.address.region: enum"),
    (residency, ("address", "locality"), "Suwon-si", "$.address.locality: enum"),
    (residency, ("address", "locality"), "마포구", "$.address.locality: enum"),
    (residency, ("age_over_18",), "true", "$.age_over_18: type boolean"),
    (residency, ("age_over_65",), 0, "$.age_over_65: type boolean"),
    (residency, ("family_name",), "", "$.family_name: minLength 1"),
    (residency, ("family_name",), DELETE, "$: required member missing (family_name)"),
    (residency, ("address", "region"), DELETE, "$.address: required member missing (region)"),
    (residency, ("nickname",), "서연이", "$: unexpected member (nickname)"),
    (residency, ("address", "street"), "월드컵북로 1", "$.address: unexpected member (street)"),
    (youth, ("monthly_amount",), True, "$.monthly_amount: type integer"),
    (youth, ("monthly_amount",), "500000", "$.monthly_amount: type integer"),
    (youth, ("monthly_amount",), 0, "$.monthly_amount: minimum 1"),
    (youth, ("currency",), "USD", "$.currency: enum"),
    (youth, ("programme_id",), "busan-youth-2025", "$.programme_id: pattern"),
    (youth, ("period", "end"), "2025-11-31", "$.period.end: format date"),
    (youth, ("allowance_status",), "paused", "$.allowance_status: enum"),
    (youth, ("eligibility", "seoul_resident"), "yes", "$.eligibility.seoul_resident: type"),
    (youth, ("eligibility", "employed"), False, "$.eligibility: unexpected member (employed)"),
    (vaccination, ("vaccination", "tg"), "840539007", "$.vaccination.tg: enum"),
    (vaccination, ("vaccination", "vp"), "J07BX99", "$.vaccination.vp: enum"),
    (vaccination, ("vaccination", "mp"), "EU/1/99/9999", "$.vaccination.mp: enum"),
    (vaccination, ("vaccination", "ma"), "ORG-999", "$.vaccination.ma: enum"),
    (vaccination, ("vaccination", "dn"), 0, "$.vaccination.dn: minimum 1"),
    (vaccination, ("vaccination", "sd"), 10, "$.vaccination.sd: maximum 9"),
    (vaccination, ("vaccination", "dn"), 2.5, "$.vaccination.dn: type integer"),
    (vaccination, ("vaccination", "dt"), "2022-1-14", "$.vaccination.dt: format date"),
    (vaccination, ("vaccination", "co"), "ZZ", "$.vaccination.co: enum"),
    (vaccination, ("vaccination", "co"), "kr", "$.vaccination.co: enum"),
    (vaccination, ("vaccination", "is"), "x" * 81, "$.vaccination.is: maxLength 80"),
    (vaccination, ("vaccination", "ci"), "URN:UVCI:01:kr:abc", "$.vaccination.ci: pattern"),
    (vaccination, ("vaccination", "ci"), "URN:UVCI:01:KR:ABC\n", "$.vaccination.ci: control"),
    (vaccination, ("vaccination", "ci"), DELETE, "$.vaccination: required member missing (ci)"),
]


@pytest.mark.parametrize(("make", "path", "bad", "expected"), INVALID_CASES)
def test_schema_violations_name_path_and_rule_but_not_the_value(
    make: Any, path: tuple[str, ...], bad: Any, expected: str
) -> None:
    claims = with_change(make(), path, bad)
    vct = {residency: RESIDENCY_VCT, youth: YOUTH_ALLOWANCE_VCT}.get(make, VACCINATION_VCT)
    detail = schema_invalid(vct, claims)
    assert detail.startswith(expected)
    if isinstance(bad, str) and len(bad) > 3:
        assert bad not in detail
        assert bad.strip() not in detail


def test_locality_must_be_a_seoul_district_only_in_seoul() -> None:
    claims = residency()
    claims["address"] = {"region": "Gyeonggi-do", "locality": "Suwon-si"}
    validate_claims(RESIDENCY_VCT, claims)
    claims["address"] = {"region": "Gyeonggi-do", "locality": "suwon"}
    assert schema_invalid(RESIDENCY_VCT, claims).startswith("$.address.locality: pattern")


def test_all_violations_reported_sorted_and_bounded() -> None:
    claims = vaccination()
    for field in ("tg", "vp", "mp", "ma", "co", "dn", "sd"):
        claims["vaccination"][field] = "bad"
    detail = schema_invalid(VACCINATION_VCT, claims)
    assert detail.count("$.vaccination.") == 5
    assert detail.endswith("and 2 more")


@pytest.mark.parametrize("claims", [[], "claims", None, 42])
def test_claims_must_be_an_object(claims: Any) -> None:
    assert schema_invalid(RESIDENCY_VCT, claims) == "$: claims are not a JSON object"


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), b"bytes", ("tuple",), {1, 2}, date(2020, 1, 1)],
)
def test_non_json_values_are_refused(value: Any) -> None:
    claims = residency()
    claims["given_name"] = value
    detail = schema_invalid(RESIDENCY_VCT, claims)
    assert detail.startswith("$.given_name: ")


def test_non_identifier_member_names_are_not_echoed() -> None:
    claims = residency()
    claims["김서연"] = True
    detail = schema_invalid(RESIDENCY_VCT, claims)
    assert "김서연" not in detail
    assert detail == "$: unexpected member (?)"
    assert schema_invalid(RESIDENCY_VCT, {**residency(), 3: True}).startswith("$: member name")


def test_partial_presentations_skip_presence_but_not_types() -> None:
    for ctype in CREDENTIAL_TYPES.values():
        validate_claims(ctype.vct, {}, partial=True)
        for path in ctype.disclosable_paths:
            if len(path) == 1:
                claims = {path[0]: ctype.example_claims()[path[0]]}
                validate_claims(ctype.vct, claims, partial=True)
    assert schema_invalid(RESIDENCY_VCT, {"age_over_19": True}).startswith("$: required")
    validate_claims(RESIDENCY_VCT, {"age_over_19": True}, partial=True)
    validate_claims(RESIDENCY_VCT, {"address": {"locality": "Suwon-si"}}, partial=True)
    detail = schema_invalid(
        RESIDENCY_VCT, {"address": {"region": "Seoul", "locality": "Suwon-si"}}, partial=True
    )
    assert detail.startswith("$.address.locality: enum")
    detail = schema_invalid(RESIDENCY_VCT, {"age_over_19": "yes"}, partial=True)
    assert detail.startswith("$.age_over_19: type")
    detail = schema_invalid(VACCINATION_VCT, {"vaccination": {"dn": 0}}, partial=True)
    assert detail.startswith("$.vaccination.dn: minimum")
    detail = schema_invalid(YOUTH_ALLOWANCE_VCT, {"salary": 1}, partial=True)
    assert detail == "$: unexpected member (salary)"


def test_a_subject_found_valid_is_remembered_only_for_equal_values_of_equal_types() -> None:
    # Valid answers are memoized by the subject's exact shape: a value equal under == but of
    # another type (1 for True, 1.0 for 1) or another container is a different subject.
    validate_claims(RESIDENCY_VCT, {"age_over_19": True}, partial=True)
    validate_claims(RESIDENCY_VCT, {"age_over_19": True}, partial=True)
    assert schema_invalid(RESIDENCY_VCT, {"age_over_19": 1}, partial=True).startswith(
        "$.age_over_19: type"
    )
    validate_claims(VACCINATION_VCT, {"vaccination": {"dn": 1}}, partial=True)
    assert schema_invalid(VACCINATION_VCT, {"vaccination": {"dn": 1.5}}, partial=True)
    validate_claims(VACCINATION_VCT, {"vaccination": {"dn": 2}}, partial=True)
    assert schema_invalid(VACCINATION_VCT, {"vaccination": [{"dn": 2}]}, partial=True)
    # Subjects holding strings (names, dates, places) are never kept.
    validate_claims(RESIDENCY_VCT, {"address": {"region": "Seoul"}}, partial=True)
    assert not any("Seoul" in repr(key) for key in types._known_valid)
    assert schema_invalid(RESIDENCY_VCT, {"address": [{"region": "Seoul"}]}, partial=True)
    assert "required member missing" in schema_invalid(
        RESIDENCY_VCT, {"address": {"region": "Seoul"}}
    )
    with pytest.raises(VerificationError):
        validate_claims(RESIDENCY_VCT, {"age_over_19": (True,)}, partial=True)


# --- resident registration numbers -----------------------------------------------------------

RRN = "980315-2345678"


@pytest.mark.parametrize(
    "name",
    [
        "resident_registration_number",
        "residentRegistrationNumber",
        "ResidentRegistrationNo",
        "rrn",
        "RRN",
        "holder_rrn",
        "rrn-hash",
        "jumin_bunho",
        "주민등록번호",
        "주민번호",
    ],
)
@pytest.mark.parametrize("vct", sorted(CREDENTIAL_TYPES))
@pytest.mark.parametrize("partial", [False, True])
def test_rrn_member_names_are_refused_anywhere(name: str, vct: str, partial: bool) -> None:
    claims = get_type(vct).example_claims()
    claims[name] = "redacted"
    detail = schema_invalid(vct, claims, partial=partial)
    assert "resident registration number" in detail
    nested = get_type(vct).example_claims()
    container = next(value for value in nested.values() if isinstance(value, dict))
    container[name] = True
    assert "resident registration number" in schema_invalid(vct, nested, partial=partial)


@pytest.mark.parametrize(
    "value",
    [
        RRN,
        f"주민번호 {RRN}",
        "980315 - 2345678",
        "980315‐2345678",  # U+2010 hyphen
        "９８０３１５－２３４５６７８",  # full-width, as pasted from some Korean forms
        "x9803152-23456789x",
    ],
)
def test_rrn_shaped_values_are_refused_in_any_string(value: str) -> None:
    for ctype in CREDENTIAL_TYPES.values():
        for path in ctype.disclosable_paths:
            claims = ctype.example_claims()
            node = claims
            for name in path[:-1]:
                node = node[name]
            if not isinstance(node[path[-1]], str):
                continue
            node[path[-1]] = value
            for partial in (False, True):
                detail = schema_invalid(ctype.vct, claims, partial=partial)
                assert "resident registration number" in detail
                assert value not in detail
                assert "2345678" not in detail


def test_rrn_refused_in_member_names_and_nested_lists() -> None:
    claims = residency()
    claims[f"note {RRN}"] = 1
    assert RRN not in schema_invalid(RESIDENCY_VCT, claims)
    claims = residency()
    claims["given_name"] = ["ok", {"deep": RRN}]
    detail = schema_invalid(RESIDENCY_VCT, claims)
    assert detail.startswith("$.given_name[1].deep: value shaped like a resident registration")


def test_similar_but_harmless_values_pass() -> None:
    claims = vaccination()
    claims["vaccination"]["ci"] = "URN:UVCI:01:KR:9803152345678"  # no hyphen: not the RRN shape
    validate_claims(VACCINATION_VCT, claims)
    claims = residency()
    claims["given_name"] = "Terrence"  # contains no 'rrn' token
    validate_claims(RESIDENCY_VCT, claims)


@given(
    prefix=st.text(max_size=5),
    suffix=st.text(max_size=5),
    front=st.from_regex(r"[0-9]{6}", fullmatch=True),
    back=st.from_regex(r"[0-9]{7}", fullmatch=True),
)
def test_property_any_string_holding_an_rrn_is_refused(
    prefix: str, suffix: str, front: str, back: str
) -> None:
    claims = youth()
    claims["given_name"] = f"{prefix}{front}-{back}{suffix}"
    with pytest.raises(VerificationError) as info:
        validate_claims(YOUTH_ALLOWANCE_VCT, claims)
    assert info.value.reason is ReasonCode.SCHEMA_INVALID
    assert f"{front}-{back}" not in info.value.detail


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=10,
    )
)
def test_property_validate_claims_raises_only_civic_errors(value: Any) -> None:
    for vct in CREDENTIAL_TYPES:
        for partial in (False, True):
            try:
                validate_claims(vct, {"given_name": value}, partial=partial)
            except CivicError as exc:
                assert exc.reason is ReasonCode.SCHEMA_INVALID


# --- ages -------------------------------------------------------------------------------------


def test_age_flags_turn_on_the_birthday() -> None:
    born = date(2006, 7, 20)
    assert age_over_flags(born, date(2025, 7, 19))["age_over_19"] is False
    assert age_over_flags(born, date(2025, 7, 20))["age_over_19"] is True
    assert age_over_flags(born, date(2025, 7, 20)) == {
        "age_over_14": True,
        "age_over_18": True,
        "age_over_19": True,
        "age_over_65": False,
    }
    assert age_over_flags("1960-01-01", "2025-01-01")["age_over_65"] is True
    assert age_over_flags("1960-01-01", "2024-12-31")["age_over_65"] is False


def test_age_of_a_leap_day_birth() -> None:
    born = date(2008, 2, 29)
    assert age_on(born, date(2026, 2, 28)) == 17  # no 29 February in 2026: not yet 18
    assert age_on(born, date(2026, 3, 1)) == 18
    assert age_over_flags(born, date(2026, 2, 28))["age_over_18"] is False
    assert age_over_flags(born, date(2026, 3, 1))["age_over_18"] is True
    assert age_on(born, date(2028, 2, 28)) == 19
    assert age_on(born, date(2028, 2, 29)) == 20  # a leap year has the birthday itself
    assert age_on(date(2008, 3, 1), date(2026, 2, 28)) == 17
    assert age_on(date(2008, 2, 28), date(2026, 2, 28)) == 18
    assert age_on(born, born) == 0


def test_age_inputs_are_checked() -> None:
    with pytest.raises(UsageError):
        age_over_flags("2010-01-02", "2010-01-01")
    for bad in ("2008-02-30", "20080229", "2008-2-9", "", "2008-02-29\n"):
        with pytest.raises(MalformedError):
            age_over_flags(bad, "2025-01-01")


def oracle_age(born: date, on: date) -> int:
    """Count anniversaries reached: the anniversary of 29 February is 1 March in a common year."""
    age = 0
    while True:
        year = born.year + age + 1
        try:
            anniversary = born.replace(year=year)
        except ValueError:
            anniversary = date(year, 3, 1)
        if anniversary > on:
            return age
        age += 1


@given(
    born=st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31)),
    days=st.integers(min_value=0, max_value=120 * 366),
)
def test_property_age_matches_anniversary_count(born: date, days: int) -> None:
    on = born + timedelta(days=days)
    assert age_on(born, on) == oracle_age(born, on)
    flags = age_over_flags(born, on)
    assert flags == {f"age_over_{n}": oracle_age(born, on) >= n for n in AGE_THRESHOLDS}


# --- youth allowance rules --------------------------------------------------------------------

BIRTH = examples.RESIDENCY_EXAMPLE["birth_date"]
APPLIED = examples.YOUTH_ALLOWANCE_APPLICATION_DATE


def rules_of(
    claims: dict[str, Any], birth: Any = BIRTH, applied: Any = APPLIED, **kw: Any
) -> set[str]:
    return {v.rule for v in check_youth_allowance_rules(claims, birth, applied, **kw)}


def test_example_allowance_satisfies_the_rules() -> None:
    assert check_youth_allowance_rules(youth(), BIRTH, APPLIED, residence_region="Seoul") == []
    enforce_youth_allowance_rules(youth(), date(1998, 3, 15), date(2025, 4, 14))


@pytest.mark.parametrize(
    ("birth", "applied", "ok"),
    [
        ("2006-04-14", "2025-04-14", True),  # 19 on the day
        ("2006-04-15", "2025-04-14", False),  # 19 tomorrow
        ("1990-04-15", "2025-04-14", True),  # still 34
        ("1990-04-14", "2025-04-14", False),  # 35 today
        ("2004-02-29", "2023-02-28", False),  # leap-day birth: 19 on 1 March
        ("2004-02-29", "2023-03-01", True),
        ("2026-01-01", "2025-04-14", False),  # born after applying: bad data
        ("1998-02-30", "2025-04-14", False),
    ],
)
def test_age_rule_on_the_application_date(birth: str, applied: str, ok: bool) -> None:
    assert ("age_19_to_34" in rules_of(youth(), birth, applied)) is not ok


def test_residency_amount_and_programme_rules() -> None:
    claims = youth()
    claims["eligibility"]["seoul_resident"] = False
    assert rules_of(claims) == {"seoul_residency"}
    assert rules_of(youth(), residence_region="Busan") == {"seoul_residency"}
    claims = youth()
    claims["eligibility"]["age_19_to_34"] = False
    assert rules_of(claims) == {"age_19_to_34"}
    for amount in (600_000, 499_999, True, "500000", None):
        claims = youth()
        claims["monthly_amount"] = amount
        assert rules_of(claims) == {"monthly_amount"}, amount
    claims = youth()
    claims["currency"] = "USD"
    assert rules_of(claims) == {"monthly_amount"}
    claims = youth()
    claims["programme_id"] = "busan-youth-allowance-2025"
    assert rules_of(claims) == {"programme"}


@pytest.mark.parametrize(
    ("start", "end", "ok"),
    [
        ("2025-06-01", "2025-11-30", True),
        ("2025-06-01", "2025-12-01", False),
        ("2025-06-01", "2025-06-01", True),
        ("2025-08-31", "2026-02-28", True),  # no 31 February: the period ends with the month
        ("2025-08-31", "2026-03-01", False),
        ("2023-08-29", "2024-02-28", True),
        ("2023-08-29", "2024-02-29", False),
        ("2025-06-01", "2025-05-31", False),
        ("2025-06-01", "2025-13-01", False),
    ],
)
def test_period_rule_at_most_six_months(start: str, end: str, ok: bool) -> None:
    claims = youth()
    claims["period"] = {"start": start, "end": end}
    assert ("period" in rules_of(claims)) is not ok


def test_missing_claims_are_violations_and_details_carry_no_values() -> None:
    violations = check_youth_allowance_rules({}, "2015-01-01", APPLIED, residence_region="Jeju-do")
    assert {v.rule for v in violations} == {
        "programme",
        "age_19_to_34",
        "seoul_residency",
        "monthly_amount",
        "period",
    }
    for violation in violations:
        assert "2015" not in violation.detail
        assert "Jeju" not in violation.detail
    with pytest.raises(VerificationError) as info:
        enforce_youth_allowance_rules({}, "2015-01-01", APPLIED)
    assert info.value.reason is ReasonCode.PROGRAMME_RULE_FAILED
    assert "2015" not in info.value.detail
    assert "monthly_amount" in info.value.detail


def test_last_day_of_period() -> None:
    assert last_day_of_period(date(2025, 3, 1), 6) == date(2025, 8, 31)
    assert last_day_of_period(date(2025, 8, 31), 6) == date(2026, 2, 28)
    assert last_day_of_period(date(2027, 8, 31), 6) == date(2028, 2, 29)
    assert last_day_of_period(date(2025, 1, 31), 1) == date(2025, 2, 28)
    assert last_day_of_period(date(2025, 12, 15), 1) == date(2026, 1, 14)
