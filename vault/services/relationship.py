"""One person's relationship with each merchant, as the person's own pages show it.

Everything here reads: the subscription in clear with its permission
``version`` (so a form can save against the version it showed), how often
each merchant reported reaching the person lately and how often that was not
allowed, and the history of one relationship. The history joins two sources
that are never rewritten: the audit log for consent changes (granted,
changed, revoked) and the reported contacts, each judged when it happened.
Only the person the subscription belongs to ever gets any of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from vault.errors import NotFound
from vault.models import AuditEvent, ContactEvent, ContactPermission, Merchant, Subscription
from vault.models.subscription import ACTIVE
from vault.services import subscriptions as subscription_service
from vault.services.audit import AuditTag
from vault.services.keys import DataKeys
from vault.services.permissions import Permission
from vault.services.scopes import PersonGrant
from vault.services.subscriptions import SubscriptionView

#: how far back the dashboard counts a merchant's contacts
CONTACT_WINDOW = timedelta(days=30)
#: the longest history one page shows (the newest entries)
HISTORY_LIMIT = 100

#: kinds of history entry
GRANTED = "granted"
RECONNECTED = "reconnected"
CHANGED = "changed"
REVOKED = "revoked"
CONTACT = "contact"

_CONSENT_TAGS = (AuditTag.SUBSCRIPTION_GRANTED, AuditTag.PERMISSION_CHANGED,
                 AuditTag.SUBSCRIPTION_REVOKED)


@dataclass(frozen=True)
class Relationship:
    """A subscription in clear, with its merchant's name and its permissions' version."""

    subscription: Subscription
    merchant_name: str
    terms: SubscriptionView
    version: int

    @property
    def id(self) -> str:
        return self.subscription.id

    @property
    def active(self) -> bool:
        return self.subscription.status == ACTIVE


def _open(session: Session, sub: Subscription, *, data_keys: DataKeys) -> Relationship:
    merchant = session.get(Merchant, sub.merchant_id)
    row = session.get(ContactPermission, sub.id)
    return Relationship(sub, merchant.name if merchant else "",
                        subscription_service.view(session, sub, data_keys=data_keys),
                        row.version if row else 0)


def load(session: Session, *, person_id: str, subscription_id: str,
         data_keys: DataKeys) -> Relationship:
    """The person's own subscription; ``NotFound`` for anyone else's, as for a missing one."""
    sub = session.get(Subscription, subscription_id, populate_existing=True)
    if sub is None or sub.person_id != person_id:
        raise NotFound("no such subscription")
    return _open(session, sub, data_keys=data_keys)


def for_person(session: Session, person_id: str, *, data_keys: DataKeys) -> list[Relationship]:
    """Every subscription of the person: active ones first, each group oldest first."""
    subs = subscription_service.list_for_person(session, person_id)
    subs.sort(key=lambda s: s.status != ACTIVE)
    return [_open(session, sub, data_keys=data_keys) for sub in subs]


@dataclass(frozen=True)
class ContactSummary:
    """Contacts one merchant reported in a window, and how many were not allowed."""

    total: int = 0
    violations: int = 0


def recent_contacts(session: Session, subscription_ids: list[str], *,
                    since: datetime) -> dict[str, ContactSummary]:
    """Per subscription, the contacts reported as made after ``since``."""
    if not subscription_ids:
        return {}
    counted = session.exec(
        select(ContactEvent.subscription_id, ContactEvent.allowed, func.count())
        .where(col(ContactEvent.subscription_id).in_(subscription_ids),
               ContactEvent.occurred_at > since)
        .group_by(ContactEvent.subscription_id, ContactEvent.allowed)
    ).all()
    totals: dict[str, list[int]] = {}
    for subscription_id, allowed, count in counted:
        entry = totals.setdefault(subscription_id, [0, 0])
        entry[0] += int(count)
        if not allowed:
            entry[1] += int(count)
    return {key: ContactSummary(total, violations) for key, (total, violations) in totals.items()}


@dataclass(frozen=True)
class HistoryEntry:
    """One moment in a relationship, newest first on the page.

    ``kind`` says which fields apply: ``granted`` / ``reconnected`` carry
    ``granted`` and ``requested``; ``changed`` carries ``before`` (None when the
    permission was new) and ``after``; ``contact`` carries the channel, the
    purpose, whether it was ``allowed`` and the decision's ``reason``.
    """

    occurred_at: datetime
    kind: str
    granted: PersonGrant | None = None
    requested: PersonGrant | None = None
    before: Permission | None = None
    after: Permission | None = None
    channel: str | None = None
    purpose: str | None = None
    allowed: bool = True
    reason: str | None = None

    @property
    def violation(self) -> bool:
        return self.kind == CONTACT and not self.allowed


def _grant(scope: object) -> PersonGrant:
    try:
        return PersonGrant.parse(scope if isinstance(scope, str) else "")
    except ValueError:
        return PersonGrant()


def _consent_entry(event: AuditEvent) -> HistoryEntry:
    data = json.loads(event.data)
    if event.tag == AuditTag.SUBSCRIPTION_GRANTED:
        return HistoryEntry(event.occurred_at, GRANTED if data.get("created") else RECONNECTED,
                            granted=_grant(data.get("granted")),
                            requested=_grant(data.get("requested")))
    if event.tag == AuditTag.PERMISSION_CHANGED:
        before = data.get("before")
        after = Permission.from_json(data["after"])
        return HistoryEntry(event.occurred_at, CHANGED,
                            before=Permission.from_json(before) if before else None,
                            after=after, channel=after.channel, purpose=after.purpose)
    return HistoryEntry(event.occurred_at, REVOKED)


def history(session: Session, relationship: Relationship,
            *, limit: int = HISTORY_LIMIT) -> tuple[list[HistoryEntry], bool]:
    """The newest ``limit`` entries of the relationship, and whether there are older ones."""
    sub = relationship.subscription
    events = session.exec(
        select(AuditEvent)
        .where(AuditEvent.person_ref == sub.person_id, AuditEvent.subject == sub.subject,
               AuditEvent.merchant_id == sub.merchant_id,
               col(AuditEvent.tag).in_([str(tag) for tag in _CONSENT_TAGS]))
        .order_by(col(AuditEvent.seq).desc()).limit(limit + 1)
    ).all()
    contacts = session.exec(
        select(ContactEvent).where(ContactEvent.subscription_id == sub.id)
        .order_by(col(ContactEvent.occurred_at).desc(), col(ContactEvent.id).desc())
        .limit(limit + 1)
    ).all()
    entries = [_consent_entry(event) for event in events]
    entries += [HistoryEntry(c.occurred_at, CONTACT, channel=c.channel, purpose=c.purpose,
                             allowed=c.allowed, reason=c.reason) for c in contacts]
    # Stable sort: within one instant the audit log's own (newest first) order stays.
    entries.sort(key=lambda entry: entry.occurred_at, reverse=True)
    return entries[:limit], len(entries) > limit
