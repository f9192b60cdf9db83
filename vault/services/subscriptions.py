"""Subscriptions: a person grants a merchant terms, and can take them back.

A grant creates the subscription (or updates it when the person connects the
same merchant again) with exactly the permissions the person ticked, and
revocation ends it at once. Each writes its audit event and queues its
webhook in the caller's transaction, so the change, the evidence and the
notification commit together.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, select

from vault.clock import Clock
from vault.crypto.envelope import DataKey
from vault.errors import Conflict, NotFound, ValidationFailed
from vault.models import ContactPermission, Merchant, Subscription
from vault.models.oauth import OAuthToken
from vault.models.subscription import ACTIVE, REVOKED
from vault.models.types import new_id
from vault.services import terms
from vault.services.audit import AuditTag, record_event
from vault.services.keys import DataKeys
from vault.services.outbox import queue_webhook
from vault.services.permissions import (
    Permission,
    PermissionGrid,
    grid_from_pairs,
    open_grid,
    seal_grid,
)
from vault.services.rules import QuietHours
from vault.services.scopes import PersonGrant
from vault.services.validation import clean_channel, clean_purpose

_TABLE = "subscription"


def new_subject() -> str:
    """A pairwise subject id: random, so two merchants' ids for one person never match."""
    return "sub_" + secrets.token_urlsafe(18)


@dataclass(frozen=True)
class SubscriptionView:
    """A subscription in clear, as its person sees it."""

    id: str
    subject: str
    merchant_id: str
    status: str
    permissions: PermissionGrid
    shared_fields: tuple[str, ...]

    @property
    def grant(self) -> PersonGrant:
        allowed = tuple(k for k, p in self.permissions.items() if p.allowed)
        return PersonGrant(contact=allowed, profile=self.shared_fields)


def _seal_fields(key: DataKey, sub: Subscription, fields: tuple[str, ...]) -> bytes:
    return key.encrypt(json.dumps(list(fields)).encode(), table=_TABLE, row_id=sub.id,
                       field="shared_fields")


def view(session: Session, sub: Subscription, *, data_keys: DataKeys) -> SubscriptionView:
    """Decrypt a subscription's terms."""
    grid: PermissionGrid = {}
    fields: tuple[str, ...] = ()
    if sub.status != "erased":
        key = data_keys.for_person(session, sub.person_id)
        row = session.get(ContactPermission, sub.id)
        if row is not None:
            grid = open_grid(key, row)
        if sub.shared_fields is not None:
            fields = tuple(json.loads(key.decrypt(sub.shared_fields, table=_TABLE,
                                                  row_id=sub.id, field="shared_fields")))
    return SubscriptionView(sub.id, sub.subject, sub.merchant_id, sub.status, grid, fields)


def find_for(session: Session, person_id: str, merchant_id: str) -> Subscription | None:
    return session.exec(
        select(Subscription).where(Subscription.person_id == person_id,
                                   Subscription.merchant_id == merchant_id)
    ).first()


def grant(
    session: Session,
    *,
    person_id: str,
    merchant: Merchant,
    granted: PersonGrant,
    requested: PersonGrant,
    data_keys: DataKeys,
    clock: Clock,
) -> Subscription:
    """Create or update the person's subscription to ``merchant`` with exactly ``granted``."""
    now = clock.now()
    sub = find_for(session, person_id, merchant.id)
    created = sub is None
    previous: PermissionGrid = {}
    if sub is None:
        sub = Subscription(id=new_id(), person_id=person_id, merchant_id=merchant.id,
                           subject=new_subject(), status=ACTIVE, created_at=now,
                           updated_at=now)
        session.add(sub)
        session.flush()
    else:
        previous = view(session, sub, data_keys=data_keys).permissions
        sub.status = ACTIVE
        sub.revoked_at = None
        sub.updated_at = now
    key = data_keys.for_person(session, person_id)
    grid = grid_from_pairs(granted.contact, previous)
    sub.shared_fields = _seal_fields(key, sub, granted.profile)
    session.add(sub)
    row = session.get(ContactPermission, sub.id)
    if row is None:
        session.add(ContactPermission(subscription_id=sub.id, record=seal_grid(key, sub.id, grid),
                                      version=1, updated_at=now))
    else:
        row.record = seal_grid(key, sub.id, grid)
        row.version += 1
        row.updated_at = now
        session.add(row)
    terms.refresh(session, person_id, data_keys=data_keys, now=now, subscription_id=sub.id)
    record_event(session, clock=clock, tag=AuditTag.SUBSCRIPTION_GRANTED,
                 actor=f"person:{person_id}", person_ref=person_id, merchant_id=merchant.id,
                 subject=sub.subject,
                 data={"granted": granted.scope, "requested": requested.scope,
                       "method": "consent_page", "created": created})
    queue_webhook(session, clock=clock, merchant_id=merchant.id,
                  event_type="subscription.created" if created else "subscription.updated",
                  subject=sub.subject, data={"scope": granted.scope, "status": ACTIVE})
    session.flush()
    return sub


def revoke(
    session: Session, *, person_id: str, subscription_id: str, data_keys: DataKeys,
    clock: Clock,
) -> Subscription:
    """End a subscription now: status, every token of the grant, audit event, webhook.

    Its sealed terms go too: a decision never reads them for a subscription
    that is not active, and a grant made again builds them afresh. They are
    kept in the history, sealed anew with the person's data key, for the
    contacts made before the revocation and reported after it.
    """
    sub = session.get(Subscription, subscription_id, with_for_update=True, populate_existing=True)
    if sub is None or sub.person_id != person_id:
        raise NotFound("no such subscription")
    if sub.status != ACTIVE:
        return sub
    now = clock.now()
    terms.end(session, sub, REVOKED, key=data_keys.for_person(session, person_id), now=now)
    sub.revoked_at = now
    sub.updated_at = now
    session.add(sub)
    session.execute(
        update(OAuthToken)
        .where(OAuthToken.subscription_id == sub.id, OAuthToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    record_event(session, clock=clock, tag=AuditTag.SUBSCRIPTION_REVOKED,
                 actor=f"person:{person_id}", person_ref=person_id,
                 merchant_id=sub.merchant_id, subject=sub.subject, data={})
    queue_webhook(session, clock=clock, merchant_id=sub.merchant_id,
                  event_type="subscription.revoked", subject=sub.subject,
                  data={"status": REVOKED})
    session.flush()
    return sub


def list_for_person(session: Session, person_id: str) -> list[Subscription]:
    return list(session.exec(
        select(Subscription).where(Subscription.person_id == person_id)
        .order_by(Subscription.created_at)
    ))


def describe(session: Session, sub: Subscription, *, data_keys: DataKeys) -> dict[str, object]:
    """A subscription as its merchant may see it: terms, never profile values."""
    terms = view(session, sub, data_keys=data_keys)
    return {
        "subject": sub.subject,
        "status": sub.status,
        "created_at": sub.created_at,
        "updated_at": sub.updated_at,
        "permissions": [
            {**p.to_json(), "expires_at": p.expires_at}
            for p in terms.permissions.values()
        ] if sub.status == ACTIVE else [],
        "shared_fields": list(terms.shared_fields) if sub.status == ACTIVE else [],
    }


def describe_for_merchant(
    session: Session, merchant_id: str, subject: str, *, data_keys: DataKeys
) -> dict[str, object]:
    return describe(session, merchant_subscription(session, merchant_id, subject),
                    data_keys=data_keys)


def merchant_subscription(session: Session, merchant_id: str, subject: str) -> Subscription:
    """The merchant's subscription known as ``subject``.

    Another merchant's subject is the same ``NotFound`` as an unknown one, so a
    subject reveals nothing about the person behind it.
    """
    sub = session.exec(
        select(Subscription).where(Subscription.merchant_id == merchant_id,
                                   Subscription.subject == subject)
    ).first()
    if sub is None:
        raise NotFound("no subscription with this subject", field="subject")
    return sub


def _decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        value = base64.urlsafe_b64decode(cursor.encode() + b"==").decode()
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("cursor is not valid", field="cursor") from None
    if not value.isalnum() or len(value) > 32:
        raise ValidationFailed("cursor is not valid", field="cursor")
    return value


def page_for_merchant(
    session: Session, merchant_id: str, *, cursor: str | None, limit: int, data_keys: DataKeys
) -> tuple[list[dict[str, object]], str | None]:
    """One page of the merchant's subscriptions, ordered by id, and the next cursor."""
    after = _decode_cursor(cursor)
    query = select(Subscription).where(Subscription.merchant_id == merchant_id)
    if after is not None:
        query = query.where(Subscription.id > after)
    rows = list(session.exec(query.order_by(Subscription.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    items = [describe(session, sub, data_keys=data_keys) for sub in rows]
    next_cursor = (base64.urlsafe_b64encode(rows[-1].id.encode()).rstrip(b"=").decode()
                   if more and rows else None)
    return items, next_cursor


def lock_permissions(session: Session, *, person_id: str, subscription_id: str,
                     expected_version: int | None) -> tuple[Subscription, ContactPermission]:
    """The person's active subscription and its permission row, both locked for a change.

    ``NotFound`` unless the subscription is the person's; ``Conflict`` (field
    ``subscription``) when it is no longer active, and (field ``version``)
    when the grid was saved since ``expected_version`` (None: no check).
    """
    sub = session.get(Subscription, subscription_id, with_for_update=True, populate_existing=True)
    if sub is None or sub.person_id != person_id:
        raise NotFound("no such subscription")
    if sub.status != ACTIVE:
        raise Conflict("this subscription is no longer active", field="subscription")
    row = session.get(ContactPermission, sub.id, with_for_update=True, populate_existing=True)
    if row is None:
        raise NotFound("no such subscription")
    if expected_version is not None and row.version != expected_version:
        raise Conflict("the permissions were changed elsewhere; reload and try again",
                       field="version")
    return sub, row


def set_permission(
    session: Session,
    *,
    person_id: str,
    subscription_id: str,
    channel: str,
    purpose: str,
    allowed: bool,
    max_per_week: int | None = None,
    quiet_hours: QuietHours | None = None,
    expires_at: datetime | None = None,
    data_keys: DataKeys,
    clock: Clock,
    expected_version: int | None = None,
) -> Permission:
    """The person changes one permission of one subscription.

    Takes effect for the next decision; writes the audit event and queues
    ``subscription.updated`` in the same transaction. The person is in
    charge: they may allow any (channel, purpose), not only what was asked.
    """
    clean_channel(channel)
    clean_purpose(purpose)
    if max_per_week is not None and not (isinstance(max_per_week, int) and
                                         0 < max_per_week <= 1000):
        raise ValidationFailed("max_per_week must be between 1 and 1000", field="max_per_week")
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValidationFailed("expires_at needs a time zone", field="expires_at")
    sub, row = lock_permissions(session, person_id=person_id, subscription_id=subscription_id,
                                expected_version=expected_version)
    key = data_keys.for_person(session, person_id)
    grid = open_grid(key, row)
    before = grid.get((channel, purpose))
    after = Permission(channel, purpose, allowed, max_per_week, quiet_hours, expires_at)
    grid[(channel, purpose)] = after
    now = clock.now()
    row.record = seal_grid(key, sub.id, grid)
    row.version += 1
    row.updated_at = now
    sub.updated_at = now
    session.add(row)
    session.add(sub)
    terms.refresh(session, person_id, data_keys=data_keys, now=now, subscription_id=sub.id)
    record_event(session, clock=clock, tag=AuditTag.PERMISSION_CHANGED,
                 actor=f"person:{person_id}", person_ref=person_id,
                 merchant_id=sub.merchant_id, subject=sub.subject,
                 data={"before": before.to_json() if before else None,
                       "after": after.to_json(), "version": row.version})
    granted = " ".join(sorted(f"contact:{c}:{p}" for (c, p), perm in grid.items()
                              if perm.allowed))
    queue_webhook(session, clock=clock, merchant_id=sub.merchant_id,
                  event_type="subscription.updated", subject=sub.subject,
                  data={"status": ACTIVE, "contact_scope": granted})
    session.flush()
    return after
