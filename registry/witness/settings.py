"""Witness configuration (docs/registry.md, "Witness"; C2SP tlog-witness).

Environment variables, prefix ``CIVIC_WITNESS_``:

- ``KEY_FILE`` (required): the witness's ``cosignature/v1`` signer key (``PRIVATE+KEY+...``,
  type 0x04), written by ``civic-registry witness init`` with mode 0600. A key file readable or
  writable by group or others is refused.
- ``DATABASE_URL``: SQLAlchemy URL of the state database; default
  ``sqlite:///civic-witness.sqlite3``. ``postgresql://`` URLs use psycopg 3.
- ``DATABASE_SCHEMA``: optional PostgreSQL schema for the table.
- ``LOGS``: JSON object ``{"<origin>": "<log vkey>" | ["<vkey>", ...]}``, and/or
- ``LOGS_FILE``: a ``.json`` or ``.toml`` file with that object under a ``logs`` key, e.g.
  ``[logs]`` / ``"registry.civic.example/seoul" = "registry.civic.example/seoul+1a2b3c4d+AQ..."``.
  The two are merged; an origin in both is refused. At least one log is required.
- ``MAX_BODY_BYTES``: bound on an add-checkpoint body (default 64 KiB; larger gets 413).

Log keys are Ed25519 note keys (signed-note type 0x01). Nothing here ever prints the signer key
or the database URL (which may hold a password): errors name the setting and the file only.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from civic.checkpoint import CosignatureSigner, generate_cosignature_key
from civic.clock import Clock, RandomBytes, system_clock, system_random
from civic.encoding import json_loads_object
from civic.errors import CivicError
from civic.note import MAX_NOTE_BYTES, NoteVerifier
from civic.witness import MAX_REQUEST_BYTES
from civic_service.config import SettingsError, read_private_file, write_private_file

DEFAULT_DATABASE_URL = "sqlite:///civic-witness.sqlite3"


class WitnessSettingsError(SettingsError):
    """The witness cannot start with this configuration."""


class WitnessSettings(BaseSettings):
    """Environment configuration; see the module doc for each ``CIVIC_WITNESS_*`` variable."""

    model_config = SettingsConfigDict(env_prefix="CIVIC_WITNESS_", extra="forbid")

    key_file: Path
    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    database_schema: str | None = None
    logs: dict[str, str | list[str]] = Field(default_factory=dict)
    logs_file: Path | None = None
    max_body_bytes: int = Field(default=MAX_REQUEST_BYTES, ge=1024, le=MAX_NOTE_BYTES)


def load_settings(**overrides: Any) -> WitnessSettings:
    """Read the environment (``overrides`` win); errors name fields, never their values."""
    try:
        return WitnessSettings(**overrides)
    except ValidationError as error:
        problems = "; ".join(
            f"CIVIC_WITNESS_{'_'.join(str(part) for part in problem['loc']).upper()}: "
            f"{problem['msg']}"
            for problem in error.errors()
        )
        raise WitnessSettingsError(f"invalid witness settings: {problems}") from None


@dataclass(frozen=True)
class WitnessConfig:
    """Settings resolved: the signer, the trusted log keys by origin, limits and the clock."""

    signers: tuple[CosignatureSigner, ...]
    logs: Mapping[str, tuple[NoteVerifier, ...]]
    max_body_bytes: int = MAX_REQUEST_BYTES
    now: Clock = system_clock
    origin_by_hash: Mapping[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.signers:
            raise WitnessSettingsError("the witness needs a signer key")
        if not self.logs:
            raise WitnessSettingsError("the witness needs at least one log")
        hashes = {origin_hash(origin): origin for origin in self.logs}
        object.__setattr__(self, "origin_by_hash", hashes)

    @property
    def name(self) -> str:
        return self.signers[0].name


def origin_hash(origin: str) -> str:
    """tlog-witness monitoring path component: lowercase hex SHA-256 of the origin line."""
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()


def read_signer_key(path: Path, now: Clock = system_clock) -> CosignatureSigner:
    """Load the witness key, refusing a file that group or others may access."""
    try:
        text = read_private_file(
            path, "witness key", missing_hint="run `civic-registry witness init`"
        )
    except SettingsError as error:
        raise WitnessSettingsError(error.detail) from None
    try:
        return CosignatureSigner.from_skey(text.strip(), now)
    except CivicError:
        # The decoder's detail is generic, but say only what is expected: the file is secret.
        raise WitnessSettingsError(
            f"witness key file {path} does not hold a cosignature/v1 signer key"
        ) from None


def write_signer_key(path: Path, name: str, random: RandomBytes = system_random) -> str:
    """Create a fresh witness key at ``path`` (mode 0600, never overwriting); return its vkey."""
    skey, vkey = generate_cosignature_key(name, random)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        write_private_file(path, skey + "\n")
    except FileExistsError:
        raise WitnessSettingsError(f"witness key file {path} already exists") from None
    except OSError as error:
        raise WitnessSettingsError(
            f"cannot create witness key file {path}: {error.strerror}"
        ) from None
    return vkey


def _read_logs_file(path: Path) -> dict[str, Any]:
    if path.suffix not in (".json", ".toml"):
        raise WitnessSettingsError(f"logs file {path} must end in .json or .toml")
    try:
        data = path.read_bytes()
    except OSError:
        raise WitnessSettingsError(f"logs file {path} is missing or unreadable") from None
    try:
        if path.suffix == ".toml":
            document: dict[str, Any] = tomllib.loads(data.decode("utf-8"))
        else:
            document = json_loads_object(data, what="logs file")
    except (CivicError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        raise WitnessSettingsError(f"logs file {path} is not valid JSON/TOML") from None
    if set(document) != {"logs"} or not isinstance(document["logs"], dict):
        raise WitnessSettingsError(f"logs file {path} must hold exactly a 'logs' table")
    return document["logs"]


def _log_verifiers(origin: str, keys: object) -> tuple[NoteVerifier, ...]:
    if not isinstance(origin, str) or not origin:
        raise WitnessSettingsError("a log origin must be a non-empty string")
    vkeys = [keys] if isinstance(keys, str) else keys
    if not isinstance(vkeys, list) or not vkeys or not all(isinstance(k, str) for k in vkeys):
        raise WitnessSettingsError(f"log {origin!r} needs one or more vkey strings")
    verifiers: list[NoteVerifier] = []
    for vkey in vkeys:
        try:
            verifier = NoteVerifier.from_vkey(vkey)
        except CivicError as error:
            raise WitnessSettingsError(
                f"log {origin!r}: not an Ed25519 note vkey ({error.detail})"
            ) from None
        if any((v.name, v.key_id) == (verifier.name, verifier.key_id) for v in verifiers):
            raise WitnessSettingsError(f"log {origin!r}: a key is listed twice")
        verifiers.append(verifier)
    return tuple(verifiers)


def load_config(settings: WitnessSettings, now: Clock = system_clock) -> WitnessConfig:
    """Resolve ``settings``: load the key, parse every log key. Raises WitnessSettingsError."""
    signer = read_signer_key(settings.key_file, now)
    entries: dict[str, Any] = dict(settings.logs)
    if settings.logs_file is not None:
        for origin, keys in _read_logs_file(settings.logs_file).items():
            if origin in entries:
                raise WitnessSettingsError(f"log {origin!r} is configured twice")
            entries[origin] = keys
    logs = {origin: _log_verifiers(origin, keys) for origin, keys in entries.items()}
    if not logs:
        raise WitnessSettingsError(
            "no logs configured: set CIVIC_WITNESS_LOGS or CIVIC_WITNESS_LOGS_FILE"
        )
    return WitnessConfig((signer,), logs, settings.max_body_bytes, now)
