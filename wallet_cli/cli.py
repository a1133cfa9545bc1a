"""``civic-wallet``: the citizen's wallet on the command line (issue 6).

Commands: ``init``, ``receive``, ``list``, ``show``, ``delete``, ``history``, ``present``,
``qr``, ``export``, ``import``, ``trust configure | sync | show``, and ``unlock`` / ``lock``
(a background agent keeps the derived key for a while, :mod:`wallet_cli.agent`; every command
that opens the wallet asks it first and falls back to the passphrase).

Data goes to stdout (tables, or one JSON document with ``--json``); messages, prompts and
errors go to stderr, errors as ``civic-wallet: <reason_code>: <detail>`` (a JSON object with
``--json``). Exit codes: 0 ok, 1 failure, 2 usage.

Environment: ``CIVIC_WALLET_HOME`` (else ``$XDG_DATA_HOME/civic-wallet``),
``CIVIC_WALLET_PASSPHRASE`` and ``CIVIC_WALLET_BACKUP_PASSPHRASE`` (else prompted),
``CIVIC_WALLET_LANG`` (``en`` or ``ko``; else from ``LANG``).

Start-up is kept light for the commands people run most (``list`` imports no protocol code):
everything beyond Typer and the store is imported inside the command that needs it.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from civic.encoding import json_dumps
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError
from wallet_cli import render
from wallet_cli.quick import (
    WalletRuntime,
    default_lang,
    fast_list,
    list_output,
    open_store,
    secret,
)
from wallet_cli.quick import credential_row as _credential_row

if TYPE_CHECKING:
    from wallet_cli.model import StoredCredential, TrustSettings, WalletData
    from wallet_cli.store import WalletStore
    from wallet_cli.trust import WalletTrust


class _WalletTyper(typer.Typer):
    """Typer, plus the direct path for the plainest ``list`` invocations
    (:func:`wallet_cli.quick.fast_list`) when called as ``app()``.

    Measured with ``python -X importtime``: Typer builds a Pydantic ``TypeAdapter`` for every
    parameter it parses, which imports Pydantic, about 90 ms of a 290 ms ``list`` (without
    the key derivation). ``civic-wallet [--home H] list [--json] [--lang L]`` needs no parser;
    the console script (:func:`wallet_cli.quick.main`) takes that path without even importing
    this module, and ``app()`` takes it too; any other argv goes through Typer.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs:
            code = fast_list(sys.argv[1:])
            if code is not None:
                raise SystemExit(code)
        return super().__call__(*args, **kwargs)


app = _WalletTyper(
    name="civic-wallet",
    no_args_is_help=True,
    add_completion=False,
    help="The citizen's wallet: receive, hold and present civic credentials.",
)
trust_app = typer.Typer(no_args_is_help=True, help="The trust registry this wallet believes.")
app.add_typer(trust_app, name="trust")


JsonFlag = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]
LangOption = Annotated[
    str | None, typer.Option("--lang", help="Display language: en or ko (default: from LANG).")
]
YesFlag = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask; for scripts.")]

F = TypeVar("F", bound=Callable[..., Any])


# --- plumbing -----------------------------------------------------------------------------------


def _runtime(ctx: typer.Context) -> WalletRuntime:
    obj = ctx.obj
    return obj if isinstance(obj, WalletRuntime) else WalletRuntime()


def _fail(error: CivicError, *, as_json: bool) -> NoReturn:
    code = 2 if isinstance(error, UsageError) else 1
    if as_json:
        typer.echo(json_dumps({"error": error.reason.value, "detail": error.detail}), err=True)
    else:
        typer.echo(f"civic-wallet: {error.reason.value}: {error.detail}", err=True)
    raise typer.Exit(code)


def _handled(fn: F) -> F:
    """Turn every :class:`CivicError` into a message on stderr and the exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CivicError as error:
            _fail(error, as_json=bool(kwargs.get("as_json")))
        except OSError as error:
            _fail(
                VerificationError(ReasonCode.MALFORMED_INPUT, f"file error: {error.strerror}"),
                as_json=bool(kwargs.get("as_json")),
            )

    return wrapper  # type: ignore[return-value]


def _warn(message: str) -> None:
    typer.echo(f"civic-wallet: warning: {message}", err=True)


def _info(message: str) -> None:
    typer.echo(message, err=True)


def _emit_json(value: Any) -> None:
    typer.echo(json_dumps(value))


def _lang(value: str | None) -> str:
    if value is None:
        return default_lang()
    if value not in ("en", "ko"):
        raise typer.BadParameter("--lang is en or ko")
    return value


_secret = secret


def _home(ctx: typer.Context) -> Path:
    from wallet_cli.store import wallet_home  # noqa: PLC0415

    runtime = _runtime(ctx)
    return runtime.home if runtime.home is not None else wallet_home(os.environ)


def _store(ctx: typer.Context, *, new: bool = False) -> WalletStore:
    return open_store(_runtime(ctx), _home(ctx), new=new)


def _uri_argument(uri: str | None, image: Path | None, what: str) -> str:
    if (uri is None) == (image is None):
        raise UsageError(ReasonCode.MALFORMED_INPUT, f"give the {what} URI or --qr-image, not both")
    if image is None:
        assert uri is not None
        return uri
    from civic.qr import decode_png  # noqa: PLC0415

    return decode_png(image.read_bytes())


def _trust(ctx: typer.Context, wallet: WalletData, *, online: bool = True) -> WalletTrust:
    from wallet_cli.trust import current_trust  # noqa: PLC0415

    trust = current_trust(_home(ctx), wallet.trust, online=online, now=_runtime(ctx).now)
    if trust.warning:
        _warn(trust.warning)
    return trust


@app.callback()
def main(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Wallet directory (default: CIVIC_WALLET_HOME or XDG)."),
    ] = None,
) -> None:
    """The citizen's wallet: receive, hold and present civic credentials."""
    runtime = _runtime(ctx)
    ctx.obj = replace(runtime, home=home) if home is not None else runtime


# --- init ---------------------------------------------------------------------------------------


def _read_json_file(path: Path, what: str) -> dict[str, Any]:
    from civic.encoding import json_loads_object  # noqa: PLC0415

    try:
        data = path.read_bytes()
    except OSError:
        raise UsageError(ReasonCode.NOT_FOUND, f"cannot read the {what} {path}") from None
    return json_loads_object(data, what=what)


def _trust_settings(
    registry_url: str | None, config: Path | None, max_age: int
) -> TrustSettings | None:
    if config is None:
        if registry_url is not None:
            raise UsageError(ReasonCode.MALFORMED_INPUT, "--registry-url needs --trust-config")
        return None
    from wallet_cli.trust import trust_settings  # noqa: PLC0415

    try:
        return trust_settings(_read_json_file(config, "trust config"), registry_url, max_age)
    except MalformedError as error:
        raise UsageError(error.reason, f"trust config: {error.detail}") from None


@app.command()
@_handled
def init(
    ctx: typer.Context,
    *,
    alg: Annotated[
        str, typer.Option(help="Holder key algorithm: EdDSA (Ed25519) or ES256 (P-256).")
    ] = "EdDSA",
    registry_url: Annotated[str | None, typer.Option(help="The trust registry's URL.")] = None,
    trust_config: Annotated[
        Path | None, typer.Option(help="The registry's trust-config.json (the trust anchor).")
    ] = None,
    trust_max_age: Annotated[
        int, typer.Option(help="Seconds a synced trust state may serve when offline.")
    ] = 86_400,
    as_json: JsonFlag = False,
) -> None:
    """Create a new wallet sealed with a passphrase."""
    from wallet_cli.model import ALGORITHMS, WalletData  # noqa: PLC0415
    from wallet_cli.store import describe_store  # noqa: PLC0415

    if alg not in ALGORITHMS:
        raise UsageError(ReasonCode.ALG_NOT_ALLOWED, "--alg is EdDSA or ES256")
    trust = _trust_settings(registry_url, trust_config, trust_max_age)
    store = _store(ctx, new=True)
    if store.exists():
        raise VerificationError(
            ReasonCode.WALLET_EXISTS, f"a wallet already exists in {store.home}"
        )
    store.create(WalletData(created_at=_runtime(ctx).now(), alg=alg, trust=trust))
    described = describe_store(store) | {
        "alg": alg,
        "registry_url": trust.registry_url if trust else None,
    }
    if as_json:
        _emit_json(described)
        return
    typer.echo(
        render.key_values(
            [
                ("wallet", described["store"]),
                ("holder keys", f"{alg}, a fresh key for every copy of a credential"),
                ("sealed with", "Argon2id + XSalsa20-Poly1305"),
                (
                    "registry",
                    described["registry_url"] or "(none yet: civic-wallet trust configure)",
                ),
            ]
        )
    )


# --- trust --------------------------------------------------------------------------------------


def _trust_json(trust: WalletTrust) -> dict[str, Any]:
    state = trust.state
    return {
        "checkpoint_size": trust.size,
        "synced_at": trust.synced_at,
        "synced_now": trust.synced_now,
        "issuers": [
            {k: v for k, v in key.to_json().items() if k in ("issuer", "kid", "vct", "status")}
            for key in state.issuers()
        ],
        "verifiers": [
            {
                "verifier": v.verifier,
                "purpose": v.purpose,
                "status": "revoked" if v.revoked_at is not None else "active",
                "allowed": [a.to_json() for a in v.allowed],
            }
            for v in state.verifiers()
        ],
    }


def _print_trust(trust: WalletTrust, as_json: bool) -> None:
    document = _trust_json(trust)
    if as_json:
        _emit_json(document)
        return
    typer.echo(
        render.key_values(
            [
                ("checkpoint size", str(trust.size)),
                ("synced", render.when(trust.synced_at)),
            ]
        )
    )
    typer.echo("")
    typer.echo(
        render.table(
            ["issuer", "kid", "types", "status"],
            [
                [i["issuer"], i["kid"][:16], " ".join(i["vct"]), i["status"]]
                for i in document["issuers"]
            ],
        )
    )
    typer.echo("")
    typer.echo(
        render.table(
            ["verifier", "purpose", "status"],
            [[v["verifier"], v["purpose"], v["status"]] for v in document["verifiers"]],
        )
    )


@trust_app.command("configure")
@_handled
def trust_configure(
    ctx: typer.Context,
    config: Annotated[Path, typer.Option(help="The registry's trust-config.json.")],
    registry_url: Annotated[str | None, typer.Option(help="The registry's URL.")] = None,
    max_age: Annotated[
        int, typer.Option(help="Seconds a synced trust state may serve when offline.")
    ] = 86_400,
    as_json: JsonFlag = False,
) -> None:
    """Set (or replace) the trust anchor and the registry URL."""
    from wallet_cli.trust import CACHE_FILE  # noqa: PLC0415

    settings = _trust_settings(registry_url, config, max_age)
    assert settings is not None  # a config file was given
    store = _store(ctx)
    with store.transaction() as wallet:
        wallet.trust = settings
    # A cache synced under another anchor would only be refused later: drop it now.
    (store.home / CACHE_FILE).unlink(missing_ok=True)
    if as_json:
        _emit_json({"registry_url": settings.registry_url, "max_age": settings.max_age})
    else:
        typer.echo(f"trust anchor set; registry {settings.registry_url or '(offline only)'}")


@trust_app.command("sync")
@_handled
def trust_sync(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Sync with the registry now (witnessed checkpoint, consistency, entries)."""
    wallet = _store(ctx).read()
    trust = _trust(ctx, wallet)
    if not trust.synced_now:
        raise VerificationError(ReasonCode.LOG_UNAVAILABLE, "the registry could not be synced")
    _print_trust(trust, as_json)


@trust_app.command("show")
@_handled
def trust_show(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Show the cached trust state (no network)."""
    wallet = _store(ctx).read()
    _print_trust(_trust(ctx, wallet, online=False), as_json)


# --- receive ------------------------------------------------------------------------------------


@app.command()
@_handled
def receive(
    ctx: typer.Context,
    *,
    offer_uri: Annotated[
        str | None, typer.Argument(help="openid-credential-offer://... from the agency.")
    ] = None,
    qr_image: Annotated[Path | None, typer.Option(help="A PNG of the offer's QR code.")] = None,
    tx_code: Annotated[
        str | None, typer.Option(help="The transaction code (prompted when not given).")
    ] = None,
    copies: Annotated[
        int, typer.Option(min=1, max=10, help="Copies to ask for (one per presentation).")
    ] = 3,
    lang: LangOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Receive a credential offered by an agency (OpenID4VCI pre-authorized code flow)."""
    from wallet_cli.http import Http  # noqa: PLC0415
    from wallet_cli.model import CredentialCopy, StoredCredential, new_credential_id  # noqa: PLC0415
    from wallet_cli.oid4vci import (  # noqa: PLC0415
        TxCodeSpec,
        require_accredited_issuer,
        resolve_offer,
    )
    from wallet_cli.oid4vci import receive as receive_credential  # noqa: PLC0415

    language = _lang(lang)
    uri = _uri_argument(offer_uri, qr_image, "offer")
    store = _store(ctx)
    wallet = store.read()
    now = _runtime(ctx).now
    with Http() as http:
        preview = resolve_offer(http, uri)
        metadata = preview.metadata
        trust = _trust(ctx, wallet)
        require_accredited_issuer(trust.state, metadata.issuer, metadata.vct, now())
        from civic.credentials import get_type  # noqa: PLC0415

        type_name = get_type(metadata.vct).type_name("ko" if language == "ko" else "en")
        issuer_name = (
            metadata.names[1 if language == "ko" else 0] if metadata.names else metadata.issuer
        )
        _info(
            f"Offer: {type_name} from {issuer_name} ({metadata.issuer}),"
            f" accredited in the trust registry (checkpoint {trust.size})"
        )

        def ask_tx_code(spec: TxCodeSpec) -> str:
            if tx_code is not None:
                return tx_code
            if spec.description:
                _info(spec.description)
            shape = f"{spec.length} {'digits' if spec.input_mode == 'numeric' else 'characters'}"
            answer: str = typer.prompt(
                f"Transaction code ({shape})" if spec.length else "Transaction code", err=True
            )
            return answer

        received = receive_credential(
            http,
            preview,
            tx_code=ask_tx_code,
            copies=copies,
            alg=wallet.alg,  # type: ignore[arg-type]
            state=trust.state,
            trust_size=trust.size,
            now=now,
        )
    first = received.copies[0][0]
    with store.transaction() as current:
        record = StoredCredential(
            id=new_credential_id([c.id for c in current.credentials]),
            vct=metadata.vct,
            issuer=metadata.issuer,
            configuration_id=metadata.configuration_id,
            type_names=received.type_names,
            issuer_names=metadata.names,
            received_at=now(),
            issued_at=first.issued_at,
            not_before=first.not_before,
            expires_at=first.expires_at,
            copies=[
                CredentialCopy(copy.sd_jwt, key.export_private_jwk())
                for copy, key in received.copies
            ],
        )
        current.credentials.append(record)
    summary = _credential_row(record, language)
    if as_json:
        _emit_json(summary)
    else:
        typer.echo(
            render.key_values(
                [
                    ("id", record.id),
                    ("type", summary["type"]),
                    ("issuer", summary["issuer"]),
                    ("expires", render.day(record.expires_at)),
                    ("copies", str(len(record.copies))),
                ]
            )
        )
        _info("Verified and stored.")


# --- list / show / delete / history -------------------------------------------------------------


@app.command("list")
@_handled
def list_credentials(
    ctx: typer.Context, lang: LangOption = None, as_json: JsonFlag = False
) -> None:
    """List the credentials in the wallet."""
    list_output(_runtime(ctx), _lang(lang), as_json)


def _flatten(
    value: Any, path: tuple[str | int, ...] = ()
) -> list[tuple[tuple[str | int, ...], Any]]:
    if isinstance(value, dict) and value:
        out: list[tuple[tuple[str | int, ...], Any]] = []
        for key, child in value.items():
            out.extend(_flatten(child, (*path, key)))
        return out
    return [(path, value)]


def _claim_order(vct: str, path: tuple[str | int, ...]) -> tuple[int, str]:
    """The type's own order (schema order: names, then the rest), unknown claims last."""
    from civic.credentials import CREDENTIAL_TYPES  # noqa: PLC0415

    ctype = CREDENTIAL_TYPES.get(vct)
    names = tuple(c for c in path if isinstance(c, str))
    order = ctype.disclosable_paths if ctype is not None else ()
    return (order.index(names) if names in order else len(order), ".".join(map(str, path)))


@app.command()
@_handled
def show(
    ctx: typer.Context,
    credential_id: Annotated[str, typer.Argument(help="Credential id (or a unique prefix).")],
    offline: Annotated[
        bool, typer.Option("--offline", help="Do not check the registry and status list.")
    ] = False,
    lang: LangOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Show a credential: claims, issuer, validity, and its status checked afresh."""
    from civic.sdjwtvc import REGISTERED_CLAIMS  # noqa: PLC0415
    from wallet_cli.oid4vp import claim_label, claim_value_text, holding  # noqa: PLC0415

    language = _lang(lang)
    wallet = _store(ctx).read()
    credential = wallet.find(credential_id)
    now = _runtime(ctx).now()
    held = holding(credential.id, credential.vct, credential.copies[0].sd_jwt)
    subject = {k: v for k, v in held.claims.items() if k not in REGISTERED_CLAIMS}
    claims = [
        {
            "path": list(path),
            "name": claim_label(credential.vct, path, language),
            "value": value,
            "display": claim_value_text(credential.vct, path, value, language),
        }
        for path, value in sorted(
            _flatten(subject), key=lambda item: _claim_order(credential.vct, item[0])
        )
    ]
    validity = "valid"
    if credential.expires_at is not None and now >= credential.expires_at:
        validity = "expired"
    elif credential.not_before is not None and now < credential.not_before:
        validity = "not yet valid"
    status: dict[str, Any] = {"checked": False}
    if not offline:
        status = _fresh_status(ctx, wallet, credential, now)
    document = _credential_row(credential, language) | {
        "not_before": credential.not_before,
        "validity": validity,
        "status": status,
        "claims": claims,
    }
    if as_json:
        _emit_json(document)
        return
    status_text = (
        "not checked (--offline)"
        if offline
        else f"{status['summary']} (checked now: registry checkpoint {status['checkpoint_size']})"
        if status.get("checked")
        else f"unknown ({status.get('reason')})"
    )
    typer.echo(
        render.key_values(
            [
                ("id", credential.id),
                ("type", document["type"]),
                ("issuer", f"{document['issuer']} ({credential.issuer})"),
                ("issued", render.when(credential.issued_at)),
                ("expires", render.when(credential.expires_at)),
                ("validity", validity),
                ("status", status_text),
                ("copies", f"{credential.unused_copies} unused of {len(credential.copies)}"),
            ]
        )
    )
    typer.echo("")
    typer.echo(
        render.table(
            ["클레임" if language == "ko" else "claim", "값" if language == "ko" else "value"],
            [[c["name"], c["display"]] for c in claims],
        )
    )


def _fresh_status(
    ctx: typer.Context, wallet: WalletData, credential: StoredCredential, now: int
) -> dict[str, Any]:
    from wallet_cli.http import Http  # noqa: PLC0415
    from wallet_cli.status import StatusLists, copy_status, summarize  # noqa: PLC0415

    try:
        trust = _trust(ctx, wallet)
    except CivicError as error:
        return {"checked": False, "reason": error.reason.value}
    with Http() as http:
        lists = StatusLists(http)
        statuses = [
            copy_status(copy.sd_jwt, trust.state, lists.fetch, now=now)
            for copy in credential.copies
        ]
    return {
        "checked": True,
        "summary": summarize(statuses),
        "checkpoint_size": trust.size,
        "copies": [{"status": s.value, "reason": s.reason} for s in statuses],
    }


@app.command()
@_handled
def delete(
    ctx: typer.Context,
    credential_id: Annotated[str, typer.Argument(help="Credential id (or a unique prefix).")],
    yes: YesFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Delete a credential and its keys from the wallet (the history stays)."""
    store = _store(ctx)
    target = store.read().find(credential_id)
    if not yes and not typer.confirm(
        f"Delete {target.type_name('en')} {target.id} from the wallet? This cannot be undone.",
        default=False,
        err=True,
    ):
        raise VerificationError(ReasonCode.CONSENT_DECLINED, "nothing was deleted")
    with store.transaction() as wallet:
        removed = wallet.remove(target.id)
    if as_json:
        _emit_json({"deleted": removed.id})
    else:
        typer.echo(f"deleted {removed.id}")


@app.command()
@_handled
def history(ctx: typer.Context, lang: LangOption = None, as_json: JsonFlag = False) -> None:
    """Every presentation made from this wallet: to whom, why, which claims, when."""
    from wallet_cli.oid4vp import claim_label  # noqa: PLC0415

    language = _lang(lang)
    wallet = _store(ctx).read()
    if as_json:
        _emit_json({"history": [entry.to_json() for entry in wallet.history]})
        return
    if not wallet.history:
        _info("No presentations yet.")
        return
    typer.echo(
        render.table(
            ["time", "channel", "verifier", "purpose", "claims", "result"],
            [
                [
                    render.when(entry.at),
                    entry.channel,
                    entry.verifier or "(no challenge)",
                    entry.purpose or "-",
                    ", ".join(claim_label(entry.vct, path, language) for path in entry.claims)
                    or "-",
                    entry.result or "-",
                ]
                for entry in wallet.history
            ],
        )
    )


# --- present ------------------------------------------------------------------------------------


@app.command()
@_handled
def present(
    ctx: typer.Context,
    *,
    request_uri: Annotated[
        str | None, typer.Argument(help="openid4vp://... from the verifier.")
    ] = None,
    qr_image: Annotated[Path | None, typer.Option(help="A PNG of the request's QR code.")] = None,
    yes: YesFlag = False,
    lang: LangOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Answer a verifier's OpenID4VP request, after checking it and asking for consent."""
    from civic.jose import PrivateKey  # noqa: PLC0415
    from civic.sdjwt import create_presentation  # noqa: PLC0415
    from wallet_cli.http import Http  # noqa: PLC0415
    from wallet_cli.model import HistoryEntry, pick_copy  # noqa: PLC0415
    from wallet_cli.oid4vp import (  # noqa: PLC0415
        check_accreditation,
        consent_summary,
        fetch_request_object,
        holding,
        parse_request_uri,
        plan_presentation,
        post_response,
        verify_request_object,
    )

    language = _lang(lang)
    reference = parse_request_uri(_uri_argument(request_uri, qr_image, "request"))
    store = _store(ctx)
    wallet = store.read()
    clock = _runtime(ctx).now
    with Http() as http:
        trust = _trust(ctx, wallet)
        token = fetch_request_object(http, reference)
        now = clock()
        request = verify_request_object(token, reference, trust.state, now=now)
        check_accreditation(trust.state, request, now=now)
        usable = [c for c in wallet.credentials if c.usable_at(now)]
        holdings = {c.id: holding(c.id, c.vct, c.copies[0].sd_jwt) for c in usable}
        plan = plan_presentation(request.dcql, list(holdings.values()))
        by_id = {c.id: c for c in usable}
        summary = consent_summary(
            verifier=request.client_id,
            purpose=request.verifier.purpose,
            accredited=True,
            response_uri=request.response_uri,
            plan=plan,
            holdings=holdings,
            type_names={i: c.type_name(language) for i, c in by_id.items()},
            issuer_names={i: c.issuer_name(language) for i, c in by_id.items()},
            trust_size=trust.size,
            lang=language,
        )
        _info(render.consent_text(summary, language))
        _info("")
        if not yes:
            try:
                agreed = typer.confirm(
                    "이 정보를 제공하시겠습니까?" if language == "ko" else "Share these claims?",
                    default=False,
                    err=True,
                )
            except typer.Abort:
                agreed = False
            if not agreed:
                raise VerificationError(ReasonCode.CONSENT_DECLINED, "nothing was sent")

        vp_token: dict[str, list[str]] = {}
        entries: list[HistoryEntry] = []
        reused = 0
        with store.transaction() as current:
            for item in plan:
                credential = current.find(item.credential_id)
                copy = credential.copies[pick_copy(credential)]
                reused += copy.uses > 0
                copy.uses += 1
                vp_token[item.query_id] = [
                    create_presentation(
                        copy.sd_jwt,
                        reveal=item.claim_paths,
                        holder=PrivateKey.from_jwk(copy.key),
                        audience=request.client_id,
                        nonce=request.nonce,
                        now=clock,
                    )
                ]
                entries.append(
                    HistoryEntry(
                        at=clock(),
                        channel="openid4vp",
                        verifier=request.client_id,
                        purpose=request.verifier.purpose,
                        credential_id=credential.id,
                        vct=credential.vct,
                        claims=tuple(item.claim_paths),
                        result="sending",
                    )
                )
            current.history.extend(entries)
        if reused:
            _warn(
                "every copy of a credential had been shown before: this presentation can be"
                " linked to an earlier one (receive the credential again for fresh copies)"
            )
        try:
            answer = post_response(http, request, vp_token)
        except CivicError as error:
            _record_results(store, entries, f"error: {error.reason.value}")
            raise
    result = answer.get("result")
    _record_results(store, entries, result if isinstance(result, str) else "sent")
    document = {"verifier": request.client_id, "answer": answer, "disclosed": summary.to_json()}
    if as_json:
        _emit_json(document)
    else:
        typer.echo(
            render.key_values(
                [("verifier", request.client_id)]
                + [(str(k), v if isinstance(v, str) else json_dumps(v)) for k, v in answer.items()]
            )
        )
    if result in ("invalid", "undetermined"):
        # Sent, but not accepted: scripts must not take this for a success.
        _info(f"civic-wallet: the verifier answered {result}")
        raise typer.Exit(1)


def _record_results(store: WalletStore, entries: list[Any], result: str) -> None:
    """Replace the ``sending`` history entries of this presentation with the outcome."""
    with store.transaction() as wallet:
        for entry in entries:
            if entry in wallet.history:
                wallet.history[wallet.history.index(entry)] = replace(entry, result=result)


# --- offline QR ---------------------------------------------------------------------------------


@app.command()
@_handled
def qr(
    ctx: typer.Context,
    *,
    credential_id: Annotated[str, typer.Argument(help="Credential id (or a unique prefix).")],
    disclose: Annotated[
        str, typer.Option(help="Claims to show, comma-separated: age_over_19,address.region")
    ],
    nonce: Annotated[str | None, typer.Option(help="The counter's challenge nonce.")] = None,
    aud: Annotated[str | None, typer.Option(help="The counter's client_id.")] = None,
    challenge_image: Annotated[
        Path | None, typer.Option(help="A PNG of the counter's challenge QR (aud and nonce).")
    ] = None,
    png: Annotated[Path | None, typer.Option(help="Where to write the PNG.")] = None,
    light: Annotated[
        bool, typer.Option("--light", help="Draw for a dark-on-light terminal.")
    ] = False,
    lang: LangOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Show a presentation as a QR code for a counter without network (terminal and PNG)."""
    from civic.jose import PrivateKey  # noqa: PLC0415
    from civic.qr import decode_png, pack, qr_version, render_png, render_terminal  # noqa: PLC0415
    from civic.sdjwt import create_presentation  # noqa: PLC0415
    from wallet_cli.model import HistoryEntry, pick_copy  # noqa: PLC0415
    from wallet_cli.oid4vp import (  # noqa: PLC0415
        check_disclosable,
        holding,
        parse_challenge,
        parse_claim_list,
    )
    from wallet_cli.store import atomic_write  # noqa: PLC0415
    from wallet_cli.trust import cached_trust  # noqa: PLC0415

    language = _lang(lang)
    if challenge_image is not None:
        if nonce is not None or aud is not None:
            raise UsageError(ReasonCode.MALFORMED_INPUT, "--challenge-image replaces --nonce/--aud")
        aud, nonce = parse_challenge(decode_png(challenge_image.read_bytes()))
    if (nonce is None) != (aud is None):
        raise UsageError(ReasonCode.MALFORMED_INPUT, "--nonce and --aud go together")
    paths = parse_claim_list(disclose)
    store = _store(ctx)
    wallet = store.read()
    clock = _runtime(ctx).now
    target = wallet.find(credential_id)
    if not target.usable_at(clock()):
        raise VerificationError(ReasonCode.EXPIRED, "the credential is outside its validity")
    check_disclosable(holding(target.id, target.vct, target.copies[0].sd_jwt), paths)
    purpose = None
    if aud is not None:
        trust = cached_trust(_home(ctx), wallet.trust, now=clock)
        accredited = trust.state.verifier(aud) if trust is not None else None
        if accredited is None:
            _warn(f"{aud!r} is not a verifier the cached trust registry knows")
        else:
            purpose = accredited.purpose
            assert trust is not None
            trust.state.check_verifier_request(aud, target.vct, paths, clock())
    else:
        _warn("no challenge: the QR carries no key binding, counters that require one refuse it")
    with store.transaction() as current:
        credential = current.find(target.id)
        copy = credential.copies[pick_copy(credential)]
        reused = copy.uses > 0
        copy.uses += 1
        presentation = create_presentation(
            copy.sd_jwt,
            reveal=paths,
            holder=PrivateKey.from_jwk(copy.key) if nonce is not None else None,
            audience=aud,
            nonce=nonce,
            now=clock,
        )
        current.history.append(
            HistoryEntry(
                at=clock(),
                channel="qr",
                verifier=aud,
                purpose=purpose,
                credential_id=credential.id,
                vct=credential.vct,
                claims=paths,
                result="shown",
            )
        )
    if reused:
        _warn("every copy had been shown before: this QR can be linked to an earlier one")
    packed = pack(presentation)
    version = qr_version(packed)
    destination = png if png is not None else Path(f"civic-wallet-qr-{target.id}.png")
    atomic_write(destination, render_png(packed))
    if as_json:
        _emit_json(
            {
                "credential_id": target.id,
                "qr_version": version,
                "characters": len(packed),
                "png": str(destination),
                "text": packed,
                "key_binding": nonce is not None,
            }
        )
        return
    typer.echo(render_terminal(packed, light_background=light), nl=False)
    _info(f"QR version {version} ({len(packed)} characters); PNG written to {destination}")
    if language == "ko":
        _info("창구 스캐너에 이 QR 코드를 보여 주세요.")


# --- unlock / lock ------------------------------------------------------------------------------


@app.command()
@_handled
def unlock(
    ctx: typer.Context,
    lifetime: Annotated[
        str,
        typer.Option(
            "--for", help="How long the wallet stays unlocked: 90s, 15m, 2h (at most 12h)."
        ),
    ] = "15m",
    as_json: JsonFlag = False,
) -> None:
    """Derive the key once and keep it in an agent: no passphrase for a while.

    The agent (a background process, memory only) opens and seals the wallet for the next
    commands until --for is up, `civic-wallet lock`, or the wallet is replaced.
    """
    from wallet_cli.agent import AgentClient, WalletIdentity, parse_duration, start_agent  # noqa: PLC0415

    seconds = parse_duration(lifetime)
    home = _home(ctx)
    key, envelope = _store(ctx).unlock()  # the passphrase, never an agent: it proves it
    client = AgentClient(home, os.environ, warn=_warn)
    client.lock()  # a new unlock replaces the agent already running for this wallet
    pid = start_agent(client.socket_path, WalletIdentity.of(home, envelope), key.key, seconds)
    document = {"unlocked": True, "seconds": seconds, "pid": pid, "socket": str(client.socket_path)}
    if as_json:
        _emit_json(document)
    else:
        typer.echo(f"wallet unlocked for {lifetime} (agent pid {pid}; civic-wallet lock ends it)")


@app.command()
@_handled
def lock(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Stop the wallet's agent: it wipes the key; the next command asks for the passphrase."""
    from wallet_cli.agent import AgentClient  # noqa: PLC0415

    status = AgentClient(_home(ctx), os.environ, warn=_warn).lock()
    if as_json:
        _emit_json({"locked": True, "agent_was_running": status is not None})
    else:
        typer.echo(
            "wallet locked" if status is not None else "wallet locked (no agent was running)"
        )


# --- export / import ----------------------------------------------------------------------------


@app.command("export")
@_handled
def export_backup(
    ctx: typer.Context,
    destination: Annotated[Path, typer.Argument(help="The backup file to write.")],
    as_json: JsonFlag = False,
) -> None:
    """Write an encrypted backup of the whole wallet (its own passphrase)."""
    store = _store(ctx)
    store.read()  # the wallet passphrase first, so a wrong one fails before the backup prompt
    secret = _secret("CIVIC_WALLET_BACKUP_PASSPHRASE", "Backup passphrase", confirm=True)()
    wallet = store.export_backup(destination, secret)
    document = {
        "backup": str(destination),
        "credentials": len(wallet.credentials),
        "history": len(wallet.history),
    }
    if as_json:
        _emit_json(document)
    else:
        typer.echo(
            f"backup of {document['credentials']} credentials and {document['history']}"
            f" history entries written to {destination}"
        )


@app.command("import")
@_handled
def import_backup(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(help="A backup made by civic-wallet export.")],
    as_json: JsonFlag = False,
) -> None:
    """Restore a backup: into a new wallet, or merged into this one."""
    from wallet_cli.model import merge  # noqa: PLC0415

    secret = _secret("CIVIC_WALLET_BACKUP_PASSPHRASE", "Backup passphrase", confirm=False)()
    probe = _store(ctx)
    backup = probe.read_backup(source, secret)
    if not probe.exists():
        store = _store(ctx, new=True)
        store.create(backup)
        document = {
            "restored": True,
            "credentials": len(backup.credentials),
            "history": len(backup.history),
        }
    else:
        with probe.transaction() as wallet:
            added, history_added = merge(wallet, backup)
        document = {"restored": False, "credentials": added, "history": history_added}
    if as_json:
        _emit_json(document)
    elif document["restored"]:
        typer.echo(
            f"restored a wallet of {document['credentials']} credentials and"
            f" {document['history']} history entries"
        )
    else:
        typer.echo(
            f"merged {document['credentials']} credentials and {document['history']} history"
            " entries into the wallet"
        )


if __name__ == "__main__":  # pragma: no cover
    app()
