"""The verifier's trust: a registry synced in the background, or an offline bundle.

docs/registry.md "Client sync and bundles": :func:`civic.logsync.sync` believes a checkpoint only
with the configured witness quorum, checks consistency with the last snapshot it trusted and
folds the new entries; a failed sync leaves the previous snapshot in force (and it grows stale:
verdicts become ``undetermined`` once it is older than ``trust_max_age``). A bundle is verified
from scratch once at start (:func:`civic.logsync.verify_bundle`) and judged fresh or stale at
every verdict by its witness timestamps.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from civic.clock import Clock, system_clock
from civic.errors import CivicError, ReasonCode, VerificationError
from civic.logsync import LogConfig, LogSource, TrustSnapshot, sync, verify_bundle
from civic.trust import AccreditedVerifier
from civic.verdict import AccreditedKey, SnapshotTrust

log = logging.getLogger("civic.verifier.trust")


class NoTrust:
    """Before the first successful sync: every verdict is undetermined."""

    checkpoint_size: int | None = None

    def is_stale(self, now: int) -> bool:
        return True

    def check_issuer_key(
        self, issuer: str, kid: str, vct: str, issued_at: int | None, now: int
    ) -> AccreditedKey:
        raise VerificationError(ReasonCode.ISSUER_UNKNOWN, "no trust state loaded yet")


@dataclass
class _Current:
    snapshot: TrustSnapshot | None = None
    synced_at: int | None = None
    last_error: str | None = None


class TrustProvider:
    """Holds the current snapshot; :meth:`view` is what each verdict uses."""

    def __init__(self, *, max_age: int, now: Clock = system_clock) -> None:
        self._max_age = max_age
        self._now = now
        self._current = _Current()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- sources ----------------------------------------------------------------------------

    def load_bundle(self, path: Path, config: LogConfig) -> None:
        try:
            data = path.read_bytes()
        except OSError:
            raise VerificationError(ReasonCode.MALFORMED_BUNDLE, f"cannot read {path}") from None
        snapshot = verify_bundle(data, config, now=self._now, max_age=self._max_age)
        with self._lock:
            self._current = _Current(snapshot, None, None)

    def sync_once(self, source: LogSource, config: LogConfig) -> TrustSnapshot:
        previous = self._current.snapshot
        try:
            snapshot = sync(source, config, previous, now=self._now)
        except CivicError as error:
            with self._lock:
                self._current.last_error = error.reason.value
            raise
        with self._lock:
            self._current = _Current(snapshot, self._now(), None)
        return snapshot

    def start_background_sync(
        self, source: LogSource, config: LogConfig, *, interval: float
    ) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.sync_once(source, config)
                except CivicError as error:
                    # The previous snapshot stays in force; it turns stale on its own.
                    log.warning("registry sync failed: %s", error.reason.value)
                except Exception:  # a bug must not stop future syncs
                    log.exception("registry sync crashed")
                self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, name="registry-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- reading ----------------------------------------------------------------------------

    def view(self) -> SnapshotTrust | NoTrust:
        current = self._current
        if current.snapshot is None:
            return NoTrust()
        return SnapshotTrust(current.snapshot, self._max_age, current.synced_at)

    def accredited_verifier(self, client_id: str) -> AccreditedVerifier | None:
        snapshot = self._current.snapshot
        return None if snapshot is None else snapshot.state.verifier(client_id)

    def check_verifier_request(
        self, client_id: str, vct: str, paths: list[tuple[str | int | None, ...]], now: int
    ) -> AccreditedVerifier:
        snapshot = self._current.snapshot
        if snapshot is None:
            raise VerificationError(ReasonCode.TRUST_STALE, "no trust state loaded yet")
        return snapshot.state.check_verifier_request(client_id, vct, paths, now)

    def status(self) -> dict[str, object]:
        current = self._current
        view = self.view()
        now = self._now()
        return {
            "checkpoint_size": view.checkpoint_size,
            "stale": view.is_stale(now),
            "synced_at": current.synced_at,
            "witness_age": current.snapshot.age_at(now) if current.snapshot else None,
            "last_error": current.last_error,
        }
