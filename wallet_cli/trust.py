"""The wallet's view of the trust registry (docs/registry.md, "Client sync and bundles").

The trust anchor, the relying-party ``trust-config.json`` (log key, witnesses and quorum,
governance keys), is kept in the sealed store (:class:`wallet_cli.model.TrustSettings`). The
synced state is kept beside it in ``trust-cache.json`` as an offline trust bundle
(``civic-trust-bundle/1``) and the time of the sync: public data, and verified from scratch
against the sealed anchor whenever it is loaded, so tampering with it can only make the wallet
sync again.

Before each receive and present the wallet syncs (:func:`civic.logsync.sync`: witnessed
checkpoint, consistency with the cached checkpoint, recomputed root, folded entries). When the
registry cannot be reached, or the sync fails, the cached state stays in force for
``max_age`` seconds after the last successful sync, with a warning; after that the wallet
refuses (``trust_stale``) rather than act on an old view of who is accredited.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from civic.clock import Clock, system_clock
from civic.encoding import json_dumps, json_loads_object
from civic.errors import CivicError, MalformedError, ReasonCode, UsageError, VerificationError
from civic.logsync import LogConfig, LogSource, TrustSnapshot, export_bundle, sync, verify_bundle
from civic.trust import TrustState
from wallet_cli.model import TrustSettings
from wallet_cli.store import atomic_write

CACHE_FILE: Final = "trust-cache.json"
CACHE_FORMAT: Final = "civic-wallet-trust-cache/1"

SourceFactory = Callable[[str], LogSource]


def log_config(settings: TrustSettings) -> LogConfig:
    from registry.client import log_config_from_json  # noqa: PLC0415 (httpx is slow to import)

    try:
        return log_config_from_json(settings.config)
    except CivicError as error:
        raise MalformedError(ReasonCode.WALLET_CORRUPTED, f"trust config: {error.detail}") from None


def trust_settings(
    config_document: Mapping[str, Any], registry_url: str | None, max_age: int
) -> TrustSettings:
    """Check a ``trust-config.json`` document before it becomes the wallet's anchor."""
    from registry.client import log_config_from_json  # noqa: PLC0415

    log_config_from_json(config_document)
    if max_age <= 0:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "the trust max age must be positive")
    if registry_url is not None:
        from wallet_cli.http import check_service_url  # noqa: PLC0415

        check_service_url(registry_url, "registry URL")
    return TrustSettings(registry_url=registry_url, config=dict(config_document), max_age=max_age)


@dataclass(frozen=True)
class WalletTrust:
    """The trust state to act on, with how it was obtained."""

    snapshot: TrustSnapshot
    synced_at: int
    synced_now: bool
    warning: str | None = None

    @property
    def state(self) -> TrustState:
        return self.snapshot.state

    @property
    def size(self) -> int:
        return self.snapshot.size


@dataclass(frozen=True)
class _Cached:
    snapshot: TrustSnapshot
    synced_at: int


def _load_cache(home: Path, config: LogConfig, now: Clock) -> tuple[_Cached | None, str | None]:
    path = home / CACHE_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError:
        return None, "the trust cache is unreadable"
    try:
        document = json_loads_object(data, what="trust cache")
        synced_at = document.get("synced_at")
        if document.get("format") != CACHE_FORMAT or type(synced_at) is not int:
            raise MalformedError(ReasonCode.MALFORMED_BUNDLE, "not a wallet trust cache")
        snapshot = verify_bundle(document.get("bundle", b""), config, now)
    except CivicError as error:
        return None, f"the trust cache was refused ({error.reason.value}) and is ignored"
    return _Cached(snapshot, synced_at), None


def _save_cache(home: Path, snapshot: TrustSnapshot, synced_at: int) -> None:
    document = {"format": CACHE_FORMAT, "synced_at": synced_at, "bundle": export_bundle(snapshot)}
    atomic_write(home / CACHE_FILE, (json_dumps(document) + "\n").encode("utf-8"))


def _http_source(url: str) -> LogSource:
    from registry.client import HttpLogSource  # noqa: PLC0415

    return HttpLogSource(url)


def fallback_allowed(synced_at: int, now: int, max_age: int) -> bool:
    return 0 <= now - synced_at <= max_age


def current_trust(
    home: Path,
    settings: TrustSettings | None,
    *,
    online: bool = True,
    now: Clock = system_clock,
    source_factory: SourceFactory = _http_source,
) -> WalletTrust:
    """Sync (when ``online``) and return the trust state; see the module doc for fallbacks."""
    if settings is None:
        raise VerificationError(
            ReasonCode.TRUST_STALE,
            "no trust registry configured (civic-wallet trust configure --registry-url URL"
            " --config trust-config.json)",
        )
    config = log_config(settings)
    cached, cache_problem = _load_cache(home, config, now)
    at = now()
    failure: CivicError | None = None
    if online and settings.registry_url:
        source = source_factory(settings.registry_url)
        try:
            previous = cached.snapshot if cached is not None else None
            snapshot = sync(source, config, previous, now, retain_entries=True)
        except CivicError as error:
            failure = error
        else:
            _save_cache(home, snapshot, at)
            return WalletTrust(snapshot, at, True, cache_problem)
        finally:
            close = getattr(source, "close", None)
            if callable(close):
                close()
    if cached is not None and fallback_allowed(cached.synced_at, at, settings.max_age):
        if failure is not None:
            warning = (
                f"registry sync failed ({failure.reason.value}: {failure.detail}); using the"
                f" trust state synced {at - cached.synced_at} s ago"
            )
        elif online:
            warning = "no registry URL configured; using the cached trust state"
        else:
            warning = None
        return WalletTrust(cached.snapshot, cached.synced_at, False, warning)
    if failure is not None:
        raise VerificationError(
            failure.reason
            if failure.reason in (ReasonCode.LOG_FORK, ReasonCode.LOG_ROLLBACK)
            else ReasonCode.TRUST_STALE,
            f"registry sync failed ({failure.reason.value}: {failure.detail}) and no trust state"
            f" synced within {settings.max_age} s is available",
        )
    raise VerificationError(
        ReasonCode.TRUST_STALE,
        "no trust state synced recently enough"
        + (f" ({cache_problem})" if cache_problem else "")
        + ("" if online else "; go online and run `civic-wallet trust sync`"),
    )


def cached_trust(home: Path, settings: TrustSettings | None, *, now: Clock) -> WalletTrust | None:
    """The cached state without any network, or ``None`` (for offline lookups like ``qr``)."""
    if settings is None:
        return None
    try:
        return current_trust(home, settings, online=False, now=now)
    except CivicError:
        return None
