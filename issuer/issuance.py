"""The stateful half of OpenID4VCI 1.0 issuance: offers, tokens, nonces, credentials.

Protocol parsing and checks are the pure functions of :mod:`issuer.oid4vci`; this module holds
what needs the database, each step in one transaction so that a failed request changes nothing:

- ``GET`` of an offer by reference (section 4.1.3) while it is unused and unexpired;
- the Token Request (section 6): the pre-authorized code is single use and short-lived, the
  transaction code is required, and the ``tx_code_max_attempts``-th wrong one burns the offer
  (its claims are deleted at once), as the security considerations (section 13.6) advise;
- the Nonce Endpoint (section 7): random ``c_nonce`` values, each accepted once;
- the Credential Request (section 8): Bearer access token, proofs verified *before* anything
  is written, the nonces consumed and the offer marked delivered in the transaction that
  allocates the status indices and signs; the offer's claims are deleted in that transaction.

Secrets are stored only as digests. The pre-authorized code is derived from the offer
reference (``HMAC(ref, label)``), so the offer document can be served without keeping the code;
the transaction code is kept as ``HMAC(code, tx_code)``, useless without the code.

Logs carry offer and credential ids, vct, kids and reason codes: never claims or secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.engine import Connection

from civic.clock import Clock, RandomBytes, random_below, system_clock, system_random
from civic.encoding import b64url_decode, b64url_encode, json_loads_object
from civic.errors import CivicError, MalformedError, ReasonCode, VerificationError
from civic.sdjwtvc import issue_credential
from civic.statuslist import StatusReference
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
from issuer.statuslists import StatusListPublisher, insert_with_fresh_index, status_list_uri
from issuer.trust import Accreditation, KeyedSigner

log = logging.getLogger("issuer.issuance")

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
    def signers(self) -> Sequence[KeyedSigner]:
        """The keys that may sign, newest first."""
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

    def signer_for(self, vct: str, now: int) -> KeyedSigner:
        return self.accreditation.choose(self.keys.signers(), vct, now)

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

        def exchange(connection: Connection) -> str | _TxCodeFailure:
            row = connection.execute(
                select(
                    db.offers.c.offer_id,
                    db.offers.c.state,
                    db.offers.c.code_expires_at,
                    db.offers.c.tx_code_mac,
                    db.offers.c.tx_code_failures,
                )
                .where(db.offers.c.code_sha256 == sha256(code))
                .with_for_update()
            ).first()
            if row is None or row.state != OFFERED or row.code_expires_at <= now:
                raise OAuthError(
                    INVALID_GRANT,
                    "the pre-authorized code is invalid, used or expired",
                    reason=ReasonCode.UNAUTHORIZED,
                )
            if request.tx_code is None:
                raise OAuthError(INVALID_REQUEST, "tx_code is required for this offer")
            if not hmac.compare_digest(tx_code_mac(code, request.tx_code), row.tx_code_mac):
                failures = int(row.tx_code_failures) + 1
                burned = failures >= self.settings.tx_code_max_attempts
                values: dict[str, Any] = {"tx_code_failures": failures}
                if burned:
                    values.update(state=BURNED, claims=None)
                connection.execute(
                    update(db.offers).where(db.offers.c.offer_id == row.offer_id).values(**values)
                )
                log.info(
                    "offer %s: wrong tx_code (%d of %d)%s",
                    row.offer_id,
                    failures,
                    self.settings.tx_code_max_attempts,
                    ", offer burned" if burned else "",
                )
                return _TxCodeFailure(burned)
            connection.execute(
                update(db.offers)
                .where(db.offers.c.offer_id == row.offer_id, db.offers.c.state == OFFERED)
                .values(
                    state=TOKEN_ISSUED,
                    token_sha256=sha256(access_token),
                    token_expires_at=now + self.settings.access_token_ttl,
                )
            )
            log.info("offer %s: access token issued", row.offer_id)
            return str(row.offer_id)

        outcome = db.run_write(self.context.engine, exchange)
        if isinstance(outcome, _TxCodeFailure):
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

        def store(connection: Connection) -> None:
            connection.execute(delete(db.nonces).where(db.nonces.c.expires_at <= now))
            connection.execute(
                db.nonces.insert().values(nonce=value, expires_at=now + self.settings.c_nonce_ttl)
            )

        db.run_write(self.context.engine, store)
        return value

    # credential endpoint (section 8)

    def _offer_for_token(self, token: str, now: int) -> Any:
        with db.read_transaction(self.context.engine) as connection:
            row = connection.execute(
                select(
                    db.offers.c.offer_id,
                    db.offers.c.vct,
                    db.offers.c.configuration_id,
                    db.offers.c.state,
                    db.offers.c.token_expires_at,
                ).where(db.offers.c.token_sha256 == sha256(token))
            ).first()
        if row is None or row.state != TOKEN_ISSUED or (row.token_expires_at or 0) <= now:
            raise OAuthError(
                INVALID_TOKEN,
                "the access token is invalid, used or expired",
                reason=ReasonCode.EXPIRED,
                status=401,
            )
        return row

    def credential(
        self, authorization: str | None, body: bytes, content_type: str | None
    ) -> dict[str, Any]:
        token = bearer_token(authorization)
        now = self.context.now()
        offer = self._offer_for_token(token, now)
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
            signer = self.context.signer_for(offer.vct, now)
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

        def issue(connection: Connection) -> list[tuple[str, str]]:
            return self._issue(
                connection, offer=offer, token=token, proofs=proofs, signer=signer, now=now
            )

        issued = db.run_write(self.context.engine, issue)
        log.info(
            "offer %s: delivered %d credential(s) of %s signed by %s",
            offer.offer_id,
            len(issued),
            offer.vct,
            signer.kid,
        )
        return credential_response([credential for _, credential in issued])

    def _issue(
        self,
        connection: Connection,
        *,
        offer: Any,
        token: str,
        proofs: Sequence[KeyProof],
        signer: KeyedSigner,
        now: int,
    ) -> list[tuple[str, str]]:
        row = connection.execute(
            select(db.offers.c.claims)
            .where(
                db.offers.c.offer_id == offer.offer_id,
                db.offers.c.state == TOKEN_ISSUED,
                db.offers.c.token_sha256 == sha256(token),
                db.offers.c.token_expires_at > now,
            )
            .with_for_update()
        ).first()
        if row is None or row.claims is None:
            raise OAuthError(
                INVALID_TOKEN,
                "the access token is invalid, used or expired",
                reason=ReasonCode.EXPIRED,
                status=401,
            )
        claims: Mapping[str, Any] = json_loads_object(row.claims, what="offer claims")
        wanted = sorted({proof.nonce for proof in proofs})
        consumed = connection.execute(
            delete(db.nonces).where(db.nonces.c.nonce.in_(wanted), db.nonces.c.expires_at > now)
        ).rowcount
        if consumed != len(wanted):
            # Raising rolls the deletions back: a request with one stale nonce uses up none.
            raise OAuthError(
                INVALID_NONCE,
                "a proof carries a c_nonce that is unknown, used or expired",
                reason=ReasonCode.KB_JWT_NONCE_REUSED,
            )
        lifetime = self.settings.credential_lifetime
        issued: list[tuple[str, str]] = []
        for proof in proofs:
            credential_id = new_secret(self.context.random, ID_BYTES)
            allocation = insert_with_fresh_index(
                connection,
                {
                    "credential_id": credential_id,
                    "offer_id": offer.offer_id,
                    "vct": offer.vct,
                    "kid": signer.kid,
                    "status": 0,
                    "holder_thumbprint": proof.holder_key.thumbprint(),
                    "issued_at": now,
                    "expires_at": now + lifetime,
                    "status_changed_at": None,
                },
                list_size=self.settings.status_list_size,
                now=now,
                random=self.context.random,
            )
            reference = StatusReference(
                allocation.index, status_list_uri(self.context.issuer_url, allocation.list_id)
            )
            credential = issue_credential(
                issuer=self.context.issuer_url,
                vct=offer.vct,
                subject_claims=claims,
                signer=signer,
                kid=signer.kid,
                holder_key=proof.holder_key,
                lifetime=lifetime,
                status=reference.to_claim(),
                now=lambda: now,
                random=self.context.random,
            )
            issued.append((credential_id, credential))
        connection.execute(
            update(db.offers)
            .where(db.offers.c.offer_id == offer.offer_id)
            .values(state=DELIVERED, claims=None, delivered_at=now)
        )
        return issued


def require_accredited(context: IssuerContext, vct: str, now: int) -> KeyedSigner:
    """The signer for ``vct`` now, or ``VerificationError`` with the registry's reason."""
    try:
        return context.signer_for(vct, now)
    except VerificationError:
        raise
    except CivicError as error:
        raise VerificationError(error.reason, error.detail) from None
