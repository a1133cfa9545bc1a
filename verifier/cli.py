"""``civic-verifier``: set up, run, and verify offline with no network.

- ``civic-verifier init``: a signing key (its public JWK goes to the registry's
  ``accredit-verifier``) and a staff API key, in a new data directory;
- ``civic-verifier serve``: the HTTP service (settings from ``CIVIC_VERIFIER_*``);
- ``civic-verifier verify --bundle trust.json --config trust-config.json --policy bar-entry
  --nonce N <text | image.png>``: the verdict of one scanned presentation against an offline
  trust bundle. Status lists can be given as files (``--status-list URI=FILE``); without one,
  the status is unknown and the verdict ``undetermined`` unless the policy accepts that.

Data goes to stdout (``--json`` for machines), messages to stderr. Exit codes: 0 valid,
1 invalid or undetermined (or a failure), 2 usage.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from civic.clock import system_clock
from civic.encoding import json_dumps
from civic.errors import CivicError, ReasonCode, VerificationError
from civic.jose import PrivateKey
from civic.qr import decode_png, is_packed
from civic.verdict import SnapshotTrust, Verdict, rejected, verify_presentations
from civic_service.config import SettingsError, token_sha256_hex, write_private_file
from verifier.replay import MemoryReplayStore
from verifier.settings import (
    API_KEY_FILE,
    API_KEY_HASH_FILE,
    PACKAGED_POLICIES,
    SIGNING_KEY_FILE,
    VerifierSettings,
    load_log_config,
    load_policies,
    load_runtime,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__.split("\n\n")[0])

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


@app.command()
def init(
    *,
    data_dir: Annotated[Path, typer.Option(help="Where to write the keys.")] = Path(
        "verifier-data"
    ),
    alg: Annotated[str, typer.Option(help="Signing key algorithm: EdDSA or ES256.")] = "EdDSA",
    as_json: JsonFlag = False,
) -> None:
    """Create the request-signing key and the staff API key."""
    if alg not in ("EdDSA", "ES256"):
        raise typer.BadParameter("alg must be EdDSA or ES256")
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    if (data_dir / SIGNING_KEY_FILE).exists():
        _fail(f"{data_dir / SIGNING_KEY_FILE} exists; refusing to overwrite")
    key = PrivateKey.generate(alg)  # type: ignore[arg-type]
    kid = key.public_key.thumbprint()
    write_private_file(
        data_dir / SIGNING_KEY_FILE, json_dumps({**key.export_private_jwk(), "kid": kid}) + "\n"
    )
    api_key = secrets.token_urlsafe(32)
    write_private_file(data_dir / API_KEY_FILE, api_key + "\n")
    (data_dir / API_KEY_HASH_FILE).write_text(token_sha256_hex(api_key) + "\n", encoding="utf-8")
    result = {
        "kid": kid,
        "jwk": key.public_key.to_jwk(),
        "api_key_file": str(data_dir / API_KEY_FILE),
    }
    typer.echo(json_dumps(result) if as_json else f"kid {kid}\njwk {json_dumps(result['jwk'])}")
    typer.echo(
        "Have the registry accredit this key for your client_id; copy the registry's "
        "trust-config.json into the data directory.",
        err=True,
    )


@app.command()
def serve(
    *,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory.")] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
) -> None:
    """Run the verifier HTTP service.

    uvicorn's workers share one listening socket, and a burst of new connections may all be
    accepted by one of them: keep-alive clients (counter terminals) are best spread over the
    workers by a balancer in front, or by replicas on ports of their own."""
    import uvicorn  # noqa: PLC0415

    from verifier.serving import LOG_CONFIG, PROTOCOL  # noqa: PLC0415

    overrides: dict[str, Any] = {}
    for name, value in (("data_dir", data_dir), ("host", host), ("port", port)):
        if value is not None:
            overrides[name] = value
    settings = VerifierSettings(**overrides)
    try:
        load_runtime(settings)
    except CivicError as error:
        _fail(f"cannot start: {error.detail}", 2)
    for name, value in overrides.items():
        os.environ[f"CIVIC_VERIFIER_{name.upper()}"] = str(value)
    typer.echo(f"serving {settings.client_id} on http://{settings.host}:{settings.port}", err=True)
    uvicorn.run(
        "verifier.server:app",
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level="info",
        log_config=LOG_CONFIG,
        http=PROTOCOL,
    )


class _FileStatus:
    """Status List Tokens read from files given on the command line."""

    def __init__(self, files: dict[str, Path]) -> None:
        self._files = files

    def fetch(self, uri: str) -> str:
        path = self._files.get(uri)
        if path is None:
            raise VerificationError(ReasonCode.STATUS_LIST_UNAVAILABLE, "no file for this list")
        try:
            return path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            raise VerificationError(ReasonCode.STATUS_LIST_UNAVAILABLE, "unreadable") from None


def _status_files(values: list[str]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for value in values:
        uri, sep, path = value.partition("=")
        if not sep or not uri or not path:
            raise typer.BadParameter("--status-list takes URI=FILE")
        files[uri] = Path(path)
    return files


def _read_presentation(source: str) -> str:
    """The argument as scanned text, or the text of the file (a QR image or a text file) it
    names. Presentations (``eyJ...``) and packed QR text (``CW1:...``) are never file names.
    Spaces are never trimmed: they belong to the base45 alphabet of packed text."""
    text = source.strip("\r\n")
    if text.startswith("eyJ") or is_packed(text):
        return text
    path = Path(source)
    try:
        if not path.is_file():
            return text
        data = path.read_bytes()
    except OSError:
        return text
    if data.startswith(b"\x89PNG"):
        return decode_png(data)
    return data.decode("utf-8", "replace").strip("\r\n")


def _print_verdict(verdict: Verdict, as_json: bool) -> None:
    document = verdict.to_json()
    if as_json:
        typer.echo(json_dumps(document))
        return
    typer.echo(
        f"verdict: {verdict.result.value}"
        + (f" ({verdict.reason.value})" if verdict.reason else "")
    )
    for check in verdict.checks:
        where = f" [{check.credential}]" if check.credential else ""
        reason = f" {check.reason.value}" if check.reason else ""
        typer.echo(f"  {check.outcome.value:<12} {check.name}{where}{reason}")
    for credential in document["credentials"]:
        typer.echo(
            f"  credential {credential['query']}: {credential['vct']} from {credential['issuer']}"
        )
        for claim in credential.get("claims", []):
            typer.echo(f"    {'.'.join(map(str, claim['path']))} = {json_dumps(claim['value'])}")
    typer.echo(f"  trust checkpoint size: {verdict.checkpoint_size}")


@app.command()
def verify(
    presentations: Annotated[
        list[str], typer.Argument(help="Scanned QR text, a raw SD-JWT+KB, or a QR image file.")
    ],
    *,
    bundle: Annotated[Path, typer.Option(help="Offline trust bundle (civic-trust-bundle/1).")],
    config: Annotated[Path, typer.Option(help="Relying-party trust-config.json.")],
    policy: Annotated[str, typer.Option(help="Policy id.")],
    nonce: Annotated[str, typer.Option(help="The nonce the counter displayed.")],
    audience: Annotated[str, typer.Option(help="This counter's client_id (KB-JWT aud).")],
    policies_dir: Annotated[Path | None, typer.Option(help="Policy directory.")] = None,
    status_list: Annotated[
        list[str] | None, typer.Option(help="A Status List Token file: URI=FILE (repeatable).")
    ] = None,
    max_age: Annotated[int, typer.Option(help="Maximum trust age in seconds.")] = 86_400,
    as_json: JsonFlag = False,
) -> None:
    """Verify a presentation offline against a trust bundle; exit 0 only when valid."""
    from civic.logsync import verify_bundle  # noqa: PLC0415

    try:
        policies = load_policies(policies_dir or PACKAGED_POLICIES)
        log_config = load_log_config(config)
    except SettingsError as error:
        _fail(error.detail, 2)
    chosen = policies.get(policy)
    if chosen is None:
        _fail(f"unknown policy {policy!r}; known: {', '.join(sorted(policies))}", 2)
    try:
        snapshot = verify_bundle(bundle.read_bytes(), log_config, max_age=max_age)
    except OSError:
        _fail(f"cannot read {bundle}", 2)
    except CivicError as error:
        _fail(f"trust bundle refused: {error.reason.value}: {error.detail}", 1)
    now = system_clock()
    trust = SnapshotTrust(snapshot, max_age)
    try:
        texts = [_read_presentation(source) for source in presentations]
    except CivicError as error:
        verdict = rejected(chosen.id, error.reason, now=now, checkpoint_size=snapshot.size)
    else:
        store = MemoryReplayStore()
        verdict = verify_presentations(
            texts,
            trust=trust,
            status=_FileStatus(_status_files(status_list or [])),
            policy=chosen,
            audience=audience,
            nonce=nonce,
            consume_nonce=lambda value: store.consume(value, now=now, require_issued=False),
            now=now,
        )
    _print_verdict(verdict, as_json)
    raise typer.Exit(0 if verdict.result.value == "valid" else 1)
