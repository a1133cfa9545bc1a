"""QR sizes of real presentations: packed (base45, alphanumeric) vs the naive compact string.

The issue's target: a residency presentation with 4 disclosed claims and a KB-JWT fits QR
version 25 or lower at error correction M. Sizes vary a little with random decoys and salts,
so several issuances are measured and the worst case is reported.
"""

from __future__ import annotations

from typing import Any

from bench.harness import write_report
from civic.credentials import RESIDENCY_VCT, VACCINATION_VCT, YOUTH_ALLOWANCE_VCT, get_type
from civic.errors import UsageError
from civic.jose import PrivateKey
from civic.qr import pack, qr_version
from civic.sdjwt import create_presentation
from civic.sdjwtvc import issue_credential
from civic.statuslist import StatusReference

REVEAL: dict[str, list[tuple[str | int, ...]]] = {
    RESIDENCY_VCT: [("given_name",), ("family_name",), ("address", "region"), ("age_over_19",)],
    YOUTH_ALLOWANCE_VCT: [("programme",), ("allowance_status",), ("period",), ("monthly_amount",)],
    VACCINATION_VCT: [
        ("vaccination", "dn"),
        ("vaccination", "sd"),
        ("vaccination", "mp"),
        ("vaccination", "dt"),
    ],
}
SAMPLES = 20


def _version_or_none(text: str) -> int | None:
    """QR version, or None when the text does not fit in version 40 at all."""
    try:
        return qr_version(text)
    except UsageError:
        return None


def measure(vct: str) -> dict[str, Any]:
    issuer, holder = PrivateKey.generate("EdDSA"), PrivateKey.generate("EdDSA")
    packed_versions, naive_versions, packed_chars, naive_chars = [], [], [], []
    for index in range(SAMPLES):
        credential = issue_credential(
            issuer="https://mapo.seoul.example",
            vct=vct,
            subject_claims=get_type(vct).example_claims(),
            signer=issuer,
            kid="mapo-2026-1",
            holder_key=holder.public_key,
            lifetime=365 * 86_400,
            status=StatusReference(index * 7919, "https://mapo.seoul.example/status/1").to_claim(),
        )
        presentation = create_presentation(
            credential,
            reveal=REVEAL[vct],
            holder=holder,
            audience="https://counter.mapo.seoul.example",
            nonce="q8vOqJ1cM2m3W4x5y6z7AA",
        )
        packed = pack(presentation)
        packed_versions.append(qr_version(packed))
        packed_chars.append(len(packed))
        naive_chars.append(len(presentation))
        naive_versions.append(_version_or_none(presentation))
    return {
        "disclosed_claims": ["/".join(map(str, p)) for p in REVEAL[vct]],
        "packed_qr_version_max": max(packed_versions),
        "naive_qr_version_max": (
            None if None in naive_versions else max(v for v in naive_versions if v is not None)
        ),
        "naive_fits_any_qr": None not in naive_versions,
        "packed_chars_max": max(packed_chars),
        "naive_chars_max": max(naive_chars),
        "samples": SAMPLES,
    }


def main() -> None:
    results = {get_type(vct).key: measure(vct) for vct in REVEAL}
    path = write_report(
        "qr_size",
        {
            "what": "QR version (error correction M) of a presentation with 4 disclosed claims "
            "and a KB-JWT: civic.qr pack (base45, alphanumeric) vs the compact string (byte mode)",
            "results": results,
            "targets": {"residency.packed_qr_version_max": "<= 25"},
        },
    )
    for key, r in results.items():
        packed, naive = r["packed_qr_version_max"], r["naive_qr_version_max"]
        naive_text = f"v{naive}" if naive is not None else "does not fit (over v40)"
        print(f"{key:16s} packed QR v{packed:<3} naive {naive_text}")
    print(f"written {path}")


if __name__ == "__main__":
    main()
