"""Exporting the consent log against a stored signed tree head, as JSON Lines or CSV.

The formats are the ones :func:`prefvault_sdk.audit.verify_export` checks
offline (defined there, once, for writer and reader). The first record is
``{"kind": "tree_head", "filtered": bool, ...}``: a head the vault signed and
stored (see :mod:`vault.services.tree_heads`; callers checkpoint first, so an
export covers the log up to the moment it was asked for). Then one
``{"kind": "event", "index": i, "leaf": {...}}`` record per event with
``index < tree_size``, in sequence order, where ``index`` is ``seq - 1`` and
``leaf`` is :func:`~vault.services.audit.event_document`.

* **Unfiltered** (no ``since``, ``until`` or ``merchant_id``): every event of
  the head, in one pass read in chunks by ``seq`` (keyset pagination).
* **Filtered**: only matching events, each with its inclusion proof against
  the head, read from the stored Merkle subtrees a chunk of events at a time.

Memory stays bounded either way, whatever the size of the log. The leaves
are written as the database holds them, never checked against the head here:
if stored history was altered, the export says so to whoever verifies it,
which is the point. No Flask here: the API streams these lines and the CLI
writes them to a file.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy.engine import Connection
from sqlmodel import Session

from vault.audit.tree_head import TreeHead
from vault.audit.verify import render_csv, render_jsonl
from vault.services.audit_reader import CHUNK, document, events
from vault.services.merkle_store import MerkleStore

FORMATS = ("jsonl", "csv")


def export_records(
    db: Session | Connection,
    *,
    head: TreeHead,
    since: datetime | None = None,
    until: datetime | None = None,
    merchant_id: str | None = None,
) -> Iterator[dict[str, Any]]:
    """The export's records: the head first, then the events it covers.

    ``since`` is inclusive and ``until`` exclusive (on ``occurred_at``);
    ``merchant_id`` is the merchant's internal id. Any of them makes the
    export filtered.
    """
    filtered = since is not None or until is not None or merchant_id is not None
    yield {"kind": "tree_head", "filtered": filtered, **head.to_json()}
    rows = events(db, upto=head.tree_size, since=since, until=until, merchant_id=merchant_id)
    if not filtered:
        for row in rows:
            yield {"kind": "event", "index": int(row.seq) - 1, "leaf": document(row)}
        return
    store = MerkleStore(db)
    while chunk := list(islice(rows, CHUNK)):
        indices = [int(row.seq) - 1 for row in chunk]
        proofs = store.inclusion_proofs(indices, head.tree_size)
        for row, index, proof in zip(chunk, indices, proofs, strict=True):
            yield {"kind": "event", "index": index, "leaf": document(row),
                   "proof": [p.hex() for p in proof]}


def render(records: Iterator[dict[str, Any]], export_format: str = "jsonl") -> Iterator[str]:
    """The export's text, one line (or CSV row) at a time."""
    if export_format == "csv":
        return render_csv(records)
    if export_format == "jsonl":
        return render_jsonl(records)
    raise ValueError(f"unknown export format {export_format!r}")


def export_lines(
    db: Session | Connection,
    *,
    head: TreeHead,
    export_format: str = "jsonl",
    since: datetime | None = None,
    until: datetime | None = None,
    merchant_id: str | None = None,
) -> Iterator[str]:
    """The export as text; see :func:`export_records` for what it holds."""
    return render(export_records(db, head=head, since=since, until=until,
                                 merchant_id=merchant_id), export_format)
