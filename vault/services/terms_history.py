"""The history of a subscription's terms: what was in force when a contact was made.

A shop may report a contact up to 31 days after it happened, and the vault
judges it by the terms in force at that moment, not by today's: a contact
made last Tuesday while allowed stays allowed after the person revokes
today, and one made while forbidden is a violation even if the person has
allowed it since. So whenever a subscription's current state is replaced
(a change to any part of its terms record, a revocation, a grant after a
revocation, an erasure; see ``vault.services.terms``) the state it leaves
is kept here, in the same transaction, with the interval it was in force:
``[valid_from, valid_until)``, ``valid_from`` being the subscription's
``terms_since`` and ``valid_until`` the moment of the change. The current
state is in force from ``terms_since`` on.

An ``active`` row holds the terms record it replaced, sealed as the current
one is, with the person's data key, but bound to its own row: the AAD names
the table ``terms_history``, the subscription id and the row id (``<sub>/<row>``)
and the field ``terms``, so a record cannot be moved to another row or
another subscription. A ``revoked`` row holds no record: the status answers.
The history uses the person's data key through ``PersonKey`` and keeps no
copy of the wrapped key: a KEK rotation, which rewraps ``PersonKey``, keeps it
openable, and erasure, which deletes ``PersonKey``, makes it noise.

A state replaced in the moment it took force was never in force and is not
kept. A moment before the oldest state kept (before the subscription was
made, or before the vault kept history) is judged by the oldest state kept,
as the vault judged every report before it kept history.

Only what a report may still be about is kept: ``prune`` deletes the rows
that ended more than ``RETENTION`` (the 31-day reporting window and a day's
margin) ago; ``prefvault worker`` runs it once an hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session

from vault.crypto.envelope import DataKey
from vault.db import Database, Driver
from vault.models import TermsHistory
from vault.models.types import new_id

TABLE = "terms_history"
FIELD = "terms"
#: how far back a contact may be reported (``vault.services.contacting``)
REPORT_WINDOW = timedelta(days=31)
#: how long a state is kept after it ended: the reporting window and a margin for skewed clocks
RETENTION = REPORT_WINDOW + timedelta(days=1)


def _row_id(subscription_id: str, history_id: str) -> str:
    return f"{subscription_id}/{history_id}"


def seal(key: DataKey, subscription_id: str, history_id: str, plaintext: bytes) -> bytes:
    """A terms record sealed for one history row of one subscription."""
    return key.encrypt(plaintext, table=TABLE, row_id=_row_id(subscription_id, history_id),
                       field=FIELD)


def open_record(key: DataKey, subscription_id: str, history_id: str, sealed: bytes) -> bytes:
    """The plaintext of a kept record (``DecryptionError`` if it is not this row's)."""
    return key.decrypt(sealed, table=TABLE, row_id=_row_id(subscription_id, history_id),
                       field=FIELD)


def keep(session: Session, *, subscription_id: str, status: str, plaintext: bytes | None,
         key: DataKey | None, valid_from: datetime | None, valid_until: datetime) -> None:
    """Keep the state a subscription leaves now; nothing if it was never in force.

    ``plaintext`` is the terms record of an ``active`` state (sealed here for
    the new row; it needs ``key``). ``valid_from`` None: the subscription is
    new, there is no state before.
    """
    if valid_from is None or valid_from >= valid_until:
        return
    history_id = new_id()
    sealed = seal(key, subscription_id, history_id, plaintext) \
        if plaintext is not None and key is not None else None
    session.add(TermsHistory(id=history_id, subscription_id=subscription_id, status=status,
                             terms=sealed, valid_from=valid_from, valid_until=valid_until))


@dataclass(frozen=True, slots=True)
class KeptState:
    """The state a subscription was in at some moment, as kept."""

    history_id: str
    status: str
    sealed: bytes | None


_STATE_AT_SQL = """
SELECT id, status, terms FROM terms_history
WHERE subscription_id = :subscription_id AND valid_until > :at
ORDER BY valid_until LIMIT 1"""


def state_at(db: Driver, subscription_id: str, at: datetime) -> KeptState | None:
    """The kept state in force at ``at``: the first that ended after it; None if none did.

    Intervals follow each other without gaps, so the first state that ended
    after ``at`` began at or before it, unless ``at`` is before the oldest
    state kept, which then answers (see the module docstring). None: the
    current state was in force at ``at``.
    """
    found = db.rows(_STATE_AT_SQL, {"subscription_id": subscription_id, "at": db.stamp(at)})
    if not found:
        return None
    history_id, status, sealed = found[0]
    return KeptState(history_id, status, bytes(sealed) if sealed is not None else None)


def prune(database: Database, *, now: datetime, batch_size: int = 1000) -> int:
    """Delete the states that ended more than ``RETENTION`` before ``now``; how many.

    In batches, each in a transaction of its own, so a large backlog never
    holds a long write lock.
    """
    table = TermsHistory.__table__  # type: ignore[attr-defined]
    cutoff = now - RETENTION
    pruned = 0
    while True:
        with database.write() as session:
            ids = list(session.connection().execute(
                table.select().with_only_columns(table.c.id)
                .where(table.c.valid_until < cutoff).limit(batch_size)).scalars())
            if ids:
                session.connection().execute(delete(table).where(table.c.id.in_(ids)))
        pruned += len(ids)
        if len(ids) < batch_size:
            return pruned
