"""The stateful half of OpenID4VCI 1.0 issuance: offers, tokens, nonces, credentials.

Protocol parsing and checks are the pure functions of :mod:`issuer.oid4vci`; this module holds
what needs the database, each step in one transaction so that a failed request changes nothing:

- ``GET`` of an offer by reference (section 4.1.3) while it is unused and unexpired;
- the Token Request (section 6): the pre-authorized code is single use and short-lived, the
  transaction code is required, and the ``tx_code_max_attempts``-th wrong one burns the offer
  (its claims are deleted at once), as the security considerations (section 13.6) advise;
- the Nonce Endpoint (section 7): random ``c_nonce`` values, each accepted once;
- the Credential Request (section 8): Bearer access token, proofs verified *before* anything
  is written, and the registry asked whether the key may sign this vct; the copies are signed
  at status indices drawn from the open list, then one write transaction spends the token
  (conditionally: a concurrent request with the same token changes no row and fails), consumes
  the nonces, deletes the offer's claims and inserts the credential rows, where a drawn index
  found taken is replaced and that copy signed again. Nothing leaves before that commit is on
  disk (:mod:`issuer.db`, "Durability on SQLite").

The statements of these four endpoints are fixed SQL run at the driver level
(:class:`issuer.db.DriverTransaction`): about 10 us each on SQLite, against 0.1-0.3 ms through
SQLAlchemy Core, which the rest of the service (admin API, status lists, purge) still uses.

Secrets are stored only as digests. The pre-authorized code is derived from the offer
reference (``HMAC(ref, label)``), so the offer document can be served without keeping the code;
the transaction code is kept as ``HMAC(code, tx_code)``, useless without the code.

Logs carry offer and credential ids, vct, kids and reason codes: never claims or secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from civic.clock import Clock, RandomBytes, random_below, system_clock, system_random
from civic.encoding import b64url_decode, b64url_encode, json_loads_object
from civic.errors import CivicError, MalformedError, ReasonCode, VerificationError
from civic.sdjwtvc import issue_credential
from civic.statuslist import StatusReference
from civic_service.db import is_sqlite
from issuer import db
from issuer.oid4vci import (
    CREDENTIAL_REQUEST_DENIED,
    INSUFFICIENT_SCOPE,
    INVALID_GRANT,
    INVALID_NONCE,
    INVALID_REQUEST,
    INVALID_TOKEN,
    IssuerProfile,
    KeyProof,
    OAuthError,
    bearer_token,
    credential_offer,
    credential_response,
    parse_credential_request,
    parse_token_request,
    verify_key_proofs,
)
from issuer.settings import IssuerRuntime
from issuer.statuslists import (
    Allocation,
    OpenList,
    StatusListPublisher,
    current_list,
    insert_with_fresh_index,
    status_list_uri,
)
from issuer.trust import Accreditation, KeyedSigner

log = logging.getLogger("issuer.issuance")
T = TypeVar("T")

OFFERED: Final = "offered"
TOKEN_ISSUED: Final = "token_issued"  # noqa: S105 (a state, not a secret)
DELIVERED: Final = "delivered"
BURNED: Final = "burned"
EXPIRED: Final = "expired"

SECRET_BYTES: Final = 32
ID_BYTES: Final = 16
_CODE_LABEL: Final = b"civic-issuer pre-authorized_code v1"


# --- secrets (pure) ------------------------------------------------------------------------


def sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def new_secret(random: RandomBytes, size: int = SECRET_BYTES) -> str:
    return b64url_encode(random(size))


def pre_authorized_code_for(ref: str) -> str:
    """The offer's pre-authorized code, derived from its reference (never stored)."""
    return b64url_encode(hmac.new(b64url_decode(ref), _CODE_LABEL, hashlib.sha256).digest())


def tx_code_mac(pre_authorized_code: str, tx_code: str) -> bytes:
    return hmac.new(
        pre_authorized_code.encode("utf-8"), tx_code.encode("utf-8"), hashlib.sha256
    ).digest()


def new_tx_code(length: int, random: RandomBytes) -> str:
    return str(random_below(10**length, random)).zfill(length)


def parse_offer_ref(ref: str) -> str | None:
    """``ref`` if it is a well-formed offer reference, else None."""
    try:
        raw = b64url_decode(ref)
    except MalformedError:
        return None
    return ref if len(raw) == SECRET_BYTES else None


# --- the shared context --------------------------------------------------------------------


class SignerSource(Protocol):
    def signers(self, transaction: db.DriverTransaction | None = None) -> Sequence[KeyedSigner]:
        """The keys that may sign, newest first (read within ``transaction`` if given)."""
        ...


@dataclass
class IssuerContext:
    """Everything the issuer's flows share; built once per process by the app or the CLI."""

    runtime: IssuerRuntime
    engine: Engine
    keys: SignerSource
    accreditation: Accreditation
    profile: IssuerProfile
    status_publisher: StatusListPublisher
    now: Clock = system_clock
    random: RandomBytes = system_random

    @property
    def issuer_url(self) -> str:
        return self.runtime.issuer_url

    def offer_url(self, ref: str) -> str:
        return f"{self.issuer_url}/offers/{ref}"

    def signer_for(
        self, vct: str, now: int, *, keys: Sequence[KeyedSigner] | None = None
    ) -> KeyedSigner:
        """The newest key the registry accredits for ``vct`` now (among ``keys``, if given)."""
        return self.accreditation.choose(self.keys.signers() if keys is None else keys, vct, now)

    def signer_for_lists(self, now: int) -> KeyedSigner:
        return self.accreditation.choose_any(self.keys.signers(), self.runtime.vcts, now)


def purge_expired(connection: Connection, now: int) -> None:
    """Delete the claims of offers that can no longer be used, and expired nonces."""
    connection.execute(
        update(db.offers)
        .where(db.offers.c.state == OFFERED, db.offers.c.code_expires_at <= now)
        .values(state=EXPIRED, claims=None)
    )
    connection.execute(
        update(db.offers)
        .where(db.offers.c.state == TOKEN_ISSUED, db.offers.c.token_expires_at <= now)
        .values(state=EXPIRED, claims=None)
    )
    connection.execute(delete(db.nonces).where(db.nonces.c.expires_at <= now))


# --- the flows -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _TxCodeFailure:
    burned: bool


class IssuanceFlow:
    """Offer document, token, nonce and credential endpoints over one :class:`IssuerContext`."""

    def __init__(self, context: IssuerContext) -> None:
        self.context = context
        self.settings = context.runtime.settings
        self.inline = is_sqlite(context.engine)

    async def run(self, work: Callable[[], T]) -> T:
        """Run one endpoint's ``work``: on the event loop for SQLite, in the thread pool for
        PostgreSQL (whose statements wait on the network)."""
        if self.inline:
            return work()
        return await run_in_threadpool(work)

    # offer by reference (section 4.1.3)

    def offer_document(self, ref: str) -> dict[str, Any] | None:
        if parse_offer_ref(ref) is None:
            return None
        now = self.context.now()
        with db.read_transaction(self.context.engine) as connection:
            row = connection.execute(
                select(db.offers.c.configuration_id).where(
                    db.offers.c.ref_sha256 == sha256(ref),
                    db.offers.c.state == OFFERED,
                    db.offers.c.code_expires_at > now,
                )
            ).first()
        if row is None:
            return None
        return credential_offer(
            self.context.issuer_url,
            row.configuration_id,
            pre_authorized_code_for(ref),
            self.settings.tx_code_length,
        )

    # token endpoint (section 6)

    def token(self, body: bytes, content_type: str | None) -> dict[str, Any]:
        request = parse_token_request(body, content_type)
        now = self.context.now()
        code = request.pre_authorized_code
        access_token = new_secret(self.context.random)

        def exchange(transaction: db.DriverTransaction) -> str | _TxCodeFailure:
            row = transaction.one(_SELECT_OFFER_BY_CODE, {"code": sha256(code)})
            if row is None:
                raise _invalid_grant()
            offer_id, state, code_expires_at, expected_mac, failures = row
            if state != OFFERED or code_expires_at <= now:
                raise _invalid_grant()
            if request.tx_code is None:
                raise OAuthError(INVALID_REQUEST, "tx_code is required for this offer")
            if not hmac.compare_digest(tx_code_mac(code, request.tx_code), bytes(expected_mac)):
                failures = int(failures) + 1
                burned = failures >= self.settings.tx_code_max_attempts
                transaction.execute(
                    _BURN_OFFER if burned else _COUNT_TX_CODE_FAILURE,
                    {"failures": failures, "burned": BURNED, "offer_id": offer_id},
                )
                log.info(
                    "offer %s: wrong tx_code (%d of %d)%s",
                    offer_id,
                    failures,
                    self.settings.tx_code_max_attempts,
                    ", offer burned" if burned else "",
                )
                return _TxCodeFailure(burned)
            transaction.execute(
                _EXCHANGE_CODE,
                {
                    "token_issued": TOKEN_ISSUED,
                    "token": sha256(access_token),
                    "expires": now + self.settings.access_token_ttl,
                    "offer_id": offer_id,
                    "offered": OFFERED,
                },
            )
            log.info("offer %s: access token issued", offer_id)
            return str(offer_id)

        # Not durable (see issuer.db): a token lost to a power cut fails closed.
        outcome = db.run_driver_write(self.context.engine, exchange, durable=False)
        if isinstance(outcome, _TxCodeFailure):
            # A wrong guess is counted on disk: a power cut must not hand out more guesses.
            db.sync_wal(self.context.engine)
            raise OAuthError(
                INVALID_GRANT,
                "the transaction code is wrong; the offer is no longer valid"
                if outcome.burned
                else "the transaction code is wrong",
                reason=ReasonCode.UNAUTHORIZED,
            )
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.settings.access_token_ttl,
        }

    # nonce endpoint (section 7)

    def nonce(self) -> str:
        now = self.context.now()
        value = new_secret(self.context.random, ID_BYTES)

        def store(transaction: db.DriverTransaction) -> None:
            transaction.execute(_DELETE_EXPIRED_NONCES, {"now": now})
            transaction.execute(
                _INSERT_NONCE, {"nonce": value, "expires_at": now + self.settings.c_nonce_ttl}
            )

        # Not durable (see issuer.db): a nonce lost to a power cut fails closed.
        db.run_driver_write(self.context.engine, store, durable=False)
        return value

    # credential endpoint (section 8)

    async def credential_endpoint(
        self, authorization: str | None, body: bytes, content_type: str | None
    ) -> dict[str, Any]:
        """:meth:`credential` for the event loop: on SQLite the work runs inline and only the
        fsync that makes the delivery durable runs off the loop, shared by the deliveries
        committed meanwhile (:func:`db.sync_wal_shared`), instead of stalling the loop."""
        if not self.inline:
            return await run_in_threadpool(self.credential, authorization, body, content_type)
        answer = self.credential(authorization, body, content_type, durable=False)
        await db.sync_wal_shared(self.context.engine)
        return answer

    def credential(
        self,
        authorization: str | None,
        body: bytes,
        content_type: str | None,
        *,
        durable: bool = True,
    ) -> dict[str, Any]:
        """The Credential Request; ``durable=False`` leaves the caller to :func:`db.sync_wal`
        before the answer leaves the server."""
        token = bearer_token(authorization)
        now = self.context.now()
        with db.driver_transaction(self.context.engine, write=False) as transaction:
            row = transaction.one(_SELECT_OFFER_FOR_BEARER, {"token": sha256(token)})
            current = current_list(transaction)
            keys = self.context.keys.signers(transaction)
        if row is None or row[3] != TOKEN_ISSUED or (row[4] or 0) <= now or row[5] is None:
            raise _invalid_token()
        offer = _TokenOffer(
            offer_id=str(row[0]), vct=str(row[1]), configuration_id=str(row[2]), claims=row[5]
        )
        profile = self.context.profile
        request = parse_credential_request(
            body,
            content_type,
            configurations=profile.configurations,
            batch_size=profile.batch_size,
        )
        if request.configuration_id != offer.configuration_id:
            raise OAuthError(
                INSUFFICIENT_SCOPE,
                "the access token is for another credential configuration",
                reason=ReasonCode.VCT_UNKNOWN,
                status=403,
            )
        proofs = verify_key_proofs(
            request.proofs,
            audience=self.context.issuer_url,
            now=now,
            max_age=self.settings.proof_max_age,
            skew=self.settings.clock_skew,
        )
        try:
            signer = self.context.signer_for(offer.vct, now, keys=keys)
        except CivicError as error:
            log.warning(
                "offer %s: no registry-accredited key for %s: %s",
                offer.offer_id,
                offer.vct,
                error.reason.value,
            )
            raise OAuthError(
                CREDENTIAL_REQUEST_DENIED,
                "the issuer cannot sign this credential type at the moment",
                reason=error.reason,
            ) from None
        claims: Mapping[str, Any] = json_loads_object(offer.claims, what="offer claims")
        # Sign before the write transaction, at indices drawn from the current list: the
        # write lock is then held for a few statements only. An index found taken inside the
        # transaction is replaced there and that one copy signed again.
        drafts = [
            self._draft(offer, claims, proof, signer=signer, now=now, current=current)
            for proof in proofs
        ]

        def deliver(transaction: db.DriverTransaction) -> list[str]:
            return self._deliver(transaction, offer=offer, token=token, drafts=drafts, now=now)

        # Durable: no credential leaves before its row (and status index) is on disk.
        issued = db.run_driver_write(self.context.engine, deliver, durable=durable)
        log.info(
            "offer %s: delivered %d credential(s) of %s signed by %s",
            offer.offer_id,
            len(issued),
            offer.vct,
            signer.kid,
        )
        return credential_response(issued)

    def _sign(self, draft: _Draft, allocation: Allocation) -> str:
        reference = StatusReference(
            allocation.index, status_list_uri(self.context.issuer_url, allocation.list_id)
        )
        return issue_credential(
            issuer=self.context.issuer_url,
            vct=draft.vct,
            subject_claims=draft.claims,
            signer=draft.signer,
            kid=draft.signer.kid,
            holder_key=draft.proof.holder_key,
            lifetime=self.settings.credential_lifetime,
            status=reference.to_claim(),
            now=lambda: draft.issued_at,
            random=self.context.random,
        )

    def _draft(
        self,
        offer: _TokenOffer,
        claims: Mapping[str, Any],
        proof: KeyProof,
        *,
        signer: KeyedSigner,
        now: int,
        current: OpenList | None,
    ) -> _Draft:
        draft = _Draft(vct=offer.vct, claims=claims, proof=proof, signer=signer, issued_at=now)
        if current is not None:
            draft.allocation = current.draw(self.context.random)
            draft.credential = self._sign(draft, draft.allocation)
        return draft

    def _deliver(
        self,
        transaction: db.DriverTransaction,
        *,
        offer: _TokenOffer,
        token: str,
        drafts: Sequence[_Draft],
        now: int,
    ) -> list[str]:
        """Spend the token and the nonces, record the credentials: all or nothing."""
        delivered = transaction.execute(
            _DELIVER_OFFER,
            {
                "delivered": DELIVERED,
                "now": now,
                "offer_id": offer.offer_id,
                "token_issued": TOKEN_ISSUED,
                "token": sha256(token),
            },
        )
        if delivered != 1:
            raise _invalid_token()
        wanted = sorted({draft.proof.nonce for draft in drafts})
        consumed = sum(
            transaction.execute(_CONSUME_NONCE, {"nonce": nonce, "now": now}) for nonce in wanted
        )
        if consumed != len(wanted):
            # Raising rolls the deletions back: a request with one stale nonce uses up none.
            raise OAuthError(
                INVALID_NONCE,
                "a proof carries a c_nonce that is unknown, used or expired",
                reason=ReasonCode.KB_JWT_NONCE_REUSED,
            )
        lifetime = self.settings.credential_lifetime
        issued: list[str] = []
        for draft in drafts:
            allocation = insert_with_fresh_index(
                transaction,
                {
                    "credential_id": new_secret(self.context.random, ID_BYTES),
                    "offer_id": offer.offer_id,
                    "vct": offer.vct,
                    "kid": draft.signer.kid,
                    "status": 0,
                    "holder_thumbprint": draft.proof.holder_key.thumbprint(),
                    "issued_at": now,
                    "expires_at": now + lifetime,
                    "status_changed_at": None,
                },
                list_size=self.settings.status_list_size,
                now=now,
                random=self.context.random,
                preferred=draft.allocation,
            )
            if allocation != draft.allocation or draft.credential is None:
                draft.credential = self._sign(draft, allocation)
            issued.append(draft.credential)
        return issued


@dataclass
class _TokenOffer:
    offer_id: str
    vct: str
    configuration_id: str
    claims: str

    def __repr__(self) -> str:  # the claims are personal data
        return f"_TokenOffer(offer_id={self.offer_id!r}, vct={self.vct!r})"


@dataclass
class _Draft:
    """One copy of a credential on its way out: signed once its status index is known."""

    vct: str
    claims: Mapping[str, Any]
    proof: KeyProof
    signer: KeyedSigner
    issued_at: int
    allocation: Allocation | None = None
    credential: str | None = None

    def __repr__(self) -> str:  # the claims are personal data
        return f"_Draft(vct={self.vct!r}, allocation={self.allocation!r})"


def _invalid_grant() -> OAuthError:
    return OAuthError(
        INVALID_GRANT,
        "the pre-authorized code is invalid, used or expired",
        reason=ReasonCode.UNAUTHORIZED,
    )


def _invalid_token() -> OAuthError:
    return OAuthError(
        INVALID_TOKEN,
        "the access token is invalid, used or expired",
        reason=ReasonCode.EXPIRED,
        status=401,
    )


_SELECT_OFFER_BY_CODE = (
    "SELECT offer_id, state, code_expires_at, tx_code_mac, tx_code_failures"
    " FROM {issuer_offers} WHERE code_sha256 = :code{for_update}"
)
_COUNT_TX_CODE_FAILURE = (
    "UPDATE {issuer_offers} SET tx_code_failures = :failures WHERE offer_id = :offer_id"
)
_BURN_OFFER = (
    "UPDATE {issuer_offers} SET tx_code_failures = :failures, state = :burned, claims = NULL"
    " WHERE offer_id = :offer_id"
)
_EXCHANGE_CODE = (
    "UPDATE {issuer_offers} SET state = :token_issued, token_sha256 = :token,"
    " token_expires_at = :expires WHERE offer_id = :offer_id AND state = :offered"
)
_CONSUME_NONCE = "DELETE FROM {issuer_nonces} WHERE nonce = :nonce AND expires_at > :now"
_DELETE_EXPIRED_NONCES = "DELETE FROM {issuer_nonces} WHERE expires_at <= :now"
_INSERT_NONCE = "INSERT INTO {issuer_nonces} (nonce, expires_at) VALUES (:nonce, :expires_at)"
_SELECT_OFFER_FOR_BEARER = (
    "SELECT offer_id, vct, configuration_id, state, token_expires_at, claims"
    " FROM {issuer_offers} WHERE token_sha256 = :token"
)
# The conditions of the SELECT above, again: the token may have been spent (or the offer
# purged) since, by a concurrent request; exactly one of them sees a row change.
_DELIVER_OFFER = (
    "UPDATE {issuer_offers} SET state = :delivered, claims = NULL, delivered_at = :now"
    " WHERE offer_id = :offer_id AND state = :token_issued AND token_sha256 = :token"
    " AND token_expires_at > :now AND claims IS NOT NULL"
)


def require_accredited(context: IssuerContext, vct: str, now: int) -> KeyedSigner:
    """The signer for ``vct`` now, or ``VerificationError`` with the registry's reason."""
    try:
        return context.signer_for(vct, now)
    except VerificationError:
        raise
    except CivicError as error:
        raise VerificationError(error.reason, error.detail) from None
