"""Status lists of the issuer (draft-ietf-oauth-status-list; issue 4, "Status lists").

- Allocation: each credential gets an index drawn uniformly at random from the current list,
  so that neighbouring indices say nothing about issuance order. The draw is stored as the
  credential row itself under the unique constraint ``(status_list_id, status_index)``; a
  collision (with an earlier credential, or with a concurrent process on PostgreSQL) makes the
  insert's ``ON CONFLICT DO NOTHING`` answer zero rows and another index is drawn. Rows are
  never deleted, so an index is never handed out twice. The draw may happen before the write
  transaction (the credential endpoint signs outside it); the insert is what decides. A list
  is closed once it is ``max_fill`` full (checked only after repeated collisions, which are
  rare until then) and the next one is opened.
- Lists hold at least :data:`MIN_LIST_SIZE` entries (herd privacy, the draft's section 12.5),
  two bits each (valid / invalid / suspended, section 7.1).
- Tokens (section 5.1): ``statuslist+jwt`` with ``sub``, ``iat``, ``exp`` and ``ttl``, served as
  ``application/statuslist+jwt`` with ``Cache-Control: max-age=<ttl>``. A signed token is
  cached per list and list ``version``; every status change bumps the version in the same
  transaction, so the next fetch after a change re-signs. The list is encoded and signed only
  then, on a fetch: issuance itself never touches the 131,072-entry list.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

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


@dataclass(frozen=True)
class OpenList:
    """The list new credentials are drawn into, and its size."""

    list_id: int
    size: int

    def draw(self, random: RandomBytes = system_random) -> Allocation:
        """A uniformly random index of this list (free or not: the insert decides)."""
        return Allocation(self.list_id, random_below(self.size, random))


_SELECT_OPEN_LIST = (
    # "full" is a reserved word in PostgreSQL.
    'SELECT list_id, size FROM {issuer_status_lists} WHERE "full" = :no ORDER BY list_id LIMIT 1'
)
_SELECT_HIGHEST_LIST = "SELECT MAX(list_id) FROM {issuer_status_lists}"
_INSERT_LIST = (
    'INSERT INTO {issuer_status_lists} (list_id, size, bits, "full", version, created_at)'
    " VALUES (:list_id, :size, :bits, :no, 0, :now) ON CONFLICT (list_id) DO NOTHING"
)
_COUNT_LIST = "SELECT COUNT(*) FROM {issuer_credentials} WHERE status_list_id = :list_id"
_CLOSE_LIST = 'UPDATE {issuer_status_lists} SET "full" = :yes WHERE list_id = :list_id'
_CREDENTIAL_COLUMNS = (
    "credential_id",
    "offer_id",
    "vct",
    "kid",
    "status",
    "holder_thumbprint",
    "issued_at",
    "expires_at",
    "status_changed_at",
)
# A taken index is no error: the conflict clause answers "0 rows", so neither database needs
# a savepoint per attempt (PostgreSQL would otherwise abort the whole transaction).
_INSERT_CREDENTIAL = (
    "INSERT INTO {issuer_credentials} (credential_id, offer_id, vct, kid, status,"
    " holder_thumbprint, issued_at, expires_at, status_changed_at, status_list_id, status_index)"
    " VALUES (:credential_id, :offer_id, :vct, :kid, :status, :holder_thumbprint, :issued_at,"
    " :expires_at, :status_changed_at, :status_list_id, :status_index)"
    " ON CONFLICT (status_list_id, status_index) DO NOTHING"
)


def current_list(transaction: db.DriverTransaction) -> OpenList | None:
    """The lowest list that is not full, if there is one."""
    row = transaction.one(_SELECT_OPEN_LIST, {"no": False})
    return None if row is None else OpenList(int(row[0]), int(row[1]))


def open_list(transaction: db.DriverTransaction, size: int, now: int) -> OpenList:
    """The lowest list that is not full, opening a new one if none is."""
    while True:
        current = current_list(transaction)
        if current is not None:
            return current
        highest = transaction.one(_SELECT_HIGHEST_LIST)
        list_id = int((highest[0] if highest is not None else None) or 0) + 1
        opened = transaction.execute(
            _INSERT_LIST, {"list_id": list_id, "size": size, "bits": BITS, "no": False, "now": now}
        )
        if opened == 1:
            return OpenList(list_id, size)
        # Another process opened it first: use theirs.


def _try_insert(
    transaction: db.DriverTransaction, credential: dict[str, Any], allocation: Allocation
) -> bool:
    params = {name: credential[name] for name in _CREDENTIAL_COLUMNS}
    params["status_list_id"] = allocation.list_id
    params["status_index"] = allocation.index
    return transaction.execute(_INSERT_CREDENTIAL, params) == 1


def insert_with_fresh_index(
    transaction: db.DriverTransaction,
    credential: dict[str, Any],
    *,
    list_size: int,
    now: int,
    max_fill: float = DEFAULT_MAX_FILL,
    random: RandomBytes = system_random,
    preferred: Allocation | None = None,
) -> Allocation:
    """Insert the credential row ``credential`` (without list and index) at a random free index.

    ``preferred`` is an index drawn (and maybe already signed into a credential) before the
    transaction; it is used when still free, and the caller re-signs when the answer differs.
    """
    collisions = 0
    if preferred is not None:
        if _try_insert(transaction, credential, preferred):
            return preferred
        collisions = 1
    current = open_list(transaction, list_size, now)
    for _ in range(MAX_ATTEMPTS):
        allocation = current.draw(random)
        if _try_insert(transaction, credential, allocation):
            return allocation
        collisions += 1
        if collisions >= COLLISIONS_BEFORE_COUNT:
            collisions = 0
            counted = transaction.one(_COUNT_LIST, {"list_id": current.list_id})
            allocated = int(counted[0]) if counted is not None else 0
            if is_full(allocated, current.size, max_fill):
                transaction.execute(_CLOSE_LIST, {"yes": True, "list_id": current.list_id})
                current = open_list(transaction, list_size, now)
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
