"""``civic-registry witness``: create a witness key and serve C2SP tlog-witness.

Mounted by the registry CLI as ``app.add_typer(witness_app, name="witness")``; also runnable as
``python -m registry.witness.cli``. Configuration is the environment of
:mod:`registry.witness.settings` (``CIVIC_WITNESS_*``). Output shows public keys only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from sqlalchemy.exc import SQLAlchemyError

from civic.errors import CivicError
from registry.witness.app import create_app
from registry.witness.settings import (
    load_config,
    load_settings,
    read_signer_key,
    write_signer_key,
)
from registry.witness.state import WitnessStore

witness_app = typer.Typer(
    name="witness",
    help="A C2SP tlog-witness that cosigns the registry log's checkpoints.",
    no_args_is_help=True,
    add_completion=False,
)

KeyFileOption = Annotated[
    Path,
    typer.Option(
        "--key-file",
        envvar="CIVIC_WITNESS_KEY_FILE",
        help="Witness signer key file (created 0600).",
        dir_okay=False,
    ),
]


def _fail(error: CivicError) -> typer.Exit:
    typer.echo(f"error: {error.detail}", err=True)
    return typer.Exit(code=2)


@witness_app.command()
def init(
    key_file: KeyFileOption,
    name: Annotated[str, typer.Option("--name", help="Witness key name, e.g. witness.example/w1.")],
) -> None:
    """Create a new witness key (never overwrites) and print its public vkey."""
    try:
        vkey = write_signer_key(key_file, name)
    except CivicError as error:
        raise _fail(error) from None
    typer.echo(vkey)


@witness_app.command()
def vkey(key_file: KeyFileOption) -> None:
    """Print the public vkey of a witness key file (for the log's and verifiers' config)."""
    try:
        signer = read_signer_key(key_file)
    except CivicError as error:
        raise _fail(error) from None
    typer.echo(signer.vkey)


@witness_app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8780,
    log_level: Annotated[str, typer.Option(help="Python log level.")] = "info",
) -> None:
    """Serve add-checkpoint with the CIVIC_WITNESS_* configuration."""
    try:
        settings = load_settings()
        config = load_config(settings)
        store = WitnessStore.open(
            settings.database_url.get_secret_value(), schema=settings.database_schema
        )
    except CivicError as error:
        raise _fail(error) from None
    except SQLAlchemyError as error:
        # The driver's message may quote the URL; name the failure, not the connection string.
        typer.echo(f"error: cannot open the witness database ({type(error).__name__})", err=True)
        raise typer.Exit(code=2) from None
    logging.basicConfig(level=log_level.upper())
    logging.getLogger("registry.witness").info(
        "witness %s (%s) serving %d log(s)", config.name, config.signers[0].vkey, len(config.logs)
    )
    try:
        uvicorn.run(create_app(config, store), host=host, port=port, log_level=log_level.lower())
    finally:
        store.dispose()


if __name__ == "__main__":
    witness_app()
