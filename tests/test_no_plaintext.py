"""Invariant: no personal value is ever at rest or in the logs in clear.

People are signed up with distinctive random "canary" values in every profile
field, then the raw database (SQLite's files, PostgreSQL's ``pg_dump``) and
every log line of a whole account lifecycle are searched for them. A value the
vault stores in clear on purpose (a merchant's name) is searched for the same
way and must be found, which shows the search itself would catch a leak.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import pytest
from sqlalchemy.engine import make_url
from sqlmodel import select

from vault.errors import AuthenticationFailed
from vault.extensions import Runtime
from vault.models import Merchant, TermsHistory
from vault.services.accounts import PersonProfile
from vault.services.merchants import find_client, register_client
from vault.services.rules import set_rules
from vault.services.scopes import PersonGrant
from vault.services.subscriptions import grant

PG_DUMP = shutil.which("pg_dump") or "/usr/bin/pg_dump"


class PostgresDatabase(Protocol):
    """What the ``postgres`` fixture hands over on the PostgreSQL run."""

    def libpq_args(self) -> list[str]: ...


# -- canaries -----------------------------------------------------------------------------
@dataclass
class Canaries:
    """One person's planted values, and the random tokens inside them."""

    email: str
    password: str
    profile: dict[str, object]
    tokens: list[str] = field(default_factory=list)

    def values(self) -> list[str]:
        """Everything that must never be found: whole values and their tokens."""
        texts = [str(v) for k, v in self.profile.items() if k not in ("language", "time_zone")]
        return [self.email, self.password, *texts, *self.tokens]


def _token() -> str:
    return secrets.token_hex(8)


def _phone() -> str:
    digits = f"{secrets.randbelow(10**8):08d}"
    return f"+31 6 {digits[:4]} {digits[4:]}"


def _canaries(language: str, time_zone: str) -> Canaries:
    tokens = [_token() for _ in range(6)]
    return Canaries(
        email=f"canary.{tokens[0]}@example.org",
        password=f"canary password {tokens[1]}",
        profile={
            "name": f"Zoë Canarÿ {tokens[2]}",
            "phone": _phone(),
            "address": f"Canarystraat {tokens[3]}\n1234 AB Utrecht",
            "interests": f"birdwatching, canary-interest-{tokens[4]}\nand more {tokens[5]}",
            "language": language,
            "time_zone": time_zone,
        },
        tokens=tokens,
    )


def _profile_changes() -> tuple[dict[str, object], list[str]]:
    """New canary values for some profile fields, and their tokens."""
    tokens = [_token() for _ in range(3)]
    return {
        "name": f"Renamed Canary {tokens[0]}",
        "address": f"Nieuwe Canaryweg {tokens[1]}\n3511 AA Utrecht",
        "phone": _phone(),
        "interests": f"updated canary {tokens[2]}",
    }, tokens


def _needles(values: Iterable[str]) -> dict[bytes, str]:
    """Every byte form a value could take at rest: as given and lower case, UTF-8 and UTF-16."""
    needles: dict[bytes, str] = {}
    for value in values:
        for form in (value, value.lower()):
            for encoding in ("utf-8", "utf-16-le"):
                needles[form.encode(encoding)] = value
    return needles


def _hits(blob: bytes, values: Iterable[str]) -> set[str]:
    """The values found anywhere in ``blob``."""
    return {value for needle, value in _needles(values).items() if needle in blob}


def _text_hits(text: str, values: Iterable[str]) -> set[str]:
    return {v for v in values if v in text or v.lower() in text.lower()}


# -- what is at rest ----------------------------------------------------------------------
def _sqlite_files(database_url: str) -> dict[str, bytes]:
    """The raw bytes of the database file and its companions (WAL, journal, shared memory)."""
    path = Path(make_url(database_url).database or "")
    files: dict[str, bytes] = {}
    for suffix in ("", "-wal", "-journal", "-shm"):
        candidate = path.with_name(path.name + suffix)
        if candidate.exists():
            files[candidate.name] = candidate.read_bytes()
    assert path.name in files
    return files


def _pg_dump(postgres: PostgresDatabase) -> dict[str, bytes]:
    result = subprocess.run(
        [PG_DUMP, "--no-owner", *postgres.libpq_args()],
        capture_output=True, check=True, timeout=120,
    )
    assert b"CREATE TABLE public.profile" in result.stdout
    assert b"CREATE TABLE public.terms_history" in result.stdout
    return {"pg_dump": result.stdout}


def _at_rest(runtime: Runtime, postgres: PostgresDatabase | None) -> dict[str, bytes]:
    if postgres is None:
        return _sqlite_files(runtime.settings.database_url)
    return _pg_dump(postgres)


def _found(stored: dict[str, bytes], values: Iterable[str]) -> dict[str, set[str]]:
    """Per stored file, the values found in it; empty files left out."""
    wanted = list(values)
    return {name: hits for name, blob in stored.items() if (hits := _hits(blob, wanted))}


# -- seeding ------------------------------------------------------------------------------
def _seed(runtime: Runtime) -> tuple[list[str], list[str]]:
    """People with canaries, some profiles changed, rules set, one erased.

    Returns every canary planted and the ids of the people still there.
    """
    people = [_canaries("nl", "Europe/Amsterdam"), _canaries("en", "Asia/Tokyo"),
              _canaries("nl", "America/Sao_Paulo"), _canaries("en", "Pacific/Auckland")]
    planted: list[str] = []
    ids: list[str] = []
    for person in people:
        with runtime.database.write() as session:
            ids.append(runtime.accounts.sign_up(session, email=person.email,
                                                password=person.password,
                                                profile=person.profile))
        planted += person.values()

    with runtime.database.read() as session:
        for person_id, person in zip(ids, people, strict=True):
            profile = runtime.accounts.get_profile(session, person_id)
            assert _fields(profile) == {"email": person.email, **person.profile}

    for person_id in ids[:2]:
        changes, tokens = _profile_changes()
        new_email = f"changed.{_token()}@example.org"
        with runtime.database.write() as session:
            updated = runtime.accounts.update_profile(session, person_id,
                                                      {**changes, "email": new_email})
        assert _fields(updated).items() >= {**changes, "email": new_email}.items()
        planted += [*(str(v) for v in changes.values()), *tokens, new_email]

    new_password = f"canary new password {_token()}"
    with runtime.database.write() as session:
        runtime.accounts.change_password(session, ids[2], current=people[2].password,
                                         new=new_password)
    planted.append(new_password)

    # Each person subscribes to a shop; the rules below replace the terms of that
    # subscription, and the replaced terms go to the history (another table to search).
    with runtime.database.write() as session:
        issued = register_client(session, clock=runtime.clock, name="Seed Shop",
                                 redirect_uris=["https://shop.example/callback"])
        shop = session.get(Merchant, find_client(session, issued.client_id).id)
        assert shop is not None
        granted = PersonGrant.parse("contact:email:offers profile:email profile:name")
        for person_id in ids:
            grant(session, person_id=person_id, merchant=shop, granted=granted,
                  requested=granted, data_keys=runtime.data_keys, clock=runtime.clock)
    runtime.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]

    rules = {"blocked": [{"channel": "sms", "purpose": "*"}, {"purpose": "offers"}],
             "channels_off": ["post"], "quiet_hours": {"start": "22:00", "end": "07:00"}}
    for person_id in ids:
        with runtime.database.write() as session:
            set_rules(session, person_id, rules, data_keys=runtime.data_keys,
                      clock=runtime.clock)

    with runtime.database.write() as session:
        runtime.accounts.erase(session, ids[3])
    return planted, ids[:3]


def _fields(profile: PersonProfile) -> dict[str, object]:
    """The profile's fields that were given, without the defaults nobody set."""
    doc = profile.to_json()
    doc.pop("channel_order")
    return {k: v for k, v in doc.items() if v is not None}


def _register_control(runtime: Runtime) -> str:
    """A merchant name: stored in clear on purpose, so the search must find it."""
    control = f"Canary Control Shop {_token()}"
    with runtime.database.write() as session:
        register_client(session, clock=runtime.clock, name=control,
                        redirect_uris=["https://shop.example/callback"])
    return control


# -- at rest ------------------------------------------------------------------------------
def test_no_personal_value_is_stored_in_clear(
    runtime: Runtime, postgres: PostgresDatabase | None
) -> None:
    planted, live = _seed(runtime)
    control = _register_control(runtime)
    assert len(set(planted)) == len(planted) > 30
    with runtime.database.read() as session:
        kept = session.exec(select(TermsHistory)).all()
    # Every person's replaced terms (the erased person's too) are in the history.
    assert len(kept) == len(live) + 1 and all(k.terms for k in kept)

    stored = _at_rest(runtime, postgres)

    assert _found(stored, planted) == {}
    assert any(control in hits for hits in _found(stored, [control]).values()), (
        "the search did not find a value stored in clear: it cannot be trusted")
    with runtime.database.read() as session:
        for person_id in live:
            assert runtime.accounts.get_profile(session, person_id).email

    if postgres is None:
        # Once every connection is closed SQLite folds the WAL into the main file.
        runtime.database.dispose()
        closed = _sqlite_files(runtime.settings.database_url)
        main_file = Path(make_url(runtime.settings.database_url).database or "").name
        assert _found(closed, planted) == {}
        assert control in _found(closed, [control]).get(main_file, set())


def test_the_search_finds_every_form_of_a_value() -> None:
    value = "Zoë Canarÿ " + _token()
    for blob in (value.encode(), value.lower().encode(), value.encode("utf-16-le"),
                 b"\x00\x01" + value.lower().encode("utf-16-le") + b"\xff"):
        assert _hits(blob, [value]) == {value}
    assert _hits(value.encode("utf-8")[:-1], [value]) == set()


# -- in the logs --------------------------------------------------------------------------
def _log_everything(caplog: pytest.LogCaptureFixture) -> None:
    """DEBUG on the root, on ``vault`` and on every logger with a level of its own.

    SQLAlchemy sets its loggers to WARNING on import; opening them up logs every
    statement with its parameters, so a value sent to the database in clear
    would show up here too.
    """
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="vault")
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            caplog.set_level(logging.DEBUG, logger=name)


def test_no_personal_value_reaches_the_logs(
    runtime: Runtime, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    _log_everything(caplog)
    person = _canaries("nl", "Europe/Amsterdam")
    stranger = f"stranger.{_token()}@example.org"
    wrong_password = f"canary wrong password {_token()}"
    changes, tokens = _profile_changes()
    planted = [*person.values(), stranger, wrong_password, *map(str, changes.values()),
               *tokens]

    with runtime.database.write() as session:
        person_id = runtime.accounts.sign_up(session, email=person.email,
                                             password=person.password, profile=person.profile)
    for email, password in ((stranger, person.password), (person.email, wrong_password)):
        with pytest.raises(AuthenticationFailed), runtime.database.write() as session:
            runtime.accounts.authenticate(session, email=email, password=password)
    with runtime.database.write() as session:
        assert runtime.accounts.authenticate(session, email=person.email,
                                             password=person.password) == person_id
    with runtime.database.write() as session:
        runtime.accounts.update_profile(session, person_id, changes)
    with runtime.database.read() as session:
        assert runtime.accounts.get_profile(session, person_id).name == changes["name"]
    with runtime.database.write() as session:
        runtime.accounts.erase(session, person_id)

    # Control: a value that is logged in clear is found by the same search.
    control = f"control {_token()}"
    logging.getLogger("vault.control").debug("planted %s", control)
    print(f"planted {control}", file=sys.stderr)

    records = caplog.records
    logged = "\n".join([caplog.text, *(repr(vars(r)) for r in records)])
    out, err = capfd.readouterr()
    vault_messages = [r.getMessage() for r in records if r.name.startswith("vault.services")]
    assert any("account created" in m for m in vault_messages)
    assert any("login refused" in m for m in vault_messages)
    assert any(r.name.startswith("sqlalchemy.engine") for r in records), (
        "SQL statements were not logged: the test would miss values in query parameters")
    assert _text_hits(logged, [control]) == {control}
    assert _text_hits(err, [control]) == {control}
    assert _text_hits(logged, planted) == set()
    assert _text_hits(out + err, planted) == set()
