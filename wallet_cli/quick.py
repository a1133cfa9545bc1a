"""The console script's entry point, and ``list`` without Typer (issue 6, start-up time).

``civic-wallet [--home H] list [--json] [--lang en|ko]`` is what a citizen runs most, and with
an unlocked wallet (:mod:`wallet_cli.agent`) its cost is start-up alone. Measured with
``python -X importtime``: Typer costs about 40 ms to import and the command module with its
decorated commands 15 ms more, Pydantic another 90 ms once Typer parses a parameter. So
:func:`main` runs exactly that argv here, importing only the store, the agent client and the
renderer; any other argv (``--help`` included) goes to the Typer app in :mod:`wallet_cli.cli`,
which produces the same output for ``list`` (tests compare the two).

Everything here stays light: no Typer, no libsodium (the agent opens the store), no protocol
code. Typer is imported only to prompt for a passphrase, which then costs Argon2id anyway.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from civic.clock import Clock, system_clock
from civic.encoding import json_dumps
from civic.errors import CivicError, ReasonCode, UsageError, VerificationError
from wallet_cli import render

if TYPE_CHECKING:
    from wallet_cli.model import StoredCredential
    from wallet_cli.store import UnsafeFastKdfForTests, WalletStore


@dataclass(frozen=True)
class WalletRuntime:
    """What only code can set (tests pass one as Click's ``obj``): never configuration."""

    unsafe_kdf: UnsafeFastKdfForTests | None = None
    now: Clock = system_clock
    home: Path | None = None


def echo(message: str, *, err: bool = False) -> None:
    """``typer.echo`` for plain text (it resolves ``sys.stdout`` at call time, so Click's test
    runner captures it just the same)."""
    stream = sys.stderr if err else sys.stdout
    stream.write(message + "\n")
    stream.flush()


def warn(message: str) -> None:
    echo(f"civic-wallet: warning: {message}", err=True)


def error_message(error: CivicError, *, as_json: bool) -> str:
    if as_json:
        return json_dumps({"error": error.reason.value, "detail": error.detail})
    return f"civic-wallet: {error.reason.value}: {error.detail}"


def exit_code(error: CivicError) -> int:
    return 2 if isinstance(error, UsageError) else 1


def default_lang() -> str:
    env = os.environ.get("CIVIC_WALLET_LANG") or os.environ.get("LANG", "")
    return "ko" if env.lower().startswith("ko") else "en"


def secret(variable: str, prompt: str, *, confirm: bool) -> Callable[[], str]:
    """The variable's value, else a hidden prompt on stderr (asked only when called)."""

    def get() -> str:
        value = os.environ.get(variable)
        if value:
            return value
        import typer  # noqa: PLC0415 (only when a prompt is needed)

        answer: str = typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)
        return answer

    return get


def open_store(runtime: WalletRuntime, home: Path, *, new: bool = False) -> WalletStore:
    """The store, asking the wallet's agent first (not for a new wallet)."""
    from wallet_cli.agent import AgentClient  # noqa: PLC0415
    from wallet_cli.store import WalletStore  # noqa: PLC0415

    return WalletStore(
        home,
        secret("CIVIC_WALLET_PASSPHRASE", "Wallet passphrase", confirm=new),
        unsafe_kdf=runtime.unsafe_kdf,
        agent=None if new else AgentClient(home, os.environ, warn=warn),
    )


def credential_row(credential: StoredCredential, lang: str) -> dict[str, Any]:
    return {
        "id": credential.id,
        "type": credential.type_name(lang),
        "vct": credential.vct,
        "issuer": credential.issuer_name(lang),
        "issuer_url": credential.issuer,
        "received_at": credential.received_at,
        "issued_at": credential.issued_at,
        "expires_at": credential.expires_at,
        "copies": len(credential.copies),
        "unused_copies": credential.unused_copies,
    }


def list_output(runtime: WalletRuntime, lang: str, as_json: bool) -> None:
    """``civic-wallet list``: a table on stdout, or one JSON document."""
    from wallet_cli.store import wallet_home  # noqa: PLC0415

    home = runtime.home if runtime.home is not None else wallet_home(os.environ)
    rows = [credential_row(c, lang) for c in open_store(runtime, home).read().credentials]
    if as_json:
        echo(json_dumps({"credentials": rows}))
        return
    if not rows:
        echo("The wallet holds no credentials yet (civic-wallet receive <offer>).", err=True)
        return
    echo(
        render.table(
            ["id", "type", "issuer", "expires", "unused copies"],
            [
                [
                    r["id"],
                    r["type"],
                    r["issuer"],
                    render.day(r["expires_at"]),
                    f"{r['unused_copies']}/{r['copies']}",
                ]
                for r in rows
            ],
        )
    )


def fast_list(argv: list[str]) -> int | None:
    """Run ``[--home H] list [--json] [--lang en|ko]`` without Typer's parser; ``None`` for
    any other argv (Typer then parses it, with its usual messages)."""
    rest = list(argv)
    home: Path | None = None
    if rest[:1] == ["--home"] and len(rest) >= 2:
        home, rest = Path(rest[1]), rest[2:]
    elif rest[:1] and rest[0].startswith("--home="):
        home, rest = Path(rest[0].split("=", 1)[1]), rest[1:]
    if rest[:1] != ["list"]:
        return None
    as_json, lang, options = False, None, rest[1:]
    while options:
        option = options.pop(0)
        if option == "--json" and not as_json:
            as_json = True
        elif option == "--lang" and options and lang is None and options[0] in ("en", "ko"):
            lang = options.pop(0)
        elif option in ("--lang=en", "--lang=ko") and lang is None:
            lang = option.split("=", 1)[1]
        else:
            return None
    try:
        list_output(WalletRuntime(home=home), lang or default_lang(), as_json)
    except CivicError as error:
        echo(error_message(error, as_json=as_json), err=True)
        return exit_code(error)
    except OSError as error:
        failure = VerificationError(ReasonCode.MALFORMED_INPUT, f"file error: {error.strerror}")
        echo(error_message(failure, as_json=as_json), err=True)
        return 1
    except Exception as error:  # Click's Abort (a prompt closed), without importing Click
        if type(error).__name__ != "Abort":
            raise
        echo("Aborted!", err=True)
        return 1
    return 0


def main() -> Any:
    """``civic-wallet``: the direct ``list`` path, else the Typer app."""
    code = fast_list(sys.argv[1:])
    if code is not None:
        return code
    from wallet_cli.cli import app  # noqa: PLC0415

    return app()
