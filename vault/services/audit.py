"""The consent log: one ``record_event`` for every change, hash-chained.

Each event is appended in the caller's transaction, so it commits together
with the change it records or not at all. Appending locks the single
``audit_head`` row, which keeps sequence numbers gap-free and the chain
linear with any number of writers. Events carry pseudonymous ids only, never
a name, address or other personal value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from sqlmodel import Session, select

from vault.audit.verify import canonical_json
from vault.clock import Clock
from vault.models import AuditEvent, AuditHead
from vault.models.types import new_id

GENESIS_HASH = bytes(32)


class AuditTag(StrEnum):
    """Every kind of event the log knows; ``area:object:verb``."""

    PERSON_SIGNED_UP = "person:account:created"
    PERSON_PROFILE_UPDATED = "person:profile:updated"
    PERSON_PASSWORD_CHANGED = "person:password:changed"  # noqa: S105
    PERSON_RULES_UPDATED = "person:rules:updated"
    PERSON_ERASED = "person:account:erased"
    MERCHANT_REGISTERED = "operator:merchant:registered"
    MERCHANT_SECRET_ROTATED = "operator:merchant:secret_rotated"  # noqa: S105
    KEK_ROTATED = "operator:kek:rotated"
    SUBSCRIPTION_GRANTED = "subscription:grant:approved"
    SUBSCRIPTION_REVOKED = "subscription:grant:revoked"
    PERMISSION_CHANGED = "subscription:permission:changed"
    CONTACT_REPORTED = "contact:report:allowed"
    CONTACT_VIOLATION = "contact:report:violation"


def event_document(event: AuditEvent) -> dict[str, object]:
    """The fields of an event that its hash covers, as exported."""
    return {
        "seq": event.seq,
        "id": event.id,
        "occurred_at": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "tag": event.tag,
        "actor": event.actor,
        "person_ref": event.person_ref,
        "merchant_id": event.merchant_id,
        "subject": event.subject,
        "data": json.loads(event.data),
    }


def chain_hash(prev_hash: bytes, document: Mapping[str, object]) -> bytes:
    return hashlib.sha256(prev_hash + canonical_json(document).encode("utf-8")).digest()


def record_event(
    session: Session,
    *,
    clock: Clock,
    tag: AuditTag,
    actor: str,
    person_ref: str | None = None,
    merchant_id: str | None = None,
    subject: str | None = None,
    data: Mapping[str, object] | None = None,
) -> AuditEvent:
    """Append one event to the log inside the caller's transaction."""
    # populate_existing: a head this session already holds must show the row just locked.
    head = session.exec(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    event = AuditEvent(
        seq=head.seq + 1,
        id=new_id(),
        occurred_at=clock.now(),
        tag=str(tag),
        actor=actor,
        person_ref=person_ref,
        merchant_id=merchant_id,
        subject=subject,
        data=canonical_json(dict(data or {})),
        prev_hash=head.hash,
        hash=b"",
    )
    event.hash = chain_hash(head.hash, event_document(event))
    head.seq = event.seq
    head.hash = event.hash
    session.add(event)
    session.add(head)
    session.flush()
    return event


@dataclass(frozen=True)
class ChainCheck:
    """The result of checking the chain: ok, or the first bad sequence number."""

    ok: bool
    events: int
    first_bad_seq: int | None = None
    reason: str | None = None


def verify_chain(events: Iterable[AuditEvent], *, head: AuditHead | None = None) -> ChainCheck:
    """Recompute the chain over ``events`` (in sequence order) and the head."""
    prev = GENESIS_HASH
    count = 0
    for expected_seq, event in enumerate(events, start=1):
        count = expected_seq
        if event.seq != expected_seq:
            return ChainCheck(False, count, expected_seq, "sequence gap")
        if event.prev_hash != prev:
            return ChainCheck(False, count, event.seq, "previous hash does not match")
        if chain_hash(prev, event_document(event)) != event.hash:
            return ChainCheck(False, count, event.seq, "event hash does not match")
        prev = event.hash
    if head is not None and (head.seq != count or head.hash != prev):
        return ChainCheck(False, count, count + 1, "head does not match the last event")
    return ChainCheck(True, count)


def check_log(session: Session) -> ChainCheck:
    """Verify the whole stored log against its head."""
    events = session.exec(select(AuditEvent).order_by(AuditEvent.seq)).yield_per(1000)
    return verify_chain(events, head=session.get(AuditHead, 1))
