"""What the wallet keeps, as plain data: credentials with their copies and holder keys, the
presentation history, and where to find the trust registry.

The whole of it is sealed by :mod:`wallet_cli.store`; this module only converts to and from
JSON, strictly (a store that does not parse back is ``wallet_corrupted``). Nothing here is
sent anywhere: the history in particular stays in the wallet (issue 6, "kept only in the
wallet").

Each credential is held as a batch of copies (OpenID4VCI 1.0 section 8.2, ``proofs``): every
copy is bound to its own holder key, so two presentations made from two copies cannot be
linked through ``cnf`` or the issuer signature. :func:`pick_copy` chooses the least used copy.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from civic.clock import RandomBytes, system_random
from civic.errors import MalformedError, ReasonCode, UsageError, VerificationError

STORE_FORMAT: Final = "civic-wallet-store/1"
ALGORITHMS: Final = ("EdDSA", "ES256")
CHANNELS: Final = ("openid4vp", "qr")
ID_PATTERN: Final = re.compile(r"[0-9a-f]{8}")
DEFAULT_TRUST_MAX_AGE: Final = 86_400


def _corrupted(detail: str) -> MalformedError:
    return MalformedError(ReasonCode.WALLET_CORRUPTED, f"wallet contents: {detail}")


def _get(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise _corrupted(f"{where}.{name} missing or of the wrong type")
    return value


def _optional_int(obj: Mapping[str, Any], name: str, where: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if type(value) is not int:
        raise _corrupted(f"{where}.{name} is not an integer")
    return value


def _names(value: object, where: str) -> tuple[str, str]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(item, str) for item in value)
    ):
        raise _corrupted(f"{where} is not an [en, ko] pair")
    return (value[0], value[1])


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _corrupted(f"{where} is not an object")
    return value


@dataclass
class CredentialCopy:
    """One issued copy: the SD-JWT VC as received and the private JWK its ``cnf`` names."""

    sd_jwt: str
    key: dict[str, str] = field(repr=False)
    uses: int = 0

    def __repr__(self) -> str:
        return f"CredentialCopy(uses={self.uses})"

    def to_json(self) -> dict[str, Any]:
        return {"sd_jwt": self.sd_jwt, "key": dict(self.key), "uses": self.uses}

    @classmethod
    def from_json(cls, value: object, where: str) -> CredentialCopy:
        obj = _object(value, where)
        key = _object(obj.get("key"), f"{where}.key")
        if not all(isinstance(v, str) for v in key.values()):
            raise _corrupted(f"{where}.key is not a JWK")
        return cls(
            sd_jwt=_get(obj, "sd_jwt", str, where),
            key=dict(key),
            uses=_get(obj, "uses", int, where),
        )


@dataclass
class StoredCredential:
    """A credential in the wallet. ``repr`` shows no claims (they are personal data)."""

    id: str
    vct: str
    issuer: str
    configuration_id: str
    type_names: tuple[str, str]
    """(English, Korean) name of the credential type."""
    issuer_names: tuple[str, str] | None
    """(English, Korean) display name the issuer's metadata gives, if any."""
    received_at: int
    issued_at: int | None
    not_before: int | None
    expires_at: int | None
    copies: list[CredentialCopy]

    def __repr__(self) -> str:
        return f"StoredCredential(id={self.id!r}, vct={self.vct!r}, copies={len(self.copies)})"

    def type_name(self, lang: str) -> str:
        return self.type_names[1 if lang == "ko" else 0]

    def issuer_name(self, lang: str) -> str:
        if self.issuer_names is None:
            return self.issuer
        return self.issuer_names[1 if lang == "ko" else 0]

    @property
    def unused_copies(self) -> int:
        return sum(1 for copy in self.copies if copy.uses == 0)

    def usable_at(self, now: int) -> bool:
        """Inside its validity window (``nbf``/``exp``), as a verifier would see it."""
        if self.expires_at is not None and now >= self.expires_at:
            return False
        return self.not_before is None or now >= self.not_before

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "vct": self.vct,
            "issuer": self.issuer,
            "configuration_id": self.configuration_id,
            "type_names": list(self.type_names),
            "issuer_names": list(self.issuer_names) if self.issuer_names else None,
            "received_at": self.received_at,
            "issued_at": self.issued_at,
            "not_before": self.not_before,
            "expires_at": self.expires_at,
            "copies": [copy.to_json() for copy in self.copies],
        }

    @classmethod
    def from_json(cls, value: object, where: str) -> StoredCredential:
        obj = _object(value, where)
        credential_id = _get(obj, "id", str, where)
        if not ID_PATTERN.fullmatch(credential_id):
            raise _corrupted(f"{where}.id is not a wallet id")
        copies = _get(obj, "copies", list, where)
        if not copies:
            raise _corrupted(f"{where} has no copies")
        issuer_names = obj.get("issuer_names")
        return cls(
            id=credential_id,
            vct=_get(obj, "vct", str, where),
            issuer=_get(obj, "issuer", str, where),
            configuration_id=_get(obj, "configuration_id", str, where),
            type_names=_names(obj.get("type_names"), f"{where}.type_names"),
            issuer_names=None
            if issuer_names is None
            else _names(issuer_names, f"{where}.issuer_names"),
            received_at=_get(obj, "received_at", int, where),
            issued_at=_optional_int(obj, "issued_at", where),
            not_before=_optional_int(obj, "not_before", where),
            expires_at=_optional_int(obj, "expires_at", where),
            copies=[
                CredentialCopy.from_json(item, f"{where}.copies[{i}]")
                for i, item in enumerate(copies)
            ],
        )


ClaimPathJson = list[str | int]


@dataclass(frozen=True)
class HistoryEntry:
    """One presentation: to whom, why, which claims (paths, never values), when, the answer."""

    at: int
    channel: str
    verifier: str | None
    purpose: str | None
    credential_id: str
    vct: str
    claims: tuple[tuple[str | int, ...], ...]
    result: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "channel": self.channel,
            "verifier": self.verifier,
            "purpose": self.purpose,
            "credential_id": self.credential_id,
            "vct": self.vct,
            "claims": [list(path) for path in self.claims],
            "result": self.result,
        }

    @classmethod
    def from_json(cls, value: object, where: str) -> HistoryEntry:
        obj = _object(value, where)
        channel = _get(obj, "channel", str, where)
        if channel not in CHANNELS:
            raise _corrupted(f"{where}.channel is unknown")
        claims = _get(obj, "claims", list, where)
        paths: list[tuple[str | int, ...]] = []
        for i, path in enumerate(claims):
            if not isinstance(path, list) or not all(
                isinstance(c, str) or (type(c) is int and c >= 0) for c in path
            ):
                raise _corrupted(f"{where}.claims[{i}] is not a claim path")
            paths.append(tuple(path))
        verifier, purpose, result = obj.get("verifier"), obj.get("purpose"), obj.get("result")
        for name, item in (("verifier", verifier), ("purpose", purpose), ("result", result)):
            if item is not None and not isinstance(item, str):
                raise _corrupted(f"{where}.{name} is not a string")
        return cls(
            at=_get(obj, "at", int, where),
            channel=channel,
            verifier=verifier,
            purpose=purpose,
            credential_id=_get(obj, "credential_id", str, where),
            vct=_get(obj, "vct", str, where),
            claims=tuple(paths),
            result=result,
        )


@dataclass
class TrustSettings:
    """Where the registry is and how to believe it: the relying-party ``trust-config.json``
    (log key, witnesses, quorum, governance keys) kept sealed, so that nobody can swap the
    trust anchor without the passphrase."""

    registry_url: str | None
    config: dict[str, Any]
    max_age: int = DEFAULT_TRUST_MAX_AGE
    """How long a synced trust state may be used when the registry cannot be reached."""

    def to_json(self) -> dict[str, Any]:
        return {"registry_url": self.registry_url, "config": self.config, "max_age": self.max_age}

    @classmethod
    def from_json(cls, value: object, where: str) -> TrustSettings:
        obj = _object(value, where)
        url = obj.get("registry_url")
        if url is not None and not isinstance(url, str):
            raise _corrupted(f"{where}.registry_url is not a string")
        return cls(
            registry_url=url,
            config=dict(_object(obj.get("config"), f"{where}.config")),
            max_age=_get(obj, "max_age", int, where),
        )


@dataclass
class WalletData:
    """Everything the store seals."""

    created_at: int
    alg: str
    """Algorithm of the holder keys made for new copies: EdDSA (Ed25519) or ES256 (P-256)."""
    trust: TrustSettings | None = None
    credentials: list[StoredCredential] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)

    def __repr__(self) -> str:
        return (
            f"WalletData(alg={self.alg!r}, credentials={len(self.credentials)}, "
            f"history={len(self.history)})"
        )

    def find(self, wanted: str) -> StoredCredential:
        """The credential with this id, or the only one whose id starts with ``wanted``."""
        exact = [c for c in self.credentials if c.id == wanted]
        if exact:
            return exact[0]
        matches = [c for c in self.credentials if wanted and c.id.startswith(wanted)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise UsageError(ReasonCode.MALFORMED_INPUT, "that id prefix names several credentials")
        raise VerificationError(ReasonCode.NOT_FOUND, "no credential with that id in the wallet")

    def remove(self, credential_id: str) -> StoredCredential:
        credential = self.find(credential_id)
        self.credentials = [c for c in self.credentials if c.id != credential.id]
        return credential

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STORE_FORMAT,
            "created_at": self.created_at,
            "alg": self.alg,
            "trust": self.trust.to_json() if self.trust else None,
            "credentials": [c.to_json() for c in self.credentials],
            "history": [h.to_json() for h in self.history],
        }

    @classmethod
    def from_json(cls, value: object) -> WalletData:
        obj = _object(value, "wallet")
        if obj.get("format") != STORE_FORMAT:
            raise _corrupted(f"format is not {STORE_FORMAT}")
        alg = _get(obj, "alg", str, "wallet")
        if alg not in ALGORITHMS:
            raise _corrupted("alg is not EdDSA or ES256")
        trust = obj.get("trust")
        credentials = [
            StoredCredential.from_json(item, f"credentials[{i}]")
            for i, item in enumerate(_get(obj, "credentials", list, "wallet"))
        ]
        if len({c.id for c in credentials}) != len(credentials):
            raise _corrupted("two credentials share an id")
        return cls(
            created_at=_get(obj, "created_at", int, "wallet"),
            alg=alg,
            trust=None if trust is None else TrustSettings.from_json(trust, "trust"),
            credentials=credentials,
            history=[
                HistoryEntry.from_json(item, f"history[{i}]")
                for i, item in enumerate(_get(obj, "history", list, "wallet"))
            ],
        )


def pick_copy(credential: StoredCredential) -> int:
    """Index of the copy to present next: the least used, the first of those.

    A fresh copy per presentation keeps presentations unlinkable; once every copy has been
    shown, reuse is unavoidable and the caller says so (``copies[i].uses > 0``).
    """
    return min(range(len(credential.copies)), key=lambda i: (credential.copies[i].uses, i))


def new_credential_id(existing: Collection[str], random: RandomBytes = system_random) -> str:
    """A fresh id: 8 hex digits, short enough to type and unlike any option name."""
    while True:
        candidate = random(4).hex()
        if candidate not in existing:
            return candidate


def merge(into: WalletData, backup: WalletData) -> tuple[int, int]:
    """Add the backup's credentials and history that ``into`` lacks; returns how many of each.

    Credentials are matched by id and history entries by their whole content, so importing
    the same backup twice adds nothing the second time.
    """
    known = {c.id for c in into.credentials}
    added = [c for c in backup.credentials if c.id not in known]
    into.credentials.extend(added)
    seen = set(into.history)
    new_history = [h for h in backup.history if h not in seen]
    into.history.extend(new_history)
    into.history.sort(key=lambda h: h.at)
    if into.trust is None and backup.trust is not None:
        into.trust = backup.trust
    return len(added), len(new_history)
