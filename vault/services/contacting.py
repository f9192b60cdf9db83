"""What merchants do every day: ask before reaching someone, and report what they did."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert
from sqlmodel import Session

from vault.clock import Clock
from vault.errors import NotFound, ValidationFailed
from vault.models import ContactEvent
from vault.models.types import new_id
from vault.services import decision_store
from vault.services.audit import AuditTag, record_event
from vault.services.decisions import UNKNOWN_SUBJECT, alternatives, evaluate
from vault.services.keys import DataKeys

#: how far from now a merchant may ask about
ASK_HORIZON = timedelta(days=366)
#: clock skew tolerated on reported contact times
REPORT_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class DecisionResult:
    """The answer given to a merchant (the API's ``decision`` object)."""

    decision_id: str
    subject: str
    channel: str
    purpose: str
    allowed: bool
    reason: str
    reach: str | None
    alternatives: list[str]
    next_allowed_at: datetime | None
    valid_until: datetime


def _relaxed_durability(session: Session) -> None:
    """Let PostgreSQL acknowledge decision evidence before it reaches the disk.

    A decision changes nothing about a person; its evidence row is written
    with ``synchronous_commit`` off, which keeps the fsync out of the hot path
    and risks only the last fraction of a second of evidence if the database
    server itself crashes. Consent changes and contact reports always commit
    synchronously.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")


def _moment(at: datetime | None, now: datetime) -> datetime:
    if at is None:
        return now
    if abs(at - now) > ASK_HORIZON:
        raise ValidationFailed("at must be within a year of now", field="at")
    return at


def decide(
    session: Session,
    *,
    merchant_id: str,
    subject: str,
    channel: str,
    purpose: str,
    at: datetime | None,
    data_keys: DataKeys,
    clock: Clock,
) -> DecisionResult:
    """Answer one question and keep the answer as evidence."""
    now = clock.now()
    moment = _moment(at, now)
    _relaxed_durability(session)
    connection = session.connection()
    loaded = decision_store.load_terms(connection, merchant_id=merchant_id, subjects=[subject],
                                       purpose=purpose, now=moment, data_keys=data_keys).get(
        subject)
    terms = loaded.terms if loaded else None
    verdict = evaluate(terms, channel, purpose, moment)
    decision_id = decision_store.record_decision(
        connection, merchant_id=merchant_id,
        subscription_id=loaded.subscription_id if loaded else None, subject=subject,
        channel=channel, purpose=purpose, asked_at=moment, decided_at=now,
        allowed=verdict.allowed, reason=verdict.reason)
    return DecisionResult(
        decision_id=decision_id, subject=subject, channel=channel, purpose=purpose,
        allowed=verdict.allowed, reason=verdict.reason,
        reach=decision_store.reach_for(loaded, channel) if loaded and verdict.allowed else None,
        alternatives=alternatives(terms, channel, purpose, moment),
        next_allowed_at=verdict.next_allowed_at, valid_until=verdict.valid_until)


def decide_batch(
    session: Session,
    *,
    merchant_id: str,
    subjects: list[str],
    channel: str,
    purpose: str,
    at: datetime | None,
    data_keys: DataKeys,
    clock: Clock,
) -> list[dict[str, object]]:
    """Answer a campaign in input order (duplicates answered each time); one evidence record."""
    now = clock.now()
    moment = _moment(at, now)
    _relaxed_durability(session)
    connection = session.connection()
    loaded = decision_store.load_terms(connection, merchant_id=merchant_id,
                                       subjects=list(dict.fromkeys(subjects)), purpose=purpose,
                                       now=moment, data_keys=data_keys)
    cache: dict[str, dict[str, object]] = {}
    results: list[dict[str, object]] = []
    for subject in subjects:
        answer = cache.get(subject)
        if answer is None:
            found = loaded.get(subject)
            verdict = evaluate(found.terms if found else None, channel, purpose, moment)
            answer = {"subject": subject, "allowed": verdict.allowed, "reason": verdict.reason,
                      "next_allowed_at": verdict.next_allowed_at}
            cache[subject] = answer
        results.append(answer)
    decision_store.record_batch(connection, merchant_id=merchant_id, channel=channel,
                                purpose=purpose, asked_at=moment, decided_at=now,
                                results=results)
    return results


@dataclass(frozen=True)
class ContactReport:
    contact_id: str
    subject: str
    channel: str
    purpose: str
    occurred_at: datetime
    allowed: bool
    reason: str

    @property
    def violation(self) -> bool:
        return not self.allowed


def report_contact(
    session: Session,
    *,
    merchant_id: str,
    subject: str,
    channel: str,
    purpose: str,
    decision_id: str | None,
    at: datetime | None,
    data_keys: DataKeys,
    clock: Clock,
) -> ContactReport:
    """Record a contact the merchant made; one made when not allowed is a violation.

    The vault judges the contact itself, at the moment it happened, whatever
    the merchant was told before: a stale cached answer is no excuse.
    """
    now = clock.now()
    occurred = at or now
    if occurred > now + REPORT_SKEW:
        raise ValidationFailed("a contact cannot be reported before it happened", field="at")
    if now - occurred > timedelta(days=31):
        raise ValidationFailed("contacts must be reported within 31 days", field="at")
    connection = session.connection()
    loaded = decision_store.load_terms(connection, merchant_id=merchant_id, subjects=[subject],
                                       purpose=purpose, now=occurred, data_keys=data_keys).get(
        subject)
    verdict = evaluate(loaded.terms if loaded else None, channel, purpose, occurred)
    if loaded is None or verdict.reason == UNKNOWN_SUBJECT:
        raise NotFound("no subscription with this subject", field="subject")
    contact_id = new_id()
    connection.execute(insert(ContactEvent.__table__).values(  # type: ignore[attr-defined]
        id=contact_id, subscription_id=loaded.subscription_id, merchant_id=merchant_id,
        channel=channel, purpose=purpose, occurred_at=occurred, recorded_at=now,
        decision_id=decision_id, allowed=verdict.allowed, reason=verdict.reason))
    record_event(session, clock=clock,
                 tag=AuditTag.CONTACT_REPORTED if verdict.allowed else AuditTag.CONTACT_VIOLATION,
                 actor=f"merchant:{merchant_id}", person_ref=loaded.person_id,
                 merchant_id=merchant_id, subject=subject,
                 data={"contact_id": contact_id, "channel": channel, "purpose": purpose,
                       "occurred_at": occurred.isoformat(), "allowed": verdict.allowed,
                       "reason": verdict.reason, "decision_id": decision_id})
    return ContactReport(contact_id, subject, channel, purpose, occurred, verdict.allowed,
                         verdict.reason)
