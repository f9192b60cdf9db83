"""Dashboard "Who may reach me": one card per subscribed merchant, and revoking one.

Revoking takes two clicks and never happens on a GET: "Revoke <shop>" opens
a confirmation page (``GET /subscriptions/<id>/revoke``) that says what will
happen; its "Yes, revoke" posts to the same address. The words shared with
the merchant page (titles of channels and purposes, limits, what changed)
live here too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import format_date, format_time
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from vault.errors import NotFound
from vault.extensions import runtime
from vault.models import Merchant, Subscription
from vault.models.subscription import ACTIVE
from vault.services import relationship as relationship_service
from vault.services import subscriptions as subscription_service
from vault.services.permission_edits import expiry_date, format_clock
from vault.services.permissions import Permission
from vault.services.relationship import CONTACT_WINDOW, ContactSummary, Relationship
from vault.ui.labels import CHANNEL_LABELS, FIELD_LABELS
from vault.ui.session import current_person_id, login_required
from vault.ui.views import bp
from vault.vocabulary import CHANNELS, PURPOSES
from vault.web.i18n import current_time_zone
from vault.web.request_db import commit, db_session

#: a purpose as the title of a group of channels
PURPOSE_TITLES = {
    "order_updates": _l("About your orders"),
    "service": _l("Service and help"),
    "abandoned_cart": _l("A shopping cart you left"),
    "offers": _l("Offers and newsletters"),
    "personalised_offers": _l("Offers based on what you did or who you are"),
    "surveys": _l("Surveys"),
    "partner_offers": _l("Offers from partners (third parties)"),
}

#: a channel as the label of its switch within a purpose
CHANNEL_TITLES = {
    "email": _l("E-mail"),
    "sms": _l("Text message (SMS)"),
    "phone": _l("Phone call"),
    "post": _l("Letter by post"),
    "push": _l("App notification"),
}

#: why a reported contact was not allowed, as the person reads it
REASON_TEXTS = {
    "revoked": _l("you had revoked its access"),
    "not_granted": _l("you had not allowed this"),
    "blocked_by_person": _l("your own rules forbid this"),
    "expired": _l("your permission had ended"),
    "quiet_hours": _l("it was during your quiet hours"),
    "frequency_cap": _l("it had already reached your weekly limit"),
    "erased": _l("you had deleted your account"),
}


# -- words shared with the merchant page ----------------------------------------------------


def cell_title(channel: str, purpose: str) -> str:
    """One permission in a few words: "Offers and newsletters by e-mail"."""
    return _("%(purpose)s by %(channel)s", purpose=PURPOSE_TITLES[purpose],
             channel=CHANNEL_LABELS[channel])


def day_text(moment: datetime) -> str:
    """A calendar day in the person's zone and language."""
    return format_date(moment, "long")


def moment_text(moment: datetime) -> str:
    """A moment in the person's zone and language, to the minute."""
    return _("%(date)s at %(time)s", date=format_date(moment, "long"),
             time=format_time(moment, "short"))


def last_day_text(expires_at: datetime) -> str:
    """The last day an expiring permission holds (it ends at that day's midnight)."""
    return format_date(expiry_date(expires_at, current_time_zone()), "long")


def limit_texts(permission: Permission, now: datetime) -> list[str]:
    """The limits of a permission in short phrases ("at most 2 per week")."""
    texts = []
    if permission.max_per_week is not None:
        texts.append(_("at most %(count)s per week", count=permission.max_per_week))
    if permission.quiet_hours is not None:
        texts.append(_("not between %(start)s and %(end)s",
                       start=format_clock(permission.quiet_hours.start),
                       end=format_clock(permission.quiet_hours.end)))
    if permission.expires_at is not None:
        if permission.expires_at <= now:
            texts.append(_("ended on %(date)s", date=last_day_text(permission.expires_at)))
        else:
            texts.append(_("until %(date)s", date=last_day_text(permission.expires_at)))
    return texts


def change_texts(before: Permission | None, after: Permission) -> list[str]:
    """What changed in one permission, in short phrases ("now at most 2 per week")."""
    was = before or Permission(after.channel, after.purpose, allowed=False)
    texts = []
    if was.allowed != after.allowed:
        texts.append(_("now allowed") if after.allowed else _("now off"))
    if was.max_per_week != after.max_per_week:
        texts.append(_("now at most %(count)s per week", count=after.max_per_week)
                     if after.max_per_week is not None else _("no weekly limit any more"))
    if was.quiet_hours != after.quiet_hours:
        texts.append(_("now not between %(start)s and %(end)s",
                       start=format_clock(after.quiet_hours.start),
                       end=format_clock(after.quiet_hours.end))
                     if after.quiet_hours is not None else _("no quiet hours any more"))
    if was.expires_at != after.expires_at:
        texts.append(_("now until %(date)s", date=last_day_text(after.expires_at))
                     if after.expires_at is not None else _("no end date any more"))
    return texts or [_("no change")]


def change_line(before: Permission | None, after: Permission) -> str:
    """One line of a summary: "Offers and newsletters by e-mail: now at most 2 per week"."""
    return _("%(permission)s: %(changes)s", permission=cell_title(after.channel, after.purpose),
             changes=", ".join(change_texts(before, after)))


def shared_field_texts(fields: Iterable[str]) -> list[str]:
    return [str(FIELD_LABELS[f]) for f in fields if f in FIELD_LABELS]


def own_relationship(subscription_id: str) -> Relationship:
    """The logged-in person's subscription, or a 404 page (also for anyone else's)."""
    try:
        return relationship_service.load(db_session(), person_id=current_person_id() or "",
                                         subscription_id=subscription_id,
                                         data_keys=runtime().data_keys)
    except NotFound:
        abort(404)


# -- the dashboard --------------------------------------------------------------------------


@dataclass
class ReachGroup:
    """One purpose a merchant may use, and the channels it may use for it."""

    title: str
    channels: list[str] = field(default_factory=list)


@dataclass
class Card:
    id: str
    merchant: str
    active: bool
    fields: list[str]
    reach: list[ReachGroup]
    contacts: ContactSummary
    ended: datetime | None


def _reach(relationship: Relationship, now: datetime) -> list[ReachGroup]:
    """The allowed, unexpired permissions grouped by purpose, in the vocabulary's order."""
    permissions = relationship.terms.permissions
    groups = []
    for purpose in PURPOSES:
        group = ReachGroup(str(PURPOSE_TITLES[purpose]))
        for channel in CHANNELS:
            permission = permissions.get((channel, purpose))
            if permission is None or not permission.allowed or (
                    permission.expires_at is not None and permission.expires_at <= now):
                continue
            limits = limit_texts(permission, now)
            group.channels.append(
                _("%(channel)s (%(limits)s)", channel=CHANNEL_LABELS[channel],
                  limits=", ".join(limits)) if limits else str(CHANNEL_LABELS[channel]))
        if group.channels:
            groups.append(group)
    return groups


@bp.get("/subscriptions")
@login_required
def subscriptions() -> str:
    rt = runtime()
    session = db_session()
    now = rt.clock.now()
    relationships = relationship_service.for_person(session, current_person_id() or "",
                                                    data_keys=rt.data_keys)
    contacts = relationship_service.recent_contacts(
        session, [r.id for r in relationships], since=now - CONTACT_WINDOW)
    cards = [Card(r.id, r.merchant_name, r.active, shared_field_texts(r.terms.shared_fields),
                  _reach(r, now), contacts.get(r.id, ContactSummary()),
                  r.subscription.revoked_at)
             for r in relationships]
    return render_template(
        "subscriptions.html", active=[c for c in cards if c.active],
        ended=[c for c in cards if not c.active], window_days=CONTACT_WINDOW.days,
        day_text=day_text)


# -- revoking -------------------------------------------------------------------------------


def _came_from_merchant_page() -> bool:
    return request.values.get("from") == "merchant"


@bp.get("/subscriptions/<subscription_id>/revoke")
@login_required
def revoke_confirm(subscription_id: str) -> str:
    """Say what revoking does; changes nothing (the button on it posts)."""
    relationship = own_relationship(subscription_id)
    back = (url_for("ui.merchant", subscription_id=subscription_id)
            if _came_from_merchant_page() else url_for("ui.subscriptions"))
    return render_template("revoke_confirm.html", relationship=relationship, cancel_url=back,
                           from_merchant=_came_from_merchant_page(),
                           fields=shared_field_texts(relationship.terms.shared_fields),
                           day_text=day_text)


@bp.post("/subscriptions/<subscription_id>/revoke")
@login_required
def revoke(subscription_id: str) -> Response:
    session = db_session()
    person_id = current_person_id() or ""
    sub = session.get(Subscription, subscription_id)
    if sub is None or sub.person_id != person_id:
        abort(404)
    already = sub.status != ACTIVE
    try:
        sub = subscription_service.revoke(session, person_id=person_id,
                                          subscription_id=subscription_id,
                                          data_keys=runtime().data_keys,
                                          clock=runtime().clock)
    except NotFound:
        abort(404)
    merchant = session.get(Merchant, sub.merchant_id)
    name = merchant.name if merchant else ""
    commit()
    if already:
        flash(_("%(merchant)s's access had already been revoked.", merchant=name))
    else:
        flash(_("Revoked. %(merchant)s can no longer reach you or see your data.",
                merchant=name))
    return redirect(url_for("ui.subscriptions"))
