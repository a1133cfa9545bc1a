"""Status lists of the issuer (draft-ietf-oauth-status-list; issue 4, "Status lists").

- Allocation: each credential gets an index drawn uniformly at random from the current list,
  so that neighbouring indices say nothing about issuance order. The draw is stored as the
  credential row itself under the unique constraint ``(status_list_id, status_index)``; a
  collision (with an earlier credential, or with a concurrent process on PostgreSQL) fails the
  insert inside a savepoint and another index is drawn. Rows are never deleted, so an index is
  never handed out twice. A list is closed once it is ``max_fill`` full (checked only after
  repeated collisions, which are rare until then) and the next one is opened.
- Lists hold at least :data:`MIN_LIST_SIZE` entries (herd privacy, the draft's section 12.5),
  two bits each (valid / invalid / suspended, section 7.1).
- Tokens (section 5.1): ``statuslist+jwt`` with ``sub``, ``iat``, ``exp`` and ``ttl``, served as
  ``application/statuslist+jwt`` with ``Cache-Control: max-age=<ttl>``. A signed token is
  cached per list and list ``version``; every status change bumps the version in the same
  transaction, so the next fetch after a change re-signs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from civic.clock import RandomBytes, random_below, system_random
from civic.errors import ReasonCode, UsageError
from civic.jose import Signer
from civic.statuslist import Status, StatusList, sign_status_list_token
from issuer import db

MIN_LIST_SIZE: Final = 131_072
BITS: Final = 2
DEFAULT_MAX_FILL: Final = 0.5
COLLISIONS_BEFORE_COUNT: Final = 3
MAX_ATTEMPTS: Final = 64
MEDIA_TYPE: Final = "application/statuslist+jwt"

# Allowed status changes: revocation is final; suspension can be lifted.
_TRANSITIONS: Final[dict[str, tuple[frozenset[int], int]]] = {
    "revoke": (frozenset({Status.VALID, Status.SUSPENDED}), Status.INVALID),
    "suspend": (frozenset({Status.VALID}), Status.SUSPENDED),
    "reinstate": (frozenset({Status.SUSPENDED}), Status.VALID),
}


def status_list_uri(issuer_url: str, list_id: int) -> str:
    return f"{issuer_url}/status/{list_id}"


def transition(action: str, current: int) -> int | None:
    """The new status for ``action`` from ``current``, or None when not allowed."""
    allowed = _TRANSITIONS.get(action)
    if allowed is None:
        raise UsageError(ReasonCode.MALFORMED_INPUT, "unknown status action")
    sources, target = allowed
    return target if current in sources else None


def is_full(allocated: int, size: int, max_fill: float) -> bool:
    return allocated >= int(size * max_fill)


def build_status_list(size: int, entries: list[tuple[int, int]]) -> StatusList:
    """A list of ``size`` two-bit entries with the given ``(index, status)`` set."""
    status_list = StatusList(size, BITS)
    for index, status in entries:
        status_list.set(index, status)
    return status_list


# --- allocation (inside the caller's write transaction) ------------------------------------


@dataclass(frozen=True)
class Allocation:
    list_id: int
    index: int


def _open_list(connection: Connection, size: int, now: int) -> int:
    """The lowest list that is not full, opening a new one if none is."""
    while True:
        row = connection.execute(
            select(db.status_lists.c.list_id, db.status_lists.c.size)
            .where(db.status_lists.c.full.is_(False))
            .order_by(db.status_lists.c.list_id)
            .limit(1)
        ).first()
        if row is not None:
            return int(row.list_id)
        highest = connection.execute(select(func.max(db.status_lists.c.list_id))).scalar()
        list_id = int(highest or 0) + 1
        try:
            with connection.begin_nested():
                connection.execute(
                    insert(db.status_lists).values(
                        list_id=list_id, size=size, bits=BITS, full=False, version=0, created_at=now
                    )
                )
        except IntegrityError:
            continue  # another process opened it first: use theirs
        return list_id


def insert_with_fresh_index(
    connection: Connection,
    credential: dict[str, Any],
    *,
    list_size: int,
    now: int,
    max_fill: float = DEFAULT_MAX_FILL,
    random: RandomBytes = system_random,
) -> Allocation:
    """Insert the credential row ``credential`` (without list and index) at a random free index."""
    list_id = _open_list(connection, list_size, now)
    size = connection.execute(
        select(db.status_lists.c.size).where(db.status_lists.c.list_id == list_id)
    ).scalar_one()
    collisions = 0
    for _ in range(MAX_ATTEMPTS):
        index = random_below(int(size), random)
        try:
            with connection.begin_nested():
                connection.execute(
                    insert(db.credentials).values(
                        **credential, status_list_id=list_id, status_index=index
                    )
                )
        except IntegrityError:
            collisions += 1
            if collisions >= COLLISIONS_BEFORE_COUNT:
                collisions = 0
                allocated = connection.execute(
                    select(func.count())
                    .select_from(db.credentials)
                    .where(db.credentials.c.status_list_id == list_id)
                ).scalar_one()
                if is_full(int(allocated), int(size), max_fill):
                    connection.execute(
                        update(db.status_lists)
                        .where(db.status_lists.c.list_id == list_id)
                        .values(full=True)
                    )
                    list_id = _open_list(connection, list_size, now)
                    size = connection.execute(
                        select(db.status_lists.c.size).where(db.status_lists.c.list_id == list_id)
                    ).scalar_one()
            continue
        return Allocation(list_id, index)
    raise UsageError(ReasonCode.STATUS_LIST_TOO_LARGE, "no free status index found")


# --- tokens --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedList:
    token: str
    version: int
    issued_at: int


class StatusListPublisher:
    """Signs Status List Tokens on demand, re-using one until its list changes or ``ttl`` passes."""

    def __init__(self, *, issuer_url: str, ttl: int, lifetime: int) -> None:
        if lifetime <= ttl:
            raise UsageError(ReasonCode.MALFORMED_INPUT, "token lifetime must exceed its ttl")
        self.issuer_url = issuer_url
        self.ttl = ttl
        self.lifetime = lifetime
        self._cache: dict[int, SignedList] = {}
        self._lock = threading.Lock()

    def token(
        self,
        connection: Connection,
        list_id: int,
        *,
        signer_for_lists: Callable[[], tuple[Signer, str]],
        now: int,
    ) -> str | None:
        """The current token for ``list_id``, or None when there is no such list."""
        row = connection.execute(
            select(db.status_lists.c.size, db.status_lists.c.version).where(
                db.status_lists.c.list_id == list_id
            )
        ).first()
        if row is None:
            return None
        with self._lock:
            cached = self._cache.get(list_id)
        if (
            cached is not None
            and cached.version == row.version
            and now - cached.issued_at < self.ttl
        ):
            return cached.token
        entries = connection.execute(
            select(db.credentials.c.status_index, db.credentials.c.status).where(
                db.credentials.c.status_list_id == list_id,
                db.credentials.c.status != int(Status.VALID),
            )
        ).all()
        status_list = build_status_list(int(row.size), [(int(i), int(s)) for i, s in entries])
        signer, kid = signer_for_lists()
        token = sign_status_list_token(
            status_list,
            subject_uri=status_list_uri(self.issuer_url, list_id),
            signer=signer,
            kid=kid,
            now=lambda: now,
            ttl=self.ttl,
            lifetime=self.lifetime,
        )
        with self._lock:
            self._cache[list_id] = SignedList(token, int(row.version), now)
        return token


def change_status(connection: Connection, credential_id: str, action: str, now: int) -> int | None:
    """Apply ``action`` to a credential; returns the new status, or None if not allowed.

    Raises ``NOT_FOUND`` for an unknown credential. Bumps the list version in the same
    transaction so the next status list fetch shows the change.
    """
    row = connection.execute(
        select(db.credentials.c.status, db.credentials.c.status_list_id).where(
            db.credentials.c.credential_id == credential_id
        )
    ).first()
    if row is None:
        raise UsageError(ReasonCode.NOT_FOUND, "no credential with this id")
    target = transition(action, int(row.status))
    if target is None:
        return None
    changed = connection.execute(
        update(db.credentials)
        .where(
            db.credentials.c.credential_id == credential_id,
            db.credentials.c.status == row.status,
        )
        .values(status=target, status_changed_at=now)
    ).rowcount
    if changed != 1:
        return None  # changed concurrently; the caller sees a conflict
    connection.execute(
        update(db.status_lists)
        .where(db.status_lists.c.list_id == row.status_list_id)
        .values(version=db.status_lists.c.version + 1)
    )
    return target
