"""What happened in a person's vault: consent changes, reported contacts, contacts per week.

The timeline merges two sources, newest first:

* the consent log (``audit_event``): every event whose ``person_ref`` is the
  person, or whose ``subject`` is the pairwise id of one of their
  subscriptions — grants, permission changes, revocations, rules and profile
  changes. Contact reports are left out here because
* the reported contacts (``contact_event``) of the person's subscriptions
  are the second source: they carry the moment the contact happened and the
  vault's verdict (``allowed`` false is a violation).

Everything is selected through the person's own subscriptions or their own
id, so no other person's event can appear, whatever filter is asked for.
Weekly counts use calendar weeks (Monday to Sunday) in the person's time
zone, ending with the current week, counted on the vault's clock.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from vault.errors import NotFound
from vault.models import AuditEvent, ContactEvent, Merchant, Subscription
from vault.models.subscription import ACTIVE, ERASED
from vault.services import subscriptions as subscription_service
from vault.services.audit import AuditTag
from vault.services.keys import DataKeys

#: events of the consent log the timeline does not show: contacts come from
#: ``contact_event`` instead, and an erased person never sees their vault again
HIDDEN_TAGS = (AuditTag.CONTACT_REPORTED, AuditTag.CONTACT_VIOLATION, AuditTag.PERSON_ERASED)

PER_PAGE = 50
#: the oldest page offered; older history is in the export ("Download everything")
MAX_PAGE = 100
CHART_WEEKS = 10


@dataclass(frozen=True)
class Connection:
    """One of the person's subscriptions as a merchant filter offers it."""

    subscription_id: str
    merchant_id: str
    merchant_name: str
    subject: str
    status: str


@dataclass(frozen=True)
class ConsentChange:
    """An event of the consent log about the person."""

    id: str
    occurred_at: datetime
    tag: str
    merchant_id: str | None
    merchant_name: str | None
    data: dict[str, object]
    kind: str = "change"


@dataclass(frozen=True)
class ReportedContact:
    """A contact a merchant reported; ``allowed`` false means it broke the person's terms."""

    id: str
    occurred_at: datetime
    merchant_id: str
    merchant_name: str | None
    channel: str
    purpose: str
    allowed: bool
    reason: str
    kind: str = "contact"

    @property
    def violation(self) -> bool:
        return not self.allowed


TimelineEntry = ConsentChange | ReportedContact


@dataclass(frozen=True)
class TimelinePage:
    entries: list[TimelineEntry]
    page: int
    has_more: bool


@dataclass(frozen=True)
class WeekCount:
    """Contacts of one merchant in one calendar week (Monday ``start``, person's zone)."""

    start: date
    contacts: int
    violations: int
    #: more contacts of some (channel, purpose) than its ``max_per_week`` allows
    over_cap: bool


@dataclass(frozen=True)
class MerchantWeeks:
    """A merchant's contacts per week against the weekly limits the person set."""

    connection: Connection
    weeks: list[WeekCount]
    #: the most contacts all its permissions together allow in a week; None when
    #: some allowed (channel, purpose) has no limit
    cap: int | None
    #: every (channel, purpose) it may use with a weekly limit, and that limit
    caps: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(w.contacts for w in self.weeks)

    @property
    def weeks_over(self) -> int:
        return sum(1 for w in self.weeks if w.over_cap or
                   (self.cap is not None and w.contacts > self.cap))


def connections(session: Session, person_id: str) -> list[Connection]:
    """The person's subscriptions with merchant names, in the order they were made."""
    rows = session.exec(
        select(Subscription, Merchant.name)
        .join(Merchant, col(Merchant.id) == col(Subscription.merchant_id))
        .where(Subscription.person_id == person_id)
        .order_by(col(Subscription.created_at), col(Subscription.id))
    ).all()
    return [Connection(sub.id, sub.merchant_id, name, sub.subject, sub.status)
            for sub, name in rows]


def find_connection(session: Session, person_id: str, value: str) -> Connection:
    """The person's subscription named by its id or its merchant's id; else ``NotFound``.

    Only the person's own subscriptions are searched, so another person's
    subscription or a merchant the person never connected is simply unknown.
    """
    for connection in connections(session, person_id):
        if value in (connection.subscription_id, connection.merchant_id):
            return connection
    raise NotFound("no such merchant among your subscriptions", field="merchant")


def _audit_filter(person_id: str, scope: Sequence[Connection]) -> object:
    """Events about the person: their own id, or one of their subscriptions' subjects.

    The subject test is joined with its merchant so the database can use the
    ``merchant_id`` index instead of reading the whole log.
    """
    own = col(AuditEvent.person_ref) == person_id
    if not scope:
        return own
    by_subject = and_(
        col(AuditEvent.merchant_id).in_(sorted({c.merchant_id for c in scope})),
        col(AuditEvent.subject).in_(sorted({c.subject for c in scope})),
    )
    return or_(own, by_subject)


def timeline(
    session: Session,
    person_id: str,
    *,
    merchant: Connection | None = None,
    page: int = 1,
    per_page: int = PER_PAGE,
) -> TimelinePage:
    """One page of the person's timeline, newest first (optionally one merchant's only)."""
    page = min(max(page, 1), MAX_PAGE)
    everything = connections(session, person_id)
    names = {c.merchant_id: c.merchant_name for c in everything}
    scope = [merchant] if merchant is not None else everything
    wanted = page * per_page + 1

    audit_query = select(AuditEvent).where(
        col(AuditEvent.tag).not_in([str(t) for t in HIDDEN_TAGS]))
    if merchant is not None:
        audit_query = audit_query.where(
            col(AuditEvent.merchant_id) == merchant.merchant_id,
            or_(col(AuditEvent.person_ref) == person_id,
                col(AuditEvent.subject) == merchant.subject))
    else:
        audit_query = audit_query.where(_audit_filter(person_id, scope))  # type: ignore[arg-type]
    events = session.exec(
        audit_query.order_by(col(AuditEvent.occurred_at).desc(), col(AuditEvent.seq).desc())
        .limit(wanted)
    ).all()
    changes: list[TimelineEntry] = [
        ConsentChange(e.id, e.occurred_at, e.tag, e.merchant_id,
                      names.get(e.merchant_id or ""), _data(e.data))
        for e in events
    ]

    contacts: list[TimelineEntry] = []
    if scope:
        rows = session.exec(
            select(ContactEvent)
            .where(col(ContactEvent.subscription_id).in_([c.subscription_id for c in scope]))
            .order_by(col(ContactEvent.occurred_at).desc(), col(ContactEvent.id).desc())
            .limit(wanted)
        ).all()
        contacts = [
            ReportedContact(r.id, r.occurred_at, r.merchant_id, names.get(r.merchant_id),
                            r.channel, r.purpose, r.allowed, r.reason)
            for r in rows
        ]

    merged = sorted([*changes, *contacts], key=lambda e: e.occurred_at, reverse=True)
    start = (page - 1) * per_page
    return TimelinePage(merged[start:start + per_page], page,
                        len(merged) > start + per_page and page < MAX_PAGE)


def _data(raw: str) -> dict[str, object]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def week_start(moment: datetime, zone: ZoneInfo) -> date:
    """The Monday of the calendar week ``moment`` falls in, in ``zone``."""
    local = moment.astimezone(zone).date()
    return local - timedelta(days=local.weekday())


def weekly_contacts(
    session: Session,
    person_id: str,
    *,
    now: datetime,
    time_zone: str,
    data_keys: DataKeys,
    merchant: Connection | None = None,
    weeks: int = CHART_WEEKS,
) -> list[MerchantWeeks]:
    """For each of the person's merchants, contacts per week over the last ``weeks`` weeks.

    The caps are the ones in force now (``max_per_week`` of each allowed
    permission). A week is over the cap when some (channel, purpose) had
    more contacts that week than its limit allows.
    """
    zone = ZoneInfo(time_zone)
    this_week = week_start(now, zone)
    starts = [this_week - timedelta(weeks=weeks - 1 - i) for i in range(weeks)]
    since = datetime.combine(starts[0], time(0), tzinfo=zone)
    scope = [merchant] if merchant is not None else connections(session, person_id)
    scope = [c for c in scope if c.status != ERASED]
    if not scope:
        return []
    rows = session.exec(
        select(ContactEvent.subscription_id, ContactEvent.channel, ContactEvent.purpose,
               ContactEvent.occurred_at, ContactEvent.allowed)
        .where(col(ContactEvent.subscription_id).in_([c.subscription_id for c in scope]),
               col(ContactEvent.occurred_at) >= since)
    ).all()
    index = {start: i for i, start in enumerate(starts)}
    result: list[MerchantWeeks] = []
    for connection in scope:
        limits = _limits(session, connection, data_keys)
        caps = {pair: limit for pair, limit in limits.items() if limit is not None}
        totals = [0] * weeks
        violations = [0] * weeks
        per_pair: dict[tuple[str, str], list[int]] = {}
        for sub_id, channel, purpose, occurred_at, allowed in rows:
            if sub_id != connection.subscription_id:
                continue
            i = index.get(week_start(occurred_at, zone))
            if i is None:
                continue
            totals[i] += 1
            violations[i] += 0 if allowed else 1
            per_pair.setdefault((channel, purpose), [0] * weeks)[i] += 1
        over = [any(per_pair.get(pair, [0] * weeks)[i] > limit for pair, limit in caps.items())
                for i in range(weeks)]
        result.append(MerchantWeeks(
            connection=connection,
            weeks=[WeekCount(starts[i], totals[i], violations[i], over[i])
                   for i in range(weeks)],
            # a total exists only when every allowed (channel, purpose) has a limit
            cap=sum(caps.values()) if limits and len(caps) == len(limits) else None,
            caps=caps,
        ))
    return result


def _limits(session: Session, connection: Connection,
            data_keys: DataKeys) -> dict[tuple[str, str], int | None]:
    """Each (channel, purpose) the merchant may use now, with its weekly limit (or None)."""
    sub = session.get(Subscription, connection.subscription_id)
    if sub is None or sub.status != ACTIVE:
        return {}
    terms = subscription_service.view(session, sub, data_keys=data_keys)
    return {pair: p.max_per_week for pair, p in terms.permissions.items() if p.allowed}
