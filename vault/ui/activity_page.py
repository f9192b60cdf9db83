"""Activity: every consent change and reported contact, and contacts per week against caps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

from flask import abort, render_template, request
from flask_babel import format_date, format_datetime, ngettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from vault.errors import NotFound
from vault.extensions import runtime
from vault.services import activity
from vault.services.audit import AuditTag
from vault.services.scopes import PersonGrant
from vault.ui.charts import Bar, is_over, weekly_chart
from vault.ui.labels import CHANNEL_LABELS, FIELD_LABELS, PURPOSE_LABELS, contact_label
from vault.ui.session import current_person_id, login_required
from vault.ui.views import bp
from vault.web.i18n import current_time_zone
from vault.web.request_db import db_session

#: profile settings that are not shared fields, in words
SETTING_LABELS = {
    "time_zone": _l("your time zone"),
    "channel_order": _l("the order of your channels"),
}

#: why a reported contact was not allowed at that moment
REASON_TEXTS = {
    "not_granted": _l("You had not allowed this."),
    "revoked": _l("You had revoked this shop."),
    "blocked_by_person": _l("Your own rules forbid this for every shop."),
    "quiet_hours": _l("It was during your quiet hours."),
    "frequency_cap": _l("It was more often than the weekly limit you set."),
    "expired": _l("Your permission for this had expired."),
    "erased": _l("Your account had been deleted."),
    "unknown_subject": _l("This shop was not connected to you."),
}


@dataclass(frozen=True)
class Line:
    """One timeline entry in words."""

    id: str
    when: str
    when_iso: str
    text: str
    details: list[str]
    contact: bool = False
    violation: bool = False
    reason: str = ""


def _items(value: object) -> list[object]:
    """A list from an event's data, or nothing when the event holds something else."""
    return list(value) if isinstance(value, list) else []


def _merchant(name: str | None) -> str:
    return name or _("a shop")


def _fields(names: Sequence[object]) -> str:
    words = [str(FIELD_LABELS.get(str(n)) or SETTING_LABELS.get(str(n)) or n) for n in names]
    return ", ".join(words)


def _contact_words(channel: str, purpose: str) -> str:
    if channel in CHANNEL_LABELS and purpose in PURPOSE_LABELS:
        return contact_label(channel, purpose)
    return f"{channel} / {purpose}"


def _permission_details(after: Mapping[str, object]) -> list[str]:
    channel, purpose = str(after.get("channel")), str(after.get("purpose"))
    words = {"channel": CHANNEL_LABELS.get(channel, channel),
             "purpose": PURPOSE_LABELS.get(purpose, purpose)}
    if not after.get("allowed"):
        return [_("May no longer reach you by %(channel)s %(purpose)s", **words)]
    lines = [_("May reach you by %(channel)s %(purpose)s", **words)]
    limit = after.get("max_per_week")
    if isinstance(limit, int):
        lines.append(ngettext("At most %(num)d time a week", "At most %(num)d times a week",
                              limit))
    quiet = after.get("quiet_hours")
    if isinstance(quiet, Mapping):
        lines.append(_("Not between %(start)s and %(end)s",
                       start=quiet.get("start"), end=quiet.get("end")))
    expires = after.get("expires_at")
    if isinstance(expires, str) and expires:
        with suppress(ValueError):
            lines.append(_("Until %(date)s", date=format_date(datetime.fromisoformat(expires))))
    return lines


def _rules_details(after: Mapping[str, object]) -> list[str]:
    lines: list[str] = []
    off = [str(CHANNEL_LABELS.get(str(c), c)) for c in _items(after.get("channels_off"))]
    if off:
        lines.append(_("Switched off for every shop: %(channels)s", channels=", ".join(off)))
    for item in _items(after.get("blocked")):
        if not isinstance(item, Mapping):
            continue
        channel, purpose = str(item.get("channel")), str(item.get("purpose"))
        if channel == "*":
            lines.append(_("No shop may reach you %(purpose)s",
                           purpose=PURPOSE_LABELS.get(purpose, purpose)))
        elif purpose == "*":
            lines.append(_("No shop may reach you by %(channel)s",
                           channel=CHANNEL_LABELS.get(channel, channel)))
        else:
            lines.append(_("No shop may reach you by %(channel)s %(purpose)s",
                           channel=CHANNEL_LABELS.get(channel, channel),
                           purpose=PURPOSE_LABELS.get(purpose, purpose)))
    quiet = after.get("quiet_hours")
    if isinstance(quiet, Mapping):
        lines.append(_("Quiet hours: from %(start)s to %(end)s",
                       start=quiet.get("start"), end=quiet.get("end")))
    if not lines:
        lines.append(_("No rules: each shop may do what you allowed it."))
    return lines


def _grant_details(scope: object) -> list[str]:
    try:
        grant = PersonGrant.parse(str(scope or ""))
    except ValueError:
        return []
    lines = [_contact_words(c, p) for c, p in grant.contact]
    lines += [_("See %(field)s", field=FIELD_LABELS[f]) for f in grant.profile]
    return lines or [_("Nothing: it may not reach you and sees none of your data.")]


def _describe_change(entry: activity.ConsentChange) -> tuple[str, list[str]]:
    """The sentence and detail lines for one consent-log event."""
    merchant = _merchant(entry.merchant_name)
    data = entry.data
    match entry.tag:
        case AuditTag.PERSON_SIGNED_UP:
            return _("You opened your vault."), []
        case AuditTag.PERSON_PROFILE_UPDATED:
            return (_("You updated your profile: %(fields)s.",
                      fields=_fields(_items(data.get("fields")))), [])
        case AuditTag.PERSON_PASSWORD_CHANGED:
            return _("You changed your password."), []
        case AuditTag.PERSON_RULES_UPDATED:
            after = data.get("after")
            return (_("You changed your rules for every shop."),
                    _rules_details(after) if isinstance(after, Mapping) else [])
        case AuditTag.SUBSCRIPTION_GRANTED:
            text = (_("You connected %(merchant)s. It may:", merchant=merchant)
                    if data.get("created", True) else
                    _("You connected %(merchant)s again. It may now:", merchant=merchant))
            return text, _grant_details(data.get("granted"))
        case AuditTag.SUBSCRIPTION_REVOKED:
            return (_("You revoked %(merchant)s. It can no longer reach you or see your data.",
                      merchant=merchant), [])
        case AuditTag.PERMISSION_CHANGED:
            after = data.get("after")
            return (_("You changed how %(merchant)s may reach you.", merchant=merchant),
                    _permission_details(after) if isinstance(after, Mapping) else [])
    return _describe_other(entry, merchant)


def _describe_other(entry: activity.ConsentChange, merchant: str) -> tuple[str, list[str]]:
    """Events this page has no sentence of its own for, such as a change of shared data."""
    shared = entry.data.get("shared_fields", entry.data.get("after"))
    details: list[str] = []
    if isinstance(shared, list) and all(str(f) in FIELD_LABELS for f in shared):
        details = ([_("May see: %(fields)s", fields=_fields(shared))] if shared
                   else [_("May see none of your data.")])
    if entry.merchant_id:
        return _("You changed what %(merchant)s may do.", merchant=merchant), details
    return _("Something changed in your vault."), details


def _line(entry: activity.TimelineEntry) -> Line:
    when = format_datetime(entry.occurred_at, "d MMM y, HH:mm")
    when_iso = entry.occurred_at.isoformat()
    if isinstance(entry, activity.ReportedContact):
        text = _("%(merchant)s contacted you by %(channel)s %(purpose)s.",
                 merchant=_merchant(entry.merchant_name),
                 channel=CHANNEL_LABELS.get(entry.channel, entry.channel),
                 purpose=PURPOSE_LABELS.get(entry.purpose, entry.purpose))
        return Line(entry.id, when, when_iso, text, [], contact=True,
                    violation=entry.violation,
                    reason=str(REASON_TEXTS.get(entry.reason, "")) if entry.violation else "")
    text, details = _describe_change(entry)
    return Line(entry.id, when, when_iso, text, details)


@dataclass(frozen=True)
class Chart:
    """One merchant's weekly chart and the same numbers as a table."""

    id: str
    merchant: str
    svg: Markup
    cap: int | None
    rows: list[tuple[str, int, int, bool]]
    summary: str
    note: str


def _chart(weeks: activity.MerchantWeeks) -> Chart:
    name = weeks.connection.merchant_name
    labels = [format_date(w.start, "d MMM") for w in weeks.weeks]
    bars = [Bar(label, w.contacts, w.over_cap) for label, w in zip(labels, weeks.weeks,
                                                                     strict=True)]
    over = [is_over(bar, weeks.cap) for bar in bars]
    if weeks.cap is not None:
        note = _("Your limit: at most %(num)s a week.", num=weeks.cap)
    elif weeks.caps:
        note = _("Some kinds of contact have a weekly limit, others do not, so there is no "
                 "line. A red bar is a week in which one of those limits was broken.")
    else:
        note = _("You set no weekly limit for this shop.")
    parts = [_("Contacts from %(merchant)s per week, from the week of %(first)s to this week.",
               merchant=name, first=labels[0])]
    parts.append("; ".join(f"{bar.label}: {bar.value}" for bar in bars) + ".")
    parts.append(note)
    over_count = sum(over)
    parts.append(ngettext("%(num)d week over a limit you set.",
                          "%(num)d weeks over a limit you set.", over_count)
                 if over_count else _("No week went over a limit you set."))
    summary = " ".join(parts)
    cap_label = (_("limit: %(num)s a week", num=weeks.cap)
                 if weeks.cap is not None else None)
    svg = weekly_chart(bars, cap=weeks.cap, chart_id=f"chart-{weeks.connection.subscription_id}",
                       title=_("Contacts per week from %(merchant)s", merchant=name),
                       description=summary, cap_label=cap_label)
    rows = [(bar.label, bar.value, w.violations, flag)
            for bar, w, flag in zip(bars, weeks.weeks, over, strict=True)]
    return Chart(weeks.connection.subscription_id, name, svg, weeks.cap, rows, summary, note)


def _page_number(raw: str | None) -> int:
    if raw is None or raw == "":
        return 1
    if not raw.isdigit() or not 1 <= int(raw) <= activity.MAX_PAGE:
        abort(404)
    return int(raw)


@bp.get("/activity", endpoint="activity")
@login_required
def activity_view() -> str:
    person_id = current_person_id() or ""
    session = db_session()
    rt = runtime()
    chosen = request.args.get("merchant", "").strip()
    page = _page_number(request.args.get("page"))
    merchant = None
    if chosen:
        try:
            merchant = activity.find_connection(session, person_id, chosen[:64])
        except NotFound:
            abort(404)
    everything = activity.connections(session, person_id)
    timeline = activity.timeline(session, person_id, merchant=merchant, page=page)
    weekly = activity.weekly_contacts(session, person_id, now=rt.clock.now(),
                                      time_zone=current_time_zone(),
                                      data_keys=rt.data_keys, merchant=merchant)
    return render_template(
        "activity.html",
        connections=everything,
        chosen=merchant.subscription_id if merchant else "",
        chosen_name=merchant.merchant_name if merchant else None,
        lines=[_line(entry) for entry in timeline.entries],
        page=timeline.page,
        has_more=timeline.has_more,
        charts=[_chart(w) for w in weekly],
        weeks=activity.CHART_WEEKS,
    )
