"""``python -m bench``: run every benchmark and write its JSON under bench/results/.

``python -m bench NAME [ARGS]`` runs one of them (``python -m bench load --seconds 10``)."""

from __future__ import annotations

import sys

from bench import (
    core_verify,
    issuer,
    load,
    qr_size,
    registry,
    statuslist_encode,
    verifier,
    wallet_cli,
)

DEFAULT = (core_verify, qr_size, statuslist_encode, registry, issuer, verifier, wallet_cli, load)


def main() -> None:
    args = sys.argv[1:]
    if not args:
        for module in DEFAULT:
            module.main()
        return
    name, rest = args[0], args[1:]
    if name == "load":
        load.main(rest)
        return
    named = {module.__name__.removeprefix("bench."): module for module in DEFAULT}
    if name not in named or rest:
        sys.exit(f"usage: python -m bench [{'|'.join(named)}] (only load takes arguments)")
    named[name].main()


if __name__ == "__main__":
    main()
