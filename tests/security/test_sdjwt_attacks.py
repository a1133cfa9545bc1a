"""SD-JWT and SD-JWT VC attacks: validity window, disclosures, digests, never-disclosable claims.

RFC 9901 sections 7.1 and 9 and draft-ietf-oauth-sd-jwt-vc section 3.2.2.2. Holder-side
attacks keep the issuer's JWS and rebind a KB-JWT over whatever they send; issuer-side ones (a
payload the verifier must refuse even when its signature is good) are signed by the agency.
Each is presented to the verdict checklist and must fail the named check with its code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from civic.credentials import RESIDENCY_VCT, get_type
from civic.encoding import b64url_decode, b64url_encode, json_loads
from civic.errors import ReasonCode
from civic.sdjwt import disclosure_digest
from civic.verdict import Result
from tests.security.forge import (
    Build,
    Case,
    Parts,
    Scene,
    attacks_of,
    case,
    disclosure,
    run_core,
    verify_core,
)
from tests.unit.verifier_city import YEAR

C = ReasonCode
SALT = "c2FsdC1mb3ItYXR0YWNrcw"


def _underage(scene: Scene) -> Parts:
    claims = get_type(RESIDENCY_VCT).example_claims()
    claims["age_over_19"] = False
    return scene.parts(claims=claims)


# --- validity window ----------------------------------------------------------------------------


def _issued(**kwargs: Any) -> Build:
    def build(scene: Scene) -> str:
        return scene.present(scene.issue(**kwargs))

    return build


def _resigned(**claims: Any) -> Build:
    def build(scene: Scene) -> str:
        return scene.resign(lambda payload: payload.update(claims))

    return build


def _expired_at_skew_edge(scene: Scene) -> str:
    # now - skew >= exp: expired exactly when the allowed drift is used up.
    return scene.resign(lambda payload: payload.update(exp=scene.now - 60))


# --- holder-side disclosure attacks -------------------------------------------------------------


def _tampered_value(scene: Scene) -> str:
    """An under-19 holder flips age_over_19 to true inside the disclosure."""
    parts = _underage(scene)
    salt, name, _value = json_loads(b64url_decode(parts.named("age_over_19").encoded))
    return scene.bind(parts.jws, [disclosure(salt, name, True)])


def _reencoded(scene: Scene) -> str:
    """Same salt, name and value, serialized with spaces: the digest is over the encoding."""
    parts = scene.parts()
    salt, name, value = json_loads(b64url_decode(parts.named("age_over_19").encoded))
    spaced = b64url_encode(f'[ "{salt}", "{name}", {str(value).lower()} ]'.encode())
    return scene.bind(parts.jws, [spaced])


def _duplicated(scene: Scene) -> str:
    parts = scene.parts()
    return scene.bind(parts.jws, parts.encoded("age_over_19", "age_over_19"))


def _forged_unreferenced(scene: Scene) -> str:
    parts = _underage(scene)
    return scene.bind(parts.jws, [disclosure(SALT, "age_over_19", True)])


def _from_another_credential(scene: Scene) -> str:
    """A true age_over_19 disclosure lifted from a sibling's credential onto an underage one."""
    donor = scene.parts()
    parts = _underage(scene)
    return scene.bind(parts.jws, donor.encoded("age_over_19"))


def _after_kb(change: Callable[[list[str]], list[str]]) -> Build:
    """Edit the disclosures of a bound presentation, keeping its KB-JWT."""

    def build(scene: Scene) -> str:
        parts = scene.parts()
        bound = scene.bind(parts.jws, parts.encoded("age_over_19", "given_name"))
        jws, *disclosures, kb = bound.split("~")
        extra = parts.encoded("family_name")
        return "~".join([jws, *change([*disclosures, *extra]), kb])

    return build


# --- issuer-side payload attacks ----------------------------------------------------------------


def _payload_attack(edit: Callable[[Scene, Parts], list[str]]) -> Build:
    """The agency signs ``parts.payload`` as ``edit`` leaves it; ``edit`` returns the
    disclosures to send."""

    def build(scene: Scene) -> str:
        parts = scene.parts()
        sent = edit(scene, parts)
        return scene.assemble(parts.payload, sent)

    return build


def _digest_twice(scene: Scene, parts: Parts) -> list[str]:
    parts.payload["_sd"].append(parts.named("age_over_19").digest)
    return parts.encoded("age_over_19")


def _digest_in_two_objects(scene: Scene, parts: Parts) -> list[str]:
    parts.payload["nested"] = {"_sd": [parts.named("age_over_19").digest]}
    return parts.encoded("age_over_19")


def _plain_and_disclosed(scene: Scene, parts: Parts) -> list[str]:
    parts.payload["age_over_19"] = False
    return parts.encoded("age_over_19")


def _smuggled(name: str, value: Callable[[Scene, Parts], Any], *, keep_plain: bool) -> Build:
    """A disclosure named ``name`` referenced from the top-level ``_sd`` (the plain claim
    removed unless ``keep_plain``)."""

    def edit(scene: Scene, parts: Parts) -> list[str]:
        if not keep_plain:
            parts.payload.pop(name, None)
        smuggled = disclosure(SALT, name, value(scene, parts))
        parts.payload["_sd"].append(disclosure_digest(smuggled))
        return [*parts.encoded("age_over_19"), smuggled]

    return _payload_attack(edit)


def _referenced(content: list[Any], *, in_array: bool = False) -> Build:
    """A disclosure of ``content`` whose digest the agency signs into ``_sd`` (or, with
    ``in_array``, into an array element)."""

    def edit(_scene: Scene, parts: Parts) -> list[str]:
        encoded = disclosure(*content)
        if in_array:
            parts.payload["aliases"] = [{"...": disclosure_digest(encoded)}]
        else:
            parts.payload["_sd"].append(disclosure_digest(encoded))
        return [*parts.encoded("age_over_19"), encoded]

    return _payload_attack(edit)


def _referenced_raw(raw: bytes) -> Build:
    def edit(_scene: Scene, parts: Parts) -> list[str]:
        encoded = b64url_encode(raw)
        parts.payload["_sd"].append(disclosure_digest(encoded))
        return [*parts.encoded("age_over_19"), encoded]

    return _payload_attack(edit)


def _set(**members: Any) -> Build:
    def edit(_scene: Scene, parts: Parts) -> list[str]:
        parts.payload.update(members)
        return parts.encoded("age_over_19")

    return _payload_attack(edit)


def _ellipsis_with_sibling(scene: Scene, parts: Parts) -> list[str]:
    parts.payload["aliases"] = [{"...": parts.named("given_name").digest, "note": "x"}]
    return parts.encoded("age_over_19", "given_name")


def _empty_disclosure(scene: Scene) -> str:
    parts = scene.parts()
    return scene.bind(parts.jws, ["", *parts.encoded("age_over_19")])


def _holder_key(scene: Scene, _parts: Parts) -> Any:
    return {"jwk": scene.city.holder.public_key.to_jwk()}


def _status(scene: Scene, _parts: Parts) -> Any:
    return {"status_list": {"idx": 7, "uri": scene.city.status_uri}}


def _later(scene: Scene, _parts: Parts) -> Any:
    return scene.now + YEAR


CASES: tuple[Case, ...] = (
    case("credential_expired", C.EXPIRED, "time",
         "exp decades in the past", _issued(issued_at=0, lifetime=1_000_000)),
    case("credential_expired_at_skew_edge", C.EXPIRED, "time",
         "exp exactly the allowed clock skew ago", _expired_at_skew_edge),
    case("credential_not_yet_valid", C.NOT_YET_VALID, "time",
         "nbf an hour in the future", _issued(not_before=1_800_003_600)),
    case("credential_iat_in_future_beyond_skew", C.IAT_IN_FUTURE, "time",
         "iat an hour in the future", _issued(issued_at=1_800_003_600)),
    case("exp_not_a_numeric_date", C.MALFORMED_SD_JWT, "time",
         "exp as a date string", _resigned(exp="2099-12-31")),
    case("exp_boolean", C.MALFORMED_SD_JWT, "time",
         "exp true (a bool is an int to Python)", _resigned(exp=True)),
    case("disclosure_value_tampered", C.DISCLOSURE_UNREFERENCED, "disclosures",
         "an under-19 holder rewrites age_over_19 to true in its disclosure", _tampered_value),
    case("disclosure_reencoded", C.DISCLOSURE_UNREFERENCED, "disclosures",
         "the same disclosure content serialized differently", _reencoded),
    case("disclosure_duplicated", C.DISCLOSURE_DUPLICATE, "disclosures",
         "one disclosure sent twice", _duplicated),
    case("disclosure_forged_unreferenced", C.DISCLOSURE_UNREFERENCED, "disclosures",
         "a disclosure the issuer never signed a digest for", _forged_unreferenced),
    case("disclosure_from_another_credential", C.DISCLOSURE_UNREFERENCED, "disclosures",
         "a genuine disclosure lifted from another credential", _from_another_credential),
    case("disclosures_reordered_after_kb_jwt", C.KB_JWT_SD_HASH_MISMATCH, "key_binding",
         "two disclosures swapped after the KB-JWT was signed",
         _after_kb(lambda ds: [ds[1], ds[0]])),
    case("disclosure_dropped_after_kb_jwt", C.KB_JWT_SD_HASH_MISMATCH, "key_binding",
         "a disclosure removed after the KB-JWT was signed", _after_kb(lambda ds: ds[:1])),
    case("disclosure_added_after_kb_jwt", C.KB_JWT_SD_HASH_MISMATCH, "key_binding",
         "a genuine disclosure appended after the KB-JWT was signed", _after_kb(lambda ds: ds)),
    case("sd_digest_collision", C.DIGEST_DUPLICATE, "disclosures",
         "the same digest twice in _sd", _payload_attack(_digest_twice)),
    case("sd_digest_in_two_objects", C.DIGEST_DUPLICATE, "disclosures",
         "one digest in the _sd of two objects, to place a claim twice",
         _payload_attack(_digest_in_two_objects)),
    case("claim_name_collision_with_plain_claim", C.CLAIM_NAME_COLLISION, "disclosures",
         "age_over_19 false in the clear and true in a disclosure",
         _payload_attack(_plain_and_disclosed)),
    case("disclosed_iss_collides_with_plain_iss", C.CLAIM_NAME_COLLISION, "disclosures",
         "a second iss smuggled in as a disclosure",
         _smuggled("iss", lambda _s, _p: "https://attacker.example", keep_plain=True)),
    case("disclosed_vct_overrides_plain_vct", C.CLAIM_NAME_COLLISION, "disclosures",
         "a disclosed vct beside the plain one",
         _smuggled("vct", lambda _s, _p: "urn:civic:vct:vaccination:1", keep_plain=True)),
    case("disclosure_named_sd", C.RESERVED_CLAIM_NAME, "parse",
         'a disclosure whose claim name is "_sd"', _referenced([SALT, "_sd", ["x"]])),
    case("disclosure_named_ellipsis", C.RESERVED_CLAIM_NAME, "parse",
         'a disclosure whose claim name is "..."', _referenced([SALT, "...", "x"])),
    case("array_element_disclosure_as_object_member", C.MALFORMED_DISCLOSURE, "disclosures",
         "a two-element (array) disclosure referenced from _sd", _referenced([SALT, True])),
    case("object_disclosure_as_array_element", C.MALFORMED_DISCLOSURE, "disclosures",
         "a three-element (object) disclosure referenced from an array",
         _referenced([SALT, "alias", "x"], in_array=True)),
    case("never_disclosable_cnf", C.CLAIM_NOT_DISCLOSABLE, "disclosures",
         "cnf moved into a disclosure", _smuggled("cnf", _holder_key, keep_plain=False)),
    case("never_disclosable_status", C.CLAIM_NOT_DISCLOSABLE, "disclosures",
         "status moved into a disclosure (so the holder could withhold it)",
         _smuggled("status", _status, keep_plain=False)),
    case("never_disclosable_exp", C.CLAIM_NOT_DISCLOSABLE, "disclosures",
         "exp moved into a disclosure (so the holder could withhold it)",
         _smuggled("exp", _later, keep_plain=False)),
    case("never_disclosable_nbf", C.CLAIM_NOT_DISCLOSABLE, "disclosures",
         "nbf as a disclosure", _smuggled("nbf", lambda s, _p: s.now - 10, keep_plain=False)),
    case("never_disclosable_vct_integrity", C.CLAIM_NOT_DISCLOSABLE, "disclosures",
         "vct#integrity as a disclosure",
         _smuggled("vct#integrity", lambda _s, _p: "sha256-AAAA", keep_plain=False)),
    case("sd_alg_unsupported", C.SD_ALG_UNSUPPORTED, "disclosures",
         '_sd_alg "sha-1"', _set(_sd_alg="sha-1")),
    case("sd_alg_not_a_string", C.SD_ALG_UNSUPPORTED, "disclosures",
         "_sd_alg as an array", _set(_sd_alg=["sha-256"])),
    case("sd_not_an_array", C.MALFORMED_SD_JWT, "disclosures",
         "_sd as a string", _set(_sd="digest")),
    case("sd_digest_not_a_string", C.MALFORMED_SD_JWT, "disclosures",
         "a number among the _sd digests", _set(_sd=[12345])),
    case("ellipsis_member_in_object", C.MALFORMED_SD_JWT, "disclosures",
         'a "..." member outside an array element', _set(**{"...": "x"})),
    case("ellipsis_with_sibling_members", C.MALFORMED_SD_JWT, "disclosures",
         'an array element {"...": digest} with another member',
         _payload_attack(_ellipsis_with_sibling)),
    case("disclosure_not_an_array", C.MALFORMED_DISCLOSURE, "parse",
         "a disclosure that is a JSON object", _referenced_raw(b'{"age_over_19":true}')),
    case("disclosure_four_elements", C.MALFORMED_DISCLOSURE, "parse",
         "a disclosure of four elements", _referenced([SALT, "age_over_19", True, "extra"])),
    case("disclosure_salt_not_a_string", C.MALFORMED_DISCLOSURE, "parse",
         "a numeric salt", _referenced([42, "age_over_19", True])),
    case("disclosure_name_not_a_string", C.MALFORMED_DISCLOSURE, "parse",
         "a numeric claim name", _referenced([SALT, 19, True])),
    case("disclosure_duplicate_json_member", C.MALFORMED_DISCLOSURE, "parse",
         "an object value with region twice",
         _referenced_raw(b'["c2FsdA","address",{"region":"Seoul","region":"Busan"}]')),
    case("disclosure_empty", C.MALFORMED_DISCLOSURE, "parse",
         "an empty disclosure between two '~'", _empty_disclosure),
)  # fmt: skip

ATTACKS = attacks_of(CASES)


def test_holder_and_issuer_edits_verify_when_nothing_is_wrong(scene: Scene) -> None:
    """The builders' machinery alone breaks nothing: a rebound presentation of the issued JWS
    and a re-signed payload are both valid."""
    parts = scene.parts()
    for text in (
        scene.bind(parts.jws, parts.encoded("age_over_19", "given_name")),
        scene.assemble(parts.payload, parts.encoded("age_over_19")),
    ):
        verdict = verify_core(scene, text)
        assert verdict.result is Result.VALID, verdict.to_json()


@pytest.mark.parametrize("attack", CASES, ids=[c.name for c in CASES])
def test_sdjwt_attack_is_rejected(scene: Scene, attack: Case) -> None:
    run_core(scene, attack)
