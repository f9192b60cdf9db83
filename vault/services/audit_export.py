"""Exporting the consent log as JSON Lines with a signed Merkle tree head.

The format is the one :func:`vault.audit.verify.verify_export` checks
offline: the first line is ``{"kind": "tree_head", "filtered": bool, ...}``
(a :class:`~vault.audit.tree_head.TreeHead` signed now, over the whole log),
then one ``{"kind": "event", "index": i, "leaf": {...}}`` line per event, in
sequence order, where ``index`` is ``seq - 1`` and ``leaf`` is
:func:`~vault.services.audit.event_document`.

* **Unfiltered** (no ``since``, ``until`` or ``merchant_id``): every event.
  Two passes over the table, read in chunks by ``seq`` (keyset pagination):
  the first folds leaf hashes into a :class:`~vault.audit.merkle.TreeBuilder`
  for the root (O(log n) memory), the second writes the events.
* **Filtered**: the head still covers the whole log, and each matching event
  carries its inclusion proof. Proofs need every leaf hash of the tree, so the
  first pass keeps them in memory: 32 bytes per event, plus the interior nodes
  of the perfect subtrees (about as much again), so roughly 64 MB per million
  events. Each proof is then O(log² n), not O(n).

Both passes stop at the ``seq`` the log's head had when the export started, so
events appended meanwhile are neither hashed nor written. No Flask here: the
API streams these lines and the CLI writes them to a file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from vault.audit.merkle import TreeBuilder, leaf_hash, node_hash
from vault.audit.tree_head import sign_tree_head
from vault.clock import Clock
from vault.crypto.keyring import SigningKey
from vault.models import AuditEvent, AuditHead
from vault.services.audit import canonical_json, event_document

CHUNK = 1000

_events = AuditEvent.__table__  # type: ignore[attr-defined]
_head = AuditHead.__table__  # type: ignore[attr-defined]


def _head_seq(db: Session | Connection) -> int:
    seq = db.execute(select(_head.c.seq).where(_head.c.id == 1)).scalar()
    return int(seq or 0)


def _rows(db: Session | Connection, upto: int, *, since: datetime | None = None,
          until: datetime | None = None, merchant_id: str | None = None) -> Iterator[Any]:
    """Events with ``seq <= upto`` in order, ``CHUNK`` rows per query."""
    last = 0
    while True:
        query = (select(_events).where(_events.c.seq > last, _events.c.seq <= upto)
                 .order_by(_events.c.seq).limit(CHUNK))
        if since is not None:
            query = query.where(_events.c.occurred_at >= since)
        if until is not None:
            query = query.where(_events.c.occurred_at < until)
        if merchant_id is not None:
            query = query.where(_events.c.merchant_id == merchant_id)
        rows = db.execute(query).all()
        yield from rows
        if len(rows) < CHUNK:
            return
        last = rows[-1].seq


def _document(row: Any) -> dict[str, object]:
    return event_document(cast(AuditEvent, row))


def _leaf(document: dict[str, object]) -> bytes:
    return leaf_hash(canonical_json(document).encode("utf-8"))


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"


class _ProofTree:
    """Leaf hashes plus the roots of every aligned perfect subtree, for fast proofs."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.size = len(leaves)
        self.levels: list[list[bytes]] = [leaves]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append([node_hash(below[i], below[i + 1])
                                for i in range(0, len(below) - 1, 2)])

    def subtree(self, start: int, end: int) -> bytes:
        width = end - start
        height = width.bit_length() - 1
        if width == 1 << height and start % width == 0:
            return self.levels[height][start >> height]
        # Only the right edge of the tree is not perfect: split as RFC 9162 does.
        k = 1 << ((width - 1).bit_length() - 1)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def proof(self, index: int) -> list[bytes]:
        """Same result as :func:`vault.audit.merkle.inclusion_proof`."""
        path: list[bytes] = []
        start, end, m = 0, self.size, index
        while end - start > 1:
            k = 1 << ((end - start - 1).bit_length() - 1)
            if m < k:
                path.append(self.subtree(start + k, end))
                end = start + k
            else:
                path.append(self.subtree(start, start + k))
                start += k
                m -= k
        path.reverse()
        return path


def inclusion_proofs(leaves: list[bytes], indices: Sequence[int]) -> list[list[bytes]]:
    """Inclusion proofs for several leaves of one tree (exposed for tests)."""
    tree = _ProofTree(leaves)
    return [tree.proof(i) for i in indices]


def export_lines(
    db: Session | Connection,
    *,
    signing_key: SigningKey,
    clock: Clock,
    since: datetime | None = None,
    until: datetime | None = None,
    merchant_id: str | None = None,
) -> Iterator[str]:
    """The export, one JSON line (ending in ``\\n``) at a time.

    ``since`` is inclusive and ``until`` exclusive (on ``occurred_at``);
    ``merchant_id`` is the merchant's internal id. Any of them makes the
    export filtered (see the module docstring for the memory this costs).
    """
    filtered = since is not None or until is not None or merchant_id is not None
    size = _head_seq(db)
    leaves: list[bytes] = []
    builder = TreeBuilder()
    for row in _rows(db, size):
        hashed = _leaf(_document(row))
        if filtered:
            leaves.append(hashed)
        else:
            builder.append(hashed)
    if filtered:
        tree = _ProofTree(leaves)
        root_hash = tree.subtree(0, size) if size else builder.root()
    else:
        root_hash = builder.root()
    if builder.size + len(leaves) != size:
        raise RuntimeError(f"the consent log has a gap: head at {size}, "
                           f"{builder.size + len(leaves)} events found")
    timestamp = int(clock.now().timestamp() * 1000)
    head = sign_tree_head(size, root_hash, timestamp, signing_key.private_key, signing_key.kid)
    yield _line({"kind": "tree_head", "filtered": filtered, **head.to_json()})
    for row in _rows(db, size, since=since, until=until, merchant_id=merchant_id):
        index = int(row.seq) - 1
        record: dict[str, Any] = {"kind": "event", "index": index, "leaf": _document(row)}
        if filtered:
            record["proof"] = [p.hex() for p in tree.proof(index)]
        yield _line(record)
