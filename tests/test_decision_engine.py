"""Unit tests of the pure decision engine (``vault.services.decisions``), no database.

Time zone arithmetic is checked against Europe/Amsterdam in 2026: clocks spring
forward on 2026-03-29 at 01:00 UTC (02:00 CET -> 03:00 CEST) and fall back on
2026-10-25 at 01:00 UTC (03:00 CEST -> 02:00 CET).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault.models.subscription import ACTIVE as STATUS_ACTIVE
from vault.models.subscription import ERASED as STATUS_ERASED
from vault.models.subscription import REVOKED as STATUS_REVOKED
from vault.services.decisions import (
    ALLOWED,
    BLOCKED_BY_PERSON,
    CAP_WINDOW,
    ERASED,
    EXPIRED,
    FREQUENCY_CAP,
    MAX_CACHE,
    NOT_GRANTED,
    PRECEDENCE,
    QUIET_HOURS,
    REASONS,
    REVOKED,
    UNKNOWN_SUBJECT,
    Terms,
    Verdict,
    alternatives,
    evaluate,
)
from vault.services.permissions import Permission
from vault.services.rules import ANY, QuietHours, RuleSet
from vault.vocabulary import CHANNELS, PURPOSES

AMS = ZoneInfo("Europe/Amsterdam")
SPRING_FORWARD = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
FALL_BACK = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
YEAR_END = datetime(2027, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)

#: a summer Monday, 14:00 in Amsterdam (CEST)
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
CHANNEL = "email"
PURPOSE = "offers"

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None)


# ---------------------------------------------------------------- helpers


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
        second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def window(start: str, end: str) -> QuietHours:
    return QuietHours(hhmm(start), hhmm(end))


def grant(channel: str = CHANNEL, purpose: str = PURPOSE, **limits: object) -> Permission:
    return Permission(channel, purpose, **limits)  # type: ignore[arg-type]


def make_terms(
    *permissions: Permission,
    status: str = STATUS_ACTIVE,
    rules: RuleSet | None = None,
    contacts: dict[tuple[str, str], Sequence[datetime]] | None = None,
    channel_order: tuple[str, ...] = CHANNELS,
) -> Terms:
    return Terms(
        status=status,
        permissions={(p.channel, p.purpose): p for p in permissions},
        rules=rules if rules is not None else RuleSet(),
        time_zone="Europe/Amsterdam",
        channel_order=channel_order,
        recent_contacts=contacts or {},
    )


def quiet_terms(quiet: QuietHours, *, on_permission: bool = False) -> Terms:
    """Email/offers granted, with ``quiet`` as global rule or on the permission."""
    if on_permission:
        return make_terms(grant(quiet_hours=quiet))
    return make_terms(grant(), rules=RuleSet(quiet_hours=quiet))


def wall_inside(quiet: QuietHours, instant: datetime) -> bool:
    """The specification: the Amsterdam wall clock at ``instant`` is inside ``quiet``."""
    clock = instant.astimezone(AMS).time()
    if quiet.start < quiet.end:
        return quiet.start <= clock < quiet.end
    return clock >= quiet.start or clock < quiet.end


def quiet_at(windows: Sequence[QuietHours], instant: datetime) -> bool:
    return any(wall_inside(w, instant) for w in windows)


def next_minute(instant: datetime) -> datetime:
    """The first whole UTC minute strictly after ``instant``."""
    return instant.replace(second=0, microsecond=0) + MINUTE


def first_minute_where(windows: Sequence[QuietHours], after: datetime,
                       quiet: bool) -> datetime | None:
    """The first whole minute after ``after`` that is (not) inside one of ``windows``.

    Window edges are whole local minutes and Amsterdam's offsets whole hours, so
    being inside can only change on a whole UTC minute. None if not within 3 days.
    """
    moment = next_minute(after)
    for _ in range(3 * 24 * 60):
        if quiet_at(windows, moment) == quiet:
            return moment
        moment += MINUTE
    return None


def count_in_window(contacts: Iterable[datetime], at: datetime) -> int:
    """Contacts in the rolling cap window ending at ``at``: (at - 7 days, at]."""
    return sum(1 for c in contacts if at - CAP_WINDOW < c <= at)


def check_shape(verdict: Verdict, now: datetime) -> None:
    """Invariants every verdict keeps, whatever its reason."""
    assert verdict.reason in REASONS
    assert verdict.allowed == (verdict.reason == ALLOWED)
    if verdict.reason in (QUIET_HOURS, FREQUENCY_CAP):
        assert verdict.next_allowed_at is not None
        assert verdict.next_allowed_at > now
    else:
        assert verdict.next_allowed_at is None
    assert now < verdict.valid_until <= now + MAX_CACHE


# ------------------------------------------------------- every reason, one table

REASON_CASES: list[tuple[str, Terms | None, str]] = [
    ("unknown-subject", None, UNKNOWN_SUBJECT),
    ("erased", make_terms(grant(), status=STATUS_ERASED), ERASED),
    ("revoked", make_terms(grant(), status=STATUS_REVOKED), REVOKED),
    ("unknown-status-is-revoked", make_terms(grant(), status="suspended"), REVOKED),
    ("blocked-pair",
     make_terms(grant(), rules=RuleSet(blocked=((CHANNEL, PURPOSE),))), BLOCKED_BY_PERSON),
    ("blocked-any-channel",
     make_terms(grant(), rules=RuleSet(blocked=((ANY, PURPOSE),))), BLOCKED_BY_PERSON),
    ("blocked-any-purpose",
     make_terms(grant(), rules=RuleSet(blocked=((CHANNEL, ANY),))), BLOCKED_BY_PERSON),
    ("blocked-channel-off",
     make_terms(grant(), rules=RuleSet(channels_off=(CHANNEL,))), BLOCKED_BY_PERSON),
    ("block-other-channel-ignored",
     make_terms(grant(), rules=RuleSet(blocked=(("sms", PURPOSE), ("sms", ANY)),
                                       channels_off=("post",))), ALLOWED),
    ("block-other-purpose-ignored",
     make_terms(grant(), rules=RuleSet(blocked=((CHANNEL, "surveys"), (ANY, "surveys")))),
     ALLOWED),
    ("not-granted-empty-grid", make_terms(), NOT_GRANTED),
    ("not-granted-other-pairs",
     make_terms(grant("sms", PURPOSE), grant(CHANNEL, "surveys")), NOT_GRANTED),
    ("not-granted-allowed-false", make_terms(grant(allowed=False)), NOT_GRANTED),
    ("expired-in-past", make_terms(grant(expires_at=NOW - timedelta(hours=1))), EXPIRED),
    ("expired-at-now", make_terms(grant(expires_at=NOW)), EXPIRED),
    ("not-yet-expired", make_terms(grant(expires_at=NOW + SECOND)), ALLOWED),
    ("quiet-global", quiet_terms(window("13:00", "15:00")), QUIET_HOURS),
    ("quiet-permission", quiet_terms(window("13:00", "15:00"), on_permission=True),
     QUIET_HOURS),
    ("quiet-global-other-time", quiet_terms(window("21:00", "09:00")), ALLOWED),
    ("quiet-other-permission-ignored",
     make_terms(grant(), grant("sms", PURPOSE, quiet_hours=window("13:00", "15:00"))),
     ALLOWED),
    ("frequency-cap",
     make_terms(grant(max_per_week=2),
                contacts={(CHANNEL, PURPOSE): [NOW - timedelta(days=1), NOW - timedelta(days=2)]}),
     FREQUENCY_CAP),
    ("frequency-below-cap",
     make_terms(grant(max_per_week=2), contacts={(CHANNEL, PURPOSE): [NOW - timedelta(days=1)]}),
     ALLOWED),
    ("frequency-other-pair-ignored",
     make_terms(grant(max_per_week=1), contacts={("sms", PURPOSE): [NOW - timedelta(days=1)],
                                                 (CHANNEL, "surveys"): [NOW]}),
     ALLOWED),
    ("contacts-without-cap", make_terms(grant(), contacts={(CHANNEL, PURPOSE): [NOW] * 50}),
     ALLOWED),
    ("allowed", make_terms(grant()), ALLOWED),
]


@pytest.mark.parametrize(("terms", "expected"), [pytest.param(t, r, id=i) for i, t, r in
                                                 REASON_CASES])
def test_each_reason(terms: Terms | None, expected: str) -> None:
    verdict = evaluate(terms, CHANNEL, PURPOSE, NOW)
    assert verdict.reason == expected
    check_shape(verdict, NOW)


def test_reason_vocabularies_agree() -> None:
    assert set(PRECEDENCE) == set(REASONS)
    assert len(PRECEDENCE) == len(REASONS)
    assert PRECEDENCE[0] == UNKNOWN_SUBJECT
    assert PRECEDENCE[-1] == ALLOWED


# ------------------------------------------------------------------ precedence

#: the conditions ``terms_where`` can make true (unknown_subject means no terms at all)
CONDITIONS = tuple(r for r in PRECEDENCE if r not in (UNKNOWN_SUBJECT, ALLOWED))


def terms_where(conditions: Collection[str]) -> Terms:
    """Terms for email/offers in which exactly ``conditions`` hold at ``NOW``."""
    assert not {ERASED, REVOKED} <= set(conditions), "one status at a time"
    status = STATUS_ACTIVE
    if ERASED in conditions:
        status = STATUS_ERASED
    elif REVOKED in conditions:
        status = STATUS_REVOKED
    rules = RuleSet(
        blocked=((CHANNEL, PURPOSE),) if BLOCKED_BY_PERSON in conditions else (),
        quiet_hours=window("13:00", "15:00") if QUIET_HOURS in conditions else None,
    )
    permission = grant(
        allowed=NOT_GRANTED not in conditions,
        expires_at=NOW - timedelta(hours=1) if EXPIRED in conditions else None,
        max_per_week=1 if FREQUENCY_CAP in conditions else None,
    )
    contacts = {(CHANNEL, PURPOSE): [NOW - timedelta(days=1)]}
    return make_terms(permission, status=status, rules=rules, contacts=contacts)


def winner(conditions: Collection[str]) -> str:
    return next((r for r in PRECEDENCE if r in conditions), ALLOWED)


@pytest.mark.parametrize("condition", CONDITIONS)
def test_terms_where_builds_each_condition_alone(condition: str) -> None:
    assert evaluate(terms_where({condition}), CHANNEL, PURPOSE, NOW).reason == condition
    assert evaluate(terms_where(()), CHANNEL, PURPOSE, NOW).reason == ALLOWED


ADJACENT = [
    pytest.param(first, second, id=f"{first}-beats-{second}")
    for first, second in pairwise(CONDITIONS)
    if {first, second} != {ERASED, REVOKED}  # one status: both cannot hold at once
]


@pytest.mark.parametrize(("first", "second"), ADJACENT)
def test_adjacent_reasons_in_documented_order(first: str, second: str) -> None:
    verdict = evaluate(terms_where({first, second}), CHANNEL, PURPOSE, NOW)
    assert verdict.reason == first
    check_shape(verdict, NOW)


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        pytest.param({ERASED, BLOCKED_BY_PERSON}, ERASED, id="erased-beats-blocked"),
        pytest.param({BLOCKED_BY_PERSON, NOT_GRANTED}, BLOCKED_BY_PERSON,
                     id="blocked-beats-not-granted"),
        pytest.param({NOT_GRANTED, QUIET_HOURS}, NOT_GRANTED, id="not-granted-beats-quiet"),
        pytest.param({EXPIRED, QUIET_HOURS}, EXPIRED, id="expired-beats-quiet"),
        pytest.param({QUIET_HOURS, FREQUENCY_CAP}, QUIET_HOURS, id="quiet-beats-cap"),
        pytest.param({EXPIRED, FREQUENCY_CAP}, EXPIRED, id="expired-beats-cap"),
        pytest.param({REVOKED, *CONDITIONS[3:]}, REVOKED, id="revoked-beats-all-later"),
        pytest.param(set(CONDITIONS[1:]), REVOKED, id="all-but-erased"),
        pytest.param(set(CONDITIONS) - {REVOKED}, ERASED, id="all-but-revoked"),
    ],
)
def test_named_precedence_pairs(conditions: set[str], expected: str) -> None:
    assert evaluate(terms_where(conditions), CHANNEL, PURPOSE, NOW).reason == expected


def test_every_combination_of_reasons_follows_precedence() -> None:
    checked = 0
    for mask in range(1 << len(CONDITIONS)):
        conditions = {c for i, c in enumerate(CONDITIONS) if mask >> i & 1}
        if {ERASED, REVOKED} <= conditions:
            continue
        verdict = evaluate(terms_where(conditions), CHANNEL, PURPOSE, NOW)
        assert verdict.reason == winner(conditions), conditions
        check_shape(verdict, NOW)
        checked += 1
    assert checked == 3 * (1 << (len(CONDITIONS) - 2))
    # no subscription beats any combination of the others
    assert evaluate(None, CHANNEL, PURPOSE, NOW).reason == UNKNOWN_SUBJECT


# ----------------------------------------------------------------- quiet hours


def expect(verdict: Verdict, reason: str, next_allowed_at: datetime | None = None,
           valid_until: datetime | None = None) -> None:
    assert verdict.reason == reason
    assert verdict.next_allowed_at == next_allowed_at
    if valid_until is not None:
        assert verdict.valid_until == valid_until


NIGHT = window("21:00", "09:00")
LUNCH = window("12:00", "14:00")

#: (window, asked at, reason, next_allowed_at, valid_until or None to skip)
QUIET_CASES: list[tuple[str, QuietHours, datetime, str, datetime | None, datetime | None]] = [
    # summer (CEST, UTC+2), across midnight
    ("night-before-start", NIGHT, utc(2026, 6, 15, 18, 58), ALLOWED, None,
     utc(2026, 6, 15, 19, 0)),
    ("night-start", NIGHT, utc(2026, 6, 15, 19, 0), QUIET_HOURS, utc(2026, 6, 16, 7, 0), None),
    ("night-before-midnight", NIGHT, utc(2026, 6, 15, 21, 30), QUIET_HOURS,
     utc(2026, 6, 16, 7, 0), None),
    ("night-after-midnight", NIGHT, utc(2026, 6, 16, 1, 0), QUIET_HOURS,
     utc(2026, 6, 16, 7, 0), None),
    ("night-last-second", NIGHT, utc(2026, 6, 16, 6, 59, 59), QUIET_HOURS,
     utc(2026, 6, 16, 7, 0), utc(2026, 6, 16, 7, 0)),
    ("night-end", NIGHT, utc(2026, 6, 16, 7, 0), ALLOWED, None, utc(2026, 6, 16, 7, 5)),
    # winter (CET, UTC+1)
    ("winter-night-start", NIGHT, utc(2026, 1, 15, 20, 0), QUIET_HOURS,
     utc(2026, 1, 16, 8, 0), None),
    ("winter-night-end", NIGHT, utc(2026, 1, 16, 8, 0), ALLOWED, None, None),
    ("winter-before-start", NIGHT, utc(2026, 1, 15, 19, 57, 30), ALLOWED, None,
     utc(2026, 1, 15, 20, 0)),
    # a window within one day
    ("lunch-before", LUNCH, utc(2026, 6, 15, 9, 59), ALLOWED, None, utc(2026, 6, 15, 10, 0)),
    ("lunch-start", LUNCH, utc(2026, 6, 15, 10, 0), QUIET_HOURS, utc(2026, 6, 15, 12, 0),
     None),
    ("lunch-last-second", LUNCH, utc(2026, 6, 15, 11, 59, 59), QUIET_HOURS,
     utc(2026, 6, 15, 12, 0), None),
    ("lunch-end", LUNCH, utc(2026, 6, 15, 12, 0), ALLOWED, None, utc(2026, 6, 15, 12, 5)),
    ("lunch-night", LUNCH, utc(2026, 6, 15, 22, 0), ALLOWED, None, utc(2026, 6, 15, 22, 5)),
    # spring forward, night of 2026-03-28/29: 09:00 local is 08:00 UTC, then 07:00 UTC
    ("spring-eve-morning", NIGHT, utc(2026, 3, 28, 7, 30), QUIET_HOURS,
     utc(2026, 3, 28, 8, 0), None),
    ("spring-eve-before-start", NIGHT, utc(2026, 3, 28, 19, 58), ALLOWED, None,
     utc(2026, 3, 28, 20, 0)),
    ("spring-night-start", NIGHT, utc(2026, 3, 28, 20, 0), QUIET_HOURS,
     utc(2026, 3, 29, 7, 0), None),
    ("spring-just-before-switch", NIGHT, SPRING_FORWARD - SECOND, QUIET_HOURS,
     utc(2026, 3, 29, 7, 0), None),
    ("spring-at-switch", NIGHT, SPRING_FORWARD, QUIET_HOURS, utc(2026, 3, 29, 7, 0), None),
    ("spring-last-second", NIGHT, utc(2026, 3, 29, 6, 59, 59), QUIET_HOURS,
     utc(2026, 3, 29, 7, 0), None),
    ("spring-end", NIGHT, utc(2026, 3, 29, 7, 0), ALLOWED, None, None),
    ("spring-next-start", NIGHT, utc(2026, 3, 29, 18, 59), ALLOWED, None,
     utc(2026, 3, 29, 19, 0)),
    # fall back, night of 2026-10-24/25: 09:00 local is 07:00 UTC, then 08:00 UTC
    ("fall-eve-before-start", NIGHT, utc(2026, 10, 24, 18, 58), ALLOWED, None,
     utc(2026, 10, 24, 19, 0)),
    ("fall-night-start", NIGHT, utc(2026, 10, 24, 19, 0), QUIET_HOURS,
     utc(2026, 10, 25, 8, 0), None),
    ("fall-first-0230", NIGHT, utc(2026, 10, 25, 0, 30), QUIET_HOURS,
     utc(2026, 10, 25, 8, 0), None),
    ("fall-at-switch", NIGHT, FALL_BACK, QUIET_HOURS, utc(2026, 10, 25, 8, 0), None),
    ("fall-second-0230", NIGHT, utc(2026, 10, 25, 1, 30), QUIET_HOURS,
     utc(2026, 10, 25, 8, 0), None),
    ("fall-last-second", NIGHT, utc(2026, 10, 25, 7, 59, 59), QUIET_HOURS,
     utc(2026, 10, 25, 8, 0), None),
    ("fall-before-old-end", NIGHT, utc(2026, 10, 25, 7, 0), QUIET_HOURS,
     utc(2026, 10, 25, 8, 0), None),
    ("fall-end", NIGHT, utc(2026, 10, 25, 8, 0), ALLOWED, None, None),
    ("fall-next-start", NIGHT, utc(2026, 10, 25, 19, 58), ALLOWED, None,
     utc(2026, 10, 25, 20, 0)),
    # a window ending inside the spring-forward gap ends at the gap's end
    ("gap-end-0230", window("22:00", "02:30"), utc(2026, 3, 28, 21, 0), QUIET_HOURS,
     SPRING_FORWARD, None),
    ("gap-end-0230-last-second", window("22:00", "02:30"), SPRING_FORWARD - SECOND,
     QUIET_HOURS, SPRING_FORWARD, SPRING_FORWARD),
    ("gap-end-0230-after", window("22:00", "02:30"), SPRING_FORWARD, ALLOWED, None, None),
    ("gap-end-0210", window("22:00", "02:10"), utc(2026, 3, 29, 0, 30), QUIET_HOURS,
     SPRING_FORWARD, None),
    ("gap-end-0259", window("23:15", "02:59"), utc(2026, 3, 28, 23, 0), QUIET_HOURS,
     SPRING_FORWARD, None),
    # a window starting inside the gap starts at the gap's end
    ("gap-start-before", window("02:15", "06:00"), SPRING_FORWARD - 2 * MINUTE, ALLOWED, None,
     SPRING_FORWARD),
    ("gap-start-at", window("02:15", "06:00"), SPRING_FORWARD, QUIET_HOURS,
     utc(2026, 3, 29, 4, 0), None),
    # fall back: 02:00-03:00 local happens twice
    ("fold-end-first", window("22:00", "02:30"), utc(2026, 10, 25, 0, 10), QUIET_HOURS,
     utc(2026, 10, 25, 0, 30), None),
    ("fold-between", window("22:00", "02:30"), utc(2026, 10, 25, 0, 30), ALLOWED, None,
     utc(2026, 10, 25, 0, 35)),
    ("fold-before-reentry", window("22:00", "02:30"), utc(2026, 10, 25, 0, 58), ALLOWED, None,
     FALL_BACK),
    ("fold-reentered", window("22:00", "02:30"), FALL_BACK, QUIET_HOURS,
     utc(2026, 10, 25, 1, 30), None),
    ("fold-end-second", window("22:00", "02:30"), utc(2026, 10, 25, 1, 10), QUIET_HOURS,
     utc(2026, 10, 25, 1, 30), None),
    ("fold-start-first", window("02:30", "06:00"), utc(2026, 10, 25, 0, 45), QUIET_HOURS,
     FALL_BACK, None),
    ("fold-turned-back-out", window("02:30", "06:00"), FALL_BACK, ALLOWED, None,
     FALL_BACK + MAX_CACHE),
    ("fold-before-second-start", window("02:30", "06:00"), utc(2026, 10, 25, 1, 28), ALLOWED,
     None, utc(2026, 10, 25, 1, 30)),
    ("fold-start-second", window("02:30", "06:00"), utc(2026, 10, 25, 1, 30), QUIET_HOURS,
     utc(2026, 10, 25, 5, 0), None),
]


@pytest.mark.parametrize("on_permission", [False, True], ids=["global", "permission"])
@pytest.mark.parametrize(
    ("quiet", "now", "reason", "next_allowed_at", "valid_until"),
    [pytest.param(*case[1:], id=case[0]) for case in QUIET_CASES],
)
def test_quiet_hours_instants(quiet: QuietHours, now: datetime, reason: str,
                              next_allowed_at: datetime | None, valid_until: datetime | None,
                              on_permission: bool) -> None:
    verdict = evaluate(quiet_terms(quiet, on_permission=on_permission), CHANNEL, PURPOSE, now)
    expect(verdict, reason, next_allowed_at, valid_until)
    check_shape(verdict, now)
    assert (reason == QUIET_HOURS) == wall_inside(quiet, now)
    if next_allowed_at is not None:
        after = evaluate(quiet_terms(quiet, on_permission=on_permission), CHANNEL, PURPOSE,
                         next_allowed_at)
        assert after.reason == ALLOWED


def test_overlapping_windows_are_left_together() -> None:
    # global 21:00-09:00 and the permission's own 08:00-10:00 overlap in the morning
    terms = make_terms(grant(quiet_hours=window("08:00", "10:00")),
                       rules=RuleSet(quiet_hours=NIGHT))
    expect(evaluate(terms, CHANNEL, PURPOSE, utc(2026, 6, 15, 23, 0)), QUIET_HOURS,
           utc(2026, 6, 16, 8, 0))
    expect(evaluate(terms, CHANNEL, PURPOSE, utc(2026, 6, 16, 7, 30)), QUIET_HOURS,
           utc(2026, 6, 16, 8, 0))
    # an allowed answer ends at whichever window starts first
    terms = make_terms(grant(quiet_hours=window("20:58", "21:30")),
                       rules=RuleSet(quiet_hours=NIGHT))
    expect(evaluate(terms, CHANNEL, PURPOSE, utc(2026, 6, 15, 18, 55)), ALLOWED, None,
           utc(2026, 6, 15, 18, 58))
    expect(evaluate(terms, CHANNEL, PURPOSE, utc(2026, 6, 15, 18, 58)), QUIET_HOURS,
           utc(2026, 6, 16, 7, 0))
    # overlapping the other way: the permission window holds past the global end
    terms = make_terms(grant(quiet_hours=window("18:00", "23:00")),
                       rules=RuleSet(quiet_hours=window("22:00", "07:00")))
    expect(evaluate(terms, CHANNEL, PURPOSE, utc(2026, 6, 15, 17, 0)), QUIET_HOURS,
           utc(2026, 6, 16, 5, 0))


def test_quiet_hours_in_another_time_zone() -> None:
    terms = replace(quiet_terms(NIGHT), time_zone="America/New_York")
    # 2026-06-15 12:00 UTC is 08:00 EDT (UTC-4): quiet until 09:00 EDT = 13:00 UTC
    expect(evaluate(terms, CHANNEL, PURPOSE, NOW), QUIET_HOURS, utc(2026, 6, 15, 13, 0))


# ------------------------------------------------------------ frequency cap

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def capped(cap: int, contacts: Sequence[datetime]) -> Terms:
    return make_terms(grant(max_per_week=cap), contacts={(CHANNEL, PURPOSE): list(contacts)})


@pytest.mark.parametrize(
    ("cap", "offsets", "reason", "release_offset"),
    [
        pytest.param(3, [-6 * DAY, -3 * DAY, -HOUR], FREQUENCY_CAP, DAY, id="full"),
        pytest.param(3, [-HOUR, -6 * DAY, -3 * DAY], FREQUENCY_CAP, DAY, id="unsorted"),
        pytest.param(3, [-3 * DAY, -HOUR], ALLOWED, None, id="below"),
        pytest.param(2, [-6 * DAY, -5 * DAY, -DAY], FREQUENCY_CAP, 2 * DAY, id="over-cap"),
        pytest.param(1, [timedelta(0)], FREQUENCY_CAP, CAP_WINDOW, id="contact-at-now-counts"),
        pytest.param(1, [-CAP_WINDOW], ALLOWED, None, id="exactly-7-days-ago-left"),
        pytest.param(1, [-CAP_WINDOW + SECOND], FREQUENCY_CAP, SECOND, id="leaves-in-1s"),
        pytest.param(1, [-8 * DAY, -30 * DAY], ALLOWED, None, id="older-than-window"),
        pytest.param(1, [HOUR, DAY], ALLOWED, None, id="future-ignored"),
        pytest.param(2, [HOUR, -HOUR, -DAY], FREQUENCY_CAP, 6 * DAY, id="future-not-counted"),
        pytest.param(2, [-8 * DAY, -HOUR, -2 * DAY], FREQUENCY_CAP, 5 * DAY, id="old-not-counted"),
    ],
)
def test_frequency_cap(cap: int, offsets: list[timedelta], reason: str,
                       release_offset: timedelta | None) -> None:
    contacts = [NOW + o for o in offsets]
    verdict = evaluate(capped(cap, contacts), CHANNEL, PURPOSE, NOW)
    release = NOW + release_offset if release_offset is not None else None
    expect(verdict, reason, release)
    check_shape(verdict, NOW)
    assert (reason == FREQUENCY_CAP) == (count_in_window(contacts, NOW) >= cap)
    if release is not None:
        # the release is the moment the oldest counting contact leaves the window
        made = [c for c in contacts if c <= NOW]
        assert count_in_window(made, release) < cap
        assert count_in_window(made, release - SECOND) >= cap
        assert evaluate(capped(cap, made), CHANNEL, PURPOSE, release).allowed


# ---------------------------------------------------------------- valid_until


def test_valid_until_is_at_most_max_cache() -> None:
    verdict = evaluate(make_terms(grant()), CHANNEL, PURPOSE, NOW)
    assert verdict.valid_until == NOW + MAX_CACHE


@pytest.mark.parametrize(
    ("expires_in", "valid_for"),
    [
        pytest.param(2 * MINUTE, 2 * MINUTE, id="expiry-first"),
        pytest.param(SECOND, SECOND, id="expiry-in-a-second"),
        pytest.param(MAX_CACHE, MAX_CACHE, id="expiry-at-cache-limit"),
        pytest.param(HOUR, MAX_CACHE, id="cache-limit-first"),
    ],
)
def test_valid_until_never_past_expiry(expires_in: timedelta, valid_for: timedelta) -> None:
    verdict = evaluate(make_terms(grant(expires_at=NOW + expires_in)), CHANNEL, PURPOSE, NOW)
    assert verdict.allowed
    assert verdict.valid_until == NOW + valid_for


def test_valid_until_never_past_quiet_start_or_expiry() -> None:
    # quiet hours start in 3 minutes (21:00 local), expiry in 4: quiet start wins
    now = utc(2026, 6, 15, 18, 57)
    terms = make_terms(grant(expires_at=now + 4 * MINUTE), rules=RuleSet(quiet_hours=NIGHT))
    assert evaluate(terms, CHANNEL, PURPOSE, now).valid_until == utc(2026, 6, 15, 19, 0)
    terms = make_terms(grant(expires_at=now + 2 * MINUTE), rules=RuleSet(quiet_hours=NIGHT))
    assert evaluate(terms, CHANNEL, PURPOSE, now).valid_until == now + 2 * MINUTE


@pytest.mark.parametrize(
    "terms",
    [
        pytest.param(quiet_terms(NIGHT), id="quiet-hours-ending-hours-later"),
        pytest.param(capped(1, [NOW - HOUR]), id="frequency-cap-releasing-days-later"),
    ],
)
def test_denials_with_a_later_release_are_cached_briefly(terms: Terms) -> None:
    now = utc(2026, 6, 15, 22, 0)
    verdict = evaluate(terms, CHANNEL, PURPOSE, now)
    assert not verdict.allowed
    assert verdict.next_allowed_at is not None
    assert verdict.next_allowed_at > now + MAX_CACHE
    assert verdict.valid_until == now + MAX_CACHE


def test_denials_cached_no_longer_than_their_release() -> None:
    now = utc(2026, 6, 16, 6, 58)
    verdict = evaluate(quiet_terms(NIGHT), CHANNEL, PURPOSE, now)
    assert verdict.next_allowed_at == utc(2026, 6, 16, 7, 0)
    assert verdict.valid_until == utc(2026, 6, 16, 7, 0)


# --------------------------------------------------------------- alternatives


def offers_terms(status: str = STATUS_ACTIVE) -> Terms:
    return make_terms(
        grant("email", "offers"),
        grant("sms", "offers"),
        grant("post", "offers"),
        grant("phone", "offers", quiet_hours=window("13:00", "15:00")),  # quiet at NOW
        grant("push", "offers"),
        grant("phone", "surveys"),
        status=status,
        rules=RuleSet(channels_off=("push",)),
        channel_order=("post", "push", "phone", "sms", "email"),
    )


@pytest.mark.parametrize(
    ("channel", "purpose", "expected"),
    [
        pytest.param("email", "offers", ["post", "sms"], id="person-order"),
        pytest.param("sms", "offers", ["post", "email"], id="never-the-asked-channel"),
        pytest.param("phone", "offers", ["post", "sms", "email"], id="asked-is-quiet"),
        pytest.param("push", "offers", ["post", "sms", "email"], id="asked-is-blocked"),
        pytest.param("email", "surveys", ["phone"], id="same-purpose-only"),
        pytest.param("email", "service", [], id="nothing-granted"),
    ],
)
def test_alternatives(channel: str, purpose: str, expected: list[str]) -> None:
    terms = offers_terms()
    found = alternatives(terms, channel, purpose, NOW)
    assert found == expected
    for other in found:
        assert evaluate(terms, other, purpose, NOW).allowed


def test_alternatives_follow_channel_order_only() -> None:
    terms = replace(offers_terms(), channel_order=("sms", "email"))
    assert alternatives(terms, "phone", "offers", NOW) == ["sms", "email"]


@pytest.mark.parametrize(
    "terms",
    [
        pytest.param(None, id="unknown"),
        pytest.param(offers_terms(STATUS_REVOKED), id="revoked"),
        pytest.param(offers_terms(STATUS_ERASED), id="erased"),
    ],
)
def test_no_alternatives_without_an_active_subscription(terms: Terms | None) -> None:
    assert alternatives(terms, "email", "offers", NOW) == []


# ------------------------------------------------------------------ properties

SECONDS_2026 = int((YEAR_END - YEAR_START).total_seconds()) - 1


@st.composite
def instants(draw: st.DrawFn) -> datetime:
    """UTC instants in 2026, often near (or exactly on) a DST switch."""
    switch = draw(st.sampled_from([SPRING_FORWARD, FALL_BACK]))
    return draw(st.one_of(
        st.integers(0, SECONDS_2026).map(lambda s: YEAR_START + timedelta(seconds=s)),
        st.integers(-30 * 3600, 30 * 3600).map(lambda s: switch + timedelta(seconds=s)),
        st.integers(-900, 900).map(lambda s: switch + timedelta(seconds=s)),
    ))


#: minutes of the day, often near the 02:00-03:00 hour that DST skips or repeats
minutes_of_day = st.one_of(
    st.integers(0, 24 * 60 - 1),
    st.integers(60, 4 * 60),
    st.sampled_from([0, 120, 150, 179, 180, 540, 1260]),
)


@st.composite
def quiet_windows(draw: st.DrawFn) -> QuietHours:
    start = draw(minutes_of_day)
    end = draw(minutes_of_day.filter(lambda m: m != start))
    return QuietHours(time(start // 60, start % 60), time(end // 60, end % 60))


channels = st.sampled_from(CHANNELS)
purposes = st.sampled_from(PURPOSES)


@st.composite
def permissions(draw: st.DrawFn, around: datetime) -> Permission:
    return Permission(
        channel=draw(channels),
        purpose=draw(purposes),
        allowed=draw(st.booleans()),
        max_per_week=draw(st.none() | st.integers(1, 5)),
        quiet_hours=draw(st.none() | quiet_windows()),
        expires_at=draw(st.none() | st.integers(-10 * 86400, 10 * 86400).map(
            lambda s: around + timedelta(seconds=s))),
    )


blocks = st.tuples(channels | st.just(ANY), purposes | st.just(ANY)).filter(
    lambda pair: pair != (ANY, ANY))


@st.composite
def rule_sets(draw: st.DrawFn) -> RuleSet:
    return RuleSet(
        blocked=tuple(draw(st.lists(blocks, max_size=3, unique=True))),
        channels_off=tuple(draw(st.lists(channels, max_size=2, unique=True))),
        quiet_hours=draw(st.none() | quiet_windows()),
    )


@st.composite
def scenarios(draw: st.DrawFn, status: st.SearchStrategy[str]) -> tuple[Terms, datetime]:
    """Random terms for a random moment, with many grants for ``channels`` x ``purposes``."""
    now = draw(instants())
    grid = draw(st.lists(permissions(now), max_size=6))
    contact_times = st.lists(
        st.integers(-9 * 86400, 86400).map(lambda s: now + timedelta(seconds=s)), max_size=4)
    contacts = draw(st.dictionaries(st.tuples(channels, purposes), contact_times, max_size=3))
    terms = Terms(
        status=draw(status),
        permissions={(p.channel, p.purpose): p for p in grid},
        rules=draw(rule_sets()),
        recent_contacts=contacts,
    )
    return terms, now


@PROPERTY
@given(scenarios(st.sampled_from([STATUS_REVOKED, STATUS_ERASED])), channels, purposes)
def test_property_revoked_or_erased_never_allows(scenario: tuple[Terms, datetime],
                                                 channel: str, purpose: str) -> None:
    terms, now = scenario
    verdict = evaluate(terms, channel, purpose, now)
    assert not verdict.allowed
    assert verdict.reason == (ERASED if terms.status == STATUS_ERASED else REVOKED)
    check_shape(verdict, now)
    assert alternatives(terms, channel, purpose, now) == []


def withdrawn(terms: Terms, key: tuple[str, str], how: str) -> Terms:
    grid = dict(terms.permissions)
    if how == "remove":
        grid.pop(key, None)
    elif key in grid:
        grid[key] = replace(grid[key], allowed=False)
    return replace(terms, permissions=grid)


def blocked(terms: Terms, block: tuple[str, str] | None, channel_off: str | None) -> Terms:
    rules = terms.rules
    rules = replace(
        rules,
        blocked=rules.blocked + ((block,) if block else ()),
        channels_off=rules.channels_off + ((channel_off,) if channel_off else ()),
    )
    return replace(terms, rules=rules)


@PROPERTY
@given(
    scenarios(st.just(STATUS_ACTIVE)),
    st.data(),
    st.sampled_from(["remove", "disallow", "block"]),
)
def test_property_withdrawing_never_turns_a_denial_into_an_allowance(
        scenario: tuple[Terms, datetime], data: st.DataObject, how: str) -> None:
    terms, now = scenario
    key: tuple[str, str] | None = None
    if how == "block":
        changed = blocked(terms, data.draw(st.none() | blocks), data.draw(st.none() | channels))
    else:
        # withdraw an allowed pair when there is one, else any granted pair
        allowed = [k for k in sorted(terms.permissions) if evaluate(terms, *k, now).allowed]
        key = data.draw(st.sampled_from(allowed or sorted(terms.permissions)
                                        or [(CHANNEL, PURPOSE)]))
        changed = withdrawn(terms, key, how)
        withdrawn_verdict = evaluate(changed, *key, now)
        assert not withdrawn_verdict.allowed
        if key in allowed:
            assert withdrawn_verdict.reason == NOT_GRANTED
    for channel in CHANNELS:
        for purpose in PURPOSES:
            before = evaluate(terms, channel, purpose, now)
            after = evaluate(changed, channel, purpose, now)
            check_shape(after, now)
            if not before.allowed:
                assert not after.allowed, (channel, purpose, before, after)
            if key is not None and (channel, purpose) != key:
                assert after == before  # withdrawing one pair leaves the others alone
        assert set(alternatives(changed, channel, PURPOSE, now)) <= set(
            alternatives(terms, channel, PURPOSE, now))


def simulate(cap: int, attempts: Iterable[datetime]) -> list[datetime]:
    """A merchant asking at each instant and contacting whenever allowed."""
    contacts: list[datetime] = []
    for at in attempts:
        verdict = evaluate(capped(cap, tuple(contacts)), CHANNEL, PURPOSE, at)
        assert verdict.reason in (ALLOWED, FREQUENCY_CAP)
        if verdict.allowed:
            contacts.append(at)
            continue
        assert count_in_window(contacts, at) == cap
        release = verdict.next_allowed_at
        assert release is not None
        assert release > at
        assert count_in_window(contacts, release) == cap - 1
        assert count_in_window(contacts, release - SECOND) == cap
    return contacts


@PROPERTY
@given(
    st.integers(1, 6),
    instants(),
    st.lists(st.integers(1, 3 * 86400), min_size=1, max_size=60),
)
def test_property_frequency_cap_holds_in_every_window(cap: int, start: datetime,
                                                      gaps: list[int]) -> None:
    attempts = [start]
    for gap in gaps:
        attempts.append(attempts[-1] + timedelta(seconds=gap))
    contacts = simulate(cap, attempts)
    # the busiest window ends at a contact, so checking those checks every instant
    for at in [*contacts, *attempts]:
        assert count_in_window(contacts, at) <= cap


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(st.integers(1, 8), instants())
def test_property_frequency_cap_is_reached_when_asked_densely(cap: int,
                                                              start: datetime) -> None:
    attempts = [start + n * HOUR for n in range(21 * 24)]
    contacts = simulate(cap, attempts)
    windows = [count_in_window(contacts, at) for at in attempts]
    assert max(windows) == cap
    # exactly cap contacts in each of the three weeks, at the first hours of each
    assert len(contacts) == 3 * cap
    for week in range(3):
        first = start + week * CAP_WINDOW
        assert contacts[week * cap:(week + 1) * cap] == [first + n * HOUR for n in range(cap)]


@PROPERTY
@given(quiet_windows(), instants(), st.booleans())
def test_property_quiet_hours_iff_wall_time_inside(quiet: QuietHours, now: datetime,
                                                   on_permission: bool) -> None:
    terms = quiet_terms(quiet, on_permission=on_permission)
    verdict = evaluate(terms, CHANNEL, PURPOSE, now)
    check_shape(verdict, now)
    inside = wall_inside(quiet, now)
    assert (verdict.reason == QUIET_HOURS) == inside
    if inside:
        release = verdict.next_allowed_at
        assert release is not None
        assert release > now
        assert not wall_inside(quiet, release)
        assert evaluate(terms, CHANNEL, PURPOSE, release).reason == ALLOWED
        assert wall_inside(quiet, release - SECOND)
        # and it is the earliest such moment
        assert release == first_minute_where([quiet], now, quiet=False)
        assert verdict.valid_until == min(release, now + MAX_CACHE)
    else:
        assert verdict.allowed
        # an allowed answer is never cached into the quiet hours
        entry = first_minute_where([quiet], now, quiet=True)
        assert entry is not None
        assert verdict.valid_until == min(entry, now + MAX_CACHE)
        assert not wall_inside(quiet, verdict.valid_until - SECOND)


@PROPERTY
@given(quiet_windows(), quiet_windows(), instants())
def test_property_two_windows_left_together(first: QuietHours, second: QuietHours,
                                            now: datetime) -> None:
    windows = [first, second]
    terms = make_terms(grant(quiet_hours=second), rules=RuleSet(quiet_hours=first))
    verdict = evaluate(terms, CHANNEL, PURPOSE, now)
    check_shape(verdict, now)
    inside = quiet_at(windows, now)
    assert (verdict.reason == QUIET_HOURS) == inside
    if not inside:
        entry = first_minute_where(windows, now, quiet=True)
        assert entry is not None
        assert verdict.valid_until == min(entry, now + MAX_CACHE)
        return
    release = verdict.next_allowed_at
    assert release is not None
    exit_ = first_minute_where(windows, now, quiet=False)
    if exit_ is None:  # together the windows cover the whole day: no way out
        assert release > now
    else:
        assert release == exit_
        assert evaluate(terms, CHANNEL, PURPOSE, release).allowed
