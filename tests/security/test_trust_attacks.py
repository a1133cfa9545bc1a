"""Trust attacks: credentials under keys the registry does not accredit for what they claim.

Each attack is presented offline to the real verifier service (HTTP on 127.0.0.1) whose trust
bundle holds the registry history of :mod:`tests.security.verifier_site`; the verdict must be
``invalid`` with the attack's reason code on the ``issuer_key`` (or ``signature``) check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from civic.credentials import RESIDENCY_VCT, get_type
from civic.errors import ReasonCode
from civic.jose import PrivateKey
from civic.sdjwt import issue_sd_jwt
from civic.sdjwtvc import VC_TYP, all_disclosable
from civic.statuslist import StatusReference
from tests.security import Attack
from tests.security.verifier_site import BUSAN, DAY, RETIRED_AT_AGO, Site, running_site
from tests.unit.verifier_city import ISSUER, YEAR

ATTACKS: tuple[Attack, ...] = (
    Attack(
        "issuer_not_accredited_for_vct",
        ReasonCode.KEY_NOT_ACCREDITED_FOR_VCT,
        "verifier",
        "an issuer key accredited only for vaccination certificates signs a residency credential",
    ),
    Attack(
        "kid_unknown_to_registry",
        ReasonCode.KEY_UNKNOWN,
        "verifier",
        "an accredited issuer's iss with a kid the registry never recorded, signed by that key",
    ),
    Attack(
        "issuer_never_accredited",
        ReasonCode.ISSUER_UNKNOWN,
        "verifier",
        "a self-made issuer that the registry has never heard of",
    ),
    Attack(
        "retired_key_used_after_retirement",
        ReasonCode.KEY_RETIRED,
        "verifier",
        "a credential issued (iat) after its key was retired",
    ),
    Attack(
        "retired_key_credential_without_iat",
        ReasonCode.KEY_RETIRED,
        "verifier",
        "a retired key signs a credential without iat, so it cannot show it predates retirement",
    ),
    Attack(
        "revoked_key_any_credential",
        ReasonCode.KEY_REVOKED,
        "verifier",
        "a revoked key: credentials issued before and after the revocation are all rejected",
    ),
    Attack(
        "key_past_not_after",
        ReasonCode.KEY_OUTSIDE_WINDOW,
        "verifier",
        "a key whose accreditation window ended yesterday",
    ),
    Attack(
        "key_before_not_before",
        ReasonCode.KEY_OUTSIDE_WINDOW,
        "verifier",
        "a key whose accreditation window only opens tomorrow",
    ),
    Attack(
        "kid_of_issuer_a_with_iss_of_issuer_b",
        ReasonCode.KEY_UNKNOWN,
        "verifier",
        "Mapo's kid (and key) under Busan's iss: Busan has no such kid",
    ),
    Attack(
        "kid_of_issuer_b_with_iss_of_issuer_a",
        ReasonCode.KEY_UNKNOWN,
        "verifier",
        "Busan's kid and key used to sign a credential claiming Mapo's iss",
    ),
    Attack(
        "kid_name_shared_by_two_issuers",
        ReasonCode.SIGNATURE_INVALID,
        "verifier",
        "Busan's iss and its kid that is also Mapo's kid name, signed by Mapo's key",
    ),
    Attack(
        "accredited_kid_signed_by_another_key",
        ReasonCode.SIGNATURE_INVALID,
        "verifier",
        "the accredited (iss, kid) of Mapo on a credential signed by an attacker's key",
    ),
)

Forge = Callable[[Site], list[str]]


def _retired(site: Site, issued_ago: int, *, iat: bool = True) -> str:
    credential = site.city.issue(
        signer=site.keys.retired,
        kid="retired-1",
        issued_at=site.city.now - issued_ago,
        status_uri=f"{site.deployment.status.base}/retired-1/1",
    )
    if iat:
        return credential
    # The same credential with no iat: issued straight through the SD-JWT layer.
    now = site.city.now - issued_ago
    claims = {
        "iss": ISSUER,
        "exp": now + YEAR,
        "vct": RESIDENCY_VCT,
        "status": StatusReference(7, f"{site.deployment.status.base}/retired-1/1").to_claim(),
        **all_disclosable(get_type(RESIDENCY_VCT).example_claims()),
    }
    return issue_sd_jwt(
        claims,
        site.keys.retired,
        header={"typ": VC_TYP, "kid": "retired-1"},
        holder_key=site.city.holder.public_key,
    )


FORGERIES: dict[str, Forge] = {
    "issuer_not_accredited_for_vct": lambda s: [
        s.city.issue(RESIDENCY_VCT, signer=s.keys.vaccination_only, kid="vaccination-only")
    ],
    "kid_unknown_to_registry": lambda s: [s.city.issue(kid="mapo-2099-9")],
    "issuer_never_accredited": lambda s: [
        s.city.issue(issuer="https://rogue.example", signer=PrivateKey.generate(), kid="k1")
    ],
    "retired_key_used_after_retirement": lambda s: [_retired(s, DAY)],
    "retired_key_credential_without_iat": lambda s: [_retired(s, RETIRED_AT_AGO + DAY, iat=False)],
    "revoked_key_any_credential": lambda s: [
        s.city.issue(signer=s.keys.revoked, kid="revoked-1", issued_at=s.city.now - ago)
        for ago in (RETIRED_AT_AGO + DAY, DAY)
    ],
    "key_past_not_after": lambda s: [s.city.issue(signer=s.keys.expired, kid="expired-1")],
    "key_before_not_before": lambda s: [s.city.issue(signer=s.keys.future, kid="future-1")],
    "kid_of_issuer_a_with_iss_of_issuer_b": lambda s: [
        s.city.issue(issuer=BUSAN, signer=s.keys.retired, kid="retired-1")
    ],
    "kid_of_issuer_b_with_iss_of_issuer_a": lambda s: [
        s.city.issue(issuer=ISSUER, signer=s.keys.busan, kid="busan-1")
    ],
    "kid_name_shared_by_two_issuers": lambda s: [s.city.issue(issuer=BUSAN, kid=s.city.kid)],
    "accredited_kid_signed_by_another_key": lambda s: [s.city.issue(signer=PrivateKey.generate())],
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running_site(tmp_path_factory.mktemp("trust-attacks") / "verifier") as running:
        yield running


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_trust_attack(site: Site, attack: Attack) -> None:
    credentials = FORGERIES[attack.name](site)
    assert credentials
    for credential in credentials:
        verdict = site.verify(credential)
        assert (verdict["result"], verdict["reason"]) == ("invalid", attack.code.value), verdict
        failed = [c for c in verdict["checks"] if c["outcome"] == "failed"]
        assert [c["reason"] for c in failed] == [attack.code.value]
        assert verdict["credentials"][0]["claims"] == []  # nothing disclosed from a forgery


def test_retired_key_still_covers_credentials_issued_before_retirement(site: Site) -> None:
    """The positive control of ``retired_key_used_after_retirement``."""
    site.new_list(f"{site.deployment.status.base}/retired-1/1")
    site.publish(
        f"{site.deployment.status.base}/retired-1/1",
        site.city.status_token(
            f"{site.deployment.status.base}/retired-1/1", signer=site.keys.retired
        ),
    )
    verdict = site.verify(_retired(site, RETIRED_AT_AGO + DAY))
    assert verdict["result"] == "valid", verdict
    # One second after the retirement is already too late.
    late = site.verify(_retired(site, RETIRED_AT_AGO - 1))
    assert (late["result"], late["reason"]) == ("invalid", "key_retired")


def test_the_unmodified_credential_is_valid(site: Site) -> None:
    """The control for every attack above: the city's own credential passes."""
    assert site.verify(site.city.issue())["result"] == "valid"


def test_every_attack_has_a_forgery() -> None:
    assert sorted(FORGERIES) == sorted(a.name for a in ATTACKS)
