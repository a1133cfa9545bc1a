"""The verifier's HTTP API (issue 5): OpenID4VP 1.0 requests and responses, offline verification,
staff endpoints, and the counter page.

Staff (``Authorization: Bearer <API key>``):

- ``GET /policies``: the counter policies this verifier serves;
- ``POST /requests`` ``{"policy"}``: a new OpenID4VP request: ``{"id", "uri"
  (openid4vp://?client_id=...&request_uri=...), "request_uri", "qr_png" (base64), "expires_at"}``.
  Refused (409 with the registry's reason) when the registry does not accredit this verifier,
  its signing key, or the policy's claims;
- ``GET /requests/{id}``: ``{"id", "policy", "status" (pending | answered | expired),
  "expires_at", "verdict"}``;
- ``POST /challenges``: a nonce for an offline counter to display: ``{"nonce", "audience",
  "expires_at", "qr_png"}`` (the QR holds ``{"aud", "nonce"}`` as JSON);
- ``POST /verify`` ``{"policy", "nonce", "audience"?, "presentation" | "presentations" |
  "image_png" (base64 PNG)}``: the verdict of scanned QR text (packed or raw SD-JWT+KB).

Wallet (no authentication, per OpenID4VP):

- ``GET /requests/{id}/object``: the signed request object (``application/oauth-authz-req+jwt``);
- ``POST /responses/{id}``: direct_post (``vp_token``, ``state``), accepted once, before expiry.

Anyone: ``GET /`` (the counter page), ``GET /healthz``.

Bad input never gives a 500: a presentation that cannot be parsed is an ``invalid`` verdict
with its reason code; bodies over ``max_body_bytes`` get 413; other errors are
``{"error": <reason code>, "detail"}``. Every verdict is written to the audit table and the log
with its reason codes, vct, issuer and time, never a claim value.

``POST /verify`` is the hot path (issue 5, "Benchmark"). Its checklist runs with the nonce
provisionally unspent; the nonce is then spent and the audit row written in one transaction,
and should the nonce prove spent (or unknown) the checklist runs again with that answer, so
the verdict is the one an inline spend gives. With the SQLite stores and every status list it
needs cached, all of it runs on the event loop, and the writes of the verifications of one
pass of the loop are committed together at its end (:class:`verifier.db.LoopBatch`), each
verdict answered once its own write is committed. Images, status lists to fetch, PostgreSQL
and Redis go to the thread pool, as every other route does.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from civic.clock import Clock, system_clock
from civic.encoding import b64std_decode, b64std_encode, json_dumps, json_loads, json_loads_object
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError
from civic.policy import Policy
from civic.qr import decode_png, render_png
from civic.verdict import (
    StatusFetcher,
    StatusListCache,
    Verdict,
    rejected,
    verify_presentations,
    verify_vp_token,
)
from civic_service.db import is_outage
from civic_service.openapi import error_responses
from verifier.db import (
    RETENTION,
    LoopBatch,
    Writer,
    audit_table,
    boot_id,
    create_engine,
    create_schema,
    requests_table,
    sqlite_driver,
    void_nonces_after_reboot,
)
from verifier.oid4vp import (
    ID_BYTES,
    NONCE_BYTES,
    REQUEST_OBJECT_TYP,
    STATE_BYTES,
    new_token,
    parse_direct_post,
    request_object_claims,
    sign_request_object,
    wallet_uri,
)
from verifier.replay import RedisReplayStore, ReplayStore, SqlReplayStore
from verifier.settings import VerifierRuntime
from verifier.status import HttpStatusFetcher
from verifier.trust import TrustProvider

log = logging.getLogger("civic.verifier")
T = TypeVar("T")

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_PRESENTATIONS = 8
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
_AUDIT_INSERT = insert(audit_table)


@dataclass
class Services:
    """Everything a request handler needs; built once per process."""

    runtime: VerifierRuntime
    engine: Engine
    writer: Writer
    replay: ReplayStore
    trust: TrustProvider
    status: StatusFetcher
    now: Clock = system_clock
    status_cache: StatusListCache = field(default_factory=StatusListCache)

    def close(self) -> None:
        self.trust.stop()
        if isinstance(self.status, HttpStatusFetcher):
            self.status.close()
        if isinstance(self.replay, RedisReplayStore):
            self.replay.close()
        self.writer.close()
        self.engine.dispose()


def build_services(
    runtime: VerifierRuntime,
    *,
    now: Clock = system_clock,
    status: StatusFetcher | None = None,
    schema: str | None = None,
) -> Services:
    """Database, replay store, status fetcher and trust for ``runtime`` (a bundle is loaded
    now; a registry is synced by the app's lifespan)."""
    settings = runtime.settings
    engine = create_engine(
        settings.resolved_database_url(), schema=schema or settings.database_schema
    )
    create_schema(engine)
    writer = Writer(engine)
    current_boot = boot_id()
    if engine.dialect.name == "sqlite" and current_boot is not None:
        writer.run(
            lambda connection: void_nonces_after_reboot(
                connection, current_boot=current_boot, now=now()
            )
        )
    replay: ReplayStore
    if settings.redis_url:
        replay = RedisReplayStore.from_url(
            settings.redis_url, prefix=settings.redis_prefix, ttl=settings.challenge_ttl
        )
    else:
        replay = SqlReplayStore(writer, ttl=settings.challenge_ttl)
    trust = TrustProvider(max_age=settings.trust_max_age, now=now)
    if settings.trust_bundle_file is not None and runtime.log_config is not None:
        trust.load_bundle(settings.trust_bundle_file, runtime.log_config)
    fetcher = status or HttpStatusFetcher(
        timeout=settings.status_timeout,
        max_bytes=settings.status_max_bytes,
        max_cache_seconds=settings.status_max_cache_seconds,
        now=now,
    )
    return Services(runtime, engine, writer, replay, trust, fetcher, now)


# --- errors -----------------------------------------------------------------------------------


def status_for(error: CivicError) -> int:
    reason = error.reason
    if reason is ReasonCode.INPUT_TOO_LARGE:
        return 413
    if reason is ReasonCode.UNAUTHORIZED:
        return 401
    if reason is ReasonCode.NOT_FOUND:
        return 404
    if reason is ReasonCode.REQUEST_EXPIRED:
        return 410
    if isinstance(error, VerificationError):
        return 409
    return 400


def error_response(error: CivicError) -> JSONResponse:
    status = status_for(error)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": error.reason.value, "detail": error.detail}, status, headers=headers
    )


def _not_found(what: str) -> CivicError:
    return MalformedError(ReasonCode.NOT_FOUND, f"no such {what}")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes whether or not Content-Length says so."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise MalformedError(ReasonCode.INPUT_TOO_LARGE, f"request body over {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise MalformedError(ReasonCode.INPUT_TOO_LARGE, f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    return json_loads_object(await read_body(request, limit), what="request body")


# --- the service ------------------------------------------------------------------------------


class Verifier:
    """Route logic, synchronous (run in the thread pool): database, replay store, checklist."""

    def __init__(self, services: Services) -> None:
        self.s = services
        self.runtime = services.runtime
        self.settings = services.runtime.settings
        self._batch = LoopBatch(services.writer)

    def policy(self, policy_id: object) -> Policy:
        policy = self.runtime.policies.get(policy_id) if isinstance(policy_id, str) else None
        if policy is None:
            raise _not_found("policy")
        return policy

    def check_accreditation(self, policy: Policy, now: int) -> None:
        """The registry must accredit this client_id, our signing key, and every claim asked."""
        client_id = self.runtime.client_id
        for requirement in policy.credentials:
            for vct in requirement.vct:
                accredited = self.s.trust.check_verifier_request(
                    client_id, vct, list(requirement.paths), now
                )
        if (
            accredited.kid != self.runtime.kid
            or accredited.public_key != self.runtime.signer.public_key
        ):
            raise VerificationError(
                ReasonCode.VERIFIER_UNKNOWN,
                "the signing key is not the one the registry accredits for this verifier",
            )

    def create_request(self, policy_id: object) -> dict[str, Any]:
        policy = self.policy(policy_id)
        now = self.s.now()
        self.check_accreditation(policy, now)
        request_id = new_token(ID_BYTES)
        nonce = new_token(NONCE_BYTES)
        expires_at = now + self.settings.request_ttl
        row = {
            "id": request_id,
            "policy_id": policy.id,
            "nonce": nonce,
            "state": new_token(STATE_BYTES),
            "created_at": now,
            "expires_at": expires_at,
            "status": "pending",
            "verdict": None,
        }

        def write(connection: Connection) -> None:
            connection.execute(
                delete(requests_table).where(requests_table.c.expires_at < now - RETENTION)
            )
            connection.execute(insert(requests_table).values(row))

        self.s.writer.run(write)
        self.s.replay.issue(nonce, now=now, ttl=self.settings.request_ttl)
        request_uri = f"{self.settings.public_url.rstrip('/')}/requests/{request_id}/object"
        uri = wallet_uri(self.runtime.client_id, request_uri)
        return {
            "id": request_id,
            "policy": policy.id,
            "uri": uri,
            "request_uri": request_uri,
            "qr_png": b64std_encode(render_png(uri)),
            "expires_at": expires_at,
        }

    def _row(self, request_id: str) -> Any:
        # Ids are new_token() text; anything else (a NUL, which PostgreSQL text refuses with
        # an error, not a miss) is no request of ours and never reaches the database.
        if _TOKEN.fullmatch(request_id) is None:
            raise _not_found("request")
        with self.s.engine.connect() as connection:
            row = connection.execute(
                select(requests_table).where(requests_table.c.id == request_id)
            ).first()
        if row is None:
            raise _not_found("request")
        return row

    def request_status(self, request_id: str) -> dict[str, Any]:
        row = self._row(request_id)
        status = row.status
        if status == "pending" and row.expires_at <= self.s.now():
            status = "expired"
        return {
            "id": row.id,
            "policy": row.policy_id,
            "status": status,
            "expires_at": row.expires_at,
            "verdict": json_loads(row.verdict) if row.verdict else None,
        }

    def request_object(self, request_id: str) -> str:
        row = self._row(request_id)
        if row.expires_at <= self.s.now():
            raise VerificationError(ReasonCode.REQUEST_EXPIRED, "the request has expired")
        if row.status != "pending":
            raise VerificationError(ReasonCode.REQUEST_ALREADY_ANSWERED, "already answered")
        claims = request_object_claims(
            policy=self.policy(row.policy_id),
            client_id=self.runtime.client_id,
            response_uri=f"{self.settings.public_url.rstrip('/')}/responses/{row.id}",
            nonce=row.nonce,
            state=row.state,
            issued_at=row.created_at,
            expires_at=row.expires_at,
        )
        return sign_request_object(claims, self.runtime.signer, self.runtime.kid)

    def receive_response(self, request_id: str, body: bytes) -> dict[str, Any]:
        row = self._row(request_id)
        now = self.s.now()
        if row.expires_at <= now:
            raise VerificationError(ReasonCode.REQUEST_EXPIRED, "the request has expired")
        if row.status != "pending":
            raise VerificationError(ReasonCode.REQUEST_ALREADY_ANSWERED, "already answered")
        vp_token, state = parse_direct_post(body)
        if state != row.state:
            raise MalformedError(ReasonCode.MALFORMED_VP_TOKEN, "state does not match")
        # Claim the request atomically: one response per request, whichever replica gets it.
        claim = (
            update(requests_table)
            .where(
                requests_table.c.id == request_id,
                requests_table.c.status == "pending",
                requests_table.c.expires_at > now,
            )
            .values(status="processing")
        )
        claimed = self.s.writer.run(lambda connection: connection.execute(claim).rowcount)
        if claimed != 1:
            raise VerificationError(ReasonCode.REQUEST_ALREADY_ANSWERED, "already answered")
        policy = self.policy(row.policy_id)
        verdict = self._guarded(
            policy,
            now,
            lambda: verify_vp_token(
                vp_token,
                trust=self.s.trust.view(),
                status=self.s.status,
                policy=policy,
                audience=self.runtime.client_id,
                nonce=row.nonce,
                consume_nonce=lambda nonce: self.s.replay.consume(nonce, now=now),
                now=now,
                skew=self.settings.clock_skew,
                status_cache=self.s.status_cache,
            ),
        )
        answered = (
            update(requests_table)
            .where(requests_table.c.id == request_id)
            .values(status="answered", verdict=json_dumps(verdict.to_json()))
        )
        self.s.writer.run(lambda connection: connection.execute(answered))
        self.audit(verdict, kind="response", request_id=request_id)
        return {"result": verdict.result.value}

    def challenge(self) -> dict[str, Any]:
        now = self.s.now()
        nonce = new_token(NONCE_BYTES)
        self.s.replay.issue(nonce, now=now, ttl=self.settings.challenge_ttl)
        audience = self.runtime.client_id
        return {
            "nonce": nonce,
            "audience": audience,
            "expires_at": now + self.settings.challenge_ttl,
            "qr_png": b64std_encode(render_png(json_dumps({"aud": audience, "nonce": nonce}))),
        }

    def _offline_request(self, body: dict[str, Any]) -> tuple[Policy, str, str]:
        policy = self.policy(body.get("policy"))
        nonce = body.get("nonce")
        # Nonces are new_token() text: another shape (a NUL, which PostgreSQL refuses) was
        # never issued here and must not reach the replay store.
        if not isinstance(nonce, str) or _TOKEN.fullmatch(nonce) is None or len(nonce) < 16:
            raise MalformedError(ReasonCode.MALFORMED_INPUT, "nonce is a token of 16-256 chars")
        audience = body.get("audience", self.runtime.client_id)
        if audience not in self.runtime.audiences:
            raise UsageError(ReasonCode.KB_JWT_AUD_MISMATCH, "not an audience of this verifier")
        return policy, nonce, audience

    def _unreadable(self, policy: Policy, error: CivicError, now: int) -> Verdict:
        return rejected(
            policy.id, error.reason, now=now, checkpoint_size=self.s.trust.view().checkpoint_size
        )

    def _checklist(
        self,
        texts: list[str],
        request: tuple[Policy, str, str],
        now: int,
        consume: Callable[[str], bool],
        status: StatusFetcher,
    ) -> Verdict:
        policy, nonce, audience = request
        return self._guarded(
            policy,
            now,
            lambda: verify_presentations(
                texts,
                trust=self.s.trust.view(),
                status=status,
                policy=policy,
                audience=audience,
                nonce=nonce,
                consume_nonce=consume,
                now=now,
                skew=self.settings.clock_skew,
                status_cache=self.s.status_cache,
            ),
        )

    def verify_offline(self, body: dict[str, Any]) -> Verdict:
        """The verdict for ``POST /verify``, in a worker thread: any input, any stores.

        The checklist runs first with the nonce taken as unspent; the nonce is then spent,
        and the verdict audited, in one write. Should the nonce turn out spent already (or
        unknown), the checklist runs again with that answer. So the verdict is always the one
        an inline spend would have given, and the hot path writes once instead of twice."""
        request = self._offline_request(body)
        now = self.s.now()
        try:
            texts = _presentations(body)
        except CivicError as error:
            verdict = self._unreadable(request[0], error, now)
            self.audit(verdict, kind="offline", request_id=None)
            return verdict
        wanted: list[str] = []
        verdict = self._checklist(texts, request, now, _provisional(wanted), self.s.status)
        if not wanted:  # the checklist stopped before the key binding's nonce
            self.audit(verdict, kind="offline", request_id=None)
            return verdict
        try:
            if self._spend_and_audit(wanted[0], now, verdict):
                return verdict
            answer = _answer(None)
        except Exception as error:  # the re-run reports it, as an inline spend would have
            answer = _answer(error)
        verdict = self._checklist(texts, request, now, answer, self.s.status)
        self.audit(verdict, kind="offline", request_id=None)
        return verdict

    @property
    def inline(self) -> bool:
        """Whether ``POST /verify`` can run on the event loop: nothing in it then waits but
        the batched SQLite write, which is awaited (see :meth:`verify_offline_inline`)."""
        return (
            isinstance(self.s.replay, SqlReplayStore)
            and self.s.writer.batched
            and isinstance(self.s.status, HttpStatusFetcher)
        )

    async def verify_offline_inline(self, body: dict[str, Any]) -> Verdict:
        """:meth:`verify_offline` on the event loop, for scanned text with every status list
        it needs already cached; anything else goes to a worker thread (an image to decode,
        a status list to fetch, a nonce already spent). Handing each verification to a thread
        and back costs more CPU than the checklist itself; the GIL runs one at a time anyway."""
        if "image_png" in body:
            return await run_in_threadpool(self.verify_offline, body)
        request = self._offline_request(body)
        now = self.s.now()
        try:
            texts = _presentations(body)
        except CivicError as error:
            verdict = self._unreadable(request[0], error, now)
            row = _audit_row(verdict, kind="offline", request_id=None)
            await self._write(_audit_write(row))
            _log_verdict(row)
            return verdict
        assert isinstance(self.s.status, HttpStatusFetcher)
        wanted: list[str] = []
        try:
            verdict = self._checklist(
                texts, request, now, _provisional(wanted), _CachedStatusOnly(self.s.status)
            )
        except _StatusNotCached:
            return await run_in_threadpool(self.verify_offline, body)
        row = _audit_row(verdict, kind="offline", request_id=None)
        if not wanted:
            await self._write(_audit_write(row))
            _log_verdict(row)
            return verdict
        assert isinstance(self.s.replay, SqlReplayStore)
        spend = self.s.replay.spend_write(wanted[0], now=now, also=_audit_write(row))
        try:
            outcome = await self._write(spend)
        except Exception as error:  # the re-run reports it, as an inline spend would have
            answer = _answer(error)
        else:
            if outcome == "spent":
                _log_verdict(row)
                return verdict
            answer = _answer(_unknown_nonce() if outcome == "unknown" else None)
        verdict = await run_in_threadpool(
            self._checklist, texts, request, now, answer, self.s.status
        )
        await run_in_threadpool(self.audit, verdict, kind="offline", request_id=None)
        return verdict

    async def _write(self, write: Callable[[Connection], T]) -> T:
        return await self._batch.run(write)

    def _spend_and_audit(self, nonce: str, now: int, verdict: Verdict) -> bool:
        row = _audit_row(verdict, kind="offline", request_id=None)
        replay = self.s.replay
        if isinstance(replay, SqlReplayStore):
            spent = replay.consume(nonce, now=now, also=_audit_write(row))
        else:
            spent = replay.consume(nonce, now=now)
            if spent:
                self.s.writer.run(_audit_write(row))
        if spent:
            _log_verdict(row)
        return spent

    def _guarded(self, policy: Policy, now: int, verify: Callable[[], Verdict]) -> Verdict:
        try:
            return verify()
        except _StatusNotCached:
            raise
        except Exception:
            # A bug must never turn into "valid", nor into a 500 for the counter.
            log.exception("verification crashed; answering invalid")
            return rejected(policy.id, ReasonCode.MALFORMED_INPUT, now=now)

    def audit(self, verdict: Verdict, *, kind: str, request_id: str | None) -> None:
        row = _audit_row(verdict, kind=kind, request_id=request_id)
        self.s.writer.run(_audit_write(row))
        _log_verdict(row)

    def policies(self) -> list[dict[str, Any]]:
        return [policy.to_json() for policy in self.runtime.policies.values()]


def _provisional(wanted: list[str]) -> Callable[[str], bool]:
    """A nonce spender that only notes the nonce and says it was unspent."""

    def consume(value: str) -> bool:
        wanted.append(value)
        return True

    return consume


def _answer(failure: Exception | None) -> Callable[[str], bool]:
    """The real answer of a spend that did not happen: already spent, or ``failure``."""

    def consume(_value: str) -> bool:
        if failure is not None:
            raise failure
        return False

    return consume


def _unknown_nonce() -> CivicError:
    return VerificationError(ReasonCode.NONCE_UNKNOWN, "nonce not issued by this verifier")


class _StatusNotCached(Exception):
    """The inline path met a status list it would have to fetch."""


class _CachedStatusOnly:
    def __init__(self, fetcher: HttpStatusFetcher) -> None:
        self._fetcher = fetcher

    def fetch(self, uri: str) -> str:
        token = self._fetcher.cached(uri)
        if token is None:
            raise _StatusNotCached
        return token

    def forget(self, uri: str, token: str) -> None:
        self._fetcher.forget(uri, token)


_AUDIT_COLUMNS = (
    "at",
    "kind",
    "request_id",
    "policy_id",
    "result",
    "reasons",
    "vct",
    "issuer",
    "checkpoint_size",
)
_SQLITE_AUDIT_INSERT = (
    "INSERT INTO verifier_audit (at, kind, request_id, policy_id, result, reasons, vct, issuer,"
    " checkpoint_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _audit_write(row: dict[str, Any]) -> Callable[[Connection], object]:
    def write(connection: Connection) -> None:
        driver = sqlite_driver(connection)
        if driver is not None:  # once per verification: see verifier.replay._spend
            driver.execute(_SQLITE_AUDIT_INSERT, tuple(row[name] for name in _AUDIT_COLUMNS))
        else:
            connection.execute(_AUDIT_INSERT, row)

    return write


def _audit_row(verdict: Verdict, *, kind: str, request_id: str | None) -> dict[str, Any]:
    """The audit table's row for ``verdict``: reason codes and identifiers, no claim value."""
    return {
        "at": verdict.verified_at,
        "kind": kind,
        "request_id": request_id,
        "policy_id": verdict.policy_id,
        "result": verdict.result.value,
        "reasons": " ".join(reason.value for reason in verdict.reasons),
        "vct": " ".join(sorted({c.vct for c in verdict.credentials if c.vct})),
        "issuer": " ".join(sorted({c.issuer for c in verdict.credentials if c.issuer})),
        "checkpoint_size": verdict.checkpoint_size,
    }


def _log_verdict(row: dict[str, Any]) -> None:
    log.info(
        "verdict %s kind=%s policy=%s reasons=%s vct=%s issuer=%s checkpoint=%s request=%s",
        row["result"],
        row["kind"],
        row["policy_id"],
        row["reasons"] or "-",
        row["vct"] or "-",
        row["issuer"] or "-",
        row["checkpoint_size"],
        row["request_id"] or "-",
    )


def _presentations(body: dict[str, Any]) -> list[str]:
    given = [name for name in ("presentation", "presentations", "image_png") if name in body]
    if len(given) != 1:
        raise MalformedError(
            ReasonCode.MALFORMED_INPUT, "give one of presentation, presentations, image_png"
        )
    value = body[given[0]]
    if given[0] == "presentation":
        if not isinstance(value, str):
            raise MalformedError(ReasonCode.MALFORMED_INPUT, "presentation is a string")
        return [value.strip("\r\n")]
    if given[0] == "presentations":
        if (
            not isinstance(value, list)
            or not 0 < len(value) <= MAX_PRESENTATIONS
            or not all(isinstance(item, str) for item in value)
        ):
            raise MalformedError(ReasonCode.MALFORMED_INPUT, "presentations is a list of strings")
        return [item.strip("\r\n") for item in value]
    if not isinstance(value, str):
        raise MalformedError(ReasonCode.MALFORMED_INPUT, "image_png is base64 text")
    try:
        png = b64std_decode(value.split(",", 1)[1] if value.startswith("data:") else value)
    except MalformedError:
        raise MalformedError(ReasonCode.MALFORMED_INPUT, "image_png is not base64") from None
    return [decode_png(png)]


# --- the app ----------------------------------------------------------------------------------


def create_app(services: Services, *, sync_source: Any = None) -> FastAPI:
    """The FastAPI app. With ``registry_url`` set (or a ``sync_source``), the registry is synced
    in the background for as long as the app runs."""
    verifier = Verifier(services)
    runtime = services.runtime
    limit = runtime.settings.max_body_bytes

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        source = sync_source
        if source is None and runtime.settings.registry_url:
            from registry.client import HttpLogSource  # noqa: PLC0415

            source = HttpLogSource(runtime.settings.registry_url)
        if source is not None and runtime.log_config is not None:
            services.trust.start_background_sync(
                source, runtime.log_config, interval=runtime.settings.sync_interval
            )
        try:
            yield
        finally:
            services.close()

    app = _VerifierApp(title="Civic verifier", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.services = services

    @app.exception_handler(CivicError)
    async def _civic_error(_request: Request, error: CivicError) -> JSONResponse:
        return error_response(error)

    async def _database_error(_request: Request, error: Exception) -> JSONResponse:
        if not is_outage(error):
            raise error  # a bug: the server's 500, with its traceback in the log
        # The database is down or restarting; the pool (pre-ping) replaces dead connections
        # once it is back, so the client may simply retry.
        log.warning("database unavailable: %s", type(error).__name__)
        return JSONResponse(
            {
                "error": ReasonCode.SERVICE_UNAVAILABLE.value,
                "detail": "the database is unavailable; try again shortly",
            },
            503,
            headers={"Cache-Control": "no-store"},
        )

    app.add_exception_handler(SQLAlchemyError, _database_error)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        reason = ReasonCode.NOT_FOUND if error.status_code == 404 else ReasonCode.MALFORMED_INPUT
        return JSONResponse({"error": reason.value, "detail": str(error.detail)}, error.status_code)

    def staff(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key or not runtime.api_key_matches(key.strip()):
            raise UsageError(ReasonCode.UNAUTHORIZED, "staff API key required")

    @app.get("/", include_in_schema=False)
    async def counter_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "client_id": runtime.client_id, "trust": services.trust.status()}

    @app.get("/policies", responses=error_responses(401))
    async def policies(request: Request) -> list[dict[str, Any]]:
        staff(request)
        return verifier.policies()

    @app.post("/requests", status_code=201, responses=error_responses(400, 401, 404, 413))
    async def create_request(request: Request) -> JSONResponse:
        staff(request)
        body = await read_json_object(request, limit)
        return JSONResponse(
            await run_in_threadpool(verifier.create_request, body.get("policy")), 201
        )

    @app.get("/requests/{request_id}", responses=error_responses(401, 404))
    async def request_status(request_id: str, request: Request) -> JSONResponse:
        staff(request)
        answer = await run_in_threadpool(verifier.request_status, request_id)
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})

    @app.get(
        "/requests/{request_id}/object",
        response_class=Response,
        responses={
            200: {
                "description": "The signed request object (OpenID4VP)",
                "content": {f"application/{REQUEST_OBJECT_TYP}": {"schema": {"type": "string"}}},
            },
            **error_responses(404, 409, 410),
        },
    )
    async def request_object(request_id: str) -> Response:
        token = await run_in_threadpool(verifier.request_object, request_id)
        return Response(token, media_type=f"application/{REQUEST_OBJECT_TYP}")

    @app.post("/responses/{request_id}", responses=error_responses(400, 404, 409, 410, 413))
    async def response(request_id: str, request: Request) -> JSONResponse:
        body = await read_body(request, limit)
        answer = await run_in_threadpool(verifier.receive_response, request_id, body)
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})

    @app.post("/challenges", status_code=201, responses=error_responses(401))
    async def challenge(request: Request) -> JSONResponse:
        staff(request)
        return JSONResponse(await run_in_threadpool(verifier.challenge), 201)

    async def verify(request: Request) -> Response:
        staff(request)
        body = await read_json_object(request, limit)
        if verifier.inline:
            verdict = await verifier.verify_offline_inline(body)
        else:
            verdict = await run_in_threadpool(verifier.verify_offline, body)
        return Response(
            verdict.to_json_text().encode("utf-8"),
            headers={"Cache-Control": "no-store"},
            media_type=JSONResponse.media_type,
        )

    app.post(
        "/verify", response_class=JSONResponse, responses=error_responses(400, 401, 404, 409, 413)
    )(verify)

    async def verify_directly(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            try:
                response: Response = await verify(request)
            except CivicError as error:
                response = error_response(error)
            except SQLAlchemyError as error:
                response = await _database_error(request, error)
        except Exception:
            # What Starlette's ServerErrorMiddleware does: a plain 500, the error to the log.
            await PlainTextResponse("Internal Server Error", 500)(scope, receive, send)
            raise
        await response(scope, receive, send)

    app.verify_directly = verify_directly
    return app


class _VerifierApp(FastAPI):
    """FastAPI, with ``POST /verify`` (the hot path, issue 5 "Benchmark") handed to its
    endpoint directly instead of through FastAPI's request handling: telemetry check,
    middleware stack, route matching and dependency solving cost ~150 us of the ~900 us a
    verification took in-process. The endpoint is the documented route's own, and its errors
    get the app's handlers (CivicError, SQLAlchemyError) or a plain 500, as through the stack.
    The app adds no middleware; should one be added (tracing, say), every request goes through
    the stack again, ``POST /verify`` included."""

    verify_directly: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.verify_directly is not None
            and scope["type"] == "http"
            and scope["path"] == "/verify"
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and not self.root_path
            and not self.user_middleware
        ):
            await self.verify_directly(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
