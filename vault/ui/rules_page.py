"""My rules: global rules that override every merchant, and the preferred channel order.

One form holds every rule, so it works without script and one save is one
change. Blocked pairs are ticked boxes (untick to remove) plus two lists for
one new pair, where "any channel" and "any purpose" stand for ``*``. The
channel order is a place number per channel: when two channels get the same
number, the one whose number was changed goes first, so "put phone first"
is just choosing 1 for phone.

Two open tabs: the form carries the rules' version and the channel order it
showed. If either was changed since, nothing is written and the page shows
the rules as they are now (409). After a save the page lists what changed;
the list waits in the session for the next page view, like a flash message,
and is worded when shown, so it follows a change of language.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from flask import redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from vault.errors import Conflict, ValidationFailed
from vault.extensions import runtime
from vault.services.rules import ANY, RuleSet, get_rules, parse_rules, set_rules
from vault.ui.labels import CHANNEL_LABELS, PURPOSE_LABELS
from vault.ui.session import current_person_id, login_required
from vault.ui.views import bp
from vault.vocabulary import CHANNELS, PURPOSES
from vault.web.i18n import current_time_zone
from vault.web.request_db import commit, db_session

_CHANGES = "rules_changes"
_TIME = re.compile(r"([01]?[0-9]|2[0-3])[:.]([0-5][0-9])(?::00)?")
#: the order errors are listed in, as the fields appear on the page
_FIELD_ORDER = ("blocked", "new_channel", "new_purpose", "off", "quiet_start", "quiet_end",
                *(f"position_{c}" for c in CHANNELS))


@dataclass
class RulesForm:
    """The rules page's form, as stored or as the person filled it in."""

    blocked: list[tuple[str, str]]
    channels_off: list[str]
    order: list[str]
    version: int
    new_channel: str = ""
    new_purpose: str = ""
    quiet_start: str = ""
    quiet_end: str = ""
    positions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def stored(cls, rules: RuleSet, order: Sequence[str]) -> RulesForm:
        quiet = rules.quiet_hours.to_json() if rules.quiet_hours else {"start": "", "end": ""}
        return cls(blocked=list(rules.blocked), channels_off=list(rules.channels_off),
                   order=list(order), version=rules.version, quiet_start=quiet["start"],
                   quiet_end=quiet["end"],
                   positions={c: str(i) for i, c in enumerate(order, 1)})

    def document(self) -> dict[str, object]:
        """The rules as ``set_rules`` takes them, the new pair after the kept ones."""
        blocked = list(self.blocked)
        if self.new_channel or self.new_purpose:
            blocked.append((self.new_channel, self.new_purpose))
        quiet = ({"start": self.quiet_start, "end": self.quiet_end}
                 if self.quiet_start or self.quiet_end else None)
        return {"blocked": [{"channel": c, "purpose": p} for c, p in blocked],
                "channels_off": list(self.channels_off), "quiet_hours": quiet}


def pair_label(channel: str, purpose: str) -> str:
    """A blocked pair as the person would say it."""
    if channel == ANY:
        return _("Never contact me %(purpose)s, by any channel",
                 purpose=PURPOSE_LABELS[purpose])
    if purpose == ANY:
        return _("Never contact me by %(channel)s, for any purpose",
                 channel=CHANNEL_LABELS[channel])
    return _("Never contact me by %(channel)s %(purpose)s", channel=CHANNEL_LABELS[channel],
             purpose=PURPOSE_LABELS[purpose])


def _describe(change: Sequence[str]) -> str:
    kind, *args = change
    match kind:
        case "added":
            return _("Added: %(rule)s", rule=pair_label(args[0], args[1]))
        case "removed":
            return _("Removed: %(rule)s", rule=pair_label(args[0], args[1]))
        case "off":
            return _("Switched off for every shop: %(channel)s", channel=CHANNEL_LABELS[args[0]])
        case "on":
            return _("Switched on again: %(channel)s", channel=CHANNEL_LABELS[args[0]])
        case "quiet":
            return _("Quiet hours are now %(start)s to %(end)s.", start=args[0], end=args[1])
        case "quiet_removed":
            return _("Quiet hours are off.")
        case "order":
            return _("Preferred order is now: %(order)s.",
                     order=", ".join(str(CHANNEL_LABELS[c]) for c in args))
    return _("Nothing changed.")


def _changes(before: RuleSet, after: RuleSet, order_before: Sequence[str],
             order_after: Sequence[str]) -> list[list[str]]:
    found: list[list[str]] = []
    found += [["added", c, p] for c, p in after.blocked if (c, p) not in before.blocked]
    found += [["removed", c, p] for c, p in before.blocked if (c, p) not in after.blocked]
    found += [["off", c] for c in CHANNELS
              if c in after.channels_off and c not in before.channels_off]
    found += [["on", c] for c in CHANNELS
              if c in before.channels_off and c not in after.channels_off]
    if after.quiet_hours != before.quiet_hours:
        quiet = after.quiet_hours.to_json() if after.quiet_hours else None
        found.append(["quiet", quiet["start"], quiet["end"]] if quiet else ["quiet_removed"])
    if list(order_after) != list(order_before):
        found.append(["order", *order_after])
    return found


def _clock_time(value: str) -> str | None:
    """``21:00``, ``9:00`` or ``21.00`` (or a browser's ``21:00:00``) as ``HH:MM``."""
    match = _TIME.fullmatch(value.strip())
    return f"{int(match.group(1)):02d}:{match.group(2)}" if match else None


def _read_form(form: MultiDict[str, str]) -> tuple[RulesForm, dict[str, str]] | None:
    """The submitted form and a message per bad field; None when it was not our form."""
    order = form.get("order_before", "").split(",")
    version = form.get("version", "")
    if sorted(order) != sorted(CHANNELS) or not version.isdigit():
        return None
    errors: dict[str, str] = {}
    state = RulesForm(blocked=[], channels_off=[], order=order, version=int(version))
    for value in form.getlist("blocked"):
        channel, _sep, purpose = value.partition(":")
        if channel not in (ANY, *CHANNELS) or purpose not in (ANY, *PURPOSES):
            errors["blocked"] = _("A rule in this list was not recognised. Reload the page "
                                  "and try again.")
        elif (channel, purpose) not in state.blocked:
            state.blocked.append((channel, purpose))
    state.new_channel = form.get("new_channel", "")
    state.new_purpose = form.get("new_purpose", "")
    if state.new_channel not in ("", ANY, *CHANNELS):
        errors["new_channel"] = _("Choose a channel from the list.")
    if state.new_purpose not in ("", ANY, *PURPOSES):
        errors["new_purpose"] = _("Choose a purpose from the list.")
    if not errors.keys() & {"new_channel", "new_purpose"}:
        if state.new_purpose and not state.new_channel:
            errors["new_channel"] = _("Choose a channel too, or choose \u201cany channel\u201d.")
        elif state.new_channel and not state.new_purpose:
            errors["new_purpose"] = _("Choose a purpose too, or choose \u201cany purpose\u201d.")
        elif state.new_channel == ANY and state.new_purpose == ANY:
            errors["new_channel"] = _("Choose a channel or a purpose, not \u201cany\u201d for "
                                      "both. To stop all contact, switch off every channel "
                                      "below.")
    for channel in form.getlist("off"):
        if channel not in CHANNELS:
            errors["off"] = _("A channel in this list was not recognised. Reload the page "
                              "and try again.")
        elif channel not in state.channels_off:
            state.channels_off.append(channel)
    state.quiet_start = form.get("quiet_start", "").strip()
    state.quiet_end = form.get("quiet_end", "").strip()
    if state.quiet_start or state.quiet_end:
        for name in ("quiet_start", "quiet_end"):
            given = getattr(state, name)
            cleaned = _clock_time(given)
            if not given:
                errors[name] = _("Fill in both times, or leave both empty for no quiet hours.")
            elif cleaned is None:
                errors[name] = _("Write a time on the 24-hour clock, like 21:00.")
            else:
                setattr(state, name, cleaned)
        if not errors.keys() & {"quiet_start", "quiet_end"} and (
                state.quiet_start == state.quiet_end):
            errors["quiet_end"] = _("Quiet hours must end at another time than they start.")
    for channel in order:
        given = form.get(f"position_{channel}", "")
        state.positions[channel] = given
        if given not in {str(i) for i in range(1, len(CHANNELS) + 1)}:
            errors[f"position_{channel}"] = _("Choose a place from the list.")
    return state, errors


def _new_order(state: RulesForm) -> list[str]:
    """Channels by chosen place; on a tie the channel that was moved goes first."""
    def key(channel: str) -> tuple[int, int, int]:
        shown = state.order.index(channel) + 1
        place = int(state.positions[channel])
        return place, 0 if place != shown else 1, shown

    return sorted(state.order, key=key)


def _render(state: RulesForm, *, errors: Mapping[str, str] | None = None,
            conflict: bool = False, invalid: bool = False,
            changes: Sequence[Sequence[str]] = (), status: int = 200) -> tuple[str, int]:
    errors = dict(errors or {})
    return render_template(
        "rules.html", state=state, errors=errors, conflict=conflict, invalid=invalid,
        error_order=[f for f in _FIELD_ORDER if f in errors],
        changes=[_describe(change) for change in changes],
        blocked=[(f"{c}:{p}", pair_label(c, p)) for c, p in state.blocked],
        channel_choices=[(ANY, _("any channel")),
                         *((c, str(CHANNEL_LABELS[c])) for c in CHANNELS)],
        purpose_choices=[(ANY, _("any purpose")),
                         *((p, str(PURPOSE_LABELS[p])) for p in PURPOSES)],
        channel_labels=CHANNEL_LABELS, places=range(1, len(CHANNELS) + 1),
        time_zone=current_time_zone()), status


def _stored_state(person_id: str) -> RulesForm:
    rt = runtime()
    rules = get_rules(db_session(), person_id, data_keys=rt.data_keys)
    profile = rt.accounts.get_profile(db_session(), person_id)
    return RulesForm.stored(rules, profile.channel_order)


@bp.route("/rules", methods=["GET", "POST"])
@login_required
def rules() -> Response | tuple[str, int]:
    person_id = current_person_id() or ""
    if request.method == "POST":
        return _save(person_id)
    changes = session.pop(_CHANGES, None)
    if changes is not None:
        changes = changes or [["none"]]
    return _render(_stored_state(person_id), changes=changes or ())


def _save(person_id: str) -> Response | tuple[str, int]:
    rt = runtime()
    db = db_session()
    read = _read_form(request.form)
    if read is None:
        return _render(_stored_state(person_id), invalid=True, status=400)
    state, errors = read
    if not errors:
        try:
            wanted = parse_rules(state.document())
        except ValidationFailed:
            errors["blocked"] = _("These rules cannot be saved. Reload the page and try again.")
    if errors:
        return _render(state, errors=errors, status=400)
    before = get_rules(db, person_id, data_keys=rt.data_keys)
    order_before = rt.accounts.get_profile(db, person_id).channel_order
    if before.version != state.version or list(order_before) != state.order:
        return _render(RulesForm.stored(before, order_before), conflict=True, status=409)
    order = _new_order(state)
    changes = _changes(before, wanted, order_before, order)
    try:
        if any(change[0] != "order" for change in changes):
            set_rules(db, person_id, state.document(), data_keys=rt.data_keys, clock=rt.clock,
                      expected_version=state.version)
        if list(order) != list(order_before):
            rt.accounts.update_profile(db, person_id, {"channel_order": order})
    except Conflict:
        db.rollback()
        return _render(_stored_state(person_id), conflict=True, status=409)
    commit()
    session[_CHANGES] = changes
    return redirect(url_for("ui.rules"))
