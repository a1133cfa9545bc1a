"""Request and response models of the admin API (JSON bodies; OpenID4VCI bodies are parsed
strictly by :mod:`issuer.oid4vci` instead, as the spec's error codes require)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class OfferCreate(BaseModel):
    """``POST /admin/offers``: the subject's claims for one credential type.

    ``evidence`` (youth allowance only: ``birth_date``, ``application_date``, optionally
    ``residence_region``) feeds the programme rules and is never stored.
    """

    model_config = ConfigDict(extra="forbid")

    vct: str
    claims: dict[str, Any]
    evidence: dict[str, Any] | None = None


class OfferCreated(BaseModel):
    offer_id: str
    vct: str
    credential_configuration_id: str
    credential_offer_uri: str
    credential_offer_url: str
    tx_code: str
    expires_at: int
    qr_png_base64: str


class StatusListEntry(BaseModel):
    uri: str
    idx: int


class CredentialRecord(BaseModel):
    """An issued credential as the issuer remembers it: no claims."""

    id: str
    vct: str
    kid: str
    status: str
    status_list: StatusListEntry
    holder_key_thumbprint: str
    issued_at: int
    expires_at: int
    status_changed_at: int | None


class CredentialList(BaseModel):
    credentials: list[CredentialRecord]
    total: int
    offset: int
    limit: int
