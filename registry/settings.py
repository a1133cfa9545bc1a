"""Registry service settings (docs/registry.md, "HTTP API of the registry").

Plain values come from the environment with the prefix ``CIVIC_REGISTRY_`` (and
``DATABASE_URL`` for the database); secrets live in files under the data directory written by
``civic-registry init``:

- ``log.skey``: the log's Ed25519 note signing key (C2SP signed-note), mode 0600;
- ``admin-token.sha256``: the SHA-256 (hex) of the admin Bearer token; the token itself is
  only in ``admin.token`` (0600) for the CLI, the server never needs it;
- ``governance.json``: the public genesis governance configuration (keys by kid and quorum).

:func:`load_runtime` refuses to start on a missing or default secret, on a private key file
readable by others, and on a witness list the quorum cannot be met from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from civic.checkpoint import CosignatureVerifier
from civic.encoding import json_loads_object
from civic.errors import CivicError
from civic.note import NoteSigner
from civic.trust import GovernanceConfig
from civic_service.config import (
    SettingsError,
    load_token_digest,
    read_text,
    token_matches,
)
from civic_service.config import read_private_file as read_secret

LOG_KEY_FILE = "log.skey"
LOG_VKEY_FILE = "log.vkey"
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 -- a file name
ADMIN_TOKEN_HASH_FILE = "admin-token.sha256"  # noqa: S105 -- a file name
GOVERNANCE_FILE = "governance.json"
TRUST_CONFIG_FILE = "trust-config.json"
DATABASE_FILE = "registry.sqlite3"

# Tokens that ship in examples and docs; a server configured with one of them is refused.
_DEFAULT_TOKENS = ("", "admin", "changeme", "change-me", "password", "secret", "token", "test")


class WitnessEndpoint(BaseModel):
    """A witness the publisher asks for cosignatures: its key and its base URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vkey: str
    url: str


class RegistrySettings(BaseSettings):
    """Environment configuration (``CIVIC_REGISTRY_*``; ``DATABASE_URL`` for PostgreSQL)."""

    model_config = SettingsConfigDict(
        env_prefix="CIVIC_REGISTRY_", extra="forbid", populate_by_name=True
    )

    data_dir: Path = Path("registry-data")
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "CIVIC_REGISTRY_DATABASE_URL"),
    )
    database_schema: str | None = None
    """PostgreSQL schema for the registry tables (default: the connection's search_path)."""
    origin: str | None = None
    """Checkpoint origin; defaults to the log key's name (C2SP: they SHOULD be equal)."""
    log_key_file: Path | None = None
    admin_token_sha256: str | None = None
    """Hex SHA-256 of the admin token; overrides ``admin-token.sha256`` in the data dir."""
    governance_file: Path | None = None
    witnesses: list[WitnessEndpoint] = Field(default_factory=list)
    witness_quorum: int | None = None
    """Cosignatures a checkpoint needs to be served as the latest; default: every witness."""
    witness_timeout: float = 5.0
    republish_interval: float = 30.0
    max_body_bytes: int = 64 * 1024
    host: str = "127.0.0.1"
    port: int = 8700

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / DATABASE_FILE).resolve()}"

    def path(self, configured: Path | None, default_name: str) -> Path:
        return configured if configured is not None else self.data_dir / default_name


@dataclass(frozen=True)
class Witness:
    verifier: CosignatureVerifier
    url: str


@dataclass(frozen=True)
class RegistryRuntime:
    """Settings with their secrets loaded and checked; what the app and the CLI run on."""

    settings: RegistrySettings
    database_url: str
    origin: str
    log_signer: NoteSigner
    admin_token_sha256: bytes = field(repr=False)
    governance: GovernanceConfig
    witnesses: tuple[Witness, ...]
    witness_quorum: int

    def admin_token_matches(self, presented: str) -> bool:
        return token_matches(presented, self.admin_token_sha256)


def read_private_file(path: Path, what: str) -> str:
    return read_secret(path, what, missing_hint="run `civic-registry init`")


def _admin_hash(settings: RegistrySettings) -> bytes:
    text = settings.admin_token_sha256
    if text is None:
        text = read_text(settings.data_dir / ADMIN_TOKEN_HASH_FILE, "admin token hash")
    return load_token_digest(text, "admin token", _DEFAULT_TOKENS)


def load_governance_file(path: Path) -> GovernanceConfig:
    try:
        document = json_loads_object(read_text(path, "governance"), what="governance file")
        return GovernanceConfig.from_json(document)
    except CivicError as error:
        raise SettingsError(f"governance file {path}: {error.detail}") from None


def load_runtime(settings: RegistrySettings) -> RegistryRuntime:
    skey = read_private_file(settings.path(settings.log_key_file, LOG_KEY_FILE), "log key")
    try:
        signer = NoteSigner.from_skey(skey.strip())
    except CivicError:
        raise SettingsError("the log key file does not hold an Ed25519 note signer key") from None
    origin = settings.origin or signer.name
    witnesses: list[Witness] = []
    for endpoint in settings.witnesses:
        try:
            verifier = CosignatureVerifier.from_vkey(endpoint.vkey)
        except CivicError:
            raise SettingsError("a configured witness key is not a valid vkey") from None
        if not endpoint.url.startswith(("http://", "https://")):
            raise SettingsError("witness URLs must be http(s)")
        witnesses.append(Witness(verifier, endpoint.url.rstrip("/")))
    quorum = settings.witness_quorum if settings.witness_quorum is not None else len(witnesses)
    if not 0 <= quorum <= len(witnesses):
        raise SettingsError("the witness quorum must be between 0 and the number of witnesses")
    for name, value in (("witness_timeout", settings.witness_timeout),):
        if not value > 0:
            raise SettingsError(f"{name} must be positive")
    if settings.max_body_bytes < 1024:
        raise SettingsError("max_body_bytes must be at least 1024")
    return RegistryRuntime(
        settings=settings,
        database_url=settings.resolved_database_url(),
        origin=origin,
        log_signer=signer,
        admin_token_sha256=_admin_hash(settings),
        governance=load_governance_file(settings.path(settings.governance_file, GOVERNANCE_FILE)),
        witnesses=tuple(witnesses),
        witness_quorum=quorum,
    )
