"""Reading the consent log in sequence order, a chunk at a time.

Exports and checkpoints walk logs of millions of events; reading by ``seq``
ranges (keyset pagination) keeps each query small and memory flat, and works
the same through an ORM session or a bare connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from vault.models import AuditEvent, AuditHead
from vault.services.audit import event_document

CHUNK = 1000

_events = AuditEvent.__table__  # type: ignore[attr-defined]
_head = AuditHead.__table__  # type: ignore[attr-defined]


def head_seq(db: Session | Connection) -> int:
    """The sequence number of the log's last committed event (0 for an empty log)."""
    seq = db.execute(select(_head.c.seq).where(_head.c.id == 1)).scalar()
    return int(seq or 0)


def events(db: Session | Connection, *, after: int = 0, upto: int,
           since: datetime | None = None, until: datetime | None = None,
           merchant_id: str | None = None, chunk: int = CHUNK) -> Iterator[Any]:
    """Event rows with ``after < seq <= upto`` in order, ``chunk`` rows per query.

    ``since`` is inclusive and ``until`` exclusive (on ``occurred_at``);
    ``merchant_id`` keeps only events about that merchant.
    """
    last = after
    while True:
        query = (select(_events).where(_events.c.seq > last, _events.c.seq <= upto)
                 .order_by(_events.c.seq).limit(chunk))
        if since is not None:
            query = query.where(_events.c.occurred_at >= since)
        if until is not None:
            query = query.where(_events.c.occurred_at < until)
        if merchant_id is not None:
            query = query.where(_events.c.merchant_id == merchant_id)
        rows = db.execute(query).all()
        yield from rows
        if len(rows) < chunk:
            return
        last = rows[-1].seq


def document(row: Any) -> dict[str, object]:
    """The exported (and hashed) form of an event row; see ``event_document``."""
    return event_document(cast(AuditEvent, row))
