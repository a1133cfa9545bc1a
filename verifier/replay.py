"""Nonce and replay state shared by verifier replicas (OpenID4VP 1.0 section 14.1).

A nonce is *issued* by this verifier (the nonce of an OpenID4VP request, or a challenge an
offline counter displays) and *spent* at most once, atomically, whichever replica sees the
presentation first:

- database (default): ``UPDATE verifier_nonces SET used_at = now WHERE nonce = :n AND used_at IS
  NULL AND expires_at > now``; one row changes for exactly one caller (PostgreSQL re-checks the
  condition after waiting for a concurrent writer; SQLite serialises writers);
- Redis (``CIVIC_REDIS_URL``): ``SET <prefix>used:<n> 1 NX EX ttl`` succeeds for exactly one
  caller; the nonce must also still be issued (``<prefix>issued:<n>``, expiring with its TTL).

:meth:`ReplayStore.consume` returns False for a nonce already spent and raises
``nonce_unknown`` for one never issued here or expired. With ``require_issued=False`` (the
offline CLI, which issues nothing) a nonce is simply spendable once (``INSERT`` unique /
``SET NX``).
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from civic.errors import ReasonCode, VerificationError
from verifier.db import nonces_table

DEFAULT_TTL = 300
PURGE_AFTER = 3600


class ReplayStore(Protocol):
    def issue(self, nonce: str, *, now: int, ttl: int) -> None: ...

    def consume(self, nonce: str, *, now: int, require_issued: bool = True) -> bool: ...


def _unknown() -> VerificationError:
    return VerificationError(ReasonCode.NONCE_UNKNOWN, "nonce not issued by this verifier")


class SqlReplayStore:
    def __init__(self, engine: Engine, *, ttl: int = DEFAULT_TTL) -> None:
        self._engine = engine
        self._ttl = ttl

    def issue(self, nonce: str, *, now: int, ttl: int) -> None:
        with self._engine.begin() as connection:
            # Spent or expired nonces are kept for a while (a late replay still reads as a
            # replay), then dropped so the table stays small.
            connection.execute(
                delete(nonces_table).where(nonces_table.c.expires_at < now - PURGE_AFTER)
            )
            connection.execute(
                insert(nonces_table).values(nonce=nonce, expires_at=now + ttl, used_at=None)
            )

    def consume(self, nonce: str, *, now: int, require_issued: bool = True) -> bool:
        table = nonces_table
        if not require_issued:
            try:
                with self._engine.begin() as connection:
                    connection.execute(
                        insert(table).values(nonce=nonce, expires_at=now + self._ttl, used_at=now)
                    )
            except IntegrityError:
                return False
            return True
        with self._engine.begin() as connection:
            changed = connection.execute(
                update(table)
                .where(table.c.nonce == nonce, table.c.used_at.is_(None), table.c.expires_at > now)
                .values(used_at=now)
            ).rowcount
            if changed == 1:
                return True
            row = connection.execute(select(table.c.used_at).where(table.c.nonce == nonce)).first()
        if row is not None and row.used_at is not None:
            return False
        raise _unknown()


class RedisReplayStore:
    def __init__(self, client: object, *, prefix: str, ttl: int = DEFAULT_TTL) -> None:
        from redis import Redis  # noqa: PLC0415 -- only replicas sharing a cache need it

        if not isinstance(client, Redis):
            raise TypeError("a redis.Redis client is needed")
        self._redis = client
        self._prefix = prefix
        self._ttl = ttl

    @classmethod
    def from_url(cls, url: str, *, prefix: str, ttl: int = DEFAULT_TTL) -> RedisReplayStore:
        from redis import Redis  # noqa: PLC0415

        return cls(Redis.from_url(url, socket_timeout=5), prefix=prefix, ttl=ttl)

    def issue(self, nonce: str, *, now: int, ttl: int) -> None:
        self._redis.set(f"{self._prefix}issued:{nonce}", b"1", ex=ttl)

    def consume(self, nonce: str, *, now: int, require_issued: bool = True) -> bool:
        issued_key = f"{self._prefix}issued:{nonce}"
        # Read the TTL before spending: the used marker lives as long as the nonce could.
        ttl = self._redis.ttl(issued_key) if require_issued else self._ttl
        if not isinstance(ttl, int) or ttl <= 0:
            if self._redis.exists(f"{self._prefix}used:{nonce}"):
                return False
            raise _unknown()
        return bool(self._redis.set(f"{self._prefix}used:{nonce}", b"1", nx=True, ex=ttl))

    def close(self) -> None:
        self._redis.close()


class MemoryReplayStore:
    """One process only (the offline CLI, tests)."""

    def __init__(self) -> None:
        self._issued: dict[str, int] = {}
        self._used: set[str] = set()

    def issue(self, nonce: str, *, now: int, ttl: int) -> None:
        self._issued[nonce] = now + ttl

    def consume(self, nonce: str, *, now: int, require_issued: bool = True) -> bool:
        if nonce in self._used:
            return False
        if require_issued and self._issued.get(nonce, 0) <= now:
            raise _unknown()
        self._used.add(nonce)
        return True
