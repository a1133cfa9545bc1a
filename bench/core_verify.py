"""Presentations verified per second on one core: an SD-JWT VC with 6 disclosures and a KB-JWT.

Contenders, all in this process on one core:
- civic, EdDSA and ES256: :func:`civic.sdjwtvc.verify_credential` with key binding (typ, aud,
  nonce, iat, sd_hash), time claims and disclosure processing.
- the IETF reference implementation (PyPI ``sd-jwt`` 0.10.4), ES256 only, because it verifies
  KB-JWTs only with ES256. It checks the issuer signature, disclosures and the KB-JWT
  signature, aud, nonce and sd_hash; it does not check typ, exp, nbf or iat.
- the floor cost: two bare pynacl Ed25519 verifications (issuer JWS + KB-JWT), the ceiling any
  EdDSA verifier can reach; and, for comparison, the same two checks as civic makes them
  (libsodium's crypto_sign_open through pynacl's cffi module, no output buffer), which skip
  the message copies of the pynacl API.

civic is measured as installed, with the C accelerator ``civic._speedups`` when it was built.
The same contenders then run once more in a child process with ``CIVIC_PURE_PYTHON=1``, so
the report also gives the pure-Python figures (measured after, not interleaved).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import nacl.signing

from bench.harness import ops_per_second, write_report
from civic.clock import FixedClock
from civic.encoding import speedups
from civic.jose import PrivateKey, parse_jws, public_key_from_jwk
from civic.sdjwt import KeyBindingExpectation, create_presentation, parse_sd_jwt
from civic.sdjwtvc import issue_credential, verify_credential

NOW = 1_800_000_000
AUD = "https://counter.mapo.seoul.example"
NONCE = "q8vOqJ1cM2m3W4x5y6z7AA"
CLAIMS = {
    "given_name": "지민",
    "family_name": "김",
    "birth_date": "1998-04-12",
    "address": {"region": "Seoul", "locality": "Mapo-gu"},
    "resident_since": "2019-03-01",
    "age_over_19": True,
    "age_over_65": False,
}
REVEAL = [
    ("given_name",),
    ("family_name",),
    ("birth_date",),
    ("resident_since",),
    ("age_over_19",),
    ("age_over_65",),
]


def build(alg: str) -> tuple[str, PrivateKey]:
    issuer = PrivateKey.generate(alg)  # type: ignore[arg-type]
    holder = PrivateKey.generate(alg)  # type: ignore[arg-type]
    issued = issue_credential(
        issuer="https://mapo.seoul.example",
        vct="urn:civic:vct:residency:1",
        subject_claims=CLAIMS,
        signer=issuer,
        kid="mapo-1",
        holder_key=holder.public_key,
        lifetime=86_400 * 365,
        status={"status_list": {"idx": 4711, "uri": "https://mapo.seoul.example/status/1"}},
        now=FixedClock(NOW - 100),
    )
    presentation = create_presentation(
        issued, reveal=REVEAL, holder=holder, audience=AUD, nonce=NONCE, now=FixedClock(NOW)
    )
    disclosures = len(parse_sd_jwt(presentation).disclosures)
    assert disclosures == 6, disclosures  # six top-level claims; the address stays hidden
    return presentation, issuer


def civic_contender(alg: str) -> tuple[Callable[[], object], str, PrivateKey]:
    presentation, issuer = build(alg)
    key, clock = issuer.public_key, FixedClock(NOW)
    kb = KeyBindingExpectation(audience=AUD, nonce=NONCE)

    def verify() -> object:
        return verify_credential(presentation, key, key_binding=kb, now=clock)

    verify()
    return verify, presentation, issuer


def reference_contender(presentation: str, issuer: PrivateKey) -> Callable[[], object]:
    from jwcrypto.jwk import JWK
    from sd_jwt.verifier import SDJWTVerifier

    reference_key = JWK(**issuer.public_key.to_jwk())

    def verify() -> object:
        return SDJWTVerifier(
            presentation, lambda iss, header: reference_key, AUD, NONCE
        ).get_verified_payload()

    assert verify()["given_name"] == CLAIMS["given_name"]
    return verify


def two_signature_floor(presentation: str, issuer: PrivateKey) -> Callable[[], object]:
    parsed = parse_sd_jwt(presentation)
    issuer_jws, kb_jws = parsed.jws, parse_jws(presentation.rsplit("~", 1)[1])
    issuer_key = nacl.signing.VerifyKey(issuer.public_key.raw)
    holder_key = nacl.signing.VerifyKey(public_key_from_jwk(parsed.payload["cnf"]["jwk"]).raw)

    def verify() -> object:
        issuer_key.verify(issuer_jws.signing_input, issuer_jws.signature)
        return holder_key.verify(kb_jws.signing_input, kb_jws.signature)

    return verify


def two_signature_floor_as_civic(presentation: str, issuer: PrivateKey) -> Callable[[], object]:
    parsed = parse_sd_jwt(presentation)
    issuer_jws, kb_jws = parsed.jws, parse_jws(presentation.rsplit("~", 1)[1])
    issuer_key = issuer.public_key
    holder_key = public_key_from_jwk(parsed.payload["cnf"]["jwk"])

    def verify() -> object:
        assert issuer_key.verify(issuer_jws.signing_input, issuer_jws.signature)
        return holder_key.verify(kb_jws.signing_input, kb_jws.signature)

    return verify


def pure_python_results() -> dict[str, Any]:
    """civic's own contenders again, in a child process without the C accelerator."""
    child = subprocess.run(
        [sys.executable, "-m", "bench.core_verify", "--pure-child"],
        env={**os.environ, "CIVIC_PURE_PYTHON": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    results: dict[str, Any] = json.loads(child.stdout)
    return results


def civic_only() -> dict[str, Any]:
    civic_eddsa, _, _ = civic_contender("EdDSA")
    civic_es256, _, _ = civic_contender("ES256")
    return ops_per_second({"civic_EdDSA": civic_eddsa, "civic_ES256": civic_es256})


def run() -> dict[str, Any]:
    civic_eddsa, eddsa_presentation, eddsa_issuer = civic_contender("EdDSA")
    civic_es256, es256_presentation, es256_issuer = civic_contender("ES256")
    contenders = {
        "civic_EdDSA": civic_eddsa,
        "floor_two_pynacl_verifications": two_signature_floor(eddsa_presentation, eddsa_issuer),
        "floor_two_signature_checks_as_civic_makes_them": two_signature_floor_as_civic(
            eddsa_presentation, eddsa_issuer
        ),
        "civic_ES256": civic_es256,
        "reference_sd_jwt_0.10.4_ES256": reference_contender(es256_presentation, es256_issuer),
    }
    results = ops_per_second(contenders)
    pure = pure_python_results()
    median = {name: r["median_ops_per_s"] for name, r in results.items()}
    ratios = {
        "civic_EdDSA_vs_reference_ES256": round(
            median["civic_EdDSA"] / median["reference_sd_jwt_0.10.4_ES256"], 2
        ),
        "civic_ES256_vs_reference_ES256": round(
            median["civic_ES256"] / median["reference_sd_jwt_0.10.4_ES256"], 2
        ),
        "civic_EdDSA_vs_two_signature_ceiling": round(
            median["civic_EdDSA"] / median["floor_two_pynacl_verifications"], 2
        ),
        "civic_EdDSA_vs_signature_checks_as_civic_makes_them": round(
            median["civic_EdDSA"] / median["floor_two_signature_checks_as_civic_makes_them"], 2
        ),
        "civic_EdDSA_pure_python_vs_two_signature_ceiling": round(
            pure["civic_EdDSA"]["median_ops_per_s"] / median["floor_two_pynacl_verifications"], 2
        ),
        "civic_EdDSA_pure_python_vs_reference_ES256": round(
            pure["civic_EdDSA"]["median_ops_per_s"] / median["reference_sd_jwt_0.10.4_ES256"], 2
        ),
    }
    targets = {
        "civic_EdDSA_vs_reference_ES256": ">= 3.5",
        "civic_EdDSA_vs_two_signature_ceiling": ">= 0.70",
    }
    return {
        "what": "SD-JWT VC presentations verified per second, one core, 6 disclosures + KB-JWT",
        "c_accelerator": speedups is not None,
        "results": results,
        "pure_python_results": pure,
        "ratios": ratios,
        "targets": targets,
    }


def main() -> None:
    if sys.argv[1:] == ["--pure-child"]:
        assert speedups is None, "the child must run without the C accelerator"
        print(json.dumps(civic_only()))
        return
    report = run()
    path = write_report("core_verify", report)
    for name, r in report["results"].items():
        print(f"{name:48s} {r['median_ops_per_s']:>10.0f} /s (median)")
    for name, r in report["pure_python_results"].items():
        print(f"{name + ' (pure Python)':48s} {r['median_ops_per_s']:>10.0f} /s (median)")
    for name, value in report["ratios"].items():
        print(f"{name:48s} {value:>10.2f}x  target {report['targets'].get(name, '-')}")
    print(f"written {path}")


if __name__ == "__main__":
    main()
