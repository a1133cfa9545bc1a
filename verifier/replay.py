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
offline CLI, which issues nothing) a nonce is simply spendable once (``INSERT ... ON CONFLICT
DO NOTHING`` / ``SET NX``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from civic.errors import ReasonCode, VerificationError
from verifier.db import Writer, nonces_table, sqlite_driver

DEFAULT_TTL = 300
PURGE_AFTER = 3600
SpendOutcome = Literal["spent", "reused", "unknown"]


class ReplayStore(Protocol):
    def issue(self, nonce: str, *, now: int, ttl: int) -> None: ...

    def issue_many(self, nonces: list[str], *, now: int, ttl: int) -> None: ...

    def consume(self, nonce: str, *, now: int, require_issued: bool = True) -> bool: ...


def _unknown() -> VerificationError:
    return VerificationError(ReasonCode.NONCE_UNKNOWN, "nonce not issued by this verifier")


_NONCES = nonces_table
# Built once: a statement made per call costs more than running it.
_PURGE = delete(_NONCES).where(_NONCES.c.expires_at < bindparam("p_before"))
_ISSUE = insert(_NONCES).values(
    nonce=bindparam("p_nonce"), expires_at=bindparam("p_expires_at"), used_at=None
)
_SPEND = (
    update(_NONCES)
    .where(
        _NONCES.c.nonce == bindparam("p_nonce"),
        _NONCES.c.used_at.is_(None),
        _NONCES.c.expires_at > bindparam("p_now"),
    )
    .values(used_at=bindparam("p_now"))
)
_USED_AT = select(_NONCES.c.used_at).where(_NONCES.c.nonce == bindparam("p_nonce"))
_UNISSUED_ROW: dict[str, Any] = {
    "nonce": bindparam("p_nonce"),
    "expires_at": bindparam("p_expires_at"),
    "used_at": bindparam("p_now"),
}
_SPEND_UNISSUED = {
    "sqlite": sqlite_insert(_NONCES).values(_UNISSUED_ROW).on_conflict_do_nothing(),
    "postgresql": postgresql_insert(_NONCES).values(_UNISSUED_ROW).on_conflict_do_nothing(),
}


class SqlReplayStore:
    """The database replay store; every write goes through the :class:`Writer`, so on SQLite
    a spend is answered only once it is committed (and synced)."""

    def __init__(self, writer: Writer, *, ttl: int = DEFAULT_TTL) -> None:
        self._writer = writer
        self._ttl = ttl
        self._spend_unissued_statement = _SPEND_UNISSUED[writer.engine.dialect.name]

    def issue(self, nonce: str, *, now: int, ttl: int) -> None:
        self.issue_many([nonce], now=now, ttl=ttl)

    def issue_many(self, nonces: list[str], *, now: int, ttl: int) -> None:
        """Issue several nonces in one transaction (a counter taking a batch of challenges)."""
        if not nonces:
            return

        def write(connection: Connection) -> None:
            # Spent or expired nonces are kept for a while (a late replay still reads as a
            # replay), then dropped so the table stays small.
            connection.execute(_PURGE, {"p_before": now - PURGE_AFTER})
            connection.execute(_ISSUE, [{"p_nonce": n, "p_expires_at": now + ttl} for n in nonces])

        self._writer.run(write)

    def consume(
        self,
        nonce: str,
        *,
        now: int,
        require_issued: bool = True,
        also: Callable[[Connection], object] | None = None,
    ) -> bool:
        """Spend ``nonce``; ``also`` runs in the same transaction when this call spent it (the
        verdict's audit row, committed with the spend)."""
        if not require_issued:
            return self._writer.run(lambda connection: self._spend_unissued(connection, nonce, now))
        outcome = self._writer.run(self.spend_write(nonce, now=now, also=also))
        if outcome == "unknown":
            raise _unknown()
        return outcome == "spent"

    @staticmethod
    def spend_write(
        nonce: str, *, now: int, also: Callable[[Connection], object] | None = None
    ) -> Callable[[Connection], SpendOutcome]:
        """The write that spends an issued ``nonce`` (for callers that submit it themselves):
        ``spent`` by it, ``reused`` (spent before) or ``unknown`` (never issued, or expired)."""

        def write(connection: Connection) -> SpendOutcome:
            outcome = _spend(connection, nonce, now)
            if outcome == "spent" and also is not None:
                also(connection)
            return outcome

        return write

    def _spend_unissued(self, connection: Connection, nonce: str, now: int) -> bool:
        row = {"p_nonce": nonce, "p_expires_at": now + self._ttl, "p_now": now}
        return connection.execute(self._spend_unissued_statement, row).rowcount == 1


_SQLITE_SPEND = (
    "UPDATE verifier_nonces SET used_at = ? WHERE nonce = ? AND used_at IS NULL AND expires_at > ?"
)
_SQLITE_USED_AT = "SELECT used_at FROM verifier_nonces WHERE nonce = ?"


def _spend(connection: Connection, nonce: str, now: int) -> SpendOutcome:
    driver = sqlite_driver(connection)
    if driver is not None:
        # The same statements as below, given to the driver: once per verification, where
        # SQLAlchemy's own work per statement costs more than SQLite's.
        if driver.execute(_SQLITE_SPEND, (now, nonce, now)).rowcount == 1:
            return "spent"
        found = driver.execute(_SQLITE_USED_AT, (nonce,)).fetchone()
        return "reused" if found is not None and found[0] is not None else "unknown"
    if connection.execute(_SPEND, {"p_nonce": nonce, "p_now": now}).rowcount == 1:
        return "spent"
    row = connection.execute(_USED_AT, {"p_nonce": nonce}).first()
    return "reused" if row is not None and row.used_at is not None else "unknown"


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

    def issue_many(self, nonces: list[str], *, now: int, ttl: int) -> None:
        pipeline = self._redis.pipeline(transaction=False)
        for nonce in nonces:
            pipeline.set(f"{self._prefix}issued:{nonce}", b"1", ex=ttl)
        pipeline.execute()

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

    def issue_many(self, nonces: list[str], *, now: int, ttl: int) -> None:
        for nonce in nonces:
            self.issue(nonce, now=now, ttl=ttl)

    def consume(self, nonce: str, *, now: int, require_issued: bool = True) -> bool:
        if nonce in self._used:
            return False
        if require_issued and self._issued.get(nonce, 0) <= now:
            raise _unknown()
        self._used.add(nonce)
        return True
