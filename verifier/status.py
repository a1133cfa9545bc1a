"""Status List Token fetching for the verdict (draft-ietf-oauth-status-list sections 8.1, 13.7).

:class:`HttpStatusFetcher` implements ``civic.verdict.StatusFetcher``: an HTTP GET with
``Accept: application/statuslist+jwt``, a byte cap on the answer (read as a stream, so a huge
answer is cut off, not buffered), no redirects (a list is fetched only from the URL under the
issuer's accredited base), and a cache that keeps each token for its ``ttl`` claim (section
5.1: how long it may be cached), capped by the token's ``exp`` and by a configured maximum.
The token is *not* trusted here: the verdict verifies it with the issuer's accredited key on
every use; the payload is only peeked at to learn how long to cache it.

Any failure raises ``status_list_unavailable``; failures are not cached, and a token the
verdict finds does not verify is dropped from the cache (:meth:`HttpStatusFetcher.forget`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import httpx

from civic.clock import Clock, system_clock
from civic.encoding import b64url_decode, json_loads_object
from civic.errors import CivicError, ReasonCode, VerificationError

DEFAULT_CACHE_SECONDS = 60
MAX_ENTRIES = 4096


def _unavailable(detail: str) -> VerificationError:
    return VerificationError(ReasonCode.STATUS_LIST_UNAVAILABLE, detail)


@dataclass(frozen=True)
class _Cached:
    token: str
    until: int


def cache_lifetime(token: str, *, now: int, maximum: int) -> int:
    """Seconds ``token`` may be cached: its ``ttl`` (default 60 s), at most until ``exp`` and
    at most ``maximum``; 0 for a token whose payload cannot be read."""
    try:
        payload = json_loads_object(b64url_decode(token.split(".")[1]))
    except (CivicError, IndexError):
        return 0
    ttl = payload.get("ttl")
    seconds = ttl if type(ttl) is int and ttl > 0 else DEFAULT_CACHE_SECONDS
    exp = payload.get("exp")
    if type(exp) is int:
        seconds = min(seconds, exp - now)
    return max(0, min(seconds, maximum))


class HttpStatusFetcher:
    def __init__(
        self,
        *,
        client: httpx.Client | None = None,
        timeout: float = 5.0,
        max_bytes: int = 1024 * 1024,
        max_cache_seconds: int = 300,
        now: Clock = system_clock,
    ) -> None:
        self._owned = client is None
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=False)
        self._max_bytes = max_bytes
        self._max_cache = max_cache_seconds
        self._now = now
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._owned:
            self._client.close()

    def cached(self, uri: str) -> str | None:
        """The token for ``uri`` if the cache holds a fresh one, without fetching."""
        cached = self._cache.get(uri)
        if cached is not None and cached.until > self._now():
            return cached.token
        return None

    def fetch(self, uri: str) -> str:
        now = self._now()
        with self._lock:
            cached = self._cache.get(uri)
        if cached is not None and cached.until > now:
            return cached.token
        token = self._download(uri)
        lifetime = cache_lifetime(token, now=now, maximum=self._max_cache)
        if lifetime > 0:
            with self._lock:
                if len(self._cache) >= MAX_ENTRIES:
                    self._cache.clear()
                self._cache[uri] = _Cached(token, now + lifetime)
        return token

    def forget(self, uri: str, token: str) -> None:
        """Drop ``token`` from the cache (the verdict found it does not verify), so that a
        forged or broken answer is not served again for its claimed ``ttl``."""
        with self._lock:
            cached = self._cache.get(uri)
            if cached is not None and cached.token == token:
                del self._cache[uri]

    def _download(self, uri: str) -> str:
        try:
            with self._client.stream(
                "GET", uri, headers={"Accept": "application/statuslist+jwt"}
            ) as response:
                if response.status_code != 200:
                    raise _unavailable(f"status list answered HTTP {response.status_code}")
                chunks: list[bytes] = []
                total = 0
                for chunk in response.iter_bytes():
                    total += len(chunk)
                    if total > self._max_bytes:
                        raise _unavailable("status list answer over the size cap")
                    chunks.append(chunk)
        except httpx.HTTPError as error:
            raise _unavailable(f"status list fetch failed: {type(error).__name__}") from None
        try:
            return b"".join(chunks).decode("ascii").strip()
        except UnicodeDecodeError:
            raise _unavailable("status list answer is not a compact JWT") from None
