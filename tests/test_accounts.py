"""Accounts, profiles, global rules and the consent log, on SQLite and PostgreSQL.

Everything goes through the services as the web layers call them: a session
from ``runtime.database.write()`` that commits at the end of the block.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Mapping
from datetime import time
from time import sleep

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from vault.db import Database
from vault.errors import AuthenticationFailed, Conflict, NotFound, ValidationFailed
from vault.extensions import Runtime
from vault.models import AuditEvent, AuditHead, GlobalRules, Person, PersonKey, Profile
from vault.services.accounts import DEFAULT_TIME_ZONE, PersonProfile
from vault.services.audit import AuditTag, check_log
from vault.services.rules import ANY, QuietHours, RuleSet, get_rules, parse_rules, set_rules
from vault.vocabulary import CHANNELS, PURPOSES

PASSWORD = "correct horse battery staple"


# -- helpers ------------------------------------------------------------------------------
def _email(label: str = "person") -> str:
    return f"{label}-{secrets.token_hex(6)}@example.org"


def _sign_up(runtime: Runtime, email: str, *, password: str = PASSWORD,
             profile: Mapping[str, object] | None = None) -> str:
    with runtime.database.write() as session:
        return runtime.accounts.sign_up(session, email=email, password=password,
                                        profile=profile)


def _authenticate(runtime: Runtime, email: object, password: object) -> str:
    with runtime.database.write() as session:
        return runtime.accounts.authenticate(session, email=email,  # type: ignore[arg-type]
                                             password=password)  # type: ignore[arg-type]


def _profile(runtime: Runtime, person_id: str) -> PersonProfile:
    with runtime.database.read() as session:
        return runtime.accounts.get_profile(session, person_id)


def _update(runtime: Runtime, person_id: str, changes: Mapping[str, object]) -> PersonProfile:
    with runtime.database.write() as session:
        return runtime.accounts.update_profile(session, person_id, changes)


def _rules(runtime: Runtime, person_id: str) -> RuleSet:
    with runtime.database.read() as session:
        return get_rules(session, person_id, data_keys=runtime.data_keys)


def _set_rules(runtime: Runtime, person_id: str, document: Mapping[str, object],
               expected_version: int | None = None) -> RuleSet:
    with runtime.database.write() as session:
        return set_rules(session, person_id, document, data_keys=runtime.data_keys,
                         clock=runtime.clock, expected_version=expected_version)


def _counts(database: Database) -> dict[str, object]:
    """Rows per table of everything an account writes, and the log's head."""
    with database.read() as session:
        counts: dict[str, object] = {
            model.__tablename__: session.execute(
                sa.select(sa.func.count()).select_from(model)
            ).scalar_one()
            for model in (Person, PersonKey, Profile, GlobalRules, AuditEvent)
        }
        head = session.get(AuditHead, 1)
        assert head is not None
        counts["audit_head"] = (head.seq, bytes(head.hash))
        return counts


def _raw_profile(database: Database, person_id: str) -> tuple[object, ...]:
    """The stored (sealed) profile columns, to show a refused change left them as they were."""
    with database.read() as session:
        row = session.get(Profile, person_id)
        assert row is not None
        return tuple(getattr(row, c.name) for c in Profile.__table__.columns)


def _person_events(database: Database, person_id: str) -> list[sa.Row[tuple[str, str, str]]]:
    """(tag, actor, data) of the person's audit events, oldest first."""
    with database.read() as session:
        return list(session.execute(
            sa.select(AuditEvent.tag, AuditEvent.actor, AuditEvent.data)
            .where(AuditEvent.person_ref == person_id).order_by(AuditEvent.seq)
        ))


def _all_event_text(database: Database) -> str:
    """Every column of every audit event, as text."""
    with database.read() as session:
        rows = session.execute(sa.select(AuditEvent.__table__)).all()
    return "\n".join(
        " ".join(v.hex() if isinstance(v, bytes) else str(v) for v in row) for row in rows
    )


# -- sign up ------------------------------------------------------------------------------
def test_sign_up_returns_an_id_and_the_profile_reads_back_decrypted(runtime: Runtime) -> None:
    plain_email, full_email = _email(), _email()
    given: dict[str, object] = {
        "name": "  Zoë van den Berg  ",
        "phone": "+31 6 1234 5678",
        "address": "Keizersgracht 1\n1015 CC Amsterdam",
        "language": "en",
        "interests": "cycling\nbread",
        "time_zone": "America/New_York",
        "channel_order": ["sms", "email"],
    }

    plain_id = _sign_up(runtime, plain_email)
    full_id = _sign_up(runtime, full_email, profile=given)

    assert all(isinstance(i, str) and i for i in (plain_id, full_id))
    assert plain_id != full_id
    plain = _profile(runtime, plain_id)
    assert plain.email == plain_email
    assert (plain.name, plain.phone, plain.address, plain.language,
            plain.interests) == (None, None, None, None, None)
    assert plain.time_zone == DEFAULT_TIME_ZONE == "Europe/Amsterdam"
    assert plain.channel_order == CHANNELS
    assert sorted(plain.channel_order) == sorted(["email", "sms", "phone", "post", "push"])

    full = _profile(runtime, full_id)
    assert full.email == full_email
    assert full.name == "Zoë van den Berg"
    assert (full.phone, full.address, full.language, full.interests, full.time_zone) == (
        given["phone"], given["address"], given["language"], given["interests"],
        given["time_zone"])
    assert full.channel_order[:2] == ("sms", "email")
    assert full.channel_order[2:] == tuple(c for c in CHANNELS if c not in ("sms", "email"))
    assert [e.tag for e in _person_events(runtime.database, full_id)] == [
        AuditTag.PERSON_SIGNED_UP]


def test_a_registered_email_is_a_conflict_in_any_case_and_writes_nothing(
    runtime: Runtime,
) -> None:
    email = _email("Taken")
    _sign_up(runtime, email)
    before = _counts(runtime.database)

    for again in (email, email.upper(), email.lower(), f"  {email} "):
        with pytest.raises(Conflict) as raised:
            _sign_up(runtime, again, password="another long passphrase")
        assert raised.value.field == "email", again
        assert _counts(runtime.database) == before, again


def _race(runtime: Runtime, first: Callable[[Session], object],
          second: Callable[[Session], object]) -> list[object]:
    """Run ``second`` while ``first``'s transaction is open and has written; both results.

    ``first`` commits a moment after ``second`` started, so ``second`` cannot
    have seen its write. A result is the value returned or the exception raised.
    """
    written = threading.Event()
    results: list[object] = [None, None]

    def run(index: int, work: Callable[[Session], object]) -> None:
        try:
            if index == 1:
                written.wait(timeout=10)
            with runtime.database.write() as session:
                results[index] = work(session)
                if index == 0:
                    written.set()
                    sleep(0.3)
        except Exception as exc:  # handed to the test, which checks it
            results[index] = exc
        finally:
            written.set()

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_two_sign_ups_racing_for_one_email_give_one_account_and_one_conflict(
    runtime: Runtime,
) -> None:
    email = _email("race")

    def sign_up(session: Session) -> str:
        return runtime.accounts.sign_up(session, email=email, password=PASSWORD)

    winner, loser = _race(runtime, sign_up, sign_up)

    assert isinstance(winner, str), winner
    assert isinstance(loser, Conflict), loser
    assert loser.field == "email"
    assert _authenticate(runtime, email, PASSWORD) == winner


BAD_SIGN_UPS: list[tuple[str, dict[str, object], str]] = [
    ("not an email", {"email": "not-an-email"}, "email"),
    ("email without domain", {"email": "someone@"}, "email"),
    ("empty email", {"email": "   "}, "email"),
    ("email not text", {"email": 12345}, "email"),
    ("email missing", {"email": None}, "email"),
    ("short password", {"password": "short"}, "password"),
    ("eleven characters", {"password": "x" * 11}, "password"),
    ("over-long password", {"password": "x" * 1025}, "password"),
    ("password not text", {"password": 123456789012}, "password"),
    ("unknown profile field", {"profile": {"nickname": "Zo"}}, "nickname"),
    ("email inside the profile", {"profile": {"email": "other@example.org"}}, "email"),
    ("control character in name", {"profile": {"name": "Zo\x07e"}}, "name"),
    ("newline in name", {"profile": {"name": "Zo\ne"}}, "name"),
    ("bidi override in name", {"profile": {"name": "Zo\u202ee"}}, "name"),
    ("over-long name", {"profile": {"name": "n" * 201}}, "name"),
    ("empty name", {"profile": {"name": "  "}}, "name"),
    ("name not text", {"profile": {"name": 42}}, "name"),
    ("letters for a phone", {"profile": {"phone": "call me maybe"}}, "phone"),
    ("too short a phone", {"profile": {"phone": "12"}}, "phone"),
    ("phone not text", {"profile": {"phone": 31612345678}}, "phone"),
    ("over-long address", {"profile": {"address": "a" * 501}}, "address"),
    ("address not text", {"profile": {"address": {"street": "x"}}}, "address"),
    ("control character in interests", {"profile": {"interests": "a\x00b"}}, "interests"),
    ("interests not text", {"profile": {"interests": ["cycling"]}}, "interests"),
    ("unknown language", {"profile": {"language": "de"}}, "language"),
    ("language not text", {"profile": {"language": ["nl"]}}, "language"),
    ("unknown time zone", {"profile": {"time_zone": "Mars/Olympus_Mons"}}, "time_zone"),
    ("time zone in the wrong case", {"profile": {"time_zone": "europe/amsterdam"}},
     "time_zone"),
    ("time zone not text", {"profile": {"time_zone": 2}}, "time_zone"),
    ("time zone cleared", {"profile": {"time_zone": None}}, "time_zone"),
    ("unknown channel", {"profile": {"channel_order": ["email", "fax"]}}, "channel_order"),
    ("channel twice", {"profile": {"channel_order": ["sms", "email", "sms"]}},
     "channel_order"),
    ("channel order not a list", {"profile": {"channel_order": "email"}}, "channel_order"),
    ("channel not text", {"profile": {"channel_order": [1]}}, "channel_order"),
]


def test_bad_sign_up_input_is_refused_naming_the_field_and_writes_nothing(
    runtime: Runtime,
) -> None:
    before = _counts(runtime.database)
    for label, override, field in BAD_SIGN_UPS:
        arguments: dict[str, object] = {"email": _email(), "password": PASSWORD,
                                        "profile": None, **override}
        with pytest.raises(ValidationFailed) as raised, runtime.database.write() as session:
            runtime.accounts.sign_up(session, **arguments)  # type: ignore[arg-type]
        assert raised.value.field == field, label
        assert _counts(runtime.database) == before, label


# -- logging in ---------------------------------------------------------------------------
def test_authenticate_succeeds_only_with_the_right_password_and_fails_alike(
    runtime: Runtime,
) -> None:
    email = _email("Login")
    person_id = _sign_up(runtime, email)

    for login in (email, email.upper(), f" {email.lower()} "):
        assert _authenticate(runtime, login, PASSWORD) == person_id, login

    failures: list[AuthenticationFailed] = []
    for login, password in ((email, PASSWORD + "!"), (email, PASSWORD.upper()),
                            (_email("nobody"), PASSWORD), (email, ""),
                            (None, PASSWORD), (email, None)):
        with pytest.raises(AuthenticationFailed) as raised:
            _authenticate(runtime, login, password)
        failures.append(raised.value)
    assert len({(str(f), f.detail, f.field, f.status) for f in failures}) == 1
    assert failures[0].field is None


def test_change_password_replaces_the_login_secret(runtime: Runtime) -> None:
    email = _email()
    person_id = _sign_up(runtime, email)
    new = "a different long passphrase"

    with pytest.raises(AuthenticationFailed) as raised, runtime.database.write() as session:
        runtime.accounts.change_password(session, person_id, current="wrong password!",
                                         new=new)
    assert raised.value.field == "current"
    with pytest.raises(ValidationFailed) as short, runtime.database.write() as session:
        runtime.accounts.change_password(session, person_id, current=PASSWORD, new="short")
    assert short.value.field == "new"
    assert _authenticate(runtime, email, PASSWORD) == person_id

    with runtime.database.write() as session:
        runtime.accounts.change_password(session, person_id, current=PASSWORD, new=new)

    assert _authenticate(runtime, email, new) == person_id
    with pytest.raises(AuthenticationFailed):
        _authenticate(runtime, email, PASSWORD)


# -- profile ------------------------------------------------------------------------------
def test_update_profile_audits_changed_field_names_and_never_values(runtime: Runtime) -> None:
    person_id = _sign_up(runtime, _email(), profile={"name": "Before Name", "language": "nl"})
    token = secrets.token_hex(8)
    changes: dict[str, object] = {
        "name": f"Canary Name {token}",
        "phone": f"+31 6 {secrets.randbelow(10**8):08d}",
        "address": f"Canarystraat {token}\n1234 AB Utrecht",
        "interests": f"canary interests {token}",
        "language": "nl",  # unchanged: not listed
        "time_zone": "Asia/Tokyo",
    }

    profile = _update(runtime, person_id, changes)

    assert (profile.name, profile.phone, profile.address, profile.interests,
            profile.language, profile.time_zone) == (
        changes["name"], changes["phone"], changes["address"], changes["interests"],
        changes["language"], changes["time_zone"])
    assert _profile(runtime, person_id) == profile
    events = _person_events(runtime.database, person_id)
    assert [e.tag for e in events] == [AuditTag.PERSON_SIGNED_UP,
                                       AuditTag.PERSON_PROFILE_UPDATED]
    assert events[-1].actor == f"person:{person_id}"
    assert json.loads(events[-1].data) == {
        "fields": sorted(["address", "interests", "name", "phone", "time_zone"])}
    stored = _all_event_text(runtime.database)
    for value in (changes["name"], changes["phone"], changes["address"],
                  changes["interests"], token, "Before Name"):
        assert str(value) not in stored

    # Clearing a field is a change of that field alone.
    assert _update(runtime, person_id, {"phone": None}).phone is None
    assert _profile(runtime, person_id).phone is None
    assert json.loads(_person_events(runtime.database, person_id)[-1].data) == {
        "fields": ["phone"]}


def test_update_profile_without_a_change_writes_nothing(runtime: Runtime) -> None:
    person_id = _sign_up(runtime, _email(), profile={"name": "Same Name"})
    before = _counts(runtime.database)
    sealed = _raw_profile(runtime.database, person_id)

    profile = _update(runtime, person_id, {"name": "  Same Name ",
                                           "time_zone": DEFAULT_TIME_ZONE})

    assert profile.name == "Same Name"
    assert _counts(runtime.database) == before
    assert _raw_profile(runtime.database, person_id) == sealed


def test_two_people_racing_for_one_new_email_give_one_change_and_one_conflict(
    runtime: Runtime,
) -> None:
    first, second = _sign_up(runtime, _email()), _sign_up(runtime, _email())
    wanted = _email("wanted")

    def change(person_id: str) -> Callable[[Session], object]:
        return lambda session: runtime.accounts.update_profile(session, person_id,
                                                               {"email": wanted})

    won, lost = _race(runtime, change(first), change(second))

    assert isinstance(won, PersonProfile) and won.email == wanted, won
    assert isinstance(lost, Conflict), lost
    assert lost.field == "email"
    assert _authenticate(runtime, wanted, PASSWORD) == first
    assert _profile(runtime, second).email != wanted


BAD_UPDATES: list[tuple[str, dict[str, object], str]] = [
    ("unknown field", {"name": "Fine", "favourite_colour": "red"}, "favourite_colour"),
    ("one bad field among good ones", {"name": "Fine", "phone": "nope"}, "phone"),
    ("email removed", {"email": None}, "email"),
    ("bad email", {"email": "@example.org"}, "email"),
    ("channel order removed", {"channel_order": None}, "channel_order"),
    ("duplicate channel", {"channel_order": ["push", "push"]}, "channel_order"),
    ("control character", {"address": "Street\x1b[31m"}, "address"),
    ("over-long interests", {"interests": "i" * 2001}, "interests"),
    ("bad language", {"language": "fr"}, "language"),
    ("name not text", {"name": b"bytes"}, "name"),
]


def test_bad_profile_update_is_refused_naming_the_field_and_writes_nothing(
    runtime: Runtime,
) -> None:
    person_id = _sign_up(runtime, _email(), profile={"name": "Kept", "phone": "+3120123456"})
    before = _counts(runtime.database)
    sealed = _raw_profile(runtime.database, person_id)

    for label, changes, field in BAD_UPDATES:
        with pytest.raises(ValidationFailed) as raised:
            _update(runtime, person_id, changes)
        assert raised.value.field == field, label

    assert _counts(runtime.database) == before
    assert _raw_profile(runtime.database, person_id) == sealed
    assert _profile(runtime, person_id).name == "Kept"
    with pytest.raises(NotFound):
        _profile(runtime, "0" * 32)
    with pytest.raises(NotFound):
        _update(runtime, "0" * 32, {"name": "Nobody"})


def test_changing_email_moves_the_login(runtime: Runtime) -> None:
    old, new = _email("old"), _email("new")
    person_id = _sign_up(runtime, old)

    profile = _update(runtime, person_id, {"email": new})

    assert profile.email == new
    assert _authenticate(runtime, new, PASSWORD) == person_id
    with pytest.raises(AuthenticationFailed):
        _authenticate(runtime, old, PASSWORD)
    # Changing only the case of one's own address is no conflict with oneself.
    local, domain = new.split("@")
    assert _update(runtime, person_id, {"email": f"{local.upper()}@{domain}"}).email == (
        f"{local.upper()}@{domain}")
    assert _authenticate(runtime, new, PASSWORD) == person_id
    # The old address is free again.
    assert _sign_up(runtime, old) != person_id


def test_changing_email_to_one_in_use_is_a_conflict_and_writes_nothing(
    runtime: Runtime,
) -> None:
    mine, theirs = _email("mine"), _email("theirs")
    me = _sign_up(runtime, mine)
    them = _sign_up(runtime, theirs)
    before = _counts(runtime.database)
    sealed = _raw_profile(runtime.database, me)

    for taken in (theirs, theirs.upper()):
        with pytest.raises(Conflict) as raised:
            _update(runtime, me, {"email": taken, "name": "Would Change"})
        assert raised.value.field == "email", taken

    assert _counts(runtime.database) == before
    assert _raw_profile(runtime.database, me) == sealed
    assert _authenticate(runtime, mine, PASSWORD) == me
    assert _authenticate(runtime, theirs, PASSWORD) == them


# -- global rules -------------------------------------------------------------------------
def test_rules_round_trip_with_wildcards_channels_off_and_quiet_hours(runtime: Runtime) -> None:
    person_id = _sign_up(runtime, _email())
    fresh = _rules(runtime, person_id)
    assert fresh == RuleSet(version=1)
    document: dict[str, object] = {
        "blocked": [{"channel": "sms", "purpose": ANY}, {"purpose": "offers"},
                    {"channel": "email", "purpose": "surveys"},
                    {"channel": "sms", "purpose": ANY}],
        "channels_off": ["post", "push", "post"],
        "quiet_hours": {"start": "22:30", "end": "07:15"},
    }

    saved = _set_rules(runtime, person_id, document, expected_version=fresh.version)

    expected = RuleSet(
        blocked=(("sms", ANY), (ANY, "offers"), ("email", "surveys")),
        channels_off=("post", "push"),
        quiet_hours=QuietHours(time(22, 30), time(7, 15)),
        version=fresh.version + 1,
    )
    assert saved == expected
    assert _rules(runtime, person_id) == expected
    assert expected.to_json() == {
        "blocked": [{"channel": "sms", "purpose": "*"}, {"channel": "*", "purpose": "offers"},
                    {"channel": "email", "purpose": "surveys"}],
        "channels_off": ["post", "push"],
        "quiet_hours": {"start": "22:30", "end": "07:15"},
    }
    event = _person_events(runtime.database, person_id)[-1]
    assert event.tag == AuditTag.PERSON_RULES_UPDATED
    assert json.loads(event.data) == {"before": fresh.to_json(), "after": expected.to_json(),
                                      "version": expected.version}

    emptied = _set_rules(runtime, person_id, {})
    assert emptied == RuleSet(version=expected.version + 1)
    assert _rules(runtime, person_id) == emptied


BAD_RULES: list[tuple[str, object, str]] = [
    ("not an object", ["sms"], "rules"),
    ("unknown key", {"blocked": [], "mood": "grumpy"}, "mood"),
    ("blocked not a list", {"blocked": {"channel": "sms"}}, "blocked"),
    ("blocked item not an object", {"blocked": ["sms"]}, "blocked"),
    ("blocked item with unknown key", {"blocked": [{"channel": "sms", "when": "now"}]}, "when"),
    ("everything blocked by wildcards", {"blocked": [{"channel": "*", "purpose": "*"}]},
     "blocked"),
    ("empty blocked item", {"blocked": [{}]}, "blocked"),
    ("unknown channel", {"blocked": [{"channel": "fax", "purpose": "offers"}]},
     "blocked.channel"),
    ("unknown purpose", {"blocked": [{"channel": "sms", "purpose": "spam"}]},
     "blocked.purpose"),
    ("channel not text", {"blocked": [{"channel": 1}]}, "blocked.channel"),
    ("channels_off not a list", {"channels_off": "sms"}, "channels_off"),
    ("unknown channel off", {"channels_off": ["sms", "carrier pigeon"]}, "channels_off"),
    ("wildcard channel off", {"channels_off": ["*"]}, "channels_off"),
    ("quiet hours not an object", {"quiet_hours": "22:00-07:00"}, "quiet_hours"),
    ("quiet hours unknown key", {"quiet_hours": {"start": "22:00", "end": "07:00", "tz": "x"}},
     "tz"),
    ("quiet hours bad start", {"quiet_hours": {"start": "24:00", "end": "07:00"}},
     "quiet_hours.start"),
    ("quiet hours without end", {"quiet_hours": {"start": "22:00"}}, "quiet_hours.end"),
    ("quiet hours one digit hour", {"quiet_hours": {"start": "22:00", "end": "7:00"}},
     "quiet_hours.end"),
    ("quiet hours not text", {"quiet_hours": {"start": 2200, "end": "07:00"}},
     "quiet_hours.start"),
    ("quiet hours of no length", {"quiet_hours": {"start": "08:00", "end": "08:00"}},
     "quiet_hours"),
]


def test_bad_rules_are_refused_naming_the_field_and_write_nothing(runtime: Runtime) -> None:
    person_id = _sign_up(runtime, _email())
    _set_rules(runtime, person_id, {"channels_off": ["phone"]})
    rules = _rules(runtime, person_id)
    before = _counts(runtime.database)

    for label, document, field in BAD_RULES:
        with pytest.raises(ValidationFailed) as raised:
            _set_rules(runtime, person_id, document)  # type: ignore[arg-type]
        assert raised.value.field == field, label

    assert _counts(runtime.database) == before
    assert _rules(runtime, person_id) == rules


def test_saving_rules_over_a_newer_version_is_a_conflict(runtime: Runtime) -> None:
    person_id = _sign_up(runtime, _email())
    first_tab = _rules(runtime, person_id).version
    second_tab = _rules(runtime, person_id).version
    saved = _set_rules(runtime, person_id, {"channels_off": ["sms"]},
                       expected_version=first_tab)
    before = _counts(runtime.database)

    with pytest.raises(Conflict) as raised:
        _set_rules(runtime, person_id, {"channels_off": ["email"]},
                   expected_version=second_tab)

    assert raised.value.field == "version"
    assert _counts(runtime.database) == before
    assert _rules(runtime, person_id) == saved
    assert _set_rules(runtime, person_id, {"channels_off": ["email"]},
                      expected_version=saved.version).version == saved.version + 1
    with pytest.raises(NotFound):
        _rules(runtime, "0" * 32)
    with pytest.raises(NotFound):
        _set_rules(runtime, "0" * 32, {})


def test_a_save_in_between_is_refused_even_when_the_row_was_read_in_this_transaction(
    runtime: Runtime, postgres: object,
) -> None:
    if postgres is None:
        pytest.skip("SQLite lets no other writer in while this transaction is open")
    person_id = _sign_up(runtime, _email())

    with pytest.raises(Conflict), runtime.database.write() as session:
        shown = session.get(GlobalRules, person_id)  # e.g. to show when it last changed
        assert shown is not None
        seen = get_rules(session, person_id, data_keys=runtime.data_keys)
        saved_elsewhere = _set_rules(runtime, person_id, {"channels_off": ["sms"]})
        set_rules(session, person_id, {"channels_off": ["email"]},
                  data_keys=runtime.data_keys, clock=runtime.clock,
                  expected_version=seen.version)

    assert _rules(runtime, person_id) == saved_elsewhere


def test_an_event_appended_in_between_does_not_fork_the_log(
    runtime: Runtime, postgres: object,
) -> None:
    if postgres is None:
        pytest.skip("SQLite lets no other writer in while this transaction is open")
    person_id = _sign_up(runtime, _email())

    with runtime.database.write() as session:
        head = session.get(AuditHead, 1)  # e.g. to report the log's length
        assert head is not None
        _set_rules(runtime, person_id, {"channels_off": ["sms"]})
        runtime.accounts.update_profile(session, person_id, {"name": "In Between"})

    with runtime.database.read() as session:
        result = check_log(session)
    assert result.ok, result
    assert [e.tag for e in _person_events(runtime.database, person_id)] == [
        AuditTag.PERSON_SIGNED_UP, AuditTag.PERSON_RULES_UPDATED,
        AuditTag.PERSON_PROFILE_UPDATED]


def test_rule_set_blocks_by_pair_wildcard_and_channel_off() -> None:
    rules = parse_rules({
        "blocked": [{"channel": "sms"}, {"channel": "*", "purpose": "offers"},
                    {"channel": "email", "purpose": "surveys"}],
        "channels_off": ["post"],
        "quiet_hours": {"start": "21:00", "end": "06:00"},
    })

    for channel in CHANNELS:
        for purpose in PURPOSES:
            expected = (channel in ("sms", "post") or purpose == "offers"
                        or (channel, purpose) == ("email", "surveys"))
            assert rules.blocks(channel, purpose) is expected, (channel, purpose)


def test_rule_set_without_rules_blocks_nothing() -> None:
    assert not any(RuleSet().blocks(c, p) for c in CHANNELS for p in PURPOSES)


def test_quiet_hours_across_midnight_parse_and_block_no_pair() -> None:
    rules = parse_rules({"quiet_hours": {"start": "23:00", "end": "01:00"}})

    assert rules.quiet_hours == QuietHours(time(23, 0), time(1, 0))
    assert rules.quiet_hours.start > rules.quiet_hours.end
    assert rules.to_json()["quiet_hours"] == {"start": "23:00", "end": "01:00"}
    assert not any(rules.blocks(c, p) for c in CHANNELS for p in PURPOSES)


# -- transactions -------------------------------------------------------------------------
class _Boom(Exception):
    pass


def test_an_error_inside_a_transaction_leaves_no_partial_write(runtime: Runtime) -> None:
    person_id = _sign_up(runtime, _email(), profile={"name": "Unchanged"})
    before = _counts(runtime.database)
    sealed = _raw_profile(runtime.database, person_id)
    rules = _rules(runtime, person_id)
    lost = _email("lost")

    with pytest.raises(_Boom), runtime.database.write() as session:
        new_id = runtime.accounts.sign_up(session, email=lost, password=PASSWORD)
        runtime.accounts.update_profile(session, person_id, {"name": "Changed"})
        set_rules(session, person_id, {"channels_off": ["sms"]}, data_keys=runtime.data_keys,
                  clock=runtime.clock)
        raise _Boom()

    assert _counts(runtime.database) == before
    with runtime.database.read() as session:
        assert session.get(Person, new_id) is None
    assert _raw_profile(runtime.database, person_id) == sealed
    assert _rules(runtime, person_id) == rules
    with pytest.raises(AuthenticationFailed):
        _authenticate(runtime, lost, PASSWORD)
    assert _sign_up(runtime, lost) != new_id


# -- erasure and the consent log ----------------------------------------------------------
def _lifecycle(runtime: Runtime) -> tuple[list[str], list[str]]:
    """A few people doing the usual things; returns their ids and emails."""
    emails = [_email() for _ in range(3)]
    people = [_sign_up(runtime, e, profile={"name": f"Person {i}"})
              for i, e in enumerate(emails)]
    _update(runtime, people[0], {"phone": "+31 20 555 0101", "language": "en"})
    _set_rules(runtime, people[1], {"blocked": [{"purpose": "offers"}],
                                    "quiet_hours": {"start": "22:00", "end": "07:00"}})
    with runtime.database.write() as session:
        runtime.accounts.change_password(session, people[2], current=PASSWORD,
                                         new="yet another passphrase")
    with runtime.database.write() as session:
        runtime.accounts.erase(session, people[0])
    return people, emails


def test_erasure_and_the_audit_chain_after_a_sequence_of_operations(runtime: Runtime) -> None:
    people, emails = _lifecycle(runtime)

    with runtime.database.read() as session:
        result = check_log(session)
        seqs = list(session.exec(select(AuditEvent.seq).order_by(AuditEvent.seq)))
    assert result.ok, result
    assert result.events == len(seqs) == 3 + 1 + 1 + 1 + 1
    assert seqs == list(range(1, len(seqs) + 1))
    assert [e.tag for e in _person_events(runtime.database, people[0])] == [
        AuditTag.PERSON_SIGNED_UP, AuditTag.PERSON_PROFILE_UPDATED, AuditTag.PERSON_ERASED]

    # The erased person is gone from every way in, and their address is free again.
    with pytest.raises(AuthenticationFailed):
        _authenticate(runtime, emails[0], PASSWORD)
    with pytest.raises(NotFound):
        _profile(runtime, people[0])
    with pytest.raises(NotFound):
        _rules(runtime, people[0])
    with runtime.database.read() as session:
        assert session.get(PersonKey, people[0]) is None
        assert session.get(Profile, people[0]) is None
        tombstone = session.get(Person, people[0])
        assert tombstone is not None and tombstone.erased_at is not None
        assert tombstone.email_index is None and tombstone.password_hash is None
    assert _sign_up(runtime, emails[0]) not in people
    # The others are untouched.
    assert _authenticate(runtime, emails[1], PASSWORD) == people[1]
    assert _rules(runtime, people[1]).blocks("sms", "offers")


TAMPERING: dict[str, str] = {
    "data": '{"fields":[]}',
    "actor": "operator",
    "person_ref": "f" * 32,
    "tag": str(AuditTag.KEK_ROTATED),
}


def test_a_tampered_or_removed_audit_event_is_found_by_its_sequence_number(
    runtime: Runtime,
) -> None:
    _lifecycle(runtime)
    with runtime.database.read() as session:
        total = session.get(AuditHead, 1).seq  # type: ignore[union-attr]
    victim = total // 2 + 1

    for column, forged in TAMPERING.items():
        select_sql = sa.text(f"SELECT {column} FROM audit_event WHERE seq = :seq")
        update_sql = sa.text(f"UPDATE audit_event SET {column} = :value WHERE seq = :seq")
        with runtime.database.write() as session:
            original = session.execute(select_sql, {"seq": victim}).scalar_one()
            assert original != forged, column
            session.execute(update_sql, {"value": forged, "seq": victim})
        with runtime.database.read() as session:
            tampered = check_log(session)
        assert not tampered.ok, column
        assert tampered.first_bad_seq == victim, column
        assert tampered.reason is not None and "hash" in tampered.reason, column
        with runtime.database.write() as session:
            session.execute(update_sql, {"value": original, "seq": victim})
        with runtime.database.read() as session:
            assert check_log(session).ok, column

    with runtime.database.write() as session:
        session.execute(sa.text("DELETE FROM audit_event WHERE seq = :seq"), {"seq": total})
    with runtime.database.read() as session:
        removed = check_log(session)
    assert not removed.ok
    assert removed.first_bad_seq == total
