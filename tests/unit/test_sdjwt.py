"""SD-JWT (RFC 9901) and SD-JWT VC: spec examples, sd-jwt-python round trips, tampering."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civic.clock import FixedClock
from civic.encoding import b64url_encode, json_dumps
from civic.errors import CivicError, MalformedError, ReasonCode, VerificationError
from civic.jose import PrivateKey, public_key_from_jwk, sign_jwt
from civic.sdjwt import (
    KeyBindingExpectation,
    create_presentation,
    disclosure_digest,
    disclosure_paths,
    issue_sd_jwt,
    parse_sd_jwt,
    verify_sd_jwt,
)
from civic.sdjwtvc import all_disclosable, issue_credential, verify_credential
from tests.sdjwt_yaml import expected_claims, load_spec, reveal_paths, strip_sd
from tests.vectors import load_json, vectors_path

ISSUER = PrivateKey.from_ed25519_seed(b"\x01" * 32)
HOLDER = PrivateKey.from_ed25519_seed(b"\x02" * 32)
OTHER = PrivateKey.from_ed25519_seed(b"\x03" * 32)
NOW = 1_800_000_000
AUD = "https://verifier.example.org"
NONCE = "n-0S6_WzA2Mj"


def _private_key(public_jwk: dict[str, str], d: str) -> PrivateKey:
    return PrivateKey.from_jwk({**public_jwk, "d": d})


def _kb(nonce: str = NONCE, **kw: Any) -> KeyBindingExpectation:
    return KeyBindingExpectation(audience=kw.pop("audience", AUD), nonce=nonce, **kw)


# --- published examples ----------------------------------------------------------------------


@pytest.mark.vectors
def test_rfc9901_section5_presentation_verifies() -> None:
    v = load_json("sd_jwt", "sd_jwt_spec_section5_example.json")
    issuer = public_key_from_jwk(v["issuer_public_jwk"])
    result = verify_sd_jwt(
        v["presentation_sd_jwt_kb"],
        issuer,
        typ="example+sd-jwt",
        key_binding=_kb(v["expected_nonce"], audience=v["expected_aud"]),
        now=FixedClock(v["clock"]["kb_jwt_iat"]),
    )
    assert result.claims == v["processed_payload"]
    assert result.key_binding == v["kb_jwt_payload"]


@pytest.mark.vectors
def test_rfc9901_section5_digests_and_full_issuance() -> None:
    v = load_json("sd_jwt", "sd_jwt_spec_section5_example.json")
    for item in v["disclosures"]:
        assert disclosure_digest(item["disclosure"]) == item["digest"]
    parsed = parse_sd_jwt(v["presentation_sd_jwt_kb"])
    assert sorted(d.digest for d in parsed.disclosures) == sorted(v["presented_disclosure_digests"])
    full = verify_sd_jwt(
        v["sd_jwt_issuance"],
        public_key_from_jwk(v["issuer_public_jwk"]),
        typ="example+sd-jwt",
        key_binding=None,
        now=FixedClock(v["clock"]["iat"]),
    )
    expected = {**v["input_claims"], "cnf": {"jwk": v["holder_public_jwk"]}}
    expected |= {k: v["issuer_signed_payload"][k] for k in ("iss", "iat", "exp")}
    assert full.claims == expected


@pytest.mark.vectors
def test_sd_jwt_vc_section_2_3_figures() -> None:
    v = load_json("sd_jwt", "sd_jwt_vc_section2_3_example.json")
    issuer = public_key_from_jwk(v["issuer_public_jwk"])
    with_kb = verify_credential(
        v["presentation_sd_jwt_kb_figure8"],
        issuer,
        key_binding=_kb(v["expected_nonce"], audience=v["expected_aud"]),
        now=FixedClock(v["clock"]["kb_jwt_iat"]),
    )
    assert with_kb.claims == v["processed_payload_figure9"]
    assert with_kb.header.kid == "doc-signer-05-25-2022"
    without_kb = verify_credential(
        v["presentation_without_kb_figure10"],
        issuer,
        key_binding=None,
        now=FixedClock(v["clock"]["kb_jwt_iat"]),
    )
    assert without_kb.claims == v["processed_payload_figure11"]
    with pytest.raises(VerificationError) as info:
        verify_credential(
            v["presentation_without_kb_figure10"],
            issuer,
            key_binding=_kb(v["expected_nonce"], audience=v["expected_aud"]),
            now=FixedClock(v["clock"]["kb_jwt_iat"]),
        )
    assert info.value.reason is ReasonCode.CNF_MISSING


@pytest.mark.vectors
def test_openid4vp_sd_jwt_example_verifies() -> None:
    folder = vectors_path("oid4vp", "examples", "sd_jwt_vcld", "01")
    presentation = "".join((folder / "sd_jwt_presentation.txt").read_text().split())
    settings = load_spec(folder.parent / "settings.yml")
    issuer_jwk = dict(settings["key_settings"]["issuer_keys"][0])
    issuer_jwk.pop("d")
    kb = load_json("oid4vp", "examples", "sd_jwt_vcld", "01", "kb_jwt_payload.json")
    result = verify_credential(
        presentation,
        public_key_from_jwk(issuer_jwk),
        key_binding=_kb(kb["nonce"], audience=kb["aud"]),
        now=FixedClock(kb["iat"]),
    )
    assert result.claims == load_json(
        "oid4vp", "examples", "sd_jwt_vcld", "01", "verified_contents.json"
    )


# --- round trips of the example specifications --------------------------------------------------

SD_JWT_DIR = Path("sd_jwt")
ROUND_TRIP_SPECS = sorted(
    str(p.relative_to(vectors_path().parent / "vectors"))
    for p in vectors_path("sd_jwt").rglob("specification.yml")
)


def _issuer_key(spec_dir: Path) -> PrivateKey:
    settings = load_spec(spec_dir.parent / "settings.yml")
    keys = settings["key_settings"]
    jwk = dict(keys["issuer_keys"][0] if "issuer_keys" in keys else keys["issuer_key"])
    jwk.pop("kid", None)
    return PrivateKey.from_jwk(jwk)


@pytest.mark.vectors
@pytest.mark.parametrize("relative", ROUND_TRIP_SPECS)
@pytest.mark.parametrize("signer_kind", ["spec-key", "EdDSA"])
def test_specification_round_trip(relative: str, signer_kind: str) -> None:
    """issuer -> holder -> verifier for each published example, compared with an independent
    model of what the holder's choice reveals (and with sd-jwt-python's expectation if given)."""
    path = vectors_path(relative)
    spec = load_spec(path)
    issuer = _issuer_key(path.parent) if signer_kind == "spec-key" else ISSUER
    user_claims = spec["user_claims"]
    key_binding = bool(spec.get("key_binding"))
    added = {"iss": "https://issuer.example.com", "iat": NOW - 10}
    added = {k: v for k, v in added.items() if k not in user_claims}
    claims = {**added, **user_claims}
    issued = issue_sd_jwt(
        claims,
        issuer,
        header={"typ": "example+sd-jwt", **(spec.get("extra_header_parameters") or {})},
        holder_key=HOLDER.public_key if key_binding else None,
        decoys=(0, 3) if spec.get("add_decoy_claims", True) else (0, 0),
    )
    disclosed = spec.get("holder_disclosed_claims") or {}
    presentation = create_presentation(
        issued,
        reveal=reveal_paths(disclosed),
        holder=HOLDER if key_binding else None,
        audience=AUD,
        nonce=NONCE,
        now=FixedClock(NOW),
    )
    typ = (spec.get("extra_header_parameters") or {}).get("typ", "example+sd-jwt")
    result = verify_sd_jwt(
        presentation,
        issuer.public_key,
        typ=typ,
        key_binding=_kb() if key_binding else None,
        now=FixedClock(NOW),
    )
    ignored = {*added, "cnf"} if key_binding else set(added)
    got = {k: v for k, v in result.claims.items() if k not in ignored}
    want = expected_claims(user_claims, disclosed)
    assert got == want
    if "expect_verified_user_claims" in spec:
        assert want == strip_sd(spec["expect_verified_user_claims"]), "model disagrees"
    full = verify_sd_jwt(issued, issuer.public_key, typ=typ, key_binding=None, now=FixedClock(NOW))
    assert {k: v for k, v in full.claims.items() if k not in ignored} == strip_sd(user_claims)


def test_round_trip_spec_list_is_complete() -> None:
    assert len(ROUND_TRIP_SPECS) == 35  # 15 RFC 9901 + 3 SD-JWT VC + 17 sd-jwt-python


# --- SD-JWT VC issuance and tampering ----------------------------------------------------------

RESIDENCY = {
    "given_name": "지민",
    "family_name": "김",
    "birth_date": "1998-04-12",
    "address": {"region": "Seoul", "locality": "Mapo-gu"},
    "age_over_19": True,
    "nationalities": ["KR", "CA"],
}
VCT = "urn:civic:vct:residency:1"


def _issue(**kw: Any) -> str:
    return issue_credential(
        issuer="https://mapo.seoul.example",
        vct=VCT,
        subject_claims=kw.pop("claims", RESIDENCY),
        signer=kw.pop("signer", ISSUER),
        kid="mapo-2026-1",
        holder_key=HOLDER.public_key,
        lifetime=kw.pop("lifetime", 86_400 * 365),
        status={"status_list": {"idx": 7, "uri": "https://mapo.seoul.example/status/1"}},
        now=FixedClock(kw.pop("issued_at", NOW - 100)),
        **kw,
    )


def _present(issued: str, reveal: list[tuple[str | int, ...]] | None = None, **kw: Any) -> str:
    return create_presentation(
        issued,
        reveal=reveal if reveal is not None else [("given_name",), ("address", "region")],
        holder=kw.pop("holder", HOLDER),
        audience=kw.pop("audience", AUD),
        nonce=kw.pop("nonce", NONCE),
        now=FixedClock(kw.pop("at", NOW)),
    )


def _verify(presentation: str, **kw: Any) -> Any:
    return verify_credential(
        presentation,
        kw.pop("issuer_key", ISSUER.public_key),
        key_binding=kw.pop("key_binding", _kb()),
        now=FixedClock(kw.pop("at", NOW)),
    )


def _reason(presentation: str, **kw: Any) -> ReasonCode:
    with pytest.raises(CivicError) as info:
        _verify(presentation, **kw)
    return info.value.reason


def test_vc_presentation_discloses_exactly_what_was_chosen() -> None:
    result = _verify(_present(_issue()))
    assert result.subject_claims == {"given_name": "지민", "address": {"region": "Seoul"}}
    assert set(result.disclosed) == {("given_name",), ("address",), ("address", "region")}
    assert result.claims["vct"] == VCT
    assert result.status == {
        "status_list": {"idx": 7, "uri": "https://mapo.seoul.example/status/1"}
    }
    assert result.key_binding["aud"] == AUD


def test_issuance_hides_claim_count_with_decoys_and_fresh_salts() -> None:
    first, second = _issue(), _issue()
    assert first.split("~")[0] != second.split("~")[0]  # fresh salts give fresh digests
    payload = parse_sd_jwt(first).payload
    # 6 disclosable top-level claims plus at least one decoy.
    assert len(payload["_sd"]) > 6
    assert payload["_sd"] == sorted(payload["_sd"])
    assert "given_name" not in payload and "address" not in payload


def test_injected_randomness_makes_issuance_reproducible() -> None:
    def counter() -> Any:
        state = {"n": 0}

        def take(n: int) -> bytes:
            state["n"] += 1
            return hashlib.sha256(str(state["n"]).encode()).digest()[:n]

        return take

    assert _issue(random=counter()) == _issue(random=counter())


def test_array_elements_are_individually_disclosable() -> None:
    result = _verify(_present(_issue(), [("nationalities", 1)]))
    assert result.subject_claims == {"nationalities": ["CA"]}


def test_disclosing_a_parent_reveals_its_subtree() -> None:
    result = _verify(_present(_issue(), [("address",)]))
    assert result.subject_claims == {"address": {"region": "Seoul", "locality": "Mapo-gu"}}


def test_holder_sees_the_path_of_every_disclosure() -> None:
    paths = set(disclosure_paths(parse_sd_jwt(_issue())).values())
    assert ("address", "locality") in paths and ("nationalities", 0) in paths
    assert len(paths) == 10


def _swap(presentation: str, index: int, replacement: str) -> str:
    parts = presentation.split("~")
    parts[index] = replacement
    return "~".join(parts)


def test_tampered_disclosure_is_unreferenced() -> None:
    presentation = _present(_issue(), holder=None)
    disclosure = presentation.split("~")[1]
    forged = b64url_encode(json_dumps(["salt", "given_name", "Mallory"]).encode())
    assert _reason(_swap(presentation, 1, forged), key_binding=None) is (
        ReasonCode.DISCLOSURE_UNREFERENCED
    )
    assert disclosure != forged


def test_disclosure_from_another_credential_is_unreferenced() -> None:
    mine, theirs = _present(_issue(), holder=None), _present(_issue(), holder=None)
    mixed = _swap(mine, 1, theirs.split("~")[1])
    assert _reason(mixed, key_binding=None) is ReasonCode.DISCLOSURE_UNREFERENCED


def test_duplicated_disclosure_is_rejected() -> None:
    presentation = _present(_issue(), holder=None)
    parts = presentation.split("~")
    doubled = "~".join([parts[0], parts[1], parts[1], *parts[2:]])
    assert _reason(doubled, key_binding=None) is ReasonCode.DISCLOSURE_DUPLICATE


def test_reordered_disclosures_still_verify_but_break_sd_hash() -> None:
    presentation = _present(_issue(), holder=None)
    parts = presentation.split("~")
    reordered = "~".join([parts[0], *reversed(parts[1:-1]), ""])
    assert _verify(reordered, key_binding=None).subject_claims["given_name"] == "지민"
    with_kb = _present(_issue())
    parts = with_kb.split("~")
    swapped = "~".join([parts[0], *reversed(parts[1:-1]), parts[-1]])
    assert _reason(swapped) is ReasonCode.KB_JWT_SD_HASH_MISMATCH


def _signed_payload(payload: dict[str, Any], disclosures: list[str]) -> str:
    token = sign_jwt({"typ": "dc+sd-jwt"}, payload, ISSUER)
    return "~".join([token, *disclosures, ""])


def _disclosure(*content: Any) -> str:
    return b64url_encode(json_dumps(list(content)).encode())


BASE = {"iss": "https://i.example", "vct": VCT, "_sd_alg": "sha-256"}


def test_digest_appearing_twice_is_rejected() -> None:
    d = _disclosure("salt1", "given_name", "A")
    token = _signed_payload(
        {**BASE, "_sd": [disclosure_digest(d)], "x": {"_sd": [disclosure_digest(d)]}}, [d]
    )
    assert _reason(token, key_binding=None) is ReasonCode.DIGEST_DUPLICATE


def test_disclosed_name_colliding_with_plain_claim_is_rejected() -> None:
    d = _disclosure("salt1", "given_name", "A")
    token = _signed_payload({**BASE, "given_name": "B", "_sd": [disclosure_digest(d)]}, [d])
    assert _reason(token, key_binding=None) is ReasonCode.CLAIM_NAME_COLLISION


@pytest.mark.parametrize("name", ["_sd", "..."])
def test_reserved_names_in_disclosures_are_rejected(name: str) -> None:
    d = _disclosure("salt1", name, ["x"])
    token = _signed_payload({**BASE, "_sd": [disclosure_digest(d)]}, [d])
    assert _reason(token, key_binding=None) is ReasonCode.RESERVED_CLAIM_NAME


def test_array_disclosure_in_object_position_is_rejected() -> None:
    d = _disclosure("salt1", "value")
    token = _signed_payload({**BASE, "_sd": [disclosure_digest(d)]}, [d])
    assert _reason(token, key_binding=None) is ReasonCode.MALFORMED_DISCLOSURE


def test_object_disclosure_in_array_position_is_rejected() -> None:
    d = _disclosure("salt1", "name", "value")
    token = _signed_payload({**BASE, "list": [{"...": disclosure_digest(d)}]}, [d])
    assert _reason(token, key_binding=None) is ReasonCode.MALFORMED_DISCLOSURE


@pytest.mark.parametrize("name", ["vct", "status", "iss", "cnf", "exp"])
def test_vc_registered_claims_must_not_be_disclosable(name: str) -> None:
    d = _disclosure("salt1", name, "x")
    payload = {k: v for k, v in BASE.items() if k != name} | {"_sd": [disclosure_digest(d)]}
    if name in ("iss", "vct"):  # without them the VC cannot even name its issuer or type
        assert _reason(_signed_payload(payload, [d]), key_binding=None) in (
            ReasonCode.MALFORMED_SD_JWT,
        )
        return
    assert _reason(_signed_payload(payload, [d]), key_binding=None) is (
        ReasonCode.CLAIM_NOT_DISCLOSABLE
    )


def test_unsupported_sd_alg_is_rejected() -> None:
    token = _signed_payload({**BASE, "_sd_alg": "sha-1"}, [])
    assert _reason(token, key_binding=None) is ReasonCode.SD_ALG_UNSUPPORTED


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        ({"audience": "https://evil.example"}, ReasonCode.KB_JWT_AUD_MISMATCH),
        ({"nonce": "another"}, ReasonCode.KB_JWT_NONCE_MISMATCH),
        ({"at": NOW - 3600}, ReasonCode.KB_JWT_IAT_STALE),
        ({"at": NOW + 3600}, ReasonCode.KB_JWT_IAT_IN_FUTURE),
        ({"holder": OTHER}, ReasonCode.KB_JWT_SIGNATURE_INVALID),
    ],
    ids=["aud", "nonce", "stale", "future", "other-key"],
)
def test_key_binding_failures(mutate: dict[str, Any], reason: ReasonCode) -> None:
    assert _reason(_present(_issue(), **mutate)) is reason


def test_key_binding_missing() -> None:
    assert _reason(_present(_issue(), holder=None)) is ReasonCode.KB_JWT_MISSING


def test_key_binding_wrong_typ() -> None:
    presentation = _present(_issue(), holder=None)
    kb = sign_jwt(
        {"typ": "jwt"},
        {"iat": NOW, "aud": AUD, "nonce": NONCE, "sd_hash": "x"},
        HOLDER,
    )
    assert _reason(presentation + kb) is ReasonCode.KB_JWT_TYP


def test_key_binding_nonce_is_single_use() -> None:
    used: set[str] = set()

    def consume(nonce: str) -> bool:
        if nonce in used:
            return False
        used.add(nonce)
        return True

    presentation = _present(_issue())
    _verify(presentation, key_binding=_kb(consume_nonce=consume))
    assert _reason(presentation, key_binding=_kb(consume_nonce=consume)) is (
        ReasonCode.KB_JWT_NONCE_REUSED
    )


def test_forged_presentation_does_not_burn_the_nonce() -> None:
    spent: list[str] = []
    forged = _present(_issue(), holder=OTHER)
    assert _reason(forged, key_binding=_kb(consume_nonce=lambda n: spent.append(n) or True)) is (
        ReasonCode.KB_JWT_SIGNATURE_INVALID
    )
    assert spent == []


@pytest.mark.parametrize(
    ("issue_kw", "at", "reason"),
    [
        ({"lifetime": 10}, NOW, ReasonCode.EXPIRED),
        ({"not_before": NOW + 3600}, NOW, ReasonCode.NOT_YET_VALID),
        ({"issued_at": NOW + 3600}, NOW, ReasonCode.IAT_IN_FUTURE),
    ],
    ids=["expired", "nbf", "iat-future"],
)
def test_time_claims(issue_kw: dict[str, Any], at: int, reason: ReasonCode) -> None:
    presentation = _present(_issue(**issue_kw), at=at)
    assert _reason(presentation, at=at) is reason


def test_wrong_issuer_key_and_alg_swap() -> None:
    presentation = _present(_issue())
    assert _reason(presentation, issuer_key=OTHER.public_key) is ReasonCode.SIGNATURE_INVALID
    es = PrivateKey.generate("ES256")
    assert _reason(presentation, issuer_key=es.public_key) is ReasonCode.ALG_KEY_MISMATCH


def test_wrong_typ_is_rejected() -> None:
    token = "~".join([sign_jwt({"typ": "example+sd-jwt"}, BASE, ISSUER), ""])
    assert _reason(token, key_binding=None) is ReasonCode.TYP_MISMATCH


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("no-tilde", ReasonCode.MALFORMED_SD_JWT),
        ("a.b.c~", ReasonCode.MALFORMED_BASE64),
        ("~~", ReasonCode.MALFORMED_JWS),
        ("x" * 300_000, ReasonCode.INPUT_TOO_LARGE),
    ],
)
def test_malformed_presentations(text: str, reason: ReasonCode) -> None:
    with pytest.raises(MalformedError) as info:
        parse_sd_jwt(text)
    assert info.value.reason is reason


def test_empty_and_non_array_disclosures() -> None:
    issued = _issue().split("~")[0]
    for bad in ("", b64url_encode(b'{"a":1}'), b64url_encode(b'["only-salt"]'), "!!"):
        with pytest.raises(MalformedError) as info:
            parse_sd_jwt(f"{issued}~{bad}~")
        assert info.value.reason in (ReasonCode.MALFORMED_DISCLOSURE,)


@given(st.text(max_size=400))
def test_parse_never_leaks_foreign_exceptions(text: str) -> None:
    with contextlib.suppress(CivicError):
        parse_sd_jwt(text)


CLAIM_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(
    claims=st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), CLAIM_VALUES, max_size=5),
    choose=st.data(),
)
def test_any_subset_of_paths_round_trips(claims: dict[str, Any], choose: st.DataObject) -> None:
    issued = issue_sd_jwt(
        {"iss": "x", **all_disclosable(claims)}, ISSUER, header={"typ": "t"}, decoys=(0, 2)
    )
    paths = sorted(set(disclosure_paths(parse_sd_jwt(issued)).values()), key=repr)
    reveal = choose.draw(st.lists(st.sampled_from(paths), unique=True) if paths else st.just([]))
    presentation = create_presentation(issued, reveal=reveal, holder=None)
    result = verify_sd_jwt(presentation, ISSUER.public_key, typ="t", key_binding=None)

    # Independent expectation: a claim is visible iff it, an ancestor or a descendant was
    # chosen. Array positions are the holder's; the verifier sees hidden elements vanish.
    def visible(path: tuple[str | int, ...]) -> bool:
        return any(path[: len(r)] == r or r[: len(path)] == path for r in reveal)

    def project(value: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(value, dict):
            return {k: project(v, (*path, k)) for k, v in value.items() if visible((*path, k))}
        if isinstance(value, list):
            return [project(v, (*path, i)) for i, v in enumerate(value) if visible((*path, i))]
        return value

    assert {k: v for k, v in result.claims.items() if k != "iss"} == project(claims, ())
