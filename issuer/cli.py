"""The ``civic-issuer`` command line (issue 4, "CLI").

Commands:

- ``init``: create the data directory, the database tables and the first signing key (plain
  0600 JWK file, or sealed when a key passphrase is configured), and print what the registry
  needs to accredit it (``--accredit`` posts it directly with governance key files).
- ``serve``: run the issuer (uvicorn; ``--workers N`` processes on one port, see
  :mod:`issuer.server`), trusting the registry at ``registry_url`` with the relying-party
  ``trust-config.json``.
- ``create-api-key``: a staff API key scoped to credential types; printed once.
- ``offer``: create an offer through the admin API (for staff scripts): prints the offer URI
  and the transaction code, writes the QR code PNG with ``--qr-out``.
- ``revoke``: revoke (or ``--action suspend`` / ``reinstate``) an issued credential through the
  admin API.
- ``rotate-key``: create a new key and the registry events that accredit it and retire the old
  ones (``issuer.key.add``, ``issuer.key.retire`` with a grace period); posts them when given
  governance key files and the registry admin token, otherwise prints them for the trust
  authority. The issuer signs with the newest key the registry accredits, so the switch
  happens by itself once the registry has the events.

Settings come from ``CIVIC_ISSUER_*`` environment variables (see :mod:`issuer.settings`);
``--data-dir`` and ``--issuer-url`` override them. Data goes to stdout (``--json`` for
machines), messages to stderr; exit 0 ok, 1 failure, 2 usage.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import httpx
import typer

from civic.clock import system_clock
from civic.encoding import b64std_decode, json_dumps, json_loads_object
from civic.errors import CivicError
from civic.jose import PrivateKey, Signer
from civic.trust import new_event, sign_event
from civic_service.config import SettingsError, read_private_file
from issuer import db, server
from issuer.admin import create_api_key
from issuer.app import registry_trust
from issuer.keys import FileKeySigner, KeyStore
from issuer.settings import IssuerRuntime, IssuerSettings, load_runtime
from registry.client import RegistryClient

app = typer.Typer(
    name="civic-issuer",
    help="A civic credential issuer: OpenID4VCI issuance of SD-JWT VCs, status lists, admin API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

T = TypeVar("T")
DEFAULT_KEY_VALIDITY_DAYS = 730
DEFAULT_RETIRE_GRACE = 600
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Issuer data directory (default: CIVIC_ISSUER_DATA_DIR)."),
]
IssuerUrl = Annotated[
    str | None,
    typer.Option("--issuer-url", help="Credential issuer identifier (https URL, no path)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
ServerUrl = Annotated[
    str | None,
    typer.Option("--server", help="Base URL of the issuer (default: the issuer URL)."),
]
ApiKeyFile = Annotated[
    Path | None,
    typer.Option(
        "--api-key-file", help="File holding the staff API key (or set CIVIC_ISSUER_API_KEY)."
    ),
]
GovernanceKeys = Annotated[
    list[Path] | None,
    typer.Option(
        "--governance-key", help="Governance private JWK file, to sign registry events (k of n)."
    ),
]
RegistryTokenFile = Annotated[
    Path | None,
    typer.Option("--registry-token-file", help="The registry's admin token file."),
]


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
    except httpx.HTTPError as error:
        _fail(f"cannot reach the issuer: {type(error).__name__}")


def _emit(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json_dumps(data))
        return
    for key, value in data.items():
        shown = json_dumps(value) if isinstance(value, dict | list) else value
        typer.echo(f"{key}: {shown}")


def _runtime(data_dir: Path | None, issuer_url: str | None, **extra: Any) -> IssuerRuntime:
    overrides: dict[str, Any] = dict(extra)
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if issuer_url is not None:
        overrides["issuer_url"] = issuer_url
    return _run(lambda: load_runtime(IssuerSettings(**overrides)))


def _engine(runtime: IssuerRuntime) -> Any:
    settings = runtime.settings
    engine = db.create_engine(runtime.database_url, schema=settings.database_schema)
    db.create_schema(engine)
    return engine


def _read_private(path: Path, what: str) -> str:
    try:
        return read_private_file(path, what)
    except SettingsError as error:
        _fail(error.detail)


# --- registry events -----------------------------------------------------------------------


def key_add_members(
    runtime: IssuerRuntime, signer: FileKeySigner, now: int, days: int
) -> dict[str, Any]:
    return {
        "issuer": runtime.issuer_url,
        "kid": signer.kid,
        "jwk": signer.public_key.to_jwk(),
        "vct": list(runtime.vcts),
        "status_base_url": runtime.status_base_url,
        "not_before": now,
        "not_after": now + days * 86400,
    }


def _governance_signers(paths: Sequence[Path]) -> list[tuple[str, Signer]]:
    signers: list[tuple[str, Signer]] = []
    for path in paths:
        jwk = json_loads_object(_read_private(path, "governance key"), what="governance key")
        kid = jwk.pop("kid", None)
        key = PrivateKey.from_jwk(jwk)
        signers.append((kid if isinstance(kid, str) else key.public_key.thumbprint(), key))
    return signers


def _post_events(
    events: Sequence[tuple[str, dict[str, Any]]],
    *,
    registry_url: str,
    token_file: Path | None,
    governance_keys: Sequence[Path],
) -> list[dict[str, Any]]:
    if token_file is None:
        _fail("--registry-token-file is needed to post events")
    token = _read_private(token_file, "registry token").strip()
    signers = _governance_signers(governance_keys)
    posted: list[dict[str, Any]] = []
    with RegistryClient(registry_url, token) as client:
        for event_type, members in events:
            entry = sign_event(new_event(event_type, **members), signers)
            result = client.append(entry.to_json())
            posted.append({"type": event_type, "index": result.index})
    return posted


# --- commands ------------------------------------------------------------------------------


@app.command()
def init(
    *,
    data_dir: DataDir = None,
    issuer_url: IssuerUrl = None,
    alg: Annotated[str, typer.Option(help="Signing algorithm: EdDSA or ES256.")] = "EdDSA",
    valid_days: Annotated[int, typer.Option(help="Accreditation validity asked for.")] = (
        DEFAULT_KEY_VALIDITY_DAYS
    ),
    accredit: Annotated[
        bool, typer.Option("--accredit", help="Post issuer.key.add to the registry now.")
    ] = False,
    governance_key: GovernanceKeys = None,
    registry_token_file: RegistryTokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Create the data directory, the tables and the first signing key."""
    if alg not in ("EdDSA", "ES256"):
        raise typer.BadParameter("alg must be EdDSA or ES256")
    runtime = _runtime(data_dir, issuer_url)
    settings = runtime.settings

    def create() -> dict[str, Any]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(settings.data_dir, 0o700)
        engine = _engine(runtime)
        store = KeyStore(engine, settings.keys_dir(), passphrase=runtime.key_passphrase)
        if store.public_keys(include_retired=True):
            _fail(f"{settings.data_dir} already has signing keys; use rotate-key")
        now = system_clock()
        signer = store.create("ES256" if alg == "ES256" else "EdDSA", now=now)
        public_file = settings.keys_dir() / f"{signer.kid}.pub.jwk"
        public_file.write_text(json_dumps(signer.public_key.to_jwk()) + "\n", encoding="utf-8")
        members = key_add_members(runtime, signer, now, valid_days)
        out: dict[str, Any] = {
            "issuer": runtime.issuer_url,
            "kid": signer.kid,
            "alg": signer.alg,
            "sealed": runtime.key_passphrase is not None,
            "public_jwk_file": str(public_file),
            "issuer.key.add": members,
        }
        if accredit:
            out["posted"] = _post_events(
                [("issuer.key.add", members)],
                registry_url=settings.registry_url,
                token_file=registry_token_file,
                governance_keys=governance_key or [],
            )
        engine.dispose()
        return out

    _emit(_run(create), as_json)
    if not accredit:
        typer.echo(
            "Ask the trust authority to accredit the key, e.g. civic-registry accredit-issuer"
            f" --issuer {runtime.issuer_url} --jwk-file <public_jwk_file>"
            f" --status-base-url {runtime.status_base_url}"
            + "".join(f" --vct {vct}" for vct in runtime.vcts)
            + " --not-after <time>",
            err=True,
        )


@app.command()
def serve(
    *,
    data_dir: DataDir = None,
    issuer_url: IssuerUrl = None,
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes sharing the port (default: CIVIC_ISSUER_WORKERS, 1)."),
    ] = None,
) -> None:
    """Run the issuer HTTP service."""
    extra: dict[str, Any] = {}
    if host is not None:
        extra["host"] = host
    if port is not None:
        extra["port"] = port
    if workers is not None:
        extra["workers"] = workers
    runtime = _runtime(data_dir, issuer_url, **extra)
    settings = runtime.settings
    # Checked here, once, so that a missing trust config stops the command before any worker.
    _run(lambda: registry_trust(runtime))
    typer.echo(
        f"serving {runtime.issuer_url} on http://{settings.host}:{settings.port}"
        f" with {settings.workers} worker(s)",
        err=True,
    )
    status = _run(lambda: server.serve(settings, workers=settings.workers))
    if status != 0:
        _fail("a worker process stopped; the service is down")


@app.command("create-api-key")
def create_api_key_command(
    *,
    vct: Annotated[list[str], typer.Option(help="Credential type the key may act on (repeat).")],
    label: Annotated[str, typer.Option(help="Who or what the key is for.")],
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a staff API key scoped to credential types; the key is shown only now."""
    runtime = _runtime(data_dir, None)
    unknown = sorted(set(vct) - set(runtime.vcts))
    if unknown:
        raise typer.BadParameter(f"this issuer does not issue {', '.join(unknown)}")

    def create() -> dict[str, Any]:
        engine = _engine(runtime)
        key_id, key = create_api_key(engine, vcts=vct, label=label, now=system_clock())
        engine.dispose()
        return {"key_id": key_id, "api_key": key, "vcts": sorted(set(vct))}

    _emit(_run(create), as_json)
    typer.echo("Store the API key now: only its hash is kept.", err=True)


def _api_key(path: Path | None) -> str:
    if path is not None:
        return _read_private(path, "API key").strip()
    key = os.environ.get("CIVIC_ISSUER_API_KEY")
    if not key:
        raise typer.BadParameter("give --api-key-file or set CIVIC_ISSUER_API_KEY")
    return key.strip()


def _admin_call(
    method: str, server: str, path: str, api_key: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    with httpx.Client(base_url=server.rstrip("/"), timeout=30.0) as client:
        response = client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {api_key}"}
        )
    try:
        answer = json_loads_object(response.content, what="issuer answer")
    except CivicError:
        _fail(f"the issuer answered HTTP {response.status_code} without JSON")
    if response.status_code >= 400:
        _fail(f"{answer.get('error', 'error')}: {answer.get('detail', '')}")
    return answer


def _json_file(path: Path, what: str) -> dict[str, Any]:
    try:
        return json_loads_object(path.read_bytes(), what=what)
    except OSError:
        _fail(f"cannot read {what} {path}")


@app.command()
def offer(
    *,
    vct: Annotated[str, typer.Option(help="Credential type (vct).")],
    claims: Annotated[Path, typer.Option(help="JSON file with the subject's claims.")],
    evidence: Annotated[
        Path | None, typer.Option(help="JSON file with youth allowance evidence.")
    ] = None,
    qr_out: Annotated[Path | None, typer.Option(help="Write the offer QR code PNG here.")] = None,
    server: ServerUrl = None,
    api_key_file: ApiKeyFile = None,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a credential offer for a citizen (admin API); prints the URI and tx_code."""
    key = _api_key(api_key_file)
    base = server or _runtime(data_dir, None).issuer_url
    body: dict[str, Any] = {"vct": vct, "claims": _json_file(claims, "claims")}
    if evidence is not None:
        body["evidence"] = _json_file(evidence, "evidence")
    answer = _run(lambda: _admin_call("POST", base, "/admin/offers", key, body))
    png = answer.pop("qr_png_base64", None)
    if qr_out is not None and isinstance(png, str):
        data = _run(lambda: b64std_decode(png))
        _run(lambda: qr_out.write_bytes(data))
        answer["qr_png"] = str(qr_out)
    _emit(answer, as_json)
    typer.echo("Give the citizen the QR code and, separately, the tx_code.", err=True)


@app.command()
def revoke(
    credential_id: Annotated[str, typer.Argument(help="The issued credential's id.")],
    *,
    action: Annotated[str, typer.Option(help="revoke (final), suspend or reinstate.")] = "revoke",
    server: ServerUrl = None,
    api_key_file: ApiKeyFile = None,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Change an issued credential's status (admin API)."""
    if action not in ("revoke", "suspend", "reinstate"):
        raise typer.BadParameter("action must be revoke, suspend or reinstate")
    if not _ID.fullmatch(credential_id):
        raise typer.BadParameter("not a credential id")
    key = _api_key(api_key_file)
    base = server or _runtime(data_dir, None).issuer_url
    path = f"/admin/credentials/{credential_id}/{action}"
    answer = _run(lambda: _admin_call("POST", base, path, key))
    _emit(answer, as_json)


@app.command("rotate-key")
def rotate_key(
    *,
    data_dir: DataDir = None,
    issuer_url: IssuerUrl = None,
    alg: Annotated[str, typer.Option(help="Signing algorithm: EdDSA or ES256.")] = "EdDSA",
    valid_days: Annotated[int, typer.Option(help="Accreditation validity asked for.")] = (
        DEFAULT_KEY_VALIDITY_DAYS
    ),
    retire_grace: Annotated[
        int, typer.Option(help="Seconds both keys stay usable (old one retires after).")
    ] = DEFAULT_RETIRE_GRACE,
    post: Annotated[
        bool, typer.Option("--post", help="Sign and post the events to the registry.")
    ] = False,
    governance_key: GovernanceKeys = None,
    registry_token_file: RegistryTokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a new signing key; accredit it and retire the previous ones in the registry."""
    if alg not in ("EdDSA", "ES256"):
        raise typer.BadParameter("alg must be EdDSA or ES256")
    if retire_grace < 0:
        raise typer.BadParameter("retire-grace must not be negative")
    runtime = _runtime(data_dir, issuer_url)
    settings = runtime.settings

    def rotate() -> dict[str, Any]:
        engine = _engine(runtime)
        store = KeyStore(engine, settings.keys_dir(), passphrase=runtime.key_passphrase)
        previous = [kid for kid, _, _ in store.public_keys()]
        now = system_clock()
        signer = store.create("ES256" if alg == "ES256" else "EdDSA", now=now)
        public_file = settings.keys_dir() / f"{signer.kid}.pub.jwk"
        public_file.write_text(json_dumps(signer.public_key.to_jwk()) + "\n", encoding="utf-8")
        events: list[tuple[str, dict[str, Any]]] = [
            ("issuer.key.add", key_add_members(runtime, signer, now, valid_days))
        ]
        events.extend(
            (
                "issuer.key.retire",
                {"issuer": runtime.issuer_url, "kid": kid, "retired_at": now + retire_grace},
            )
            for kid in previous
        )
        out: dict[str, Any] = {
            "kid": signer.kid,
            "alg": signer.alg,
            "public_jwk_file": str(public_file),
            "retiring": previous,
            "events": [{"type": event_type, **members} for event_type, members in events],
        }
        if post:
            out["posted"] = _post_events(
                events,
                registry_url=settings.registry_url,
                token_file=registry_token_file,
                governance_keys=governance_key or [],
            )
        engine.dispose()
        return out

    _emit(_run(rotate), as_json)
    if not post:
        typer.echo(
            "Give the events to the trust authority; the new key signs once the registry"
            " accredits it.",
            err=True,
        )
