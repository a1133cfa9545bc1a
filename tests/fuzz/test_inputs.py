"""No uncaught exception: strict JSON and base64, DIDs, DCQL, the QR codec and verifier policies."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from civic.dcql import HeldCredential, match_query, parse_dcql, parse_dcql_json
from civic.did import (
    did_jwk_from_public_key,
    did_key_from_public_key,
    multikey_from_public_key,
    public_key_from_did_url,
    public_key_from_multikey,
    resolve_did,
)
from civic.encoding import (
    b64std_decode,
    b64url_decode,
    json_dumps,
    json_loads,
    json_loads_object,
    utf8_decode,
)
from civic.policy import parse_policy, parse_policy_text
from civic.qr import b45decode, b45encode, is_packed, unpack
from tests.fuzz import samples
from tests.fuzz.harness import civic_only, fuzz
from tests.fuzz.mutate import any_bytes, any_text, mutated_bytes, mutated_json, mutated_text

# --- strict JSON and base64 (civic.encoding) ------------------------------------------------

_JSON = json_dumps({"a": [1, 2.5, -3e10, None, True], "b": {"c": "\u00e9\ud55c", "d": ""}})


def _check_encoding(data: bytes) -> None:
    civic_only(utf8_decode, data)
    civic_only(json_loads, data)
    civic_only(json_loads_object, data)
    text = data.decode("latin-1")
    civic_only(json_loads, text)
    civic_only(b64url_decode, data)
    civic_only(b64url_decode, text)
    civic_only(b64std_decode, text)


@fuzz(any_bytes())
def test_encoding_random_bytes(data: bytes) -> None:
    _check_encoding(data)


@fuzz(mutated_bytes(_JSON.encode(), seps=",:"))
def test_json_mutated(data: bytes) -> None:
    _check_encoding(data)


@fuzz(mutated_text(_JSON, seps=",:"))
def test_json_mutated_text(text: str) -> None:
    civic_only(json_loads, text)
    civic_only(json_loads_object, text)
    civic_only(b64url_decode, text)
    civic_only(b64std_decode, text)


@fuzz(st.sampled_from(["eyJhIjoxfQ", "AAECAwQ", "SGVsbG8gd29ybGQ"]).flatmap(mutated_text))
def test_base64_mutated(text: str) -> None:
    civic_only(b64url_decode, text)
    civic_only(b64std_decode, text + "=")
    civic_only(b64std_decode, text)


# --- DIDs -----------------------------------------------------------------------------------

_KEYS = [samples.ISSUER_KEY.public_key, samples.P256_KEY.public_key]
_DIDS = [
    *(did_key_from_public_key(key) for key in _KEYS),
    *(did_jwk_from_public_key(key) for key in _KEYS),
]


def _check_did(text: str) -> None:
    civic_only(resolve_did, text)
    civic_only(public_key_from_did_url, text)
    civic_only(public_key_from_did_url, text + "#0")
    civic_only(public_key_from_multikey, text.rpartition(":")[2])


@fuzz(any_text(120).map(lambda tail: "did:" + tail))
def test_did_random(text: str) -> None:
    _check_did(text)


@fuzz(st.sampled_from(_DIDS).flatmap(lambda did: mutated_text(did, seps=":#")))
def test_did_mutated(text: str) -> None:
    _check_did(text)


@fuzz(st.sampled_from([multikey_from_public_key(key) for key in _KEYS]).flatmap(mutated_text))
def test_multikey_mutated(text: str) -> None:
    civic_only(public_key_from_multikey, text)


# --- DCQL -----------------------------------------------------------------------------------

_DCQL: dict[str, Any] = {
    "credentials": [
        {
            "id": "res",
            "format": "dc+sd-jwt",
            "meta": {"vct_values": [samples.VCT]},
            "claims": [
                {"id": "a", "path": ["address", "locality"]},
                {"id": "b", "path": ["periods", None, "start"], "values": [2024, 2025]},
                {"id": "c", "path": ["age_over_19"], "values": [True]},
            ],
            "claim_sets": [["a", "c"], ["b"]],
        },
        {
            "id": "any",
            "format": "dc+sd-jwt",
            "meta": {"vct_values": ["urn:x"]},
            "multiple": True,
            "trusted_authorities": [{"type": "aki", "values": ["s9tIpP"]}],
        },
    ],
    "credential_sets": [{"options": [["res"], ["any"]], "required": True}],
}
_HELD = [
    HeldCredential("w1", "dc+sd-jwt", samples.VCT, samples.SUBJECT),
    HeldCredential("w2", "dc+sd-jwt", "urn:x", {"periods": [1, {"start": "x"}]}, False),
]


@fuzz(mutated_json(_DCQL))
def test_dcql_mutated(query: Any) -> None:
    parsed = civic_only(parse_dcql, query)
    if parsed is not None:
        civic_only(match_query, parsed, _HELD)


@fuzz(mutated_text(json_dumps(_DCQL), seps=",:"))
def test_dcql_json_mutated_text(text: str) -> None:
    civic_only(parse_dcql_json, text)
    civic_only(parse_dcql_json, text.encode("utf-8", "surrogatepass"))


# --- QR codec -------------------------------------------------------------------------------


def _check_qr(text: str) -> None:
    civic_only(is_packed, text)
    civic_only(unpack, text)
    civic_only(b45decode, text)
    civic_only(b45decode, text[5:])


@fuzz(mutated_text(samples.packed_presentation(), seps=" :"))
def test_qr_packed_mutated(text: str) -> None:
    _check_qr(text)


@fuzz(any_text())
def test_qr_random(text: str) -> None:
    _check_qr(text)


@fuzz(mutated_bytes(b"\x00" + samples.presentation().encode()[:300], seps="~."))
def test_qr_body_mutated(body: bytes) -> None:
    """A packed prefix over a mutated body: base45 decodes, the body's framing is fuzzed."""
    _check_qr(samples.packed_presentation()[:4] + b45encode(body))


# --- verifier policies ----------------------------------------------------------------------

_POLICY_FILES = ["pharmacy.json", "bar-entry.yaml", "youth-allowance-counter.yaml"]


def _policy_document(name: str) -> Any:
    policy = parse_policy_text(
        samples.policy_text(name), format="json" if name.endswith("json") else "yaml"
    )
    return policy.to_json()


@fuzz(st.sampled_from([_policy_document(name) for name in _POLICY_FILES]).flatmap(mutated_json))
def test_policy_mutated(document: Any) -> None:
    policy = civic_only(parse_policy, document)
    if policy is not None:
        for query_id in ("residency", "vaccination", "x"):
            claims = {query_id: samples.SUBJECT}
            civic_only(policy.evaluate, claims)
        civic_only(policy.dcql_json)


@fuzz(
    st.sampled_from(_POLICY_FILES).flatmap(
        lambda name: mutated_text(samples.policy_text(name), seps="\n:")
    )
)
def test_policy_text_mutated(text: str) -> None:
    civic_only(parse_policy_text, text, format="yaml")
    civic_only(parse_policy_text, text, format="json")


@fuzz(any_bytes())
def test_policy_text_random(data: bytes) -> None:
    civic_only(parse_policy_text, data, format="yaml")
    civic_only(parse_policy_text, data, format="json")
