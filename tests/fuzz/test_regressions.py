"""Inputs the fuzzers found that escaped as foreign exceptions, pinned to their reason codes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from civic.encoding import json_dumps, json_loads
from civic.errors import MalformedError, ReasonCode, VerificationError
from civic.jose import verify_jws
from civic.trust import EVENT_TYP, parse_entry
from issuer.oid4vci import PROOF_TYP, OAuthError, verify_key_proof
from issuer.testing import LocalIssuer
from tests.fuzz import samples


@pytest.mark.parametrize("alg", [[], {}, ["EdDSA"], {"EdDSA": 1}])
def test_jws_with_an_unhashable_alg_is_refused(alg: object) -> None:
    token = samples.sign_raw({"alg": alg, "typ": "x"}, b"{}", samples.ISSUER_KEY)
    with pytest.raises(VerificationError) as info:
        verify_jws(token, samples.ISSUER_KEY.public_key, typ="x")
    assert info.value.reason is ReasonCode.ALG_NOT_ALLOWED


@pytest.mark.parametrize("alg", [[], {"EdDSA": 1}])
def test_registry_signature_with_an_unhashable_alg_is_refused(alg: object) -> None:
    gov = samples.governance()
    entry = json_loads(gov.issuer_add("k9").leaf_bytes())
    key = gov.keys["gov-0"]
    entry["signatures"][0] = samples.sign_json(
        {"alg": alg, "kid": "gov-0", "typ": EVENT_TYP}, entry["event"], key
    )
    with pytest.raises(MalformedError) as info:
        gov.genesis().apply(parse_entry(json_dumps(entry)))
    assert info.value.reason is ReasonCode.REGISTRY_ENTRY_MALFORMED


@pytest.mark.parametrize("kind", [["issuer.key.add"], {"issuer.key.add": 1}])
def test_registry_event_with_an_unhashable_type_is_refused(kind: object) -> None:
    entry = json_loads(samples.governance().issuer_add("k9").leaf_bytes())
    entry["event"]["type"] = kind
    with pytest.raises(MalformedError) as info:
        parse_entry(json_dumps(entry))
    assert info.value.reason is ReasonCode.REGISTRY_ENTRY_MALFORMED


@pytest.mark.parametrize("offset", [2**63, 68620380475642232832])
def test_issuer_admin_list_with_an_offset_beyond_sql_integers_is_a_400(
    tmp_path: Path, offset: int
) -> None:
    with LocalIssuer(tmp_path / "issuer") as issuer:
        answer = httpx.get(
            f"{issuer.url}/admin/credentials",
            params={"offset": offset},
            headers={"Authorization": f"Bearer {issuer.admin_key}"},
            timeout=10,
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_request"
        largest = httpx.get(
            f"{issuer.url}/admin/credentials",
            params={"offset": 2**63 - 1},
            headers={"Authorization": f"Bearer {issuer.admin_key}"},
            timeout=10,
        )
        assert largest.status_code == 200, largest.text
        assert largest.json()["credentials"] == []


@pytest.mark.parametrize("alg", [[], {"EdDSA": 1}])
def test_key_proof_with_an_unhashable_alg_is_an_invalid_proof(alg: object) -> None:
    header = {"alg": alg, "typ": PROOF_TYP, "jwk": samples.HOLDER_KEY.public_key.to_jwk()}
    claims = {"aud": "https://issuer.example", "iat": samples.NOW, "nonce": "n-1"}
    proof = samples.sign_json(header, claims, samples.HOLDER_KEY)
    with pytest.raises(OAuthError) as info:
        verify_key_proof(
            proof, audience="https://issuer.example", now=samples.NOW, max_age=300, skew=60
        )
    assert (info.value.error, info.value.reason) == ("invalid_proof", ReasonCode.ALG_NOT_ALLOWED)
