"""A small city for verifier tests: governance, an accredited agency, a wallet, status lists.

Everything is real (Ed25519 keys, signed registry events folded into a ``TrustState``, SD-JWT
VCs, Status List Tokens, a witnessed in-memory log for bundles); only the clock is fixed.
Shared by tests/unit/test_verdict.py and the verifier service and CLI tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from civic.checkpoint import CosignatureSigner, CosignatureVerifier, generate_cosignature_key
from civic.clock import FixedClock
from civic.credentials import RESIDENCY_VCT, VACCINATION_VCT, YOUTH_ALLOWANCE_VCT, get_type
from civic.errors import ReasonCode, VerificationError
from civic.jose import PrivateKey
from civic.logsync import LogConfig, MemoryLog, TrustSnapshot, export_bundle, sync
from civic.note import NoteSigner, NoteVerifier, generate_note_key
from civic.sdjwt import ClaimPath, create_presentation
from civic.sdjwtvc import issue_credential
from civic.statuslist import StatusList, StatusReference, sign_status_list_token
from civic.trust import GovernanceConfig, TrustState, new_event, sign_event

NOW = 1_800_000_000
ISSUER = "https://mapo.seoul.example"
STATUS_BASE = f"{ISSUER}/status"
STATUS_URI = f"{STATUS_BASE}/1"
CLIENT_ID = "counter.mapo.seoul.example"
ORIGIN = "registry.civic.example/seoul"
YEAR = 365 * 86_400
ALL_VCTS = (RESIDENCY_VCT, YOUTH_ALLOWANCE_VCT, VACCINATION_VCT)


@dataclass
class City:
    """A governance key, one accredited agency key, a holder, and the log of it all."""

    governance: PrivateKey = field(default_factory=PrivateKey.generate)
    agency: PrivateKey = field(default_factory=PrivateKey.generate)
    holder: PrivateKey = field(default_factory=PrivateKey.generate)
    verifier_key: PrivateKey = field(default_factory=PrivateKey.generate)
    kid: str = "mapo-2026-1"
    now: int = NOW
    status_base: str = STATUS_BASE
    entries: list[Any] = field(default_factory=list)
    status_lists: dict[str, StatusList] = field(default_factory=dict)
    state: TrustState = field(init=False)

    def __post_init__(self) -> None:
        self.config = GovernanceConfig({"gov-1": self.governance.public_key}, 1)
        self.state = TrustState.genesis(self.config)
        self.accredit_issuer(self.kid, self.agency)
        self.status_lists[self.status_uri] = StatusList(1024, 2)

    @property
    def status_uri(self) -> str:
        return f"{self.status_base}/1"

    # -- registry events ---------------------------------------------------------------------

    def event(self, kind: str, **members: Any) -> None:
        event = new_event(kind, now=FixedClock(self.now - 10 * 86_400), **members)
        entry = sign_event(event, [("gov-1", self.governance)])
        self.state = self.state.apply(entry)
        self.entries.append(entry)

    def accredit_issuer(
        self,
        kid: str,
        key: PrivateKey,
        *,
        issuer: str = ISSUER,
        vct: Iterable[str] = ALL_VCTS,
        status_base_url: str | None = None,
        not_before: int | None = None,
        not_after: int | None = None,
    ) -> None:
        self.event(
            "issuer.key.add",
            issuer=issuer,
            kid=kid,
            jwk=key.public_key,
            vct=list(vct),
            status_base_url=status_base_url or self.status_base,
            not_before=self.now - YEAR if not_before is None else not_before,
            not_after=self.now + YEAR if not_after is None else not_after,
        )

    def accredit_verifier(
        self, allowed: list[dict[str, Any]], *, client_id: str = CLIENT_ID, kid: str = "v-1"
    ) -> None:
        self.event(
            "verifier.add",
            verifier=client_id,
            kid=kid,
            jwk=self.verifier_key.public_key,
            purpose="Counter at the Mapo-gu district office",
            allowed=allowed,
            not_before=self.now - YEAR,
            not_after=self.now + YEAR,
        )

    # -- credentials ---------------------------------------------------------------------------

    def issue(
        self,
        vct: str = RESIDENCY_VCT,
        claims: Mapping[str, Any] | None = None,
        *,
        status_index: int | None = 7,
        status_uri: str | None = None,
        signer: PrivateKey | None = None,
        kid: str | None = None,
        issuer: str = ISSUER,
        issued_at: int | None = None,
        lifetime: int = YEAR,
        not_before: int | None = None,
    ) -> str:
        subject = dict(claims) if claims is not None else get_type(vct).example_claims()
        status = (
            StatusReference(status_index, status_uri or self.status_uri).to_claim()
            if status_index is not None
            else None
        )
        return issue_credential(
            issuer=issuer,
            vct=vct,
            subject_claims=subject,
            signer=signer or self.agency,
            kid=kid or self.kid,
            holder_key=self.holder.public_key,
            lifetime=lifetime,
            status=status,
            not_before=not_before,
            now=FixedClock(self.now - 86_400 if issued_at is None else issued_at),
        )

    def present(
        self,
        credential: str,
        reveal: Iterable[ClaimPath] = (("age_over_19",),),
        *,
        nonce: str = "n-0S6_WzA2Mj-counter-nonce",
        audience: str = CLIENT_ID,
        at: int | None = None,
        holder: PrivateKey | None = None,
        key_binding: bool = True,
    ) -> str:
        return create_presentation(
            credential,
            reveal=list(reveal),
            holder=(holder or self.holder) if key_binding else None,
            audience=audience,
            nonce=nonce,
            now=FixedClock(self.now - 5 if at is None else at),
        )

    def status_token(
        self,
        uri: str | None = None,
        *,
        signer: PrivateKey | None = None,
        issued_at: int | None = None,
        lifetime: int = 3600,
        subject: str | None = None,
    ) -> str:
        uri = uri or self.status_uri
        return sign_status_list_token(
            self.status_lists[uri],
            subject_uri=subject or uri,
            signer=signer or self.agency,
            kid=self.kid,
            now=FixedClock(self.now - 60 if issued_at is None else issued_at),
            ttl=300,
            lifetime=lifetime,
        )

    # -- a witnessed log of the same entries -------------------------------------------------

    def memory_log(self, witness_time: int | None = None) -> tuple[MemoryLog, LogConfig]:
        witness_time = self.now - 30 if witness_time is None else witness_time
        log_skey, log_vkey = generate_note_key(ORIGIN)
        witness_skey, witness_vkey = generate_cosignature_key("witness.civic.example")
        witness = CosignatureSigner.from_skey(witness_skey, now=FixedClock(witness_time))
        log = MemoryLog(ORIGIN, NoteSigner.from_skey(log_skey), [witness])
        for entry in self.entries:
            log.append(entry)
        log.publish()
        config = LogConfig(
            origin=ORIGIN,
            log_verifier=NoteVerifier.from_vkey(log_vkey),
            witnesses=(CosignatureVerifier.from_vkey(witness_vkey),),
            witness_quorum=1,
            governance=self.config,
        )
        return log, config

    def snapshot(self, witness_time: int | None = None) -> tuple[TrustSnapshot, LogConfig]:
        log, config = self.memory_log(witness_time)
        return sync(log, config, None, now=FixedClock(self.now), retain_entries=True), config

    def bundle(self, witness_time: int | None = None) -> tuple[dict[str, Any], LogConfig]:
        snapshot, config = self.snapshot(witness_time)
        return export_bundle(snapshot), config

    def trust_config_json(self, config: LogConfig) -> dict[str, Any]:
        """The relying party's ``trust-config.json`` (registry.client.log_config_from_json)."""
        return {
            "origin": config.origin,
            "log_vkey": config.log_verifier.vkey,  # type: ignore[attr-defined]
            "witnesses": [witness.vkey for witness in config.witnesses],
            "witness_quorum": config.witness_quorum,
            "governance": config.governance.to_json(),
        }


@dataclass
class StateTrust:
    """The verdict's TrustView over a bare TrustState, with a freshness flag set by the test."""

    state: TrustState
    stale: bool = False

    @property
    def checkpoint_size(self) -> int | None:
        return self.state.size

    def is_stale(self, now: int) -> bool:
        return self.stale

    def check_issuer_key(
        self, issuer: str, kid: str, vct: str, issued_at: int | None, now: int
    ) -> Any:
        return self.state.check_issuer_key(issuer, kid, vct, issued_at, now)


@dataclass
class DictStatus:
    """StatusFetcher over a dict; a missing URI is unreachable. Counts fetches."""

    tokens: dict[str, str] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)

    def fetch(self, uri: str) -> str:
        self.fetched.append(uri)
        token = self.tokens.get(uri)
        if token is None:
            raise VerificationError(ReasonCode.STATUS_LIST_UNAVAILABLE, "unreachable")
        return token


class NonceBook:
    """Single-use nonces in memory: consume returns False on the second use."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, nonce: str) -> bool:
        if nonce in self.used:
            return False
        self.used.add(nonce)
        return True
