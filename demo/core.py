"""``python -m demo.core``: the shared core end to end, with no network and no database.

An agency key signs a residency SD-JWT VC; the citizen's wallet presents two claims with a
Key Binding JWT; a counter verifies it (issuer signature, time claims, disclosures, KB-JWT,
status list, schema) and prints the verdict; the presentation is written as a QR PNG, read back
with a real QR decoder and verified again. ``make demo`` runs the whole city instead
(:mod:`demo.__main__`); this walk-through shows the same checks one library call at a time.
"""

from __future__ import annotations

import secrets
import sys
import time
from pathlib import Path

from civic.credentials import RESIDENCY_VCT, get_type, validate_claims
from civic.errors import CivicError
from civic.jose import PrivateKey
from civic.qr import decode_png, pack, qr_version, render_png, unpack
from civic.sdjwt import KeyBindingExpectation, create_presentation
from civic.sdjwtvc import issue_credential, verify_credential
from civic.statuslist import (
    Status,
    StatusList,
    StatusReference,
    parse_status_claim,
    sign_status_list_token,
    status_of,
    verify_status_list_token,
)

OUT = Path("out")
ISSUER = "https://mapo.seoul.example"
STATUS_URI = f"{ISSUER}/status/1"
COUNTER = "https://counter.mapo.seoul.example"


def step(number: int, text: str) -> None:
    print(f"\n[{number}] {text}")


def main() -> int:
    residency = get_type(RESIDENCY_VCT)
    started = time.perf_counter()

    step(1, "Mapo-gu district office creates its signing key (Ed25519)")
    agency = PrivateKey.generate("EdDSA")
    kid = "mapo-2026-1"
    print(f"    kid {kid}, JWK thumbprint {agency.public_key.thumbprint()}")

    step(2, "A citizen's wallet creates its holder key")
    wallet = PrivateKey.generate("EdDSA")
    print(f"    holder key thumbprint {wallet.public_key.thumbprint()}")

    step(3, f"The office issues a {residency.type_name('en')} ({residency.type_name('ko')})")
    claims = residency.example_claims()
    validate_claims(RESIDENCY_VCT, claims)
    status_list = StatusList(131_072, 2)
    index = secrets.randbelow(len(status_list))
    credential = issue_credential(
        issuer=ISSUER,
        vct=RESIDENCY_VCT,
        subject_claims=claims,
        signer=agency,
        kid=kid,
        holder_key=wallet.public_key,
        lifetime=365 * 86_400,
        status=StatusReference(index, STATUS_URI).to_claim(),
    )
    disclosures = credential.count("~") - 1
    print(f"    SD-JWT VC: {len(credential)} characters, {disclosures} disclosures")
    print("    every personal claim is selectively disclosable; decoys hide how many exist")

    step(4, "A counter asks for two claims; the wallet discloses only those, with a KB-JWT")
    nonce = secrets.token_urlsafe(16)
    reveal = [("address", "region"), ("age_over_19",)]
    presentation = create_presentation(
        credential, reveal=reveal, holder=wallet, audience=COUNTER, nonce=nonce
    )
    for path in reveal:
        english, korean = residency.display_name(path, "en"), residency.display_name(path, "ko")
        print(f"    discloses {english} / {korean}")

    step(5, "The office publishes its status list (2 bits, 131,072 entries for herd privacy)")
    status_token = sign_status_list_token(
        status_list, subject_uri=STATUS_URI, signer=agency, kid=kid, ttl=300, lifetime=3600
    )
    print(f"    status list token: {len(status_token)} characters")

    def verify(text: str, *, nonce_check: KeyBindingExpectation) -> None:
        verified = verify_credential(text, agency.public_key, key_binding=nonce_check)
        checks = ["issuer signature (EdDSA, pinned)", "time claims", "disclosure digests"]
        checks.append("KB-JWT: typ, holder signature, aud, nonce, sd_hash, fresh iat")
        status_list_verified = verify_status_list_token(
            status_token, key=agency.public_key, expected_uri=STATUS_URI
        )
        status = status_of(status_list_verified, parse_status_claim(verified.status))
        checks.append(f"status list: {status.name.lower()}")
        validate_claims(RESIDENCY_VCT, verified.subject_claims, partial=True)
        checks.append("schema")
        verdict = "valid" if status is Status.VALID else "invalid"
        for number, check in enumerate(checks, 1):
            print(f"    {number}. ok  {check}")
        print(f"    disclosed: {verified.subject_claims}")
        print(f"    VERDICT: {verdict}")

    step(6, "The counter verifies the presentation")
    used: set[str] = set()

    def consume(value: str) -> bool:
        fresh = value not in used
        used.add(value)
        return fresh

    expectation = KeyBindingExpectation(audience=COUNTER, nonce=nonce, consume_nonce=consume)
    verify(presentation, nonce_check=expectation)

    step(7, "Offline: the wallet shows the presentation as a QR code")
    packed = pack(presentation)
    OUT.mkdir(exist_ok=True)
    png_path = OUT / "presentation.png"
    png_path.write_bytes(render_png(packed))
    print(
        f"    packed: {len(packed)} characters (base45, alphanumeric mode), QR version "
        f"{qr_version(packed)} at error correction M"
    )
    print(f"    the raw compact string would need QR version {qr_version(presentation)}")
    print(f"    written {png_path}")

    step(8, "A scanner reads the PNG back with zxing-cpp; the text is byte-exact")
    scanned = unpack(decode_png(png_path.read_bytes()))
    assert scanned == presentation
    print("    decoded and unpacked: identical to the presentation")

    step(9, "Replaying the same presentation is refused: the nonce is single-use")
    try:
        verify(scanned, nonce_check=expectation)
    except CivicError as error:
        print(f"    VERDICT: invalid ({error.reason.value})")
    else:  # pragma: no cover - would be a security bug
        print("    replay was accepted: this is a bug")
        return 1

    print(f"\nDone in {time.perf_counter() - started:.2f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
