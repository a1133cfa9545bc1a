"""``python -m bench``: run every benchmark and write its JSON under bench/results/."""

from __future__ import annotations

from bench import core_verify, issuer, qr_size, statuslist_encode, verifier


def main() -> None:
    for module in (core_verify, qr_size, statuslist_encode, issuer, verifier):
        module.main()


if __name__ == "__main__":
    main()
