"""``python -m bench``: run every benchmark and write its JSON under bench/results/."""

from __future__ import annotations

from bench import core_verify


def main() -> None:
    core_verify.main()


if __name__ == "__main__":
    main()
