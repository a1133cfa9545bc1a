"""The issuer's view of the trust registry (docs/registry.md; issue 4, "Keys").

Before every signature the issuer asks the registry's trust state whether the key may sign
this ``vct`` now (:meth:`civic.trust.TrustState.check_issuer_key` with ``issued_at = now``), and
whether the registry holds *this* public key under the kid: a key the registry does not show as
accredited for the type is never used, so the issuer cannot hand out credentials that every
verifier would reject. Among several usable keys the newest wins, which is how a rotation takes
effect: the new key signs as soon as the registry accredits it, and the old one stops once the
registry retires it.

Where the state comes from is a :class:`TrustSource`:

- :class:`RegistryTrust` syncs with the registry through :func:`civic.logsync.sync` (witnessed
  checkpoint, consistency with the last snapshot, recomputed root, folded entries) every
  ``refresh_interval`` seconds; a failed sync keeps the previous snapshot, and a snapshot older
  than ``max_age`` (counted from the last successful sync) is refused (``trust_stale``). The
  service syncs ahead of time in the background (:meth:`RegistryTrust.refresh_ahead`), so a
  request syncs itself only when that has not happened;
- :class:`FixedTrust` hands out a state verified elsewhere (an offline trust bundle checked with
  :func:`civic.logsync.verify_bundle`, or a state folded from signed entries).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from civic.errors import CivicError, ReasonCode, VerificationError
from civic.jose import PublicKey, Signer
from civic.logsync import LogConfig, LogSource, TrustSnapshot, sync
from civic.trust import IssuerKey, TrustState

log = logging.getLogger("issuer.trust")


class KeyedSigner(Signer, Protocol):
    """A signer that knows the kid the registry lists its public key under."""

    @property
    def kid(self) -> str: ...


class TrustSource(Protocol):
    def trust_state(self, now: int) -> TrustState:
        """The trust state to act on at ``now``; raises when there is none fresh enough."""
        ...


class FixedTrust:
    """A trust state verified elsewhere (an offline bundle, or entries folded by the caller)."""

    def __init__(self, state: TrustState) -> None:
        self._state = state

    def trust_state(self, now: int) -> TrustState:
        return self._state


class RegistryTrust:
    """A trust state kept in sync with the registry log, refreshed on demand."""

    def __init__(
        self,
        source: LogSource,
        config: LogConfig,
        *,
        refresh_interval: int = 60,
        max_age: int = 3600,
    ) -> None:
        if refresh_interval <= 0 or max_age < refresh_interval:
            raise ValueError("need 0 < refresh_interval <= max_age")
        self._source = source
        self._config = config
        self._refresh_interval = refresh_interval
        self._max_age = max_age
        self._snapshot: TrustSnapshot | None = None
        self._synced_at: int | None = None
        self._attempted_at: int | None = None
        self._lock = threading.Lock()

    @property
    def refresh_interval(self) -> int:
        return self._refresh_interval

    def refresh(self, now: int) -> TrustSnapshot:
        """Sync now; on failure the previous snapshot stays and the error is raised."""
        with self._lock:
            return self._refresh_locked(now)

    def refresh_ahead(self, now: int, *, margin: int) -> None:
        """Sync if :meth:`trust_state` would sync within ``margin`` seconds.

        The app calls this from the background, so that requests find a fresh snapshot and
        do not wait on the registry themselves; a failure is logged and the snapshot stays.
        The first sync is left to the first use: this only keeps an existing snapshot fresh.
        """
        with self._lock:
            last = self._attempted_at
            if last is None or now - last < self._refresh_interval - margin:
                return
            # A failure is logged by _refresh_locked; requests keep the previous snapshot.
            with contextlib.suppress(CivicError):
                self._refresh_locked(now)

    def _refresh_locked(self, now: int) -> TrustSnapshot:
        self._attempted_at = now
        try:
            snapshot = sync(self._source, self._config, self._snapshot, now=lambda: now)
        except CivicError as error:
            # Reason code only: the registry holds no personal data, but keep logs uniform.
            log.warning("registry sync failed: %s", error.reason.value)
            raise
        self._snapshot = snapshot
        self._synced_at = now
        return snapshot

    def trust_state(self, now: int) -> TrustState:
        with self._lock:
            due = self._attempted_at is None or now - self._attempted_at >= self._refresh_interval
            if due:
                try:
                    self._refresh_locked(now)
                except CivicError:
                    if self._snapshot is None:
                        raise
            if self._snapshot is None or self._synced_at is None:
                raise VerificationError(ReasonCode.LOG_UNAVAILABLE, "no registry snapshot yet")
            if now - self._synced_at > self._max_age:
                raise VerificationError(
                    ReasonCode.TRUST_STALE, "the registry has not been reachable for too long"
                )
            return self._snapshot.state


class Accreditation:
    """Checks the issuer's keys against the registry before they sign."""

    def __init__(self, source: TrustSource, issuer: str, *, status_base_url: str) -> None:
        self._source = source
        self.issuer = issuer
        self.status_base_url = status_base_url

    @property
    def source(self) -> TrustSource:
        return self._source

    def check(self, kid: str, public_key: PublicKey, vct: str, now: int) -> IssuerKey:
        """The registry's record of ``kid`` if it may sign ``vct`` now, else raise."""
        state = self._source.trust_state(now)
        key = state.check_issuer_key(self.issuer, kid, vct, now, now)
        if key.public_key != public_key:
            raise VerificationError(
                ReasonCode.KEY_UNKNOWN, "the registry lists another public key under this kid"
            )
        if key.status_base_url.rstrip("/") != self.status_base_url.rstrip("/"):
            raise VerificationError(
                ReasonCode.STATUS_LIST_SUBJECT_MISMATCH,
                "the registry's status_base_url for this key is not this issuer's",
            )
        return key

    def choose(self, signers: Sequence[KeyedSigner], vct: str, now: int) -> KeyedSigner:
        """The first (newest) signer the registry accredits for ``vct`` now."""
        first_error: VerificationError | None = None
        for signer in signers:
            try:
                self.check(signer.kid, signer.public_key, vct, now)
            except VerificationError as error:
                first_error = first_error or error
                continue
            return signer
        if first_error is not None:
            raise first_error
        raise VerificationError(ReasonCode.KEY_UNKNOWN, "the issuer has no signing key")

    def choose_any(
        self, signers: Sequence[KeyedSigner], vcts: Sequence[str], now: int
    ) -> KeyedSigner:
        """The newest signer accredited for any of ``vcts`` (for status list tokens)."""
        first_error: VerificationError | None = None
        for signer in signers:
            for vct in vcts:
                try:
                    self.check(signer.kid, signer.public_key, vct, now)
                except VerificationError as error:
                    first_error = first_error or error
                    continue
                return signer
        if first_error is not None:
            raise first_error
        raise VerificationError(ReasonCode.KEY_UNKNOWN, "the issuer has no signing key")
