"""The agency admin API's logic (issue 4, "Agency admin API").

- API keys: ``<key id>.<secret>``, 256 random bits of secret, stored as SHA-256 and compared in
  constant time; each key is scoped to a list of ``vct`` values. No key: 401; a key acting on
  a type outside its scope: 403.
- Offers: the subject's claims are checked against the type's JSON Schema
  (:func:`civic.credentials.validate_claims`); youth allowance offers also pass the programme
  rules (:func:`civic.credentials.enforce_youth_allowance_rules`), for which the request carries
  ``evidence`` (birth date, application date, optionally the residency region) that is checked
  and then dropped, never stored. The answer holds the offer URI (by reference), its QR code
  as a PNG, and the transaction code to hand to the citizen over another channel.
- Credentials: listed without claims (there are none to list); revoke / suspend / reinstate
  change the status list entry (revocation is final).

Errors are :class:`AdminError` with an HTTP status and a stable error string; details never
carry claim values (the schema checks name paths and rules only).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Engine, func, select, update
from sqlalchemy.engine import Connection

from civic.clock import RandomBytes, system_random
from civic.credentials import (
    REGISTERED_CLAIMS,
    YOUTH_ALLOWANCE_VCT,
    enforce_youth_allowance_rules,
    validate_claims,
)
from civic.encoding import b64std_encode, b64url_encode, json_dumps, json_loads
from civic.errors import CivicError, ReasonCode
from civic.qr import render_png
from civic.statuslist import Status
from issuer import db
from issuer.issuance import (
    ID_BYTES,
    OFFERED,
    IssuerContext,
    new_secret,
    new_tx_code,
    pre_authorized_code_for,
    purge_expired,
    require_accredited,
    sha256,
    tx_code_mac,
)
from issuer.oid4vci import configuration_for_vct, offer_deep_link
from issuer.statuslists import change_status, status_list_uri

API_KEY_ID_BYTES: Final = 12
MAX_LIST_LIMIT: Final = 500
# SQL integers are 64-bit signed: a larger offset would overflow in the driver (a 500).
MAX_LIST_OFFSET: Final = 2**63 - 1
STATUS_NAMES: Final = {
    Status.VALID: "valid",
    Status.INVALID: "revoked",
    Status.SUSPENDED: "suspended",
}
_EVIDENCE_MEMBERS: Final = frozenset({"birth_date", "application_date", "residence_region"})


class AdminError(CivicError):
    """An admin API error: HTTP ``status``, a stable ``error`` string, a value-free detail."""

    def __init__(self, status: int, error: str, detail: str, reason: ReasonCode) -> None:
        super().__init__(reason, detail)
        self.status = status
        self.error = error


def unauthorized() -> AdminError:
    return AdminError(401, "unauthorized", "a valid API key is required", ReasonCode.UNAUTHORIZED)


def forbidden() -> AdminError:
    return AdminError(
        403,
        "forbidden",
        "this API key is not allowed this credential type",
        ReasonCode.UNAUTHORIZED,
    )


# --- API keys ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiPrincipal:
    key_id: str
    vcts: frozenset[str]

    def require(self, vct: str) -> None:
        if vct not in self.vcts:
            raise forbidden()


def split_api_key(key: str) -> tuple[str, str] | None:
    key_id, sep, secret = key.partition(".")
    if not sep or not key_id or not secret or len(key) > 256:
        return None
    return key_id, secret


def create_api_key(
    engine: Engine,
    *,
    vcts: list[str],
    label: str,
    now: int,
    random: RandomBytes = system_random,
) -> tuple[str, str]:
    """Create a key; returns ``(key id, the full key)``. The key is shown once, never stored."""
    if not vcts:
        raise AdminError(
            400, "invalid_request", "an API key needs at least one vct", ReasonCode.MALFORMED_INPUT
        )
    key_id = b64url_encode(random(API_KEY_ID_BYTES))
    secret = b64url_encode(random(32))
    with db.write_transaction(engine) as connection:
        connection.execute(
            db.api_keys.insert().values(
                key_id=key_id,
                secret_sha256=sha256(secret),
                vcts=json_dumps(sorted(set(vcts))),
                label=label,
                created_at=now,
                revoked_at=None,
            )
        )
    return key_id, f"{key_id}.{secret}"


def revoke_api_key(engine: Engine, key_id: str, *, now: int) -> bool:
    with db.write_transaction(engine) as connection:
        changed = connection.execute(
            update(db.api_keys)
            .where(db.api_keys.c.key_id == key_id, db.api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount
    return bool(changed)


def authenticate(engine: Engine, authorization: str | None) -> ApiPrincipal:
    scheme, _, key = (authorization or "").partition(" ")
    parts = split_api_key(key.strip()) if scheme.lower() == "bearer" else None
    if parts is None:
        raise unauthorized()
    key_id, secret = parts
    with db.read_transaction(engine) as connection:
        row = connection.execute(
            select(db.api_keys.c.secret_sha256, db.api_keys.c.vcts, db.api_keys.c.revoked_at).where(
                db.api_keys.c.key_id == key_id
            )
        ).first()
    # Compare against a dummy digest when the id is unknown, so timing says little either way.
    expected = row.secret_sha256 if row is not None else hashlib.sha256(b"").digest()
    matches = hmac.compare_digest(sha256(secret), expected)
    if row is None or not matches or row.revoked_at is not None:
        raise unauthorized()
    vcts = json_loads(row.vcts)
    return ApiPrincipal(key_id, frozenset(v for v in vcts if isinstance(v, str)))


# --- offers --------------------------------------------------------------------------------


def check_offer_claims(vct: str, claims: object, evidence: Mapping[str, Any] | None) -> None:
    """The claims against the type's schema and, for the youth allowance, the programme rules.

    Raises ``VerificationError`` (``schema_invalid`` / ``programme_rule_failed``) or
    :class:`AdminError`; never with claim values in the message.
    """
    if not isinstance(claims, Mapping):
        raise AdminError(
            400, "schema_invalid", "claims must be a JSON object", ReasonCode.SCHEMA_INVALID
        )
    registered = sorted(REGISTERED_CLAIMS & set(claims))
    if registered:
        raise AdminError(
            400,
            "reserved_claim_name",
            f"registered claims are set by the issuer: {', '.join(registered)}",
            ReasonCode.RESERVED_CLAIM_NAME,
        )
    validate_claims(vct, claims)
    if vct != YOUTH_ALLOWANCE_VCT:
        if evidence:
            raise AdminError(
                400,
                "invalid_request",
                "evidence is only taken for youth allowance offers",
                ReasonCode.MALFORMED_INPUT,
            )
        return
    if not isinstance(evidence, Mapping) or not {"birth_date", "application_date"} <= set(evidence):
        raise AdminError(
            400,
            "programme_rule_failed",
            "youth allowance offers need evidence.birth_date and evidence.application_date",
            ReasonCode.PROGRAMME_RULE_FAILED,
        )
    unknown = sorted(set(evidence) - _EVIDENCE_MEMBERS)
    if unknown:
        raise AdminError(
            400, "invalid_request", "unknown evidence member", ReasonCode.MALFORMED_INPUT
        )
    region = evidence.get("residence_region")
    birth, applied = evidence["birth_date"], evidence["application_date"]
    if (
        not isinstance(birth, str)
        or not isinstance(applied, str)
        or not (region is None or isinstance(region, str))
    ):
        raise AdminError(
            400,
            "programme_rule_failed",
            "evidence values must be strings",
            ReasonCode.PROGRAMME_RULE_FAILED,
        )
    enforce_youth_allowance_rules(claims, birth, applied, residence_region=region)


@dataclass(frozen=True)
class CreatedOffer:
    offer_id: str
    vct: str
    configuration_id: str
    offer_url: str
    offer_uri: str
    tx_code: str
    expires_at: int
    qr_png: bytes | None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "offer_id": self.offer_id,
            "vct": self.vct,
            "credential_configuration_id": self.configuration_id,
            "credential_offer_uri": self.offer_uri,
            "credential_offer_url": self.offer_url,
            "tx_code": self.tx_code,
            "expires_at": self.expires_at,
        }
        if self.qr_png is not None:
            document["qr_png_base64"] = b64std_encode(self.qr_png)
        return document

    def __repr__(self) -> str:
        return f"CreatedOffer(offer_id={self.offer_id!r}, vct={self.vct!r})"


def create_offer(
    context: IssuerContext,
    principal: ApiPrincipal,
    *,
    vct: object,
    claims: object,
    evidence: Mapping[str, Any] | None = None,
    render_qr: bool = True,
) -> CreatedOffer:
    """Check and store an offer. ``render_qr=False`` skips the PNG (about 40 ms of pure-Python
    QR encoding) for callers that hand the offer URI over some other way."""
    if not isinstance(vct, str):
        raise AdminError(400, "vct_unknown", "vct must be a string", ReasonCode.VCT_UNKNOWN)
    configuration = configuration_for_vct(context.profile.configurations, vct)
    if configuration is None:
        raise AdminError(
            400, "vct_unknown", "this issuer does not issue that vct", ReasonCode.VCT_UNKNOWN
        )
    principal.require(vct)
    check_offer_claims(vct, claims, evidence)
    assert isinstance(claims, Mapping)
    now = context.now()
    try:
        require_accredited(context, vct, now)
    except CivicError as error:
        raise AdminError(
            503,
            error.reason.value,
            "the registry does not accredit any of this issuer's keys for this vct",
            error.reason,
        ) from None
    settings = context.runtime.settings
    random = context.random
    offer_id = new_secret(random, ID_BYTES)
    ref = new_secret(random)
    code = pre_authorized_code_for(ref)
    tx_code = new_tx_code(settings.tx_code_length, random)
    expires_at = now + settings.pre_authorized_code_ttl

    def store(connection: Connection) -> None:
        purge_expired(connection, now)
        connection.execute(
            db.offers.insert().values(
                offer_id=offer_id,
                ref_sha256=sha256(ref),
                code_sha256=sha256(code),
                tx_code_mac=tx_code_mac(code, tx_code),
                configuration_id=configuration.configuration_id,
                vct=vct,
                claims=json_dumps(dict(claims)),
                state=OFFERED,
                tx_code_failures=0,
                api_key_id=principal.key_id,
                created_at=now,
                code_expires_at=expires_at,
            )
        )

    db.run_write(context.engine, store)
    offer_url = context.offer_url(ref)
    offer_uri = offer_deep_link(offer_url)
    return CreatedOffer(
        offer_id=offer_id,
        vct=vct,
        configuration_id=configuration.configuration_id,
        offer_url=offer_url,
        offer_uri=offer_uri,
        tx_code=tx_code,
        expires_at=expires_at,
        qr_png=render_png(offer_uri) if render_qr else None,
    )


# --- credentials ---------------------------------------------------------------------------

_CREDENTIAL_COLUMNS = (
    db.credentials.c.credential_id,
    db.credentials.c.vct,
    db.credentials.c.kid,
    db.credentials.c.status_list_id,
    db.credentials.c.status_index,
    db.credentials.c.status,
    db.credentials.c.holder_thumbprint,
    db.credentials.c.issued_at,
    db.credentials.c.expires_at,
    db.credentials.c.status_changed_at,
)


def credential_record(row: Any, issuer_url: str) -> dict[str, Any]:
    """What the issuer knows about an issued credential: no claims."""
    return {
        "id": row.credential_id,
        "vct": row.vct,
        "kid": row.kid,
        "status": STATUS_NAMES.get(Status(int(row.status)), "unknown"),
        "status_list": {
            "uri": status_list_uri(issuer_url, int(row.status_list_id)),
            "idx": int(row.status_index),
        },
        "holder_key_thumbprint": row.holder_thumbprint,
        "issued_at": int(row.issued_at),
        "expires_at": int(row.expires_at),
        "status_changed_at": row.status_changed_at,
    }


def list_credentials(
    context: IssuerContext,
    principal: ApiPrincipal,
    *,
    vct: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    if not 1 <= limit <= MAX_LIST_LIMIT or not 0 <= offset <= MAX_LIST_OFFSET:
        raise AdminError(
            400, "invalid_request", "limit or offset out of range", ReasonCode.MALFORMED_INPUT
        )
    if vct is not None:
        principal.require(vct)
        allowed = [vct]
    else:
        allowed = sorted(principal.vcts)
    query = select(*_CREDENTIAL_COLUMNS).where(db.credentials.c.vct.in_(allowed))
    with db.read_transaction(context.engine) as connection:
        total = connection.execute(
            select(func.count())
            .select_from(db.credentials)
            .where(db.credentials.c.vct.in_(allowed))
        ).scalar_one()
        rows = connection.execute(
            query.order_by(db.credentials.c.issued_at, db.credentials.c.credential_id)
            .limit(limit)
            .offset(offset)
        ).all()
    return {
        "credentials": [credential_record(row, context.issuer_url) for row in rows],
        "total": int(total),
        "offset": offset,
        "limit": limit,
    }


def _credential(connection: Connection, credential_id: str) -> Any:
    return connection.execute(
        select(*_CREDENTIAL_COLUMNS).where(db.credentials.c.credential_id == credential_id)
    ).first()


def get_credential(
    context: IssuerContext, principal: ApiPrincipal, credential_id: str
) -> dict[str, Any]:
    with db.read_transaction(context.engine) as connection:
        row = _credential(connection, credential_id)
    if row is None:
        raise AdminError(404, "not_found", "no credential with this id", ReasonCode.NOT_FOUND)
    principal.require(row.vct)
    return credential_record(row, context.issuer_url)


def set_credential_status(
    context: IssuerContext, principal: ApiPrincipal, credential_id: str, action: str
) -> dict[str, Any]:
    """``revoke`` / ``suspend`` / ``reinstate``; 409 when the current status does not allow it."""
    now = context.now()

    def work(connection: Connection) -> Any:
        row = _credential(connection, credential_id)
        if row is None:
            raise AdminError(404, "not_found", "no credential with this id", ReasonCode.NOT_FOUND)
        principal.require(row.vct)
        if change_status(connection, credential_id, action, now) is None:
            current = STATUS_NAMES.get(Status(int(row.status)), "unknown")
            raise AdminError(
                409,
                "status_transition_not_allowed",
                f"cannot {action} a credential that is {current}",
                ReasonCode.MALFORMED_INPUT,
            )
        return _credential(connection, credential_id)

    row = db.run_write(context.engine, work)
    return credential_record(row, context.issuer_url)
