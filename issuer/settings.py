"""Issuer service settings (issue 4).

Plain values come from the environment with the prefix ``CIVIC_ISSUER_`` (``DATABASE_URL`` for
the database); the data directory written by ``civic-issuer init`` holds the signing key files
(``keys/``, mode 0600, sealed when a passphrase is set), the SQLite database by default, and
``trust-config.json``, the registry's relying-party configuration (``civic-registry init``
writes it: log key, witnesses, quorum, governance keys).

:func:`load_runtime` refuses to start on values that would make the service unsafe: a weak or
well-known key passphrase, an issuer identifier that is not an https URL (plain http only on
loopback, for local runs), status lists below the herd-privacy size, or time limits in the
wrong order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from civic.credentials import CREDENTIAL_TYPES
from civic.errors import CivicError
from civic_service.config import SettingsError
from issuer.keys import check_passphrase
from issuer.statuslists import MIN_LIST_SIZE

KEYS_DIR: Final = "keys"
DATABASE_FILE: Final = "issuer.sqlite3"
TRUST_CONFIG_FILE: Final = "trust-config.json"
_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})


class IssuerSettings(BaseSettings):
    """Environment configuration (``CIVIC_ISSUER_*``; ``DATABASE_URL`` for PostgreSQL)."""

    model_config = SettingsConfigDict(
        env_prefix="CIVIC_ISSUER_", extra="forbid", populate_by_name=True
    )

    data_dir: Path = Path("issuer-data")
    issuer_url: str = "http://127.0.0.1:8600"
    """The Credential Issuer Identifier (OpenID4VCI 1.0 section 12.2.1): ``iss`` of every
    credential and the base of every endpoint. https, no path, query or fragment."""
    name_en: str = "Civic credential issuer"
    name_ko: str = "시민 증명서 발급 기관"
    vcts: list[str] = Field(default_factory=lambda: list(CREDENTIAL_TYPES))
    """The credential types this agency issues."""

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "CIVIC_ISSUER_DATABASE_URL"),
    )
    database_schema: str | None = None
    """PostgreSQL schema for the issuer tables (default: the connection's search_path)."""

    key_passphrase: SecretStr | None = None
    key_passphrase_file: Path | None = None
    """File holding the key passphrase (first line); an alternative to ``key_passphrase``."""

    registry_url: str = "http://127.0.0.1:8700"
    trust_config_file: Path | None = None
    trust_refresh_seconds: int = 60
    trust_max_age_seconds: int = 3600

    pre_authorized_code_ttl: int = 600
    access_token_ttl: int = 300
    c_nonce_ttl: int = 300
    proof_max_age: int = 300
    clock_skew: int = 60
    tx_code_length: int = 6
    tx_code_max_attempts: int = 5
    credential_lifetime: int = 365 * 86400
    batch_size: int = 10

    status_list_size: int = MIN_LIST_SIZE
    status_list_ttl: int = 300
    status_list_lifetime: int = 86400

    max_body_bytes: int = 64 * 1024
    host: str = "127.0.0.1"
    port: int = 8600
    workers: int = 1
    """Server processes sharing the port (``civic-issuer serve``)."""

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / DATABASE_FILE).resolve()}"

    def keys_dir(self) -> Path:
        return self.data_dir / KEYS_DIR

    def trust_config_path(self) -> Path:
        return (
            self.trust_config_file
            if self.trust_config_file is not None
            else self.data_dir / TRUST_CONFIG_FILE
        )


@dataclass(frozen=True)
class IssuerRuntime:
    """Checked settings and the secrets they point at: what the app and the CLI run on."""

    settings: IssuerSettings
    issuer_url: str
    database_url: str
    vcts: tuple[str, ...]
    key_passphrase: str | None

    def __repr__(self) -> str:
        return f"IssuerRuntime(issuer_url={self.issuer_url!r}, vcts={self.vcts!r})"

    @property
    def status_base_url(self) -> str:
        return self.issuer_url + "/status"


def check_issuer_url(url: str) -> str:
    """An https URL without path, query, fragment or user info (http only on loopback)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        raise SettingsError("issuer_url does not parse") from None
    if not host or parts.username or parts.password or parts.query or parts.fragment:
        raise SettingsError("issuer_url must be scheme://host[:port] only")
    if parts.path not in ("",):
        raise SettingsError("issuer_url must not have a path (serve the issuer at a host root)")
    if parts.scheme == "https" or (parts.scheme == "http" and host in _LOOPBACK_HOSTS):
        return url
    raise SettingsError("issuer_url must be https (plain http only on loopback, for local runs)")


def _passphrase(settings: IssuerSettings) -> str | None:
    if settings.key_passphrase is not None and settings.key_passphrase_file is not None:
        raise SettingsError("give key_passphrase or key_passphrase_file, not both")
    if settings.key_passphrase is not None:
        value = settings.key_passphrase.get_secret_value()
    elif settings.key_passphrase_file is not None:
        try:
            lines = settings.key_passphrase_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            raise SettingsError("the key passphrase file cannot be read") from None
        value = lines[0] if lines else ""
    else:
        return None
    try:
        check_passphrase(value)
    except CivicError as error:
        raise SettingsError(error.detail) from None
    return value


def load_runtime(settings: IssuerSettings) -> IssuerRuntime:
    issuer_url = check_issuer_url(settings.issuer_url)
    vcts = tuple(dict.fromkeys(settings.vcts))
    if not vcts or any(vct not in CREDENTIAL_TYPES for vct in vcts):
        raise SettingsError("vcts must name civic credential types")
    positive = {
        "pre_authorized_code_ttl": settings.pre_authorized_code_ttl,
        "access_token_ttl": settings.access_token_ttl,
        "c_nonce_ttl": settings.c_nonce_ttl,
        "proof_max_age": settings.proof_max_age,
        "credential_lifetime": settings.credential_lifetime,
        "status_list_ttl": settings.status_list_ttl,
        "trust_refresh_seconds": settings.trust_refresh_seconds,
    }
    for name, value in positive.items():
        if value <= 0:
            raise SettingsError(f"{name} must be positive")
    if settings.pre_authorized_code_ttl > 86400:
        raise SettingsError("pre_authorized_code_ttl must be short (at most a day)")
    if settings.access_token_ttl > 3600 or settings.c_nonce_ttl > 3600:
        raise SettingsError("access tokens and nonces live at most an hour")
    if not 0 <= settings.clock_skew <= 300:
        raise SettingsError("clock_skew must be between 0 and 300 seconds")
    if not 6 <= settings.tx_code_length <= 12:
        raise SettingsError("tx_code_length must be between 6 and 12 digits")
    if not 1 <= settings.tx_code_max_attempts <= 10:
        raise SettingsError("tx_code_max_attempts must be between 1 and 10")
    if not 2 <= settings.batch_size <= 100:
        raise SettingsError("batch_size must be between 2 and 100")
    if settings.status_list_size < MIN_LIST_SIZE:
        raise SettingsError(f"status lists hold at least {MIN_LIST_SIZE} entries (herd privacy)")
    if settings.status_list_size % 4:
        raise SettingsError("status_list_size must be a multiple of 4 (two bits per entry)")
    if settings.status_list_lifetime <= settings.status_list_ttl:
        raise SettingsError("status_list_lifetime must exceed status_list_ttl")
    if settings.trust_max_age_seconds < settings.trust_refresh_seconds:
        raise SettingsError("trust_max_age_seconds must be at least trust_refresh_seconds")
    if not 1 <= settings.workers <= 64:
        raise SettingsError("workers must be between 1 and 64")
    if settings.max_body_bytes < 4096:
        raise SettingsError("max_body_bytes must be at least 4096")
    return IssuerRuntime(
        settings=settings,
        issuer_url=issuer_url,
        database_url=settings.resolved_database_url(),
        vcts=vcts,
        key_passphrase=_passphrase(settings),
    )
