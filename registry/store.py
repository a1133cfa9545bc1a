"""The Merkle node store and entry reads over SQL (docs/registry.md, "One sequencer").

:class:`SqlNodeStore` implements :class:`civic.merkle.NodeStore` on one SQLAlchemy connection
and takes part in the caller's transaction: the sequencer writes the entry row, the new nodes
and the new size in one commit, so a reader never sees a size whose nodes are missing. Reads
are batched (one query per :data:`BATCH` keys), so a root or a proof costs O(log n) rows in one
or two round trips, never a recomputation of the tree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Connection

from civic.errors import ReasonCode, UsageError
from civic.merkle import NodeKey
from registry.db import TREE_STATE_ID, entries_table, nodes_table, tree_state_table

BATCH = 500


class SqlNodeStore:
    """A :class:`civic.merkle.NodeStore` inside the transaction of ``connection``."""

    __slots__ = ("_connection",)

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def size(self) -> int:
        return read_size(self._connection)

    def get_many(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        wanted = list(dict.fromkeys(keys))
        found: dict[NodeKey, bytes] = {}
        for start in range(0, len(wanted), BATCH):
            by_level: dict[int, list[int]] = {}
            for level, index in wanted[start : start + BATCH]:
                by_level.setdefault(level, []).append(index)
            statement, parameters = self._select_nodes(by_level)
            for level, index, value in self._connection.exec_driver_sql(statement, parameters):
                found[(int(level), int(index))] = bytes(value)
        if len(found) != len(wanted):
            missing = next(key for key in wanted if key not in found)
            raise UsageError(ReasonCode.INDEX_OUT_OF_RANGE, f"no stored node {missing}")
        return found

    def _select_nodes(self, by_level: Mapping[int, list[int]]) -> tuple[str, tuple[int, ...]]:
        """``level = ? AND node_index IN (...)`` per level, OR-ed: both SQLite (multi-index OR)
        and PostgreSQL answer it from the primary key. Written at the driver level because
        building and compiling the equivalent expression costs ~40x the query itself."""
        marker = "?" if self._connection.dialect.paramstyle == "qmark" else "%s"
        terms = " OR ".join(
            f"(level = {marker} AND node_index IN ({', '.join([marker] * len(indices))}))"
            for indices in by_level.values()
        )
        parameters = tuple(v for level, indices in by_level.items() for v in (level, *indices))
        # Only placeholders and the quoted table name are interpolated; every value is bound.
        statement = f"SELECT level, node_index, hash FROM {self._table} WHERE {terms}"  # noqa: S608
        return statement, parameters

    @property
    def _table(self) -> str:
        preparer = self._connection.dialect.identifier_preparer
        translate = self._connection.get_execution_options().get("schema_translate_map") or {}
        schema = translate.get(None)
        name = preparer.quote(nodes_table.name)
        return f"{preparer.quote(schema)}.{name}" if schema else name

    def put_many(self, nodes: Mapping[NodeKey, bytes], size: int) -> None:
        rows = [
            {"level": level, "node_index": index, "hash": value}
            for (level, index), value in nodes.items()
        ]
        for start in range(0, len(rows), BATCH):
            self._connection.execute(nodes_table.insert(), rows[start : start + BATCH])
        self._connection.execute(
            tree_state_table.update()
            .where(tree_state_table.c.id == TREE_STATE_ID)
            .values(size=size)
        )


def read_size(connection: Connection) -> int:
    size = connection.execute(
        select(tree_state_table.c.size).where(tree_state_table.c.id == TREE_STATE_ID)
    ).scalar_one_or_none()
    return int(size) if size is not None else 0


@dataclass(frozen=True)
class StoredEntry:
    index: int
    leaf: bytes
    leaf_hash: bytes


def read_entries(connection: Connection, start: int, end: int) -> list[StoredEntry]:
    """Entries ``[start, end)`` in index order."""
    columns = entries_table.c
    rows = connection.execute(
        select(columns.leaf_index, columns.leaf, columns.leaf_hash)
        .where(columns.leaf_index >= start, columns.leaf_index < end)
        .order_by(columns.leaf_index)
    )
    return [StoredEntry(int(index), bytes(leaf), bytes(digest)) for index, leaf, digest in rows]


def read_subject_entries(connection: Connection, subject: str, below: int) -> list[StoredEntry]:
    """Entries about ``subject`` (an issuer or verifier id) with an index below ``below``."""
    columns = entries_table.c
    rows = connection.execute(
        select(columns.leaf_index, columns.leaf, columns.leaf_hash)
        .where(columns.subject == subject, columns.leaf_index < below)
        .order_by(columns.leaf_index)
    )
    return [StoredEntry(int(index), bytes(leaf), bytes(digest)) for index, leaf, digest in rows]
