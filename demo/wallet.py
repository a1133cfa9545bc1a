"""The citizen's side of the demo: ``civic-wallet`` run as a separate process, as typed.

The wallet knows nothing of the demo: it gets its home directory and passphrase from
``CIVIC_WALLET_HOME`` / ``CIVIC_WALLET_PASSPHRASE``, the registry from its own ``init``, and
consent from ``--yes``. Each command's JSON answer (``--json``) is parsed; its messages on
stderr (the consent screen, for one) are kept for the walk-through to show.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from civic.encoding import json_loads_object
from civic.errors import CivicError
from demo.city import BIN
from demo.processes import DemoError, clean_environment

# A throwaway wallet in a temporary folder; `make up` prints it for the person trying it.
PASSPHRASE = "seoul demo wallet passphrase 서울"  # noqa: S105
TIMEOUT = 120


def wallet_command() -> list[str]:
    installed = BIN / "civic-wallet"
    if installed.exists():
        return [str(installed)]
    return [sys.executable, "-m", "wallet_cli.cli"]


@dataclass
class Answer:
    document: dict[str, Any]
    messages: str
    exit_status: int


@dataclass
class WalletCli:
    home: Path
    cwd: Path
    passphrase: str = field(default=PASSPHRASE, repr=False)

    @property
    def environment(self) -> dict[str, str]:
        return {
            "CIVIC_WALLET_HOME": str(self.home),
            "CIVIC_WALLET_PASSPHRASE": self.passphrase,
            "CIVIC_WALLET_LANG": "en",
        }

    def run(self, *args: str, exit_codes: tuple[int, ...] = (0,)) -> Answer:
        """Run ``civic-wallet <args> --json``; an exit status outside ``exit_codes`` stops the
        demo (``present`` exits 1, with its JSON answer, when the verifier says invalid)."""
        argv = [*wallet_command(), *args, "--json"]
        try:
            done = subprocess.run(  # noqa: S603 -- the wallet CLI, arguments built here
                argv,
                cwd=self.cwd,
                env=clean_environment(self.environment),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise DemoError(f"civic-wallet {args[0]} did not finish in {TIMEOUT} s") from None
        if done.returncode not in exit_codes:
            raise DemoError(
                f"civic-wallet {args[0]} failed (exit {done.returncode}): {done.stderr.strip()}"
            )
        try:
            document = json_loads_object(done.stdout.strip().splitlines()[-1])
        except (IndexError, CivicError) as error:
            raise DemoError(f"civic-wallet {args[0]} printed no JSON: {error}") from None
        return Answer(document, done.stderr, done.returncode)
