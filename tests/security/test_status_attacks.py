"""Status attacks (draft-ietf-oauth-status-list): revoked and suspended credentials, and Status
List Tokens that are forged, misdirected, oversized, expired, malformed or out of reach.

Every attack is a credential of the city's agency presented offline to the real verifier
service over HTTP; its Status List Token is served by the deployment's status server on
127.0.0.1. A credential the list says is revoked is ``invalid``; a list that cannot be had or
trusted leaves the verdict ``undetermined`` (never ``valid``) with the list's reason code.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from civic.clock import FixedClock
from civic.credentials import RESIDENCY_VCT, get_type
from civic.errors import ReasonCode
from civic.jose import PrivateKey, sign_jwt
from civic.sdjwtvc import issue_credential
from civic.statuslist import StatusList, sign_status_list_token
from tests.security import Attack
from tests.security.verifier_site import Site, running_site
from tests.unit.verifier_city import ISSUER, YEAR
from verifier.settings import PACKAGED_POLICIES

ATTACKS: tuple[Attack, ...] = (
    Attack("status_revoked", ReasonCode.STATUS_INVALID, "verifier",
           "a credential whose status list entry is 1 (invalid): revoked by its issuer"),
    Attack("status_suspended", ReasonCode.STATUS_SUSPENDED, "verifier",
           "a credential whose status list entry is 2 (suspended)"),
    Attack("status_application_specific_value", ReasonCode.STATUS_VALUE_UNKNOWN, "verifier",
           "an entry of 3, an application-specific value the verifier cannot read as valid"),
    Attack("status_list_signature_invalid", ReasonCode.STATUS_LIST_SIGNATURE_INVALID, "verifier",
           "the status list at the credential's URI is signed by an attacker's key"),
    Attack("status_list_signed_by_another_issuer", ReasonCode.STATUS_LIST_SIGNATURE_INVALID,
           "verifier", "a list signed by Busan's accredited key served for a Mapo credential"),
    Attack("status_list_subject_mismatch", ReasonCode.STATUS_LIST_SUBJECT_MISMATCH, "verifier",
           "a genuine list of the issuer for another URI (sub) served at this URI"),
    Attack("status_uri_outside_accredited_base", ReasonCode.STATUS_URI_NOT_ACCREDITED, "verifier",
           "the credential points at a list outside its issuer's accredited status base URL"),
    Attack("status_uri_dot_segments_escape_base", ReasonCode.STATUS_URI_NOT_ACCREDITED,
           "verifier", "a status URI under the base that climbs out of it with '..'"),
    Attack("status_uri_encoded_dot_segments_escape_base", ReasonCode.STATUS_URI_NOT_ACCREDITED,
           "verifier", "a status URI that climbs out of the base with '%2e%2e', which servers "
           "normalize to '..' (RFC 3986 6.2.2.2)"),
    Attack("status_index_out_of_range", ReasonCode.STATUS_INDEX_OUT_OF_RANGE, "verifier",
           "the credential's idx lies beyond the end of the (short) list"),
    Attack("status_list_decompression_bomb", ReasonCode.STATUS_LIST_TOO_LARGE, "verifier",
           "a few KiB of ZLIB that inflate past the verifier's 4 MiB cap"),
    Attack("status_list_answer_over_byte_cap", ReasonCode.STATUS_LIST_UNAVAILABLE, "verifier",
           "the status endpoint answers more than the fetcher's byte cap"),
    Attack("status_list_expired", ReasonCode.STATUS_LIST_EXPIRED, "verifier",
           "an old list (exp in the past) replayed to hide a later revocation"),
    Attack("status_list_issued_in_future", ReasonCode.IAT_IN_FUTURE, "verifier",
           "a list dated an hour ahead, made to outlive a revocation published meanwhile"),
    Attack("status_list_malformed_lst", ReasonCode.STATUS_LIST_MALFORMED, "verifier",
           "a correctly signed list whose lst is not a ZLIB stream"),
    Attack("status_list_not_a_jwt", ReasonCode.STATUS_LIST_MALFORMED, "verifier",
           "the status endpoint answers text that is not a compact JWS"),
    Attack("status_list_unreachable", ReasonCode.STATUS_LIST_UNAVAILABLE, "verifier",
           "the list is not served (HTTP 404): status unknown"),
    Attack("status_list_wrong_typ", ReasonCode.TYP_MISMATCH, "verifier",
           "a token signed by the issuer's key with typ JWT instead of statuslist+jwt"),
    Attack("status_claim_malformed", ReasonCode.STATUS_CLAIM_MALFORMED, "verifier",
           "a credential whose status claim has a string idx"),
    Attack("status_claim_missing", ReasonCode.STATUS_CLAIM_MISSING, "verifier",
           "a credential with no status claim, under a policy that requires one"),
)  # fmt: skip

INDEX = 3


@dataclass
class Case:
    """What the attack publishes and presents, and the verdict it must get."""

    credential: str
    result: str
    check: str = "status"


Setup = Callable[[Site, str], Case]


def _list_uri(site: Site, name: str) -> str:
    return f"{site.deployment.status.base}/{name}"


def _marked(site: Site, name: str, value: int) -> Case:
    uri = _list_uri(site, name)
    site.new_list(uri).set(INDEX, value)
    site.publish(uri, site.city.status_token(uri))
    return Case(site.city.issue(status_index=INDEX, status_uri=uri), "invalid")


def _served(site: Site, name: str, token: str, result: str = "undetermined") -> Case:
    uri = _list_uri(site, name)
    site.publish(uri, token)
    return Case(site.city.issue(status_index=INDEX, status_uri=uri), result)


def _token(site: Site, name: str, **options: object) -> str:
    uri = _list_uri(site, name)
    site.new_list(uri)
    return site.city.status_token(uri, **options)  # type: ignore[arg-type]


def _raw_token(site: Site, name: str, header_typ: str, status_list: object) -> str:
    claims = {
        "sub": _list_uri(site, name),
        "iat": site.city.now - 60,
        "exp": site.city.now + 3600,
        "ttl": 300,
        "status_list": status_list,
    }
    return sign_jwt({"typ": header_typ, "kid": site.city.kid}, claims, site.city.agency)


def _bomb(site: Site, name: str) -> str:
    bomb = StatusList(5 * 1024 * 1024, 8)  # 5 MiB of zeros: a few KiB once compressed
    return sign_status_list_token(
        bomb,
        subject_uri=_list_uri(site, name),
        signer=site.city.agency,
        kid=site.city.kid,
        now=FixedClock(site.city.now - 60),
        lifetime=3600,
    )


def _with_status_claim(site: Site, status: object) -> str:
    return issue_credential(
        issuer=ISSUER,
        vct=RESIDENCY_VCT,
        subject_claims=get_type(RESIDENCY_VCT).example_claims(),
        signer=site.city.agency,
        kid=site.city.kid,
        holder_key=site.city.holder.public_key,
        lifetime=YEAR,
        status=status,  # type: ignore[arg-type]
        now=FixedClock(site.city.now - 86_400),
    )


def _subject_mismatch(site: Site, name: str) -> str:
    other = _list_uri(site, f"{name}-other")
    site.new_list(other)
    return site.city.status_token(other)  # genuine, but its sub names the other list


def _short_list(site: Site, name: str) -> Case:
    uri = _list_uri(site, name)
    site.city.status_lists[uri] = StatusList(16, 2)
    site.publish(uri, site.city.status_token(uri))
    return Case(site.city.issue(status_index=500, status_uri=uri), "invalid")


SETUPS: dict[str, Setup] = {
    "status_revoked": lambda s, n: _marked(s, n, 1),
    "status_suspended": lambda s, n: _marked(s, n, 2),
    "status_application_specific_value": lambda s, n: _marked(s, n, 3),
    "status_list_signature_invalid": lambda s, n: _served(
        s, n, _token(s, n, signer=PrivateKey.generate())
    ),
    "status_list_signed_by_another_issuer": lambda s, n: _served(
        s, n, _token(s, n, signer=s.keys.busan)
    ),
    "status_list_subject_mismatch": lambda s, n: _served(s, n, _subject_mismatch(s, n)),
    "status_uri_outside_accredited_base": lambda s, n: Case(
        s.city.issue(
            status_index=INDEX,
            status_uri=s.deployment.status.base.removesuffix("/status") + f"/elsewhere/{n}",
        ),
        "invalid",
    ),
    "status_uri_dot_segments_escape_base": lambda s, n: Case(
        s.city.issue(status_index=INDEX, status_uri=f"{_list_uri(s, '..')}/elsewhere/{n}"),
        "invalid",
    ),
    "status_uri_encoded_dot_segments_escape_base": lambda s, n: Case(
        s.city.issue(status_index=INDEX, status_uri=f"{_list_uri(s, '%2e%2e')}/elsewhere/{n}"),
        "invalid",
    ),
    "status_index_out_of_range": _short_list,
    "status_list_decompression_bomb": lambda s, n: _served(s, n, _bomb(s, n)),
    "status_list_answer_over_byte_cap": lambda s, n: _served(s, n, "a" * (1024 * 1024 + 10)),
    "status_list_expired": lambda s, n: _served(
        s, n, _token(s, n, issued_at=s.city.now - 7200, lifetime=3600)
    ),
    "status_list_issued_in_future": lambda s, n: _served(
        s, n, _token(s, n, issued_at=s.city.now + 3600)
    ),
    "status_list_malformed_lst": lambda s, n: _served(
        s, n, _raw_token(s, n, "statuslist+jwt", {"bits": 2, "lst": "bm90LXpsaWI"})
    ),
    "status_list_not_a_jwt": lambda s, n: _served(s, n, "this-is-not-a-status-list"),
    "status_list_unreachable": lambda s, n: Case(
        s.city.issue(status_index=INDEX, status_uri=_list_uri(s, n)), "undetermined"
    ),
    "status_list_wrong_typ": lambda s, n: _served(
        s, n, _raw_token(s, n, "JWT", StatusList(1024, 2).encode())
    ),
    "status_claim_malformed": lambda s, n: Case(
        _with_status_claim(s, {"status_list": {"idx": "3", "uri": _list_uri(s, n)}}), "invalid"
    ),
    "status_claim_missing": lambda s, n: Case(s.city.issue(status_index=None), "invalid"),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("status-attacks")
    policies = root / "policies"
    shutil.copytree(PACKAGED_POLICIES, policies)
    (policies / "bar-entry-tolerant.yaml").write_text(
        (policies / "bar-entry.yaml")
        .read_text()
        .replace("id: bar-entry", "id: bar-entry-tolerant")
        .replace("status_unavailable: undetermined", "status_unavailable: accept")
    )
    with running_site(root / "verifier", policies_dir=policies) as running:
        yield running


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_status_attack(site: Site, attack: Attack) -> None:
    case = SETUPS[attack.name](site, attack.name)
    verdict = site.verify(case.credential)
    assert (verdict["result"], verdict["reason"]) == (case.result, attack.code.value), verdict
    status = [c for c in verdict["checks"] if c["name"] == case.check]
    assert [(c["outcome"], c["reason"]) for c in status] == [
        ("failed" if case.result == "invalid" else "undetermined", attack.code.value)
    ]
    if case.result == "invalid":
        assert verdict["credentials"][0]["claims"] == []


def test_a_tolerant_policy_accepts_only_an_unavailable_list(site: Site) -> None:
    """``status_unavailable: accept`` turns an unreachable (or expired) list into a skipped
    check, and nothing else: a revoked credential or a forged list stays what it was."""
    unreachable = site.city.issue(status_index=INDEX, status_uri=_list_uri(site, "tolerant-404"))
    verdict = site.verify(unreachable, policy="bar-entry-tolerant")
    assert verdict["result"] == "valid", verdict
    status = next(c for c in verdict["checks"] if c["name"] == "status")
    assert (status["outcome"], status["reason"]) == ("skipped", "status_list_unavailable")
    expired = SETUPS["status_list_expired"](site, "tolerant-expired")
    assert site.verify(expired.credential, policy="bar-entry-tolerant")["result"] == "valid"
    revoked = SETUPS["status_revoked"](site, "tolerant-revoked")
    verdict = site.verify(revoked.credential, policy="bar-entry-tolerant")
    assert (verdict["result"], verdict["reason"]) == ("invalid", "status_invalid")
    forged = SETUPS["status_list_signature_invalid"](site, "tolerant-forged")
    verdict = site.verify(forged.credential, policy="bar-entry-tolerant")
    assert (verdict["result"], verdict["reason"]) == (
        "undetermined",
        "status_list_signature_invalid",
    )


def test_a_forged_list_served_once_is_not_kept(site: Site) -> None:
    """A forged list served once (a hijacked status host, a man in the middle) must not be
    cached for the ttl it claims: once the genuine list is back, verdicts use it."""
    case = SETUPS["status_list_signature_invalid"](site, "poisoned-once")
    verdict = site.verify(case.credential)
    assert verdict["reason"] == "status_list_signature_invalid"
    uri = _list_uri(site, "poisoned-once")
    site.publish(uri, site.city.status_token(uri))
    assert site.verify(case.credential)["result"] == "valid"


def test_a_status_uri_outside_the_base_is_never_fetched(site: Site) -> None:
    hits = site.deployment.status.hits
    case = SETUPS["status_uri_outside_accredited_base"](site, "never-fetched")
    assert site.verify(case.credential)["reason"] == "status_uri_not_accredited"
    assert site.deployment.status.hits == hits


def test_a_valid_entry_in_a_genuine_list_is_valid(site: Site) -> None:
    case = _marked(site, "control", 0)
    assert site.verify(case.credential)["result"] == "valid"


def test_every_attack_has_a_setup() -> None:
    assert sorted(SETUPS) == sorted(a.name for a in ATTACKS)
