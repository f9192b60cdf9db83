"""The merchant page: one subscription's permission grid, shared fields, history and revoke.

The grid shows every channel for every purpose the shop was granted
something for; each granted cell is a switch with its limits (at most so
many per week, quiet hours, a last day), and a cell the shop never got says
so instead of disappearing. Saving posts the whole grid with the version it
showed (``permission_edits.apply_edits``): bad input comes back as a 400
with the message at the field, a save over a newer one as a 409, and in
both cases nothing is written; a good save lists exactly what changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from prefvault_sdk import verify_receipt
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from vault.errors import Conflict, NotFound
from vault.extensions import runtime
from vault.services import permission_edits as edits
from vault.services import relationship as relationship_service
from vault.services.permission_edits import CellInput, InvalidEdits, cell_key, expiry_date
from vault.services.permissions import Permission
from vault.services.receipts import receipt_for_person
from vault.services.relationship import (
    CHANGED,
    CONTACT,
    GRANTED,
    RECONNECTED,
    HistoryEntry,
    Relationship,
)
from vault.ui.dashboard import (
    CHANNEL_TITLES,
    PURPOSE_TITLES,
    REASON_TEXTS,
    cell_title,
    change_line,
    change_texts,
    day_text,
    moment_text,
    own_relationship,
    shared_field_texts,
)
from vault.ui.labels import CHANNEL_LABELS, contact_label, field_label
from vault.ui.session import current_person_id, login_required
from vault.ui.views import bp
from vault.vocabulary import CHANNELS, PURPOSES
from vault.web.i18n import current_language, current_time_zone
from vault.web.request_db import commit, db_session

#: what each problem code of ``permission_edits`` says at its field
_PROBLEMS = {
    edits.NOT_A_NUMBER: _l("Enter a whole number, such as 2, or leave this empty for no limit."),
    edits.OUT_OF_RANGE: _l("Enter a number from 1 to 1000, or leave this empty for no limit."),
    edits.NOT_A_TIME: _l("Enter a time as hours and minutes, such as 21:00."),
    edits.TIME_MISSING: _l("Enter both times, or leave both empty for no quiet hours."),
    edits.SAME_TIMES: _l("Quiet hours must end at a different time than they start."),
    edits.NOT_A_DATE: _l("Enter a date as year-month-day, such as 2027-01-31."),
    edits.IN_THE_PAST: _l("This day has passed. Choose today or a later day, "
                          "or leave this empty for no end date."),
    edits.TOO_FAR: _l("Choose a day within the next 100 years, "
                      "or leave this empty for no end date."),
    edits.NOT_AVAILABLE: _l("This shop can only use what you allowed when you connected it."),
}
_INPUTS = (edits.MAX_PER_WEEK, edits.QUIET_FROM, edits.QUIET_TO, edits.EXPIRES_ON)


@dataclass
class Cell:
    """One (channel, purpose) of the grid as the page shows it."""

    channel: str
    purpose: str
    available: bool
    checked: bool = False
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    expired: bool = False

    @property
    def key(self) -> str:
        return cell_key(self.channel, self.purpose)

    @property
    def title(self) -> str:
        return str(CHANNEL_TITLES[self.channel])

    @property
    def full_title(self) -> str:
        return cell_title(self.channel, self.purpose)

    def input_id(self, name: str) -> str:
        return f"{name}-{self.channel}-{self.purpose}"

    def input_name(self, name: str) -> str:
        return edits.input_name(name, self.key)


@dataclass
class Group:
    """One purpose: its channels, granted or not."""

    purpose: str
    cells: list[Cell]

    @property
    def title(self) -> str:
        return str(PURPOSE_TITLES[self.purpose])

    @property
    def available(self) -> bool:
        return any(cell.available for cell in self.cells)

    @property
    def unavailable_channels(self) -> str:
        """The channels not granted for this purpose, as words in a sentence."""
        return ", ".join(str(CHANNEL_LABELS[c.channel]) for c in self.cells if not c.available)


def _stored_values(permission: Permission) -> dict[str, str]:
    quiet = permission.quiet_hours
    return {
        edits.MAX_PER_WEEK: str(permission.max_per_week or ""),
        edits.QUIET_FROM: edits.format_clock(quiet.start) if quiet else "",
        edits.QUIET_TO: edits.format_clock(quiet.end) if quiet else "",
        edits.EXPIRES_ON: (expiry_date(permission.expires_at, current_time_zone()).isoformat()
                           if permission.expires_at else ""),
    }


def _groups(relationship: Relationship, *, posted: dict[tuple[str, str], CellInput] | None,
            errors: dict[str, str]) -> list[Group]:
    """The grid as stored, or (after a refused save) as the person typed it."""
    now = runtime().clock.now()
    grid = relationship.terms.permissions
    groups = []
    for purpose in PURPOSES:
        cells = []
        for channel in CHANNELS:
            permission = grid.get((channel, purpose))
            cell = Cell(channel, purpose, available=permission is not None)
            if permission is not None:
                cell.expired = (permission.expires_at is not None
                                and permission.expires_at <= now)
                typed = posted.get((channel, purpose)) if posted is not None else None
                if typed is None:
                    cell.checked = permission.allowed
                    cell.values = _stored_values(permission)
                else:
                    cell.checked = typed.allowed
                    cell.values = {name: getattr(typed, name) for name in _INPUTS}
                cell.errors = {name: str(_PROBLEMS[errors[cell.input_name(name)]])
                               for name in _INPUTS if cell.input_name(name) in errors}
            cells.append(cell)
        groups.append(Group(purpose, cells))
    return groups


def _history_lines(relationship: Relationship,
                   entries: list[HistoryEntry]) -> list[dict[str, object]]:
    """Each history entry as a moment, a headline, optional details and a warning flag."""
    merchant = relationship.merchant_name
    lines = []
    for entry in entries:
        details: list[str] = []
        if entry.kind in (GRANTED, RECONNECTED):
            text = (_("You connected %(merchant)s.", merchant=merchant) if entry.kind == GRANTED
                    else _("You connected %(merchant)s again.", merchant=merchant))
            granted = entry.granted
            if granted is not None:
                details = [contact_label(c, p) for c, p in granted.contact]
                details += [field_label(f) for f in granted.profile]
                if not details:
                    details = [_("Nothing allowed.")]
                if entry.requested is not None:
                    declined = [contact_label(c, p) for c, p in entry.requested.contact
                                if (c, p) not in granted.contact]
                    declined += [field_label(f) for f in entry.requested.profile
                                 if f not in granted.profile]
                    details += [_("You said no to: %(what)s", what=item) for item in declined]
        elif entry.kind == CHANGED and entry.after is not None:
            text = _("You changed: %(permission)s",
                     permission=cell_title(entry.after.channel, entry.after.purpose))
            details = change_texts(entry.before, entry.after)
        elif entry.kind == CONTACT and entry.channel and entry.purpose:
            what = cell_title(entry.channel, entry.purpose)
            text = _("%(merchant)s reached you: %(what)s", merchant=merchant, what=what)
            if not entry.allowed:
                reason = REASON_TEXTS.get(entry.reason or "")
                if reason is not None:
                    details = [_("Why this was not allowed: %(reason)s", reason=reason)]
        else:
            text = _("You revoked %(merchant)s's access.", merchant=merchant)
        lines.append({"at": entry.occurred_at, "when": moment_text(entry.occurred_at),
                      "text": text, "details": details, "violation": entry.violation})
    return lines


def _render(relationship: Relationship, *, status: int = 200,
            posted: dict[tuple[str, str], CellInput] | None = None,
            errors: dict[str, str] | None = None, version: str | None = None,
            problem: str | None = None) -> tuple[str, int]:
    errors = errors or {}
    entries, more = relationship_service.history(db_session(), relationship)
    groups = _groups(relationship, posted=posted, errors=errors)
    form_problem = _PROBLEMS.get(errors.get(edits.FORM, ""))
    return render_template(
        "merchant.html", relationship=relationship, groups=groups,
        available=[g for g in groups if g.available],
        unavailable=[g for g in groups if not g.available],
        fields=shared_field_texts(relationship.terms.shared_fields),
        history=_history_lines(relationship, entries), history_more=more,
        version=version if version is not None else str(relationship.version),
        problem=problem or (str(form_problem) if form_problem else None),
        has_errors=bool(errors), day_text=day_text,
        field_errors=[(cell, name, message) for group in groups for cell in group.cells
                      for name, message in cell.errors.items()],
    ), status


@bp.get("/subscriptions/<subscription_id>")
@login_required
def merchant(subscription_id: str) -> tuple[str, int]:
    return _render(own_relationship(subscription_id))


def _posted_cells(form: MultiDict[str, str]) -> dict[tuple[str, str], CellInput]:
    """The cells the form showed (each names itself in ``cell``), as typed."""
    ticked = set(form.getlist("allow"))
    shown = set(form.getlist("cell")) | ticked
    cells = {}
    for channel in CHANNELS:
        for purpose in PURPOSES:
            key = cell_key(channel, purpose)
            if key not in shown:
                continue
            cells[(channel, purpose)] = CellInput(
                allowed=key in ticked,
                **{name: form.get(edits.input_name(name, key), "")[:100] for name in _INPUTS})
    return cells


@bp.post("/subscriptions/<subscription_id>/permissions")
@login_required
def save_permissions(subscription_id: str) -> Response | tuple[str, int]:
    relationship = own_relationship(subscription_id)
    session = db_session()
    rt = runtime()
    posted = _posted_cells(request.form)
    version = request.form.get("version", "")
    if not version.isdigit() or len(version) > 12:
        return _render(relationship, status=400, posted=posted, version=version,
                       problem=_("This form is incomplete. Nothing was saved. "
                                 "Reload the page and try again."))
    try:
        changes = edits.apply_edits(
            session, person_id=current_person_id() or "", subscription_id=subscription_id,
            inputs=posted, expected_version=int(version), time_zone=current_time_zone(),
            data_keys=rt.data_keys, clock=rt.clock)
    except InvalidEdits as invalid:
        session.rollback()
        return _render(own_relationship(subscription_id), status=400, posted=posted,
                       errors=invalid.errors, version=version)
    except Conflict as conflict:
        session.rollback()
        fresh = own_relationship(subscription_id)
        if conflict.field == "version":
            message = _("These settings were changed in another tab or window after you "
                        "opened this page, so nothing was saved. Below is how they are now: "
                        "make your changes again if you still want them.")
        else:
            message = _("%(merchant)s's access has ended, so nothing was saved.",
                        merchant=fresh.merchant_name)
        return _render(fresh, status=409, problem=message)
    except NotFound:
        abort(404)
    commit()
    if changes:
        flash(_("Saved. What changed:"))
        for change in changes:
            flash(change_line(change.before, change.after))
    else:
        flash(_("Nothing to save: everything was already set like this."))
    return redirect(url_for("ui.merchant", subscription_id=subscription_id))


@bp.get("/subscriptions/<subscription_id>/receipt")
@login_required
def receipt(subscription_id: str) -> Response:
    """The person's signed consent receipt for this shop, as a file to keep.

    The file holds the receipt exactly as signed (a compact JWS anyone can
    verify with the vault's public keys) and, beside it, its claims decoded
    for reading; only the signed part counts.
    """
    rt = runtime()
    try:
        signed = receipt_for_person(
            db_session(), current_person_id() or "", subscription_id, database=rt.database,
            data_keys=rt.data_keys, signing_key=rt.keyring.signing_key,
            issuer=rt.settings.issuer, clock=rt.clock, language=current_language())
    except NotFound:
        abort(404)
    # Checked here exactly as a merchant or auditor would check it, before it is handed out.
    jwks = {"keys": [key.public_jwk() for key in rt.keyring.signing_keys]}
    checked = verify_receipt(signed, jwks, issuer=rt.settings.issuer)
    document = {
        "receipt": signed,
        "claims": dict(checked.claims),
        "verify_with": rt.settings.issuer + "/.well-known/jwks.json",
    }
    day = rt.clock.now().date().isoformat()
    response = Response(json.dumps(document, indent=2, ensure_ascii=False) + "\n",
                        mimetype="application/json")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="consent-receipt-{subscription_id}-{day}.json"')
    return response

