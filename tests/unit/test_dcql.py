"""DCQL (OpenID4VP 1.0 sections 6 and 7): parsing, claims path pointers, matching."""

from __future__ import annotations

import copy
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civic.credentials import (
    RESIDENCY_VCT,
    VACCINATION_VCT,
    YOUTH_ALLOWANCE_VCT,
    examples,
    get_type,
)
from civic.dcql import (
    ClaimsQuery,
    CredentialMeta,
    DcqlQuery,
    HeldCredential,
    dcql_for_claims,
    match_credential_query,
    match_query,
    parse_dcql,
    parse_dcql_json,
    select_claims,
    value_matches,
)
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError
from tests.vectors import load_json, vectors_path

IDENTITY_VCT = "https://credentials.example.com/identity_credential"
AKI = "s9tIpPmhxdiuNkHMEWNpYim8S8Y"  # the section 6.1.1.1 example value

VECTOR_FILES = [
    ("query_lang", "claims_alternatives.json"),
    ("query_lang", "complex_mdoc.json"),
    ("query_lang", "credentials_alternatives.json"),
    ("query_lang", "multi_credentials.json"),
    ("query_lang", "simple.json"),
    ("query_lang", "simple_mdoc.json"),
    ("query_lang", "value_matching_simple.json"),
    ("request", "dcql_jwt_vc.json"),
    ("request", "dcql_ldp_vc.json"),
]


def vector(folder: str, name: str) -> Any:
    return load_json("oid4vp", "examples", folder, name)


def held(
    credential_id: str,
    vct: str,
    claims: dict[str, Any],
    **kwargs: Any,
) -> HeldCredential:
    return HeldCredential(id=credential_id, format="dc+sd-jwt", vct=vct, claims=claims, **kwargs)


def residency(credential_id: str = "res") -> HeldCredential:
    return held(credential_id, RESIDENCY_VCT, get_type(RESIDENCY_VCT).example_claims())


def residency_busan(credential_id: str = "res-busan") -> HeldCredential:
    return held(credential_id, RESIDENCY_VCT, copy.deepcopy(examples.RESIDENCY_EXAMPLE_BUSAN))


def youth(credential_id: str = "ya") -> HeldCredential:
    return held(credential_id, YOUTH_ALLOWANCE_VCT, get_type(YOUTH_ALLOWANCE_VCT).example_claims())


def vaccination(credential_id: str = "vac") -> HeldCredential:
    return held(credential_id, VACCINATION_VCT, get_type(VACCINATION_VCT).example_claims())


def malformed(obj: Any) -> str:
    with pytest.raises(MalformedError) as info:
        parse_dcql(obj)
    assert info.value.reason is ReasonCode.MALFORMED_DCQL
    return info.value.detail


def unsatisfied(query: DcqlQuery, wallet: list[HeldCredential]) -> str:
    with pytest.raises(VerificationError) as info:
        match_query(query, wallet)
    assert info.value.reason is ReasonCode.DCQL_UNSATISFIED
    return info.value.detail


# --- spec examples ----------------------------------------------------------------------------


@pytest.mark.parametrize(("folder", "name"), VECTOR_FILES)
def test_spec_examples_parse_and_round_trip(folder: str, name: str) -> None:
    raw = vector(folder, name)
    query = parse_dcql(raw)
    assert [c.id for c in query.credentials] == [c["id"] for c in raw["credentials"]]
    for parsed, original in zip(query.credentials, raw["credentials"], strict=True):
        assert parsed.format == original["format"]
        assert parsed.meta.to_json() == original["meta"]
        assert [list(c.path) for c in parsed.claims or ()] == [
            c["path"] for c in original.get("claims", [])
        ]
    assert parse_dcql(query.to_json()) == query
    assert query.to_json() == raw  # the examples use only members this model keeps
    text = vectors_path("oid4vp", "examples", folder, name).read_bytes()
    assert parse_dcql_json(text) == query


def test_spec_example_details() -> None:
    alternatives = parse_dcql(vector("query_lang", "claims_alternatives.json"))
    pid = alternatives.credential("pid")
    assert pid.claim_sets == (("a", "c", "d", "e"), ("a", "b", "e"))
    assert pid.meta == CredentialMeta(vct_values=(IDENTITY_VCT,))
    assert pid.multiple is False
    assert pid.require_cryptographic_holder_binding is True

    sets = parse_dcql(vector("query_lang", "credentials_alternatives.json")).credential_sets
    assert sets is not None
    assert [s.required for s in sets] == [True, False]
    assert sets[0].options[2] == ("pid_reduced_cred_1", "pid_reduced_cred_2")

    values = parse_dcql(vector("query_lang", "value_matching_simple.json"))
    claims = values.credential("my_credential").claims
    assert claims is not None
    assert claims[0] == ClaimsQuery(path=("family_name",), values=("Doe",))
    assert claims[3].values == ("90210", "90211")

    mdoc = parse_dcql(vector("query_lang", "complex_mdoc.json"))
    assert mdoc.credential("mdl-id").meta.doctype_value == "org.iso.18013.5.1.mDL"
    jwt_vc = parse_dcql(vector("request", "dcql_jwt_vc.json"))
    assert jwt_vc.credentials[0].meta.type_values == (("IDCredential",),)


def test_request_object_example_with_a_placeholder_is_not_strict_json() -> None:
    path: Path = vectors_path("oid4vp", "examples", "request", "request_object_client_id_did.json")
    with pytest.raises(CivicError) as info:
        parse_dcql_json(path.read_bytes())
    assert info.value.reason is ReasonCode.MALFORMED_JSON


# --- malformed queries ------------------------------------------------------------------------


def base_query() -> dict[str, Any]:
    return {
        "credentials": [
            {
                "id": "res",
                "format": "dc+sd-jwt",
                "meta": {"vct_values": [RESIDENCY_VCT]},
                "claims": [
                    {"id": "a", "path": ["age_over_19"], "values": [True]},
                    {"id": "b", "path": ["birth_date"]},
                ],
                "claim_sets": [["a"], ["b"]],
            },
            {"id": "vac", "format": "dc+sd-jwt", "meta": {"vct_values": [VACCINATION_VCT]}},
        ],
        "credential_sets": [{"options": [["res"], ["vac"]]}],
    }


def mutate(change: Any) -> dict[str, Any]:
    query = base_query()
    change(query)
    return query


def cred(query: dict[str, Any], index: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = query["credentials"][index]
    return result


NEGATIVE_CASES: list[tuple[str, Any, str]] = [
    ("not an object", lambda q: q.clear() or q.update({"x": 1}), "credentials is required"),
    ("credentials empty", lambda q: q.update(credentials=[]), "credentials: must not be empty"),
    ("credentials not array", lambda q: q.update(credentials={}), "credentials: must be an array"),
    ("credential not object", lambda q: q["credentials"].append("x"), "credentials[2]: must be"),
    ("duplicate ids", lambda q: cred(q, 1).update(id="res"), "two credential queries share an id"),
    ("id with dot", lambda q: cred(q).update(id="my.cred"), "credentials[0].id: must consist"),
    ("id with space", lambda q: cred(q).update(id="a b"), "credentials[0].id: must consist"),
    ("id non-ascii", lambda q: cred(q).update(id="주민"), "credentials[0].id: must consist"),
    ("id newline", lambda q: cred(q).update(id="res\n"), "credentials[0].id: must consist"),
    ("id empty", lambda q: cred(q).update(id=""), "credentials[0].id: must not be empty"),
    ("id number", lambda q: cred(q).update(id=1), "credentials[0].id: must be a string"),
    ("id missing", lambda q: cred(q).pop("id"), "credentials[0]: id is required"),
    ("format missing", lambda q: cred(q).pop("format"), "credentials[0]: format is required"),
    ("format number", lambda q: cred(q).update(format=7), "credentials[0].format: must be"),
    ("meta missing", lambda q: cred(q).pop("meta"), "credentials[0]: meta is required"),
    ("meta array", lambda q: cred(q).update(meta=[]), "credentials[0].meta: must be an object"),
    ("no vct_values", lambda q: cred(q).update(meta={}), "vct_values is required"),
    ("vct_values empty", lambda q: cred(q)["meta"].update(vct_values=[]), "must not be empty"),
    (
        "vct_values string",
        lambda q: cred(q)["meta"].update(vct_values=RESIDENCY_VCT),
        "credentials[0].meta.vct_values: must be an array",
    ),
    (
        "vct_values number",
        lambda q: cred(q)["meta"].update(vct_values=[1]),
        "credentials[0].meta.vct_values[0]: must be a string",
    ),
    (
        "mdoc without doctype",
        lambda q: cred(q, 1).update(format="mso_mdoc", meta={}),
        "doctype_value is required",
    ),
    (
        "ldp without type_values",
        lambda q: cred(q, 1).update(format="ldp_vc", meta={"type_values": ["x"]}),
        "credentials[1].meta.type_values[0]: must be an array",
    ),
    ("claims empty", lambda q: cred(q).update(claims=[]), "credentials[0].claims: must not"),
    ("claims object", lambda q: cred(q).update(claims={}), "credentials[0].claims: must be"),
    ("claim no path", lambda q: cred(q)["claims"][0].pop("path"), "claims[0]: path is required"),
    ("empty path", lambda q: cred(q)["claims"][0].update(path=[]), "claims[0].path: must not"),
    ("path string", lambda q: cred(q)["claims"][0].update(path="x"), "claims[0].path: must be"),
    (
        "negative index",
        lambda q: cred(q)["claims"][0].update(path=["a", -1]),
        "claims[0].path[1]: must be a string, null or a non-negative integer",
    ),
    ("boolean component", lambda q: cred(q)["claims"][0].update(path=[True]), "path[0]: must"),
    ("float component", lambda q: cred(q)["claims"][0].update(path=["a", 1.0]), "path[1]: must"),
    ("object component", lambda q: cred(q)["claims"][0].update(path=[{}]), "path[0]: must"),
    (
        "path too long",
        lambda q: cred(q)["claims"][0].update(path=["a"] * 33),
        "claims[0].path: longer than 32",
    ),
    (
        "mdoc path of one",
        lambda q: cred(q, 1).update(
            format="mso_mdoc", meta={"doctype_value": "x"}, claims=[{"path": ["ns"]}]
        ),
        "an mso_mdoc path is a namespace and an element name",
    ),
    ("values empty", lambda q: cred(q)["claims"][0].update(values=[]), "values: must not be"),
    ("values float", lambda q: cred(q)["claims"][0].update(values=[1.5]), "values[0]: must be"),
    ("values null", lambda q: cred(q)["claims"][0].update(values=[None]), "values[0]: must"),
    ("values object", lambda q: cred(q)["claims"][0].update(values=[{}]), "values[0]: must"),
    ("claim id bad", lambda q: cred(q)["claims"][0].update(id="a/b"), "claims[0].id: must"),
    ("claim ids twice", lambda q: cred(q)["claims"][1].update(id="a"), "share an id"),
    (
        "same path twice",
        lambda q: cred(q)["claims"][1].update(path=["age_over_19"]),
        "two claims queries point to the same claim",
    ),
    (
        "claim_sets without claims",
        lambda q: cred(q).pop("claims"),
        "credentials[0].claim_sets: not allowed without claims",
    ),
    (
        "claim_sets without ids",
        lambda q: cred(q)["claims"][1].pop("id"),
        "every claims query needs an id with claim_sets",
    ),
    (
        "claim_sets unknown id",
        lambda q: cred(q).update(claim_sets=[["a"], ["z"]]),
        "credentials[0].claim_sets[1][0]: references no claims query",
    ),
    ("claim_sets empty", lambda q: cred(q).update(claim_sets=[]), "claim_sets: must not be"),
    ("claim_set empty", lambda q: cred(q).update(claim_sets=[[]]), "claim_sets[0]: must not"),
    ("claim_set string", lambda q: cred(q).update(claim_sets=["a"]), "claim_sets[0]: must be"),
    ("claim_set repeats", lambda q: cred(q).update(claim_sets=[["a", "a"]]), "twice"),
    ("multiple string", lambda q: cred(q).update(multiple="true"), "multiple: must be a boolean"),
    ("multiple int", lambda q: cred(q).update(multiple=1), "multiple: must be a boolean"),
    (
        "holder binding null",
        lambda q: cred(q).update(require_cryptographic_holder_binding=None),
        "require_cryptographic_holder_binding: must be a boolean",
    ),
    (
        "trusted_authorities empty",
        lambda q: cred(q).update(trusted_authorities=[]),
        "trusted_authorities: must not be empty",
    ),
    (
        "trusted_authority without values",
        lambda q: cred(q).update(trusted_authorities=[{"type": "aki"}]),
        "trusted_authorities[0]: values is required",
    ),
    (
        "trusted_authority empty values",
        lambda q: cred(q).update(trusted_authorities=[{"type": "aki", "values": []}]),
        "trusted_authorities[0].values: must not be empty",
    ),
    (
        "trusted_authority without type",
        lambda q: cred(q).update(trusted_authorities=[{"values": ["x"]}]),
        "trusted_authorities[0]: type is required",
    ),
    (
        "credential_sets empty",
        lambda q: q.update(credential_sets=[]),
        "credential_sets: must not be empty",
    ),
    (
        "credential_set no options",
        lambda q: q["credential_sets"][0].pop("options"),
        "credential_sets[0]: options is required",
    ),
    (
        "credential_set empty options",
        lambda q: q["credential_sets"][0].update(options=[]),
        "credential_sets[0].options: must not be empty",
    ),
    (
        "credential_set empty option",
        lambda q: q["credential_sets"][0].update(options=[[]]),
        "credential_sets[0].options[0]: must not be empty",
    ),
    (
        "credential_set unknown id",
        lambda q: q["credential_sets"][0].update(options=[["res"], ["vac", "pid"]]),
        "credential_sets[0].options[1][1]: references no credential query",
    ),
    (
        "credential_set required string",
        lambda q: q["credential_sets"][0].update(required="false"),
        "credential_sets[0].required: must be a boolean",
    ),
    (
        "credential_sets object",
        lambda q: q.update(credential_sets={"options": [["res"]]}),
        "credential_sets: must be an array",
    ),
    (
        "too many credentials",
        lambda q: q.update(
            credentials=[{"id": f"c{i}", "format": "x", "meta": {}} for i in range(257)]
        ),
        "credentials: more than 256 elements",
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"),
    [pytest.param(change, expected, id=name) for name, change, expected in NEGATIVE_CASES],
)
def test_malformed_queries(change: Any, expected: str) -> None:
    parse_dcql(base_query())  # the base is valid: each case breaks exactly one thing
    assert expected in malformed(mutate(change))


@pytest.mark.parametrize("obj", [None, [], "credentials", 3, True, b"{}"])
def test_query_must_be_an_object(obj: Any) -> None:
    assert malformed(obj) == "dcql_query: must be an object"


def test_values_are_not_echoed_in_errors() -> None:
    detail = malformed(mutate(lambda q: cred(q)["claims"][0].update(values=["Kim", 1.5])))
    assert "Kim" not in detail
    assert "1.5" not in detail


def test_unknown_members_are_ignored_and_defaults_apply() -> None:
    query = base_query()
    query["future"] = {"anything": [1, 2]}
    cred(query)["purpose"] = "age check"
    cred(query)["claims"][0]["intent_to_retain"] = "ignored outside mdoc"
    cred(query)["meta"]["extra"] = 1
    query["credential_sets"][0]["purpose"] = {"en": "x"}
    parsed = parse_dcql(query)
    assert parsed == parse_dcql(base_query())
    vac = parsed.credential("vac")
    assert vac.claims is None
    assert vac.claim_sets is None
    assert vac.multiple is False
    assert vac.require_cryptographic_holder_binding is True
    assert parsed.credential_sets is not None
    assert parsed.credential_sets[0].required is True
    with pytest.raises(UsageError):
        parsed.credential("missing")


def test_unknown_formats_keep_an_opaque_meta() -> None:
    query = parse_dcql({"credentials": [{"id": "x", "format": "vc+future", "meta": {"a": 1}}]})
    assert query.credentials[0].meta == CredentialMeta()


LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-3, max_value=3)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "a", "b", "res", "vac", "dc+sd-jwt", "mso_mdoc", "ldp_vc", "x y"])
)


def json_values(max_leaves: int = 25) -> st.SearchStrategy[Any]:
    return st.recursive(
        LEAVES,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.sampled_from(KEYS), children, max_size=5)
        ),
        max_leaves=max_leaves,
    )


def small() -> st.SearchStrategy[Any]:
    return json_values(max_leaves=4)


KEYS = [
    "credentials",
    "credential_sets",
    "id",
    "format",
    "meta",
    "vct_values",
    "doctype_value",
    "type_values",
    "claims",
    "claim_sets",
    "path",
    "values",
    "multiple",
    "required",
    "options",
    "trusted_authorities",
    "type",
    "require_cryptographic_holder_binding",
    "intent_to_retain",
]


def check_parse_is_clean(value: Any) -> None:
    try:
        query = parse_dcql(value)
    except CivicError as exc:
        assert exc.reason is ReasonCode.MALFORMED_DCQL
    else:
        assert parse_dcql(query.to_json()) == query


@given(json_values())
def test_property_parse_never_raises_a_foreign_exception(value: Any) -> None:
    check_parse_is_clean(value)


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid values most of the time, arbitrary JSON sometimes: parses often succeed."""
    return st.integers(min_value=0, max_value=9).flatmap(lambda n: small() if n == 9 else valid)


CREDENTIAL_IDS = mostly(st.sampled_from(["res", "vac", "a-b"]))
CLAIM_IDS = st.sampled_from(["a", "b", "c"])
FORMAT_AND_META = mostly(
    st.sampled_from(
        [
            ("dc+sd-jwt", {"vct_values": ["urn:v"]}),
            ("mso_mdoc", {"doctype_value": "org.iso.18013.5.1.mDL"}),
            ("ldp_vc", {"type_values": [["IDCredential"]]}),
            ("other", {}),
        ]
    )
)


def with_format_and_meta(credential: dict[str, Any]) -> dict[str, Any]:
    pair = credential.pop("format_and_meta")
    if isinstance(pair, tuple):
        credential["format"], credential["meta"] = pair
    else:
        credential["format"], credential["meta"] = "dc+sd-jwt", pair
    return credential


NEAR_VALID_QUERY = st.fixed_dictionaries(
    {
        "credentials": st.lists(
            st.fixed_dictionaries(
                {"id": CREDENTIAL_IDS, "format_and_meta": FORMAT_AND_META},
                optional={
                    "claims": mostly(
                        st.lists(
                            st.fixed_dictionaries(
                                {
                                    "path": mostly(
                                        st.lists(
                                            st.sampled_from(["ns", "a", None, 0, 2]),
                                            min_size=1,
                                            max_size=3,
                                        )
                                    )
                                },
                                optional={
                                    "id": mostly(CLAIM_IDS),
                                    "values": mostly(
                                        st.lists(
                                            st.sampled_from(["a", 1, True]), min_size=1, max_size=2
                                        )
                                    ),
                                },
                            ),
                            min_size=1,
                            max_size=3,
                        )
                    ),
                    "claim_sets": mostly(
                        st.lists(
                            st.lists(CLAIM_IDS, min_size=1, max_size=2), min_size=1, max_size=2
                        )
                    ),
                    "multiple": mostly(st.booleans()),
                    "require_cryptographic_holder_binding": mostly(st.booleans()),
                },
            ).map(with_format_and_meta),
            min_size=1,
            max_size=3,
        )
    },
    optional={
        "credential_sets": mostly(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "options": st.lists(
                            st.lists(CREDENTIAL_IDS, min_size=1, max_size=2),
                            min_size=1,
                            max_size=2,
                        )
                    },
                    optional={"required": mostly(st.booleans())},
                ),
                min_size=1,
                max_size=2,
            )
        )
    },
)


@given(NEAR_VALID_QUERY)
def test_property_near_valid_queries_parse_or_fail_cleanly(value: Any) -> None:
    check_parse_is_clean(value)


# --- claims path pointers (section 7) ---------------------------------------------------------

ARTHUR = {
    "name": "Arthur Dent",
    "address": {
        "street_address": "42 Market Street",
        "locality": "Milliways",
        "postal_code": "12345",
    },
    "degrees": [
        {"type": "Bachelor of Science", "university": "University of Betelgeuse"},
        {"type": "Master of Science", "university": "University of Betelgeuse"},
    ],
    "nationalities": ["British", "Betelgeusian"],
}


def test_claims_path_pointer_examples_of_section_7_4() -> None:
    assert select_claims(ARTHUR, ["name"]) == ((("name",), "Arthur Dent"),)
    assert select_claims(ARTHUR, ["address"]) == ((("address",), ARTHUR["address"]),)
    assert select_claims(ARTHUR, ["address", "street_address"]) == (
        (("address", "street_address"), "42 Market Street"),
    )
    assert select_claims(ARTHUR, ["degrees", None, "type"]) == (
        (("degrees", 0, "type"), "Bachelor of Science"),
        (("degrees", 1, "type"), "Master of Science"),
    )
    assert select_claims(ARTHUR, ["nationalities", 1]) == ((("nationalities", 1), "Betelgeusian"),)
    assert select_claims(ARTHUR, ["nationalities", None]) == (
        (("nationalities", 0), "British"),
        (("nationalities", 1), "Betelgeusian"),
    )


@pytest.mark.parametrize(
    "path",
    [
        [],
        ["missing"],
        ["name", "first"],  # member of a string
        ["name", 0],  # index into a string
        ["name", None],
        ["address", 0],  # index into an object
        ["address", None],
        ["degrees", "type"],  # member of an array
        ["nationalities", 2],  # past the end
        ["degrees", None, "grade"],
        ["degrees", -1],
        ["degrees", True],
        ["degrees", 1.0],
    ],
)
def test_pointers_that_select_nothing_mean_missing(path: list[Any]) -> None:
    assert select_claims(ARTHUR, path) == ()


def test_frozen_claims_select_the_same() -> None:
    frozen = MappingProxyType(
        {**ARTHUR, "degrees": tuple(MappingProxyType(d) for d in ARTHUR["degrees"])}
    )
    assert select_claims(frozen, ["degrees", None, "type"]) == select_claims(
        ARTHUR, ["degrees", None, "type"]
    )
    assert select_claims(frozen, ["degrees", 1, "university"]) != ()


def test_a_null_over_mixed_elements_is_an_error() -> None:
    claims = {"degrees": [{"type": "BSc"}, "not an object"]}
    assert select_claims(claims, ["degrees", None, "type"]) == ()
    claims = {"degrees": [{"type": "BSc"}, {"university": "U"}]}
    assert select_claims(claims, ["degrees", None, "type"]) == ((("degrees", 0, "type"), "BSc"),)


def test_value_matching_is_exact_in_type_and_value() -> None:
    assert value_matches(True, [True])
    assert not value_matches(1, [True])
    assert not value_matches(True, [1])
    assert value_matches(1, [1])
    assert not value_matches(1.0, [1])
    assert not value_matches("1", [1])
    assert not value_matches({"a": 1}, ["a"])
    assert not value_matches(["a"], ["a"])
    assert value_matches("Seoul", ["Busan", "Seoul"])


@given(json_values(), st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=3))))
def test_property_select_claims_never_raises(claims: Any, path: list[Any]) -> None:
    for concrete, value in select_claims(claims, path):
        assert len(concrete) == len(path)
        node = claims
        for component in concrete:
            node = node[component]
        assert node == value


# --- matching with the civic credential types -------------------------------------------------


def test_value_matching_on_the_region() -> None:
    query = dcql_for_claims("res", RESIDENCY_VCT, [])
    seoul_only = parse_dcql(
        {
            "credentials": [
                {
                    "id": "res",
                    "format": "dc+sd-jwt",
                    "meta": {"vct_values": [RESIDENCY_VCT]},
                    "claims": [{"path": ["address", "region"], "values": ["Seoul"]}],
                }
            ]
        }
    )
    plan = match_query(seoul_only, [residency_busan(), residency()])
    [match] = plan.candidates["res"]
    assert match.credential.id == "res"
    assert match.claim_paths == (("address", "region"),)
    assert "res" in unsatisfied(seoul_only, [residency_busan(), vaccination()])
    # Without claims the verifier asks for no selectively disclosable claim at all.
    plan = match_query(query, [residency_busan(), residency()])
    assert [m.credential.id for m in plan.candidates["res"]] == ["res-busan", "res"]
    assert all(m.claim_paths == () for m in plan.candidates["res"])


def age_query(values: list[Any] | None = None) -> DcqlQuery:
    age_claim: dict[str, Any] = {"id": "age", "path": ["age_over_19"]}
    if values is not None:
        age_claim["values"] = values
    return parse_dcql(
        {
            "credentials": [
                {
                    "id": "res",
                    "format": "dc+sd-jwt",
                    "meta": {"vct_values": [RESIDENCY_VCT]},
                    "claims": [
                        age_claim,
                        {"id": "birth", "path": ["birth_date"]},
                        {"id": "region", "path": ["address", "region"]},
                    ],
                    "claim_sets": [["age", "region"], ["birth", "region"]],
                }
            ]
        }
    )


def test_claim_sets_take_the_first_satisfiable_option() -> None:
    [match] = match_query(age_query([True]), [residency()]).candidates["res"]
    assert match.claim_set == ("age", "region")
    assert match.claim_paths == (("age_over_19",), ("address", "region"))

    without_flag = residency("no-flag")
    del without_flag.claims["age_over_19"]
    [match] = match_query(age_query([True]), [without_flag]).candidates["res"]
    assert match.claim_set == ("birth", "region")
    assert match.claim_paths == (("birth_date",), ("address", "region"))

    # A value that does not match counts as a missing claim.
    [match] = match_query(age_query([False]), [residency()]).candidates["res"]
    assert match.claim_set == ("birth", "region")
    match_int = match_credential_query(age_query([1]).credentials[0], residency())
    assert match_int is not None
    assert match_int.claim_set == ("birth", "region")  # 1 is not true

    no_options = residency("bare")
    for name in ("age_over_19", "birth_date"):
        del no_options.claims[name]
    assert "res" in unsatisfied(age_query(), [no_options])


def test_claims_without_claim_sets_are_all_required() -> None:
    query = dcql_for_claims(
        "vac", VACCINATION_VCT, [["vaccination", "mp"], ["vaccination", "dt"], "family_name"]
    )
    [match] = match_query(query, [residency(), vaccination()]).candidates["vac"]
    assert match.claim_set is None
    assert match.claim_paths == (("vaccination", "mp"), ("vaccination", "dt"), ("family_name",))
    partial = vaccination("partial")
    del partial.claims["vaccination"]["dt"]
    unsatisfied(query, [partial])


def test_credential_sets_choose_the_first_satisfiable_option() -> None:
    query = parse_dcql(
        {
            "credentials": [
                {"id": "res", "format": "dc+sd-jwt", "meta": {"vct_values": [RESIDENCY_VCT]}},
                {"id": "vac", "format": "dc+sd-jwt", "meta": {"vct_values": [VACCINATION_VCT]}},
                {
                    "id": "ya",
                    "format": "dc+sd-jwt",
                    "meta": {"vct_values": [YOUTH_ALLOWANCE_VCT]},
                    "claims": [{"path": ["allowance_status"], "values": ["active"]}],
                },
            ],
            "credential_sets": [
                {"options": [["res"], ["vac"]]},
                {"required": False, "options": [["ya"]]},
            ],
        }
    )
    plan = match_query(query, [vaccination(), youth()])
    assert plan.credential_set_options == (("vac",), ("ya",))
    assert plan.selected == ("vac", "ya")
    assert plan.candidates["res"] == ()

    plan = match_query(query, [vaccination(), residency()])
    assert plan.credential_set_options == (("res",), None)
    assert plan.selected == ("res",)

    suspended = youth("suspended")
    suspended.claims["allowance_status"] = "suspended"
    plan = match_query(query, [residency(), suspended])
    assert plan.credential_set_options == (("res",), None)

    assert "credential_sets[0]" in unsatisfied(query, [youth()])


def test_without_credential_sets_every_query_must_match() -> None:
    query = parse_dcql(
        {
            "credentials": [
                {"id": "res", "format": "dc+sd-jwt", "meta": {"vct_values": [RESIDENCY_VCT]}},
                {"id": "ya", "format": "dc+sd-jwt", "meta": {"vct_values": [YOUTH_ALLOWANCE_VCT]}},
            ]
        }
    )
    plan = match_query(query, [youth(), residency()])
    assert plan.selected == ("res", "ya")
    assert plan.credential_set_options == ()
    assert unsatisfied(query, [residency()]).endswith("query ya")


def test_binding_format_and_trust_filters() -> None:
    query = dcql_for_claims("res", RESIDENCY_VCT, [["given_name"]])
    unbound = held("unbound", RESIDENCY_VCT, residency().claims, holder_binding=False)
    unsatisfied(query, [unbound])
    relaxed = dcql_for_claims(
        "res", RESIDENCY_VCT, [["given_name"]], require_cryptographic_holder_binding=False
    )
    assert match_query(relaxed, [unbound]).selected == ("res",)
    assert relaxed.to_json()["credentials"][0]["require_cryptographic_holder_binding"] is False

    mdoc = HeldCredential(id="m", format="mso_mdoc", vct=RESIDENCY_VCT, claims=residency().claims)
    unsatisfied(query, [mdoc])
    unsatisfied(parse_dcql(vector("query_lang", "simple_mdoc.json")), [residency(), mdoc])

    trusted = parse_dcql(
        {
            "credentials": [
                {
                    "id": "res",
                    "format": "dc+sd-jwt",
                    "meta": {"vct_values": [RESIDENCY_VCT]},
                    "trusted_authorities": [
                        {"type": "aki", "values": ["s9tIpPmhxdiuNkHMEWNpYim8S8Y"]}
                    ],
                }
            ]
        }
    )
    unsatisfied(trusted, [residency()])
    anchored = held(
        "anchored",
        RESIDENCY_VCT,
        residency().claims,
        trusted_authorities=frozenset({("aki", AKI)}),
    )
    assert match_query(trusted, [residency(), anchored]).candidates["res"][0].credential.id == (
        "anchored"
    )


def test_multiple_candidates_are_all_listed() -> None:
    query = dcql_for_claims("res", RESIDENCY_VCT, [["age_over_65"]])
    plan = match_query(query, [residency("a"), residency_busan("b"), youth()])
    assert [m.credential.id for m in plan.candidates["res"]] == ["a", "b"]


def test_null_paths_and_values_select_matching_elements_only() -> None:
    record = held("rec", "urn:example:degrees", copy.deepcopy(ARTHUR))
    query = parse_dcql(
        {
            "credentials": [
                {
                    "id": "deg",
                    "format": "dc+sd-jwt",
                    "meta": {"vct_values": ["urn:example:degrees"]},
                    "claims": [
                        {"path": ["degrees", None, "type"], "values": ["Master of Science"]},
                        {"path": ["nationalities", None]},
                    ],
                }
            ]
        }
    )
    [match] = match_query(query, [record]).candidates["deg"]
    assert match.claim_paths == (
        ("degrees", 1, "type"),
        ("nationalities", 0),
        ("nationalities", 1),
    )


# --- spec examples against a wallet -----------------------------------------------------------


def identity(credential_id: str, **overrides: Any) -> HeldCredential:
    claims: dict[str, Any] = {
        "iss": "https://issuer.example.com",
        "vct": IDENTITY_VCT,
        "family_name": "Doe",
        "given_name": "John",
        "date_of_birth": "1990-01-01",
        "address": {"street_address": "123 Main St"},
        "postal_code": "90210",
        "locality": "Anytown",
        "region": "Anystate",
    }
    claims.update(overrides)
    return held(credential_id, IDENTITY_VCT, {k: v for k, v in claims.items() if v is not None})


def test_spec_value_matching_example() -> None:
    query = parse_dcql(vector("query_lang", "value_matching_simple.json"))
    plan = match_query(query, [identity("doe")])
    assert plan.candidates["my_credential"][0].claim_paths == (
        ("family_name",),
        ("given_name",),
        ("address", "street_address"),
        ("postal_code",),
    )
    unsatisfied(query, [identity("roe", family_name="Roe")])
    unsatisfied(query, [identity("zip", postal_code=90210)])  # an integer is not the string


def test_spec_claims_alternatives_example() -> None:
    query = parse_dcql(vector("query_lang", "claims_alternatives.json"))
    [match] = match_query(query, [identity("full")]).candidates["pid"]
    assert match.claim_set == ("a", "c", "d", "e")
    [match] = match_query(query, [identity("no-locality", locality=None)]).candidates["pid"]
    assert match.claim_set == ("a", "b", "e")
    assert match.claim_paths == (("family_name",), ("postal_code",), ("date_of_birth",))


def test_spec_credentials_alternatives_example() -> None:
    query = parse_dcql(vector("query_lang", "credentials_alternatives.json"))
    reduced_1 = held(
        "r1",
        "https://credentials.example.com/reduced_identity_credential",
        {"family_name": "Doe", "given_name": "John"},
    )
    reduced_2 = held(
        "r2",
        "https://cred.example/residence_credential",
        {"postal_code": "90210", "locality": "Anytown", "region": "Anystate"},
    )
    plan = match_query(query, [reduced_2, reduced_1])
    assert plan.credential_set_options == (("pid_reduced_cred_1", "pid_reduced_cred_2"), None)
    assert plan.selected == ("pid_reduced_cred_1", "pid_reduced_cred_2")
    plan = match_query(query, [reduced_2, reduced_1, identity("pid")])
    assert plan.credential_set_options[0] == ("pid",)
    unsatisfied(query, [reduced_2])


# --- the query builder ------------------------------------------------------------------------


def test_dcql_for_claims_builds_a_valid_query() -> None:
    query = dcql_for_claims("youth_check", YOUTH_ALLOWANCE_VCT, [["allowance_status"], "period"])
    assert query.to_json() == {
        "credentials": [
            {
                "id": "youth_check",
                "format": "dc+sd-jwt",
                "meta": {"vct_values": [YOUTH_ALLOWANCE_VCT]},
                "claims": [{"path": ["allowance_status"]}, {"path": ["period"]}],
            }
        ]
    }
    assert parse_dcql(query.to_json()) == query
    plan = match_query(query, [youth()])
    assert plan.candidates["youth_check"][0].claim_paths == (("allowance_status",), ("period",))


@pytest.mark.parametrize(
    ("query_id", "paths"),
    [("bad id", [["a"]]), ("ok", [[]]), ("ok", [["a", -1]]), ("ok", [["a"], ["a"]])],
)
def test_dcql_for_claims_rejects_bad_arguments(query_id: str, paths: list[list[Any]]) -> None:
    with pytest.raises(UsageError) as info:
        dcql_for_claims(query_id, RESIDENCY_VCT, paths)
    assert info.value.reason is ReasonCode.MALFORMED_DCQL
