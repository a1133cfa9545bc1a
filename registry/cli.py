"""The ``civic-registry`` command line (docs/registry.md).

Commands:

- ``init``: create a data directory: the log note key, the admin token (and its hash for the
  server), the governance key(s) and the public configuration files. Private files are 0600;
  only public values and file locations are printed.
- ``serve``: run the registry (uvicorn).
- ``witness ...``: the witness service's commands (``registry.witness.cli``).
- ``accredit-issuer``, ``accredit-verifier``, ``retire-key``, ``revoke-key``: build an event,
  sign it with the governance key files, post it to the registry.
- ``show``: sync with the registry (checkpoint, witnesses, consistency, root, fold) and print
  the trust state; ``export-bundle`` / ``verify-bundle``: offline trust bundles.

Data goes to stdout (``--json`` for machines), messages to stderr; exit 0 ok, 1 failure,
2 usage.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
import uvicorn

from civic.clock import system_clock
from civic.encoding import b64std_encode, json_dumps, json_loads, json_loads_object
from civic.errors import CivicError
from civic.jose import PrivateKey, PublicKey, Signer, public_key_from_jwk
from civic.logsync import LogConfig, TrustSnapshot, export_bundle, sync, verify_bundle
from civic.note import generate_note_key
from civic.trust import new_event, sign_event
from civic_service.config import token_sha256_hex, write_private_file
from registry.app import create_app
from registry.client import HttpLogSource, RegistryClient, log_config_from_json
from registry.settings import (
    ADMIN_TOKEN_FILE,
    ADMIN_TOKEN_HASH_FILE,
    GOVERNANCE_FILE,
    LOG_KEY_FILE,
    LOG_VKEY_FILE,
    TRUST_CONFIG_FILE,
    RegistrySettings,
    load_runtime,
    read_private_file,
)
from registry.witness.cli import witness_app

app = typer.Typer(
    name="civic-registry",
    help="The civic trust registry: a witnessed transparency log of accreditations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.add_typer(witness_app, name="witness")

GOVERNANCE_KEY_PREFIX = "governance-key-"
DEFAULT_REGISTRY = "http://127.0.0.1:8700"

T = TypeVar("T")

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="CIVIC_REGISTRY_DATA_DIR", help="Registry data directory."),
]
RegistryUrl = Annotated[
    str,
    typer.Option("--registry", envvar="CIVIC_REGISTRY_URL", help="Base URL of the registry."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _run(action: Callable[[], T]) -> T:
    """Run ``action``, turning our errors into a message on stderr and exit status 1."""
    try:
        return action()
    except CivicError as error:
        _fail(f"{error.reason.value}: {error.detail}")
    except OSError as error:
        _fail(f"{error.strerror or 'I/O error'}: {error.filename or ''}")


def _emit(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json_dumps(data))
        return
    for key, value in data.items():
        if isinstance(value, list):
            typer.echo(f"{key}:")
            for item in value:
                typer.echo(f"  {item if not isinstance(item, dict) else json_dumps(item)}")
        elif isinstance(value, dict):
            typer.echo(f"{key}: {json_dumps(value)}")
        else:
            typer.echo(f"{key}: {value}")


def parse_time(text: str) -> int:
    """NumericDate from seconds since the epoch or an ISO 8601 date/time (UTC if no offset)."""
    if text.isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"not a time: {text!r} (use seconds or ISO 8601)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


def _time_option(value: str | None, default: int | None = None) -> int:
    if value is None:
        if default is None:
            raise typer.BadParameter("a time is required")
        return default
    return parse_time(value)


# -- init ------------------------------------------------------------------------------------


@app.command()
def init(
    *,
    data_dir: DataDir = Path("registry-data"),
    origin: Annotated[
        str, typer.Option(help="Checkpoint origin and log key name, e.g. registry.example/seoul.")
    ] = "registry.civic.example/seoul",
    governance_keys: Annotated[
        int, typer.Option(min=1, max=16, help="Number of governance keys to create.")
    ] = 1,
    quorum: Annotated[
        int | None, typer.Option(min=1, help="Governance signatures needed (default: all).")
    ] = None,
    alg: Annotated[str, typer.Option(help="Governance key algorithm: EdDSA or ES256.")] = "EdDSA",
    as_json: JsonFlag = False,
) -> None:
    """Create the log key, the admin token and the governance keys in a new data directory."""
    if alg not in ("EdDSA", "ES256"):
        raise typer.BadParameter("alg must be EdDSA or ES256")
    k = quorum if quorum is not None else governance_keys
    if k > governance_keys:
        raise typer.BadParameter("the quorum cannot exceed the number of governance keys")

    def create() -> dict[str, Any]:
        data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(data_dir, 0o700)
        existing = [name for name in (LOG_KEY_FILE, ADMIN_TOKEN_FILE) if (data_dir / name).exists()]
        if existing:
            _fail(f"{data_dir} already holds {', '.join(existing)}; refusing to overwrite")
        skey, vkey = generate_note_key(origin)
        write_private_file(data_dir / LOG_KEY_FILE, skey + "\n")
        (data_dir / LOG_VKEY_FILE).write_text(vkey + "\n", encoding="utf-8")
        token = secrets.token_urlsafe(32)
        write_private_file(data_dir / ADMIN_TOKEN_FILE, token + "\n")
        (data_dir / ADMIN_TOKEN_HASH_FILE).write_text(token_sha256_hex(token) + "\n")
        public_keys: dict[str, dict[str, str]] = {}
        key_files: list[str] = []
        for number in range(1, governance_keys + 1):
            key = PrivateKey.generate(alg)  # type: ignore[arg-type]
            kid = key.public_key.thumbprint()
            path = data_dir / f"{GOVERNANCE_KEY_PREFIX}{number}.jwk"
            write_private_file(path, json_dumps({**key.export_private_jwk(), "kid": kid}) + "\n")
            public_keys[kid] = key.public_key.to_jwk()
            key_files.append(str(path))
        governance = governance_document(public_keys, k)
        (data_dir / GOVERNANCE_FILE).write_text(json_dumps(governance) + "\n", encoding="utf-8")
        trust_config = {
            "origin": origin,
            "log_vkey": vkey,
            "witnesses": [],
            "witness_quorum": 0,
            "governance": governance,
        }
        (data_dir / TRUST_CONFIG_FILE).write_text(json_dumps(trust_config) + "\n")
        return {
            "origin": origin,
            "log_vkey": vkey,
            "governance_kids": list(public_keys),
            "governance_quorum": k,
            "data_dir": str(data_dir),
            "private_files": [
                str(data_dir / LOG_KEY_FILE),
                str(data_dir / ADMIN_TOKEN_FILE),
                *key_files,
            ],
            "public_files": [
                str(data_dir / LOG_VKEY_FILE),
                str(data_dir / ADMIN_TOKEN_HASH_FILE),
                str(data_dir / GOVERNANCE_FILE),
                str(data_dir / TRUST_CONFIG_FILE),
            ],
        }

    _emit(_run(create), as_json)
    typer.echo(
        "Keep the private files secret; give relying parties trust-config.json "
        "(add the witnesses' keys to it).",
        err=True,
    )


def governance_document(keys: dict[str, dict[str, str]], quorum: int) -> dict[str, Any]:
    return {"keys": keys, "quorum": quorum}


# -- serve -----------------------------------------------------------------------------------


@app.command()
def serve(
    *,
    data_dir: DataDir = Path("registry-data"),
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default from settings).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None,
) -> None:
    """Run the registry HTTP service."""
    overrides: dict[str, Any] = {"data_dir": data_dir}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = RegistrySettings(**overrides)
    runtime = _run(lambda: load_runtime(settings))
    typer.echo(f"serving {runtime.origin} on http://{settings.host}:{settings.port}", err=True)
    uvicorn.run(create_app(runtime), host=settings.host, port=settings.port, log_level="info")


def _read_json_file(path: Path, what: str) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError:
        _fail(f"cannot read {what} {path}")
    return json_loads_object(data, what=what)


# -- governance events -------------------------------------------------------------------------

KeyFiles = Annotated[
    list[Path] | None,
    typer.Option(
        "--key",
        help="Governance private JWK file (repeat for k of n; default: all in the data dir).",
    ),
]
TokenFile = Annotated[
    Path | None,
    typer.Option("--token-file", help="Admin token file (default: <data-dir>/admin.token)."),
]


def _governance_signers(key_files: Sequence[Path], data_dir: Path) -> list[tuple[str, Signer]]:
    files = list(key_files) or sorted(data_dir.glob(f"{GOVERNANCE_KEY_PREFIX}*.jwk"))
    if not files:
        _fail("no governance key files (use --key or --data-dir)")
    signers: list[tuple[str, Signer]] = []
    for path in files:
        jwk = json_loads_object(read_private_file(path, "governance key"), what="governance key")
        kid = jwk.pop("kid", None)
        key = PrivateKey.from_jwk(jwk)
        signers.append((kid if isinstance(kid, str) else key.public_key.thumbprint(), key))
    return signers


def _admin_token(token_file: Path | None, data_dir: Path) -> str:
    path = token_file if token_file is not None else data_dir / ADMIN_TOKEN_FILE
    return read_private_file(path, "admin token").strip()


def _post_event(
    event_type: str,
    members: dict[str, Any],
    *,
    registry: str,
    data_dir: Path,
    token_file: Path | None,
    key_files: Sequence[Path] | None,
    as_json: bool,
) -> None:
    def post() -> dict[str, Any]:
        signers = _governance_signers(key_files or (), data_dir)
        event = new_event(event_type, **members)
        entry = sign_event(event, signers)
        with RegistryClient(registry, _admin_token(token_file, data_dir)) as client:
            result = client.append(entry.to_json())
        return {
            "index": result.index,
            "leaf_hash": b64std_encode(result.leaf_hash),
            "type": event_type,
            "id": event["id"],
        }

    _emit(_run(post), as_json)


def _public_jwk(path: Path) -> PublicKey:
    """A public JWK from a file; private key files are refused (private_key_material)."""
    return public_key_from_jwk(_read_json_file(path, "JWK file"))


@app.command("accredit-issuer")
def accredit_issuer(
    *,
    issuer: Annotated[str, typer.Option(help="The issuer identifier (its iss URL).")],
    jwk_file: Annotated[Path, typer.Option(help="The issuer's public signing JWK.")],
    vct: Annotated[list[str], typer.Option(help="Accredited credential type (repeatable).")],
    status_base_url: Annotated[str, typer.Option(help="Base https URL of its status lists.")],
    not_after: Annotated[str, typer.Option(help="End of validity (seconds or ISO 8601).")],
    not_before: Annotated[
        str | None, typer.Option(help="Start of validity (default: now).")
    ] = None,
    kid: Annotated[str | None, typer.Option(help="Key id (default: JWK thumbprint).")] = None,
    registry: RegistryUrl = DEFAULT_REGISTRY,
    data_dir: DataDir = Path("registry-data"),
    token_file: TokenFile = None,
    key: KeyFiles = None,
    as_json: JsonFlag = False,
) -> None:
    """Accredit an issuer key for credential types (issuer.key.add)."""
    public_key = _run(lambda: _public_jwk(jwk_file))
    members = {
        "issuer": issuer,
        "kid": kid or public_key.thumbprint(),
        "jwk": public_key,
        "vct": vct,
        "status_base_url": status_base_url,
        "not_before": _time_option(not_before, system_clock()),
        "not_after": parse_time(not_after),
    }
    _post_event(
        "issuer.key.add",
        members,
        registry=registry,
        data_dir=data_dir,
        token_file=token_file,
        key_files=key,
        as_json=as_json,
    )


def parse_allow(text: str) -> dict[str, Any]:
    """``VCT=claim.path,other.path`` (``*`` for all array elements, digits for an index)."""
    vct, sep, paths = text.rpartition("=")
    if not sep or not vct or not paths:
        raise typer.BadParameter("--allow takes VCT=claim.path[,claim.path...]")
    claims: list[list[str | int | None]] = []
    for path in paths.split(","):
        components: list[str | int | None] = []
        for part in path.strip().split("."):
            if not part:
                raise typer.BadParameter(f"empty claim path component in {path!r}")
            components.append(None if part == "*" else int(part) if part.isdigit() else part)
        claims.append(components)
    return {"vct": vct, "claims": claims}


@app.command("accredit-verifier")
def accredit_verifier(
    *,
    verifier: Annotated[str, typer.Option(help="The verifier's client_id.")],
    jwk_file: Annotated[Path, typer.Option(help="The verifier's public request-signing JWK.")],
    purpose: Annotated[str, typer.Option(help="Purpose shown to citizens.")],
    not_after: Annotated[str, typer.Option(help="End of validity (seconds or ISO 8601).")],
    allow: Annotated[
        list[str] | None,
        typer.Option(help="VCT=claim.path,claim.path (repeatable); see also --allowed-file."),
    ] = None,
    allowed_file: Annotated[
        Path | None, typer.Option(help='JSON list of {"vct", "claims": [[path...]...]}.')
    ] = None,
    not_before: Annotated[
        str | None, typer.Option(help="Start of validity (default: now).")
    ] = None,
    kid: Annotated[str | None, typer.Option(help="Key id (default: JWK thumbprint).")] = None,
    registry: RegistryUrl = DEFAULT_REGISTRY,
    data_dir: DataDir = Path("registry-data"),
    token_file: TokenFile = None,
    key: KeyFiles = None,
    as_json: JsonFlag = False,
) -> None:
    """Accredit a verifier for credential types and claims (verifier.add)."""
    allowed: list[Any] = [parse_allow(item) for item in allow or ()]
    if allowed_file is not None:
        try:
            extra = json_loads(allowed_file.read_bytes())
        except (OSError, CivicError):
            _fail(f"cannot read a JSON list from {allowed_file}")
        if not isinstance(extra, list):
            _fail("--allowed-file must hold a JSON list")
        allowed.extend(extra)
    if not allowed:
        raise typer.BadParameter("give at least one --allow or an --allowed-file")
    public_key = _run(lambda: _public_jwk(jwk_file))
    members = {
        "verifier": verifier,
        "kid": kid or public_key.thumbprint(),
        "jwk": public_key,
        "purpose": purpose,
        "allowed": allowed,
        "not_before": _time_option(not_before, system_clock()),
        "not_after": parse_time(not_after),
    }
    _post_event(
        "verifier.add",
        members,
        registry=registry,
        data_dir=data_dir,
        token_file=token_file,
        key_files=key,
        as_json=as_json,
    )


@app.command("retire-key")
def retire_key(
    *,
    issuer: Annotated[str, typer.Option(help="The issuer identifier.")],
    kid: Annotated[str, typer.Option(help="The key to retire.")],
    at: Annotated[
        str | None, typer.Option(help="Retirement time (default: now); earlier credentials stay.")
    ] = None,
    registry: RegistryUrl = DEFAULT_REGISTRY,
    data_dir: DataDir = Path("registry-data"),
    token_file: TokenFile = None,
    key: KeyFiles = None,
    as_json: JsonFlag = False,
) -> None:
    """Retire an issuer key: credentials issued before the time stay valid (issuer.key.retire)."""
    members = {"issuer": issuer, "kid": kid, "retired_at": _time_option(at, system_clock())}
    _post_event(
        "issuer.key.retire",
        members,
        registry=registry,
        data_dir=data_dir,
        token_file=token_file,
        key_files=key,
        as_json=as_json,
    )


@app.command("revoke-key")
def revoke_key(
    *,
    issuer: Annotated[str, typer.Option(help="The issuer identifier.")],
    kid: Annotated[str, typer.Option(help="The compromised key.")],
    at: Annotated[str | None, typer.Option(help="Compromise time (default: now).")] = None,
    registry: RegistryUrl = DEFAULT_REGISTRY,
    data_dir: DataDir = Path("registry-data"),
    token_file: TokenFile = None,
    key: KeyFiles = None,
    as_json: JsonFlag = False,
) -> None:
    """Revoke an issuer key: every credential under it is rejected (issuer.key.revoke)."""
    members = {"issuer": issuer, "kid": kid, "revoked_at": _time_option(at, system_clock())}
    _post_event(
        "issuer.key.revoke",
        members,
        registry=registry,
        data_dir=data_dir,
        token_file=token_file,
        key_files=key,
        as_json=as_json,
    )


# -- reading the registry ----------------------------------------------------------------------

ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Relying-party trust config (default: <data-dir>/trust-config.json).",
    ),
]


def _log_config(config: Path | None, data_dir: Path) -> LogConfig:
    path = config if config is not None else data_dir / TRUST_CONFIG_FILE
    return log_config_from_json(_read_json_file(path, "trust config"))


def _sync(registry: str, config: LogConfig, *, retain: bool) -> TrustSnapshot:
    with HttpLogSource(registry) as source:
        return sync(source, config, None, retain_entries=retain)


def _when(value: int | None) -> str:
    if value is None:
        return "-"
    return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def _print_snapshot(snapshot: TrustSnapshot) -> None:
    state = snapshot.state
    typer.echo(f"log: {snapshot.checkpoint.origin}")
    typer.echo(f"size: {snapshot.size}")
    typer.echo(f"root: {b64std_encode(snapshot.root_hash)}")
    witnesses = ", ".join(f"{n} at {_when(t)}" for n, t in snapshot.witness_timestamps.items())
    typer.echo(f"witnesses: {witnesses or '-'}")
    if snapshot.age is not None or snapshot.stale:
        age = "unknown" if snapshot.age is None else f"{snapshot.age}s"
        typer.echo(f"age: {age}{' (STALE)' if snapshot.stale else ''}")
    governance = state.governance
    typer.echo(f"governance: {governance.quorum} of {', '.join(sorted(governance.keys))}")
    typer.echo("")
    issuer_rows = [
        [
            key.issuer,
            key.kid,
            key.status,
            ",".join(key.vct),
            _when(key.not_before),
            _when(key.not_after),
            _when(key.retired_at if key.revoked_at is None else key.revoked_at),
        ]
        for key in state.issuers()
    ]
    _print_table(
        issuer_rows, ["ISSUER", "KID", "STATUS", "VCT", "NOT BEFORE", "NOT AFTER", "SINCE"]
    )
    typer.echo("")
    verifier_rows = [
        [
            verifier.verifier,
            verifier.kid,
            "revoked" if verifier.revoked_at is not None else "active",
            ",".join(item.vct for item in verifier.allowed),
            verifier.purpose,
        ]
        for verifier in state.verifiers()
    ]
    _print_table(verifier_rows, ["VERIFIER", "KID", "STATUS", "VCT", "PURPOSE"])


@app.command()
def show(
    *,
    registry: RegistryUrl = DEFAULT_REGISTRY,
    config: ConfigFile = None,
    data_dir: DataDir = Path("registry-data"),
    as_json: JsonFlag = False,
) -> None:
    """Sync with the registry (witnessed checkpoint, root, every entry) and print the state."""
    log_config = _run(lambda: _log_config(config, data_dir))
    snapshot = _run(lambda: _sync(registry, log_config, retain=False))
    if as_json:
        typer.echo(json_dumps(snapshot.to_json()))
    else:
        _print_snapshot(snapshot)


@app.command("export-bundle")
def export_bundle_command(
    *,
    out: Annotated[Path, typer.Option(help="Where to write the bundle ('-' for stdout).")],
    registry: RegistryUrl = DEFAULT_REGISTRY,
    config: ConfigFile = None,
    data_dir: DataDir = Path("registry-data"),
) -> None:
    """Sync with the registry and write an offline trust bundle (checkpoint + all entries)."""
    log_config = _run(lambda: _log_config(config, data_dir))
    snapshot = _run(lambda: _sync(registry, log_config, retain=True))
    text = json_dumps(export_bundle(snapshot)) + "\n"
    if str(out) == "-":
        typer.echo(text, nl=False)
    else:
        _run(lambda: out.write_text(text, encoding="utf-8"))
    typer.echo(f"bundle of {snapshot.size} entries written to {out}", err=True)


@app.command("verify-bundle")
def verify_bundle_command(
    bundle: Annotated[Path, typer.Argument(help="The bundle file.")],
    *,
    config: ConfigFile = None,
    data_dir: DataDir = Path("registry-data"),
    max_age: Annotated[
        int, typer.Option(min=0, help="Seconds after its witnessing that a bundle goes stale.")
    ] = 86400,
    allow_stale: Annotated[
        bool, typer.Option(help="Exit 0 for a stale bundle (verdicts stay undetermined).")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Verify a trust bundle from scratch; exit 1 if it fails or is stale."""
    log_config = _run(lambda: _log_config(config, data_dir))
    data = _run(bundle.read_bytes)
    snapshot = _run(lambda: verify_bundle(data, log_config, max_age=max_age))
    if as_json:
        typer.echo(json_dumps(snapshot.to_json()))
    else:
        _print_snapshot(snapshot)
    if snapshot.stale and not allow_stale:
        _fail("trust_stale: the bundle is older than --max-age; verdicts would be undetermined")


if __name__ == "__main__":
    app()
