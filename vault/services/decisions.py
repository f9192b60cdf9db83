"""The decision engine: may this merchant reach this person, here and now?

``evaluate`` is a pure function of the subscription's terms (permissions,
the person's global rules, time zone, recent contacts) and the moment asked
about. It answers with exactly one reason. When several apply, the first in
this order wins, most final first:

1. ``unknown_subject`` — the merchant has no subscription with this subject
   (also for another merchant's subject: never reveal that a person exists);
2. ``erased`` — the person erased their account;
3. ``revoked`` — the person revoked the subscription;
4. ``blocked_by_person`` — a global rule of the person forbids this channel,
   purpose or pair for every merchant;
5. ``not_granted`` — the grant does not include (channel, purpose) (default deny);
6. ``expired`` — the permission had an expiry date and it has passed;
7. ``quiet_hours`` — now is inside the person's global quiet hours or the
   permission's own quiet hours, in the person's time zone;
8. ``frequency_cap`` — ``max_per_week`` contacts already made in the last 7 days;
9. ``allowed``.

``next_allowed_at`` is given for ``quiet_hours`` and ``frequency_cap`` (the
earliest moment that reason stops applying). ``valid_until`` says how long an
answer may be cached: never past the next quiet-hours edge, the expiry, or a
short maximum, since the person may change their mind at any moment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from vault.services.permissions import Permission, PermissionGrid
from vault.services.rules import QuietHours, RuleSet
from vault.vocabulary import CHANNELS

UNKNOWN_SUBJECT = "unknown_subject"
ERASED = "erased"
REVOKED = "revoked"
BLOCKED_BY_PERSON = "blocked_by_person"
NOT_GRANTED = "not_granted"
EXPIRED = "expired"
QUIET_HOURS = "quiet_hours"
FREQUENCY_CAP = "frequency_cap"
ALLOWED = "allowed"

REASONS = (ALLOWED, UNKNOWN_SUBJECT, REVOKED, NOT_GRANTED, BLOCKED_BY_PERSON, QUIET_HOURS,
           FREQUENCY_CAP, EXPIRED, ERASED)
PRECEDENCE = (UNKNOWN_SUBJECT, ERASED, REVOKED, BLOCKED_BY_PERSON, NOT_GRANTED, EXPIRED,
              QUIET_HOURS, FREQUENCY_CAP, ALLOWED)

#: the time zone of a person who never chose one
DEFAULT_TIME_ZONE = "Europe/Amsterdam"
CAP_WINDOW = timedelta(days=7)
MAX_CACHE = timedelta(minutes=5)

#: the profile field that holds the address for each channel
REACH_FIELD = {"email": "email", "sms": "phone", "phone": "phone", "post": "address"}


@dataclass(frozen=True)
class Terms:
    """Everything about one subscription that a decision depends on, in clear."""

    status: str
    permissions: PermissionGrid = field(default_factory=dict)
    rules: RuleSet = field(default_factory=RuleSet)
    time_zone: str = DEFAULT_TIME_ZONE
    channel_order: tuple[str, ...] = CHANNELS
    shared_fields: tuple[str, ...] = ()
    #: contact times in the last CAP_WINDOW, per (channel, purpose)
    recent_contacts: Mapping[tuple[str, str], Sequence[datetime]] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """The answer for one (channel, purpose) at one moment."""

    allowed: bool
    reason: str
    next_allowed_at: datetime | None
    valid_until: datetime


def _local(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone)


def _at_local(day: datetime, clock_time: time, zone: ZoneInfo) -> datetime:
    """The instant the local clock first shows ``clock_time`` (or later) on ``day``.

    A wall time inside a spring-forward gap never shows; the answer is then the
    end of the gap, the first instant the local clock is past that time. In the
    autumn overlap the first of the two instants is taken.
    """
    naive = datetime.combine(day.date(), clock_time)
    first = naive.replace(tzinfo=zone, fold=0)
    utc = ZoneInfo("UTC")
    if first.astimezone(utc).astimezone(zone).replace(tzinfo=None) == naive:
        return first.astimezone(utc)
    # In a gap: fold=1 maps to an instant before the gap, fold=0 to one after it.
    low = naive.replace(tzinfo=zone, fold=1).astimezone(utc)
    high = first.astimezone(utc)
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(zone).replace(tzinfo=None) >= naive:
            high = mid
        else:
            low = mid
    # Transitions fall on whole seconds and low < transition <= high < low + 1 s:
    # the whole second at or below ``high`` is the transition.
    return high.replace(microsecond=0)


def in_quiet_hours(window: QuietHours, now: datetime, zone: ZoneInfo) -> bool:
    local = _local(now, zone).time()
    if window.start < window.end:
        return window.start <= local < window.end
    return local >= window.start or local < window.end


def _next_edge(clock_time: time, now: datetime, zone: ZoneInfo) -> datetime:
    """The next instant after ``now`` at which the local clock shows ``clock_time``.

    In the autumn overlap a wall time shows twice; both instants count.
    """
    local = _local(now, zone)
    for days in range(0, 3):
        day = local + timedelta(days=days)
        first = _at_local(day, clock_time, zone)
        naive = datetime.combine(day.date(), clock_time)
        second = naive.replace(tzinfo=zone, fold=1).astimezone(ZoneInfo("UTC"))
        repeated = second != first and _local(second, zone).replace(tzinfo=None) == naive
        for candidate in (first, second) if repeated else (first,):
            if candidate > now:
                return candidate
    raise AssertionError("unreachable: a wall time recurs within two days")


def _next_transition(after: datetime, until: datetime, zone: ZoneInfo) -> datetime | None:
    """The instant in (``after``, ``until``] the zone's UTC offset changes, if it does.

    The local clock jumps only there; the spans passed here are at most a few
    days, so they hold at most one transition.
    """
    offset = _local(after, zone).utcoffset()
    if _local(until, zone).utcoffset() == offset:
        return None
    low, high = after, until
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if _local(mid, zone).utcoffset() == offset:
            low = mid
        else:
            high = mid
    # As in _at_local: the transition is the whole second at or below ``high``.
    return high.replace(microsecond=0)


def quiet_end(window: QuietHours, now: datetime, zone: ZoneInfo) -> datetime:
    return _next_edge(window.end, now, zone)


def quiet_start(window: QuietHours, now: datetime, zone: ZoneInfo) -> datetime:
    return _next_edge(window.start, now, zone)


def _windows(terms: Terms, permission: Permission | None) -> list[QuietHours]:
    windows = [terms.rules.quiet_hours] if terms.rules.quiet_hours else []
    if permission is not None and permission.quiet_hours is not None:
        windows.append(permission.quiet_hours)
    return windows


def _cap_release(contacts: Sequence[datetime], cap: int, now: datetime) -> datetime | None:
    """When enough contacts have left the 7-day window to allow one more, or None if allowed."""
    recent = sorted(t for t in contacts if now - CAP_WINDOW < t <= now)
    if len(recent) < cap:
        return None
    return recent[len(recent) - cap] + CAP_WINDOW


def evaluate(terms: Terms | None, channel: str, purpose: str, now: datetime) -> Verdict:
    """The verdict for one (channel, purpose) at ``now``; see the module docstring."""
    horizon = now + MAX_CACHE
    if terms is None:
        return Verdict(False, UNKNOWN_SUBJECT, None, horizon)
    if terms.status == "erased":
        return Verdict(False, ERASED, None, horizon)
    if terms.status != "active":
        return Verdict(False, REVOKED, None, horizon)
    if terms.rules.blocks(channel, purpose):
        return Verdict(False, BLOCKED_BY_PERSON, None, horizon)
    permission = terms.permissions.get((channel, purpose))
    if permission is None or not permission.allowed:
        return Verdict(False, NOT_GRANTED, None, horizon)
    if permission.expires_at is not None and now >= permission.expires_at:
        return Verdict(False, EXPIRED, None, horizon)
    zone = ZoneInfo(terms.time_zone)
    windows = _windows(terms, permission)
    active = [w for w in windows if in_quiet_hours(w, now, zone)]
    if active:
        # Leave every overlapping window, not just the first one found.
        moment = now
        for _ in range(8):
            inside = [w for w in windows if in_quiet_hours(w, moment, zone)]
            if not inside:
                break
            end = max(quiet_end(w, moment, zone) for w in inside)
            # A clock turned back in autumn may jump out of a window before its end.
            shift = _next_transition(moment, end, zone)
            moment = shift if shift is not None else end
        return Verdict(False, QUIET_HOURS, moment, min(moment, horizon))
    if permission.max_per_week is not None:
        release = _cap_release(terms.recent_contacts.get((channel, purpose), ()),
                               permission.max_per_week, now)
        if release is not None:
            return Verdict(False, FREQUENCY_CAP, release, min(release, horizon))
    until = horizon
    for window in windows:
        until = min(until, quiet_start(window, now, zone))
    # A clock turned back in autumn may jump into a window without its start showing.
    shift = _next_transition(now, until, zone) if windows else None
    if shift is not None and any(in_quiet_hours(w, shift, zone) for w in windows):
        until = shift
    if permission.expires_at is not None:
        until = min(until, permission.expires_at)
    return Verdict(True, ALLOWED, None, until)


def alternatives(terms: Terms | None, channel: str, purpose: str, now: datetime) -> list[str]:
    """Other channels allowed right now for the same purpose, in the person's order."""
    if terms is None or terms.status != "active":
        return []
    return [c for c in terms.channel_order
            if c != channel and evaluate(terms, c, purpose, now).allowed]
