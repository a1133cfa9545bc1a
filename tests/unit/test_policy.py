"""civic.policy: declarative verifier policies, their DCQL queries and their evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civic.credentials import RESIDENCY_VCT, VACCINATION_VCT, YOUTH_ALLOWANCE_VCT, get_type
from civic.dcql import HeldCredential, match_query
from civic.encoding import json_dumps
from civic.errors import MalformedError, ReasonCode
from civic.policy import Policy, Predicate, parse_policy, parse_policy_text

POLICIES = Path(__file__).resolve().parents[2] / "verifier" / "policies"


def load(name: str) -> Policy:
    path = POLICIES / name
    return parse_policy_text(
        path.read_text("utf-8"), format="json" if name.endswith("json") else "yaml"
    )


def minimal(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": "bar-entry",
        "credentials": [
            {
                "id": "residency",
                "vct": RESIDENCY_VCT,
                "claims": [{"path": ["age_over_19"], "equals": True}],
            }
        ],
    }
    document.update(changes)
    return document


# --- the three shipped policies --------------------------------------------------------------


def test_bar_entry_asks_for_age_over_19_and_nothing_else() -> None:
    policy = load("bar-entry.yaml")
    assert policy.dcql_json() == {
        "credentials": [
            {
                "id": "residency",
                "format": "dc+sd-jwt",
                "meta": {"vct_values": [RESIDENCY_VCT]},
                "claims": [{"path": ["age_over_19"]}],
            }
        ]
    }
    assert policy.evaluate({"residency": {"age_over_19": True}}).satisfied
    outcome = policy.evaluate({"residency": {"age_over_19": False}})
    assert not outcome.satisfied
    assert outcome.reason is ReasonCode.POLICY_NOT_SATISFIED
    assert outcome.failed == ("residency:age_over_19 equals",)


def test_pharmacy_needs_two_doses() -> None:
    policy = load("pharmacy.json")
    assert policy.credentials[0].vct == (VACCINATION_VCT,)
    assert policy.evaluate({"vaccination": {"vaccination": {"dn": 2}}}).satisfied
    assert policy.evaluate({"vaccination": {"vaccination": {"dn": 3}}}).satisfied
    assert not policy.evaluate({"vaccination": {"vaccination": {"dn": 1}}}).satisfied
    # A dose count that is not a number never satisfies a numeric bound.
    assert not policy.evaluate({"vaccination": {"vaccination": {"dn": "2"}}}).satisfied
    assert not policy.evaluate({"vaccination": {"vaccination": {"dn": True}}}).satisfied


def test_youth_allowance_counter_combines_two_credentials() -> None:
    policy = load("youth-allowance-counter.yaml")
    assert [c.id for c in policy.credentials] == ["residency", "youth_allowance"]
    assert [c.vct for c in policy.credentials] == [(RESIDENCY_VCT,), (YOUTH_ALLOWANCE_VCT,)]
    good = {
        "residency": {"address": {"region": "Seoul"}, "age_over_19": True},
        "youth_allowance": {"allowance_status": "active", "eligibility": {"age_19_to_34": True}},
    }
    assert policy.evaluate(good).satisfied
    busan = {**good, "residency": {"address": {"region": "Busan"}, "age_over_19": True}}
    assert policy.evaluate(busan).failed == ("residency:address.region equals",)
    suspended = {
        **good,
        "youth_allowance": {"allowance_status": "suspended", "eligibility": {"age_19_to_34": True}},
    }
    assert policy.evaluate(suspended).failed == ("youth_allowance:allowance_status equals",)
    missing = policy.evaluate({"residency": good["residency"]})
    assert missing.reason is ReasonCode.DCQL_UNSATISFIED
    assert missing.failed == ("youth_allowance: not presented",)


def test_a_wallet_matching_the_derived_query_discloses_exactly_the_policy_claims() -> None:
    policy = load("youth-allowance-counter.yaml")
    held = [
        HeldCredential("r", "dc+sd-jwt", RESIDENCY_VCT, get_type(RESIDENCY_VCT).example_claims()),
        HeldCredential(
            "y", "dc+sd-jwt", YOUTH_ALLOWANCE_VCT, get_type(YOUTH_ALLOWANCE_VCT).example_claims()
        ),
    ]
    match = match_query(policy.dcql(), held)
    disclosed = {query_id: set(m.claim_paths) for query_id, m in _matches(match).items()}
    assert disclosed == {
        "residency": {("address", "region"), ("age_over_19",)},
        "youth_allowance": {("allowance_status",), ("eligibility", "age_19_to_34")},
    }


def _matches(match: Any) -> dict[str, Any]:
    return {query_id: options[0] for query_id, options in match.candidates.items()}


# --- evaluation semantics ----------------------------------------------------------------------


def test_undisclosed_claim_is_claim_missing_not_a_failed_predicate() -> None:
    outcome = parse_policy(minimal()).evaluate({"residency": {"given_name": "x"}})
    assert outcome.reason is ReasonCode.CLAIM_MISSING
    assert outcome.failed == ("residency:age_over_19 equals",)


def test_claim_without_predicate_only_needs_disclosure() -> None:
    document = minimal()
    document["credentials"][0]["claims"] = [{"path": ["given_name"]}]
    policy = parse_policy(document)
    assert policy.evaluate({"residency": {"given_name": "서연"}}).satisfied
    assert policy.evaluate({"residency": {}}).failed == ("residency:given_name disclosed",)


@pytest.mark.parametrize(
    ("predicate", "value", "holds"),
    [
        ({"equals": True}, True, True),
        ({"equals": True}, 1, False),
        ({"equals": 1}, True, False),
        ({"equals": 1}, 1.0, False),
        ({"equals": "Seoul"}, "seoul", False),
        ({"in": ["Seoul", "Busan"]}, "Busan", True),
        ({"in": ["Seoul", "Busan"]}, "Daegu", False),
        ({"gte": 2}, 2, True),
        ({"gt": 2}, 2, False),
        ({"gte": 19, "lte": 34}, 34, True),
        ({"gte": 19, "lt": 35}, 35, False),
        ({"gte": 19, "lte": 34}, 18.5, False),
        ({"gte": "2025-01-01"}, "2025-06-01", True),
        ({"gte": "2025-01-01"}, "2024-12-31", False),
        ({"gte": "2025-01-01"}, "2025-13-01", False),
        ({"lte": 5}, None, False),
    ],
)
def test_predicates(predicate: dict[str, Any], value: Any, holds: bool) -> None:
    document = minimal()
    document["credentials"][0]["claims"] = [{"path": ["x"], **predicate}]
    policy = parse_policy(document)
    assert policy.evaluate({"residency": {"x": value}}).satisfied is holds


def test_wildcard_path_holds_when_any_element_satisfies() -> None:
    document = minimal()
    document["credentials"][0]["claims"] = [{"path": ["doses", None, "dn"], "gte": 2}]
    policy = parse_policy(document)
    assert policy.evaluate({"residency": {"doses": [{"dn": 1}, {"dn": 2}]}}).satisfied
    assert not policy.evaluate({"residency": {"doses": [{"dn": 1}]}}).satisfied
    assert policy.dcql_json()["credentials"][0]["claims"] == [{"path": ["doses", None, "dn"]}]


@given(st.integers(min_value=-1000, max_value=1000), st.integers(min_value=-1000, max_value=1000))
def test_numeric_bounds_agree_with_python(low: int, value: int) -> None:
    predicate = Predicate(bounds=(("gte", low),))
    assert predicate.holds(value) is (value >= low)
    assert Predicate(bounds=(("lt", low),)).holds(value) is (value < low)


def test_options_and_defaults() -> None:
    policy = parse_policy(minimal())
    assert policy.status_unavailable == "undetermined"
    assert policy.key_binding and policy.require_status
    assert policy.max_presentation_age == 300
    relaxed = parse_policy(minimal(status_unavailable="accept", key_binding=False))
    assert relaxed.status_unavailable == "accept"
    query = relaxed.dcql_json()["credentials"][0]
    assert query["require_cryptographic_holder_binding"] is False


def test_round_trip_through_json() -> None:
    policy = load("youth-allowance-counter.yaml")
    assert parse_policy_text(json_dumps(policy.to_json()), format="json") == policy


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"credentials": []},
        minimal(id="has space"),
        minimal(extra=1),
        minimal(credentials=[]),
        minimal(status_unavailable="valid"),
        minimal(key_binding="yes"),
        minimal(max_presentation_age=5),
        minimal(credentials=[{"id": "a", "vct": []}]),
        minimal(credentials=[{"id": "a", "vct": RESIDENCY_VCT, "claims": [{"path": []}]}]),
        minimal(credentials=[{"id": "a", "vct": RESIDENCY_VCT, "claims": [{"path": [-1]}]}]),
        minimal(credentials=[{"id": "a", "vct": RESIDENCY_VCT, "claims": [{"path": [True]}]}]),
        minimal(
            credentials=[{"id": "a", "vct": RESIDENCY_VCT, "claims": [{"path": ["x"], "typo": 1}]}]
        ),
        minimal(
            credentials=[
                {
                    "id": "a",
                    "vct": RESIDENCY_VCT,
                    "claims": [{"path": ["x"], "equals": 1, "gte": 1}],
                }
            ]
        ),
        minimal(
            credentials=[
                {"id": "a", "vct": RESIDENCY_VCT, "claims": [{"path": ["x"], "gte": 1, "gt": 1}]}
            ]
        ),
        minimal(
            credentials=[
                {
                    "id": "a",
                    "vct": RESIDENCY_VCT,
                    "claims": [{"path": ["x"], "gte": 1, "lte": "2025-01-01"}],
                }
            ]
        ),
        minimal(
            credentials=[
                {"id": "a", "vct": RESIDENCY_VCT, "claims": [{"path": ["x"], "gte": "soon"}]}
            ]
        ),
        minimal(
            credentials=[{"id": "a", "vct": RESIDENCY_VCT, "claims": [{"path": ["x"], "in": []}]}]
        ),
        minimal(
            credentials=[
                {"id": "a", "vct": RESIDENCY_VCT, "claims": [{"path": ["x"], "equals": None}]}
            ]
        ),
        minimal(
            credentials=[
                {"id": "a", "vct": RESIDENCY_VCT, "claims": [{"path": ["x"], "equals": [1]}]}
            ]
        ),
        minimal(
            credentials=[
                {"id": "a", "vct": RESIDENCY_VCT, "claims": [{"path": ["x"]}, {"path": ["x"]}]}
            ]
        ),
        minimal(credentials=[{"id": "a", "vct": RESIDENCY_VCT}, {"id": "a", "vct": RESIDENCY_VCT}]),
    ],
)
def test_malformed_policies_are_refused(document: Any) -> None:
    with pytest.raises(MalformedError) as caught:
        parse_policy(document)
    assert caught.value.reason is ReasonCode.MALFORMED_POLICY


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("{", "json"),
        ('{"id": "a", "id": "b", "credentials": []}', "json"),
        ("id: a\nid: b\ncredentials: []\n", "yaml"),
        ("id: [unclosed\n", "yaml"),
        ("!!python/object:os.system {}\n", "yaml"),
        (
            # YAML reads an unquoted date as a date object: not a JSON scalar, refused.
            "id: a\ncredentials:\n  - id: r\n    vct: x\n"
            "    claims:\n      - path: [d]\n        equals: 2025-01-01\n",
            "yaml",
        ),
    ],
)
def test_malformed_policy_text_is_refused(text: str, fmt: Any) -> None:
    with pytest.raises(MalformedError) as caught:
        parse_policy_text(text, format=fmt)
    assert caught.value.reason is ReasonCode.MALFORMED_POLICY


def test_oversized_policy_text_is_refused() -> None:
    with pytest.raises(MalformedError) as caught:
        parse_policy_text(" " * 70_000, format="yaml")
    assert caught.value.reason is ReasonCode.INPUT_TOO_LARGE
