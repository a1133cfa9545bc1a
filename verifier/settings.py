"""Verifier service settings (issue 5).

Plain values come from the environment with the prefix ``CIVIC_VERIFIER_`` (``DATABASE_URL``
for the shared database, ``CIVIC_REDIS_URL`` for the shared replay cache); secrets live in files
under the data directory written by ``civic-verifier init``:

- ``verifier.jwk``: the private JWK (with its ``kid``) that signs request objects; the registry
  accredits its public half for this verifier's ``client_id``. Mode 0600.
- ``api-key.sha256``: SHA-256 (hex) of the staff API key; the key itself is only shown once.
- ``trust-config.json``: the relying party's registry configuration (log key, witnesses,
  quorum, governance keys), as ``civic-registry init`` writes it.

Trust comes from the registry (``registry_url``, synced in the background) or from an offline
bundle (``trust_bundle_file``), never both.

``client_id`` is a plain registry identifier (no ``:``): under OpenID4VP 1.0 section 5.9.2
("Fallback") a Client Identifier without a prefix refers to a pre-registered client, and the
trust registry *is* that out-of-band registration: wallets look the identifier up in their
synced trust state and verify the request object with the accredited key named by ``kid``.
The ``x509_*`` prefixes would need a PKI we do not run, and ``decentralized_identifier:`` a DID
document that would duplicate what the registry already states with witnesses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from civic.encoding import json_loads_object
from civic.errors import CivicError
from civic.jose import PrivateKey
from civic.logsync import LogConfig
from civic.policy import Policy, parse_policy_text
from civic_service.config import (
    SettingsError,
    load_token_digest,
    read_text,
    token_matches,
)
from civic_service.config import read_private_file as read_secret
from registry.client import log_config_from_json

SIGNING_KEY_FILE = "verifier.jwk"
API_KEY_HASH_FILE = "api-key.sha256"
API_KEY_FILE = "api.key"
TRUST_CONFIG_FILE = "trust-config.json"
DATABASE_FILE = "verifier.sqlite3"
PACKAGED_POLICIES = Path(__file__).resolve().parent / "policies"

_WEAK_KEYS = ("", "admin", "changeme", "change-me", "password", "secret", "test", "key")


class VerifierSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CIVIC_VERIFIER_", extra="forbid", populate_by_name=True
    )

    data_dir: Path = Path("verifier-data")
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "CIVIC_VERIFIER_DATABASE_URL"),
    )
    database_schema: str | None = None
    """PostgreSQL schema for the tables (replicas of one verifier share it)."""
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("CIVIC_REDIS_URL", "CIVIC_VERIFIER_REDIS_URL")
    )
    redis_prefix: str = "civic:verifier:"
    client_id: str = "counter.verifier.civic.example"
    public_url: str = "http://127.0.0.1:8800"
    """Base URL wallets reach this service at: request_uri and response_uri are built on it."""
    extra_audiences: list[str] = Field(default_factory=list)
    """Other KB-JWT audiences offline counters may show (the client_id is always accepted)."""
    signing_key_file: Path | None = None
    api_key_sha256: str | None = None
    policies_dir: Path | None = None
    registry_url: str | None = None
    trust_config_file: Path | None = None
    trust_bundle_file: Path | None = None
    trust_max_age: int = 3600
    sync_interval: float = 30.0
    request_ttl: int = 300
    challenge_ttl: int = 300
    max_body_bytes: int = 640 * 1024
    status_timeout: float = 5.0
    status_max_bytes: int = 1024 * 1024
    status_max_cache_seconds: int = 300
    clock_skew: int = 60
    host: str = "127.0.0.1"
    port: int = 8800

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / DATABASE_FILE).resolve()}"

    def path(self, configured: Path | None, default_name: str) -> Path:
        return configured if configured is not None else self.data_dir / default_name


@dataclass(frozen=True)
class VerifierRuntime:
    """Settings with their secrets loaded and checked: what the app and the CLI run on."""

    settings: VerifierSettings
    signer: PrivateKey = field(repr=False)
    kid: str
    api_key_sha256: bytes = field(repr=False)
    policies: dict[str, Policy]
    log_config: LogConfig | None

    @property
    def client_id(self) -> str:
        return self.settings.client_id

    @property
    def audiences(self) -> tuple[str, ...]:
        return (self.settings.client_id, *self.settings.extra_audiences)

    def api_key_matches(self, presented: str) -> bool:
        return token_matches(presented, self.api_key_sha256)


def read_private_file(path: Path, what: str) -> str:
    return read_secret(path, what, missing_hint="run `civic-verifier init`")


def load_signing_key(path: Path) -> tuple[PrivateKey, str]:
    try:
        document = json_loads_object(read_private_file(path, "signing key"), what="signing key")
        kid = document.pop("kid", None)
        key = PrivateKey.from_jwk(document)
    except CivicError as error:
        raise SettingsError(f"signing key file {path}: {error.detail}") from None
    if not isinstance(kid, str) or not kid:
        raise SettingsError(f"signing key file {path} has no kid")
    return key, kid


def load_policies(directory: Path) -> dict[str, Policy]:
    """Every ``*.json`` / ``*.yaml`` / ``*.yml`` policy in ``directory``, by policy id."""
    policies: dict[str, Policy] = {}
    try:
        files = sorted(directory.iterdir())
    except OSError:
        raise SettingsError(f"policies directory {directory} is missing") from None
    for path in files:
        suffix = path.suffix.lower()
        if suffix not in (".json", ".yaml", ".yml"):
            continue
        try:
            policy = parse_policy_text(
                read_text(path, "policy"), format="json" if suffix == ".json" else "yaml"
            )
        except CivicError as error:
            raise SettingsError(f"policy {path.name}: {error.detail}") from None
        if policy.id in policies:
            raise SettingsError(f"two policies have the id {policy.id}")
        policies[policy.id] = policy
    if not policies:
        raise SettingsError(f"no policy in {directory}")
    return policies


def load_log_config(path: Path) -> LogConfig:
    try:
        document: dict[str, Any] = json_loads_object(read_text(path, "trust config"))
        return log_config_from_json(document)
    except CivicError as error:
        raise SettingsError(f"trust config {path}: {error.detail}") from None


def _api_key_hash(settings: VerifierSettings) -> bytes:
    text = settings.api_key_sha256
    if text is None:
        text = read_text(settings.data_dir / API_KEY_HASH_FILE, "API key hash")
    return load_token_digest(text, "API key", _WEAK_KEYS)


def load_runtime(settings: VerifierSettings) -> VerifierRuntime:
    if ":" in settings.client_id or not settings.client_id.strip():
        raise SettingsError("client_id is a plain registry identifier without ':'")
    if settings.registry_url and settings.trust_bundle_file:
        raise SettingsError("use registry_url or trust_bundle_file, not both")
    for name in ("trust_max_age", "request_ttl", "challenge_ttl", "status_max_cache_seconds"):
        if getattr(settings, name) <= 0:
            raise SettingsError(f"{name} must be positive")
    if settings.max_body_bytes < 4096:
        raise SettingsError("max_body_bytes must be at least 4096")
    if not settings.public_url.startswith(("http://", "https://")):
        raise SettingsError("public_url must be an http(s) URL")
    signer, kid = load_signing_key(settings.path(settings.signing_key_file, SIGNING_KEY_FILE))
    config_path = settings.path(settings.trust_config_file, TRUST_CONFIG_FILE)
    log_config = load_log_config(config_path) if config_path.exists() else None
    if log_config is None and (settings.registry_url or settings.trust_bundle_file):
        raise SettingsError(f"trust config {config_path} is missing")
    return VerifierRuntime(
        settings=settings,
        signer=signer,
        kid=kid,
        api_key_sha256=_api_key_hash(settings),
        policies=load_policies(settings.policies_dir or PACKAGED_POLICIES),
        log_config=log_config,
    )
