"""The consent log's Merkle tree as stored: perfect-subtree hashes, read and written in bulk.

Checkpoints write the root of every perfect subtree once, as it completes
(``audit_tree_node``). Any subtree the RFC 9162 proofs need is then a handful
of stored perfect subtrees (:func:`~prefvault_sdk.audit.merkle.perfect_subtrees`),
so an inclusion or consistency proof costs O(log² n) hash reads in one or two
queries, instead of rehashing the log. The proof *shapes* come from the
verifier's own merkle module; only where the hashes come from differs.

A node that should be there and is not means the stored tree was damaged:
that is a :class:`~vault.errors.LogIntegrityError`, never a guess.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from vault.audit.merkle import (
    consistency_ranges,
    fold,
    frontier_coordinates,
    inclusion_ranges,
    perfect_subtrees,
)
from vault.errors import LogIntegrityError
from vault.models import AuditTreeNode

Coordinate = tuple[int, int]

_nodes = AuditTreeNode.__table__  # type: ignore[attr-defined]
#: bound parameters per read, well inside every backend's limit
_READ_BATCH = 500
#: nodes buffered before they are written
_WRITE_BATCH = 2000


class MerkleStore:
    """Reads and writes ``audit_tree_node`` through one session or connection.

    Reads are cached (the upper levels are shared by every proof), up to
    ``cache_limit`` nodes; the cache starts over when full.
    """

    def __init__(self, db: Session | Connection, *, cache_limit: int = 200_000) -> None:
        self._db = db
        self._cache: dict[Coordinate, bytes] = {}
        self._cache_limit = cache_limit
        self._pending: list[dict[str, object]] = []

    # -- writing ---------------------------------------------------------------------------

    def add(self, level: int, position: int, hash_: bytes) -> None:
        """Buffer one completed subtree root (the ``TreeBuilder`` node callback)."""
        self._pending.append({"level": level, "position": position, "hash": hash_})
        if len(self._pending) >= _WRITE_BATCH:
            self.flush()

    def flush(self) -> None:
        """Write the buffered nodes in the caller's transaction."""
        if self._pending:
            self._db.execute(insert(_nodes), self._pending)
            self._pending = []

    # -- reading ---------------------------------------------------------------------------

    def _fetch(self, coordinates: Iterable[Coordinate]) -> None:
        missing = sorted({c for c in coordinates if c not in self._cache})
        if not missing:
            return
        if len(self._cache) + len(missing) > self._cache_limit:
            self._cache.clear()
        for start in range(0, len(missing), _READ_BATCH):
            by_level: dict[int, list[int]] = defaultdict(list)
            for level, position in missing[start:start + _READ_BATCH]:
                by_level[level].append(position)
            query = select(_nodes.c.level, _nodes.c.position, _nodes.c.hash).where(or_(*(
                and_(_nodes.c.level == level, _nodes.c.position.in_(positions))
                for level, positions in by_level.items())))
            for row in self._db.execute(query):
                self._cache[(int(row.level), int(row.position))] = bytes(row.hash)

    def _node(self, coordinate: Coordinate) -> bytes:
        try:
            return self._cache[coordinate]
        except KeyError:
            level, position = coordinate
            raise LogIntegrityError(
                f"the stored Merkle tree lacks the subtree at level {level}, "
                f"position {position}") from None

    def subtrees(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """The Merkle roots of leaf ranges ``[start, end)`` that are subtrees of the log."""
        pieces = [perfect_subtrees(start, end) for start, end in ranges]
        self._fetch(c for piece in pieces for c in piece)
        return [fold([self._node(c) for c in piece]) for piece in pieces]

    def frontier(self, size: int) -> list[bytes]:
        """The roots of the perfect subtrees a tree of ``size`` leaves ends in."""
        coordinates = frontier_coordinates(size)
        self._fetch(coordinates)
        return [self._node(c) for c in coordinates]

    def root(self, size: int) -> bytes:
        """The stored tree's root at ``size`` leaves."""
        return fold(self.frontier(size))

    def leaf(self, index: int) -> bytes:
        """The stored leaf hash at ``index``."""
        self._fetch([(0, index)])
        return self._node((0, index))

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """``PATH(index, D[tree_size])`` from stored hashes."""
        return self.subtrees(inclusion_ranges(index, tree_size))

    def inclusion_proofs(self, indices: Sequence[int], tree_size: int) -> list[list[bytes]]:
        """Several inclusion proofs against one tree, read together."""
        shapes = [inclusion_ranges(index, tree_size) for index in indices]
        self._fetch(c for shape in shapes for start, end in shape
                    for c in perfect_subtrees(start, end))
        return [self.subtrees(shape) for shape in shapes]

    def consistency_proof(self, old_size: int, tree_size: int) -> list[bytes]:
        """``PROOF(old_size, D[tree_size])`` from stored hashes."""
        return self.subtrees(consistency_ranges(old_size, tree_size))
