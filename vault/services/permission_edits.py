"""The person edits a subscription's permission grid: all or nothing, never over a newer save.

A page shows the grid at one ``version`` and sends back every cell it
showed, as typed. ``apply_edits`` checks that version first (two open tabs
cannot silently undo each other), then validates every cell (a bad number,
an unreadable time, an expiry in the past), and only then saves the cells
that really changed, each through ``subscriptions.set_permission`` so each
change is its own audit event. Problems come back together, one code per
input, so a page can put every message at its own field; nothing is written
unless all is well, and the caller's transaction commits it all at once.

The person narrows or re-widens within their grant: a cell the grid does not
hold (the shop never got it through a grant) cannot be switched on here.

Expiry is a calendar date in the person's time zone: the permission holds
to the end of that day, so it is stored as the next local midnight.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session

from vault.clock import Clock
from vault.errors import ValidationFailed
from vault.services import subscriptions as subscription_service
from vault.services.keys import DataKeys
from vault.services.permissions import Permission, PermissionGrid, open_grid
from vault.services.rules import QuietHours

#: the inputs of one cell (``input_name`` gives their form names and ``errors`` keys)
MAX_PER_WEEK = "max_per_week"
QUIET_FROM = "quiet_from"
QUIET_TO = "quiet_to"
EXPIRES_ON = "expires_on"
#: the key of a problem with the form as a whole
FORM = "form"

#: problem codes (the page words them)
NOT_A_NUMBER = "not_a_number"
OUT_OF_RANGE = "out_of_range"
NOT_A_TIME = "not_a_time"
TIME_MISSING = "time_missing"
SAME_TIMES = "same_times"
NOT_A_DATE = "not_a_date"
IN_THE_PAST = "in_the_past"
TOO_FAR = "too_far"
NOT_AVAILABLE = "not_available"

MAX_PER_WEEK_LIMIT = 1000
#: how far ahead an expiry date may be set
MAX_YEARS_AHEAD = 100

_NUMBER = re.compile(r"^[0-9]{1,6}$")
# 21:30, 9:30 and the Dutch 21.30 all mean half past nine in the evening.
_CLOCK = re.compile(r"^([0-9]{1,2})[:.]([0-9]{2})$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


@dataclass(frozen=True)
class CellInput:
    """One cell of the grid as the form sent it: the tick and the limits as typed."""

    allowed: bool
    max_per_week: str = ""
    quiet_from: str = ""
    quiet_to: str = ""
    expires_on: str = ""


class InvalidEdits(ValidationFailed):
    """Some inputs are wrong; ``errors`` maps each input name (or ``form``) to a code."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        first = next(iter(errors))
        super().__init__(f"{first} is not valid", field=first)
        self.errors = dict(errors)


@dataclass(frozen=True)
class Change:
    """What one save did to one permission."""

    before: Permission
    after: Permission


def cell_key(channel: str, purpose: str) -> str:
    return f"{channel}:{purpose}"


def input_name(name: str, key: str) -> str:
    """``max_per_week:email:offers``: one input of the cell ``key``."""
    return f"{name}:{key}"


def _zone(time_zone: str) -> ZoneInfo:
    return ZoneInfo(time_zone)


def expiry_instant(day: date, time_zone: str) -> datetime:
    """The end of ``day`` in the person's zone (the next local midnight), in UTC."""
    midnight = datetime.combine(day + timedelta(days=1), time(0), tzinfo=_zone(time_zone))
    return midnight.astimezone(UTC)


def expiry_date(expires_at: datetime, time_zone: str) -> date:
    """The last local day a permission expiring at ``expires_at`` still holds."""
    return (expires_at - timedelta(microseconds=1)).astimezone(_zone(time_zone)).date()


def format_clock(value: time) -> str:
    return value.strftime("%H:%M")


def _clock(text: str) -> time | None:
    match = _CLOCK.fullmatch(text)
    if match is None:
        return None
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


def _edited(key: str, entry: CellInput, current: Permission, *, time_zone: str, now: datetime,
            errors: dict[str, str]) -> Permission:
    """The permission as the cell asks for it; problems go into ``errors``."""
    cap: int | None = None
    typed = entry.max_per_week.strip()
    if typed:
        if not _NUMBER.fullmatch(typed):
            errors[input_name(MAX_PER_WEEK, key)] = NOT_A_NUMBER
        elif not 1 <= int(typed) <= MAX_PER_WEEK_LIMIT:
            errors[input_name(MAX_PER_WEEK, key)] = OUT_OF_RANGE
        else:
            cap = int(typed)

    quiet: QuietHours | None = None
    start_text, end_text = entry.quiet_from.strip(), entry.quiet_to.strip()
    start, end = _clock(start_text), _clock(end_text)
    for name, text, value in ((QUIET_FROM, start_text, start), (QUIET_TO, end_text, end)):
        if text and value is None:
            errors[input_name(name, key)] = NOT_A_TIME
        elif not text and (start_text or end_text):
            errors[input_name(name, key)] = TIME_MISSING
    if start is not None and end is not None:
        if start == end:
            errors[input_name(QUIET_TO, key)] = SAME_TIMES
        else:
            quiet = QuietHours(start, end)

    expires_at: datetime | None = None
    typed = entry.expires_on.strip()
    if typed:
        try:
            day = date.fromisoformat(typed) if _DATE.fullmatch(typed) else None
        except ValueError:
            day = None
        kept = current.expires_at
        if day is None:
            errors[input_name(EXPIRES_ON, key)] = NOT_A_DATE
        elif kept is not None and expiry_date(kept, time_zone) == day:
            expires_at = kept  # unchanged, even if it has passed or was set to the minute
        elif day.year > now.year + MAX_YEARS_AHEAD:
            errors[input_name(EXPIRES_ON, key)] = TOO_FAR
        elif expiry_instant(day, time_zone) <= now:
            errors[input_name(EXPIRES_ON, key)] = IN_THE_PAST
        else:
            expires_at = expiry_instant(day, time_zone)
    return replace(current, allowed=entry.allowed, max_per_week=cap, quiet_hours=quiet,
                   expires_at=expires_at)


def validate(inputs: Mapping[tuple[str, str], CellInput], grid: PermissionGrid, *,
             time_zone: str, now: datetime) -> list[Permission]:
    """The permissions that differ from ``grid``, in grid order, or ``InvalidEdits``.

    Cells the form did not send are left alone; a cell outside the grid may
    not be switched on.
    """
    errors: dict[str, str] = {}
    for (channel, purpose), entry in inputs.items():
        if (channel, purpose) not in grid and entry.allowed:
            errors.setdefault(FORM, NOT_AVAILABLE)
    edited: list[Permission] = []
    for pair, current in grid.items():
        entry = inputs.get(pair)
        if entry is None:
            continue
        after = _edited(cell_key(*pair), entry, current, time_zone=time_zone, now=now,
                        errors=errors)
        if after != current:
            edited.append(after)
    if errors:
        raise InvalidEdits(errors)
    return edited


def apply_edits(
    session: Session,
    *,
    person_id: str,
    subscription_id: str,
    inputs: Mapping[tuple[str, str], CellInput],
    expected_version: int,
    time_zone: str,
    data_keys: DataKeys,
    clock: Clock,
) -> list[Change]:
    """Check the version, validate every cell, then save what changed; the changes made.

    ``Conflict`` (field ``version``) when the grid was saved since the page
    showed ``expected_version``; ``Conflict`` (field ``subscription``) when it
    is no longer active; ``InvalidEdits`` for bad input. In each case nothing
    has been written.
    """
    _, row = subscription_service.lock_permissions(
        session, person_id=person_id, subscription_id=subscription_id,
        expected_version=expected_version)
    grid = open_grid(data_keys.for_person(session, person_id), row)
    edited = validate(inputs, grid, time_zone=time_zone, now=clock.now())
    changes: list[Change] = []
    version = expected_version
    for after in edited:
        subscription_service.set_permission(
            session, person_id=person_id, subscription_id=subscription_id,
            channel=after.channel, purpose=after.purpose, allowed=after.allowed,
            max_per_week=after.max_per_week, quiet_hours=after.quiet_hours,
            expires_at=after.expires_at, data_keys=data_keys, clock=clock,
            expected_version=version)
        version += 1
        changes.append(Change(grid[(after.channel, after.purpose)], after))
    return changes
