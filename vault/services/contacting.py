"""What merchants do every day: ask before reaching someone, and report what they did."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import insert, select
from sqlmodel import Session

from vault.clock import Clock
from vault.db import Driver
from vault.errors import NotFound, ValidationFailed
from vault.models import ContactEvent, Decision
from vault.models.types import new_id
from vault.services import decision_store
from vault.services.audit import AuditTag, record_event
from vault.services.decisions import UNKNOWN_SUBJECT, Verdict, alternatives, evaluate
from vault.services.keys import DataKeys
from vault.services.terms_history import REPORT_WINDOW

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


def _relaxed_durability(db: Driver) -> None:
    """Let PostgreSQL acknowledge decision evidence before it reaches the disk.

    A decision changes nothing about a person; its evidence row is written
    with ``synchronous_commit`` off, which keeps the fsync out of the hot path
    and risks only the last fraction of a second of evidence if the database
    server itself crashes. Consent changes and contact reports always commit
    synchronously. The hot path's own PostgreSQL connections are set up that
    way already (``Database.driver``).
    """
    if db.dialect == "postgresql" and not db.relaxed:
        db.run("SET LOCAL synchronous_commit TO OFF")


def _driver(session: Session | Driver) -> Driver:
    """Services take an ORM session; the hot path hands in a driver connection."""
    return session if isinstance(session, Driver) else Driver.of(session.connection())


def _moment(at: datetime | None, now: datetime) -> datetime:
    if at is None:
        return now
    if abs(at - now) > ASK_HORIZON:
        raise ValidationFailed("at must be within a year of now", field="at")
    return at


@dataclass(frozen=True)
class DecisionEvidence:
    """What must be kept of one answer (never the address)."""

    decision_id: str
    merchant_id: str
    subscription_id: str | None
    subject: str
    channel: str
    purpose: str
    asked_at: datetime
    decided_at: datetime
    allowed: bool
    reason: str


@dataclass(frozen=True)
class BatchEvidence:
    """A campaign's answers in input order: ``verdicts[i]`` answers ``subjects[i]``."""

    merchant_id: str
    channel: str
    purpose: str
    asked_at: datetime
    decided_at: datetime
    subjects: list[str]
    verdicts: list[Verdict]
    #: ``results_json`` already written, by the ``moment`` it was written with (None: any)
    _written: dict[object, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def results(self) -> list[dict[str, object]]:
        """The answers as the API's batch results: subject, allowed, reason, next_allowed_at."""
        return [{"subject": subject, "allowed": verdict.allowed, "reason": verdict.reason,
                 "next_allowed_at": verdict.next_allowed_at}
                for subject, verdict in zip(self.subjects, self.verdicts, strict=True)]

    def results_json(self, moment: Callable[[datetime], str] = str) -> str:
        """``results`` as compact JSON, times written by ``moment`` (see ``results_json``).

        The evidence and the response are written with different ``moment``s; when
        no answer has a time, the two are the same text, written once.
        """
        timed = any(verdict.next_allowed_at is not None
                    for verdict in {id(verdict): verdict for verdict in self.verdicts}.values())
        key = moment if timed else None
        written = self._written.get(key)
        if written is None:
            written = self._written[key] = decision_store.results_json(
                self.subjects, self.verdicts, moment)
        return written


def answer(
    session: Session | Driver,
    *,
    merchant_id: str,
    subject: str,
    channel: str,
    purpose: str,
    at: datetime | None,
    data_keys: DataKeys,
    clock: Clock,
) -> tuple[DecisionResult, DecisionEvidence]:
    """Answer one question, reading only; the caller keeps the evidence (``keep``).

    Reading and keeping are split so the API can end its read snapshot before
    it appends the evidence in a short write transaction of its own.
    """
    now = clock.now()
    moment = _moment(at, now)
    loaded = decision_store.load_terms(_driver(session), merchant_id=merchant_id,
                                       subject=subject, purpose=purpose, now=moment,
                                       data_keys=data_keys)
    terms = loaded.terms if loaded else None
    verdict = evaluate(terms, channel, purpose, moment)
    decision_id = new_id()
    result = DecisionResult(
        decision_id=decision_id, subject=subject, channel=channel, purpose=purpose,
        allowed=verdict.allowed, reason=verdict.reason,
        reach=decision_store.reach_for(loaded, channel) if loaded and verdict.allowed else None,
        alternatives=alternatives(terms, channel, purpose, moment),
        next_allowed_at=verdict.next_allowed_at, valid_until=verdict.valid_until)
    evidence = DecisionEvidence(decision_id, merchant_id,
                                loaded.subscription_id if loaded else None, subject, channel,
                                purpose, moment, now, verdict.allowed, verdict.reason)
    return result, evidence


def keep(session: Session | Driver, evidence: DecisionEvidence | BatchEvidence) -> None:
    """Append the evidence of an answer (see ``_relaxed_durability``)."""
    db = _driver(session)
    _relaxed_durability(db)
    if isinstance(evidence, BatchEvidence):
        decision_store.record_batch(
            db, merchant_id=evidence.merchant_id, channel=evidence.channel,
            purpose=evidence.purpose, asked_at=evidence.asked_at,
            decided_at=evidence.decided_at, results=evidence.results_json(),
            size=len(evidence.verdicts),
            allowed_count=sum(1 for verdict in evidence.verdicts if verdict.allowed))
        return
    decision_store.record_decision(
        db, decision_id=evidence.decision_id,
        merchant_id=evidence.merchant_id, subscription_id=evidence.subscription_id,
        subject=evidence.subject, channel=evidence.channel, purpose=evidence.purpose,
        asked_at=evidence.asked_at, decided_at=evidence.decided_at,
        allowed=evidence.allowed, reason=evidence.reason)


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
    """Answer one question and keep the evidence in the same session."""
    result, evidence = answer(session, merchant_id=merchant_id, subject=subject,
                              channel=channel, purpose=purpose, at=at, data_keys=data_keys,
                              clock=clock)
    keep(session, evidence)
    return result


def answer_batch(
    session: Session | Driver,
    *,
    merchant_id: str,
    subjects: list[str],
    channel: str,
    purpose: str,
    at: datetime | None,
    data_keys: DataKeys,
    clock: Clock,
) -> BatchEvidence:
    """Answer a campaign in input order (duplicates answered each time), reading only."""
    now = clock.now()
    moment = _moment(at, now)
    found = decision_store.campaign_verdicts(
        _driver(session), merchant_id=merchant_id, subjects=list(dict.fromkeys(subjects)),
        channel=channel, purpose=purpose, now=moment, data_keys=data_keys)
    unknown = evaluate(None, channel, purpose, moment)
    return BatchEvidence(merchant_id, channel, purpose, moment, now, list(subjects),
                         [found.get(subject, unknown) for subject in subjects])


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
    """Answer a campaign and keep one evidence record in the same session."""
    batch = answer_batch(session, merchant_id=merchant_id, subjects=subjects, channel=channel,
                         purpose=purpose, at=at, data_keys=data_keys, clock=clock)
    keep(session, batch)
    return batch.results


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


def _check_quoted_decision(session: Session, decision_id: str, *, merchant_id: str,
                           subject: str, channel: str, purpose: str) -> None:
    """A quoted decision must be one this merchant was given about this very contact.

    The person and auditors read the quoted id as "the shop asked first": a
    shop must not be able to cite another shop's answer, or one about another
    person, channel or purpose. Another merchant's decision is refused the
    same way as one that does not exist, so ids reveal nothing.
    """
    d = Decision.__table__  # type: ignore[attr-defined]
    asked = session.connection().execute(
        select(d.c.subject, d.c.channel, d.c.purpose).where(
            d.c.id == decision_id, d.c.merchant_id == merchant_id)).first()
    if asked is None or tuple(asked) != (subject, channel, purpose):
        raise ValidationFailed("decision_id does not name a decision this shop was given "
                               "for this subject, channel and purpose", field="decision_id")


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
    the merchant was told before: a stale cached answer is no excuse. It is
    judged by the terms in force at that moment (``vault.services.terms_history``),
    not by today's: a change the person made since, either way, does not
    change what the contact was. The weekly cap counts the contacts before it.
    """
    now = clock.now()
    occurred = at or now
    if occurred > now + REPORT_SKEW:
        raise ValidationFailed("a contact cannot be reported before it happened", field="at")
    if now - occurred > REPORT_WINDOW:
        raise ValidationFailed("contacts must be reported within 31 days", field="at")
    connection = session.connection()
    loaded = decision_store.load_terms_at(Driver.of(connection), merchant_id=merchant_id,
                                          subject=subject, purpose=purpose, at=occurred,
                                          data_keys=data_keys)
    verdict = evaluate(loaded.terms if loaded else None, channel, purpose, occurred)
    if loaded is None or verdict.reason == UNKNOWN_SUBJECT:
        raise NotFound("no subscription with this subject", field="subject")
    if decision_id is not None:
        _check_quoted_decision(session, decision_id, merchant_id=merchant_id, subject=subject,
                               channel=channel, purpose=purpose)
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
