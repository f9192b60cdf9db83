"""Rotating the key-encryption key: every data key rewrapped, nothing lost, resumable."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

import pytest
from sqlmodel import select

import vault.services.keys as keys_module
from vault.crypto.keyring import KeyRing
from vault.db import Database
from vault.extensions import Runtime
from vault.models import AuditEvent, PersonKey
from vault.services.accounts import AccountService, PersonProfile
from vault.services.audit import AuditTag, check_log
from vault.services.keys import DataKeys, retire_keks, rotate_keks

PEOPLE = 30
BATCH = 7
TIME_ZONES = ("Europe/Amsterdam", "Europe/London", "America/New_York", "Asia/Tokyo")


class Killed(Exception):
    """Stands in for the process dying part-way through a rotation."""


def _profile_input(i: int) -> dict[str, str | None]:
    return {
        "name": f"Person Number {i}",
        "phone": f"+31 6 1234 {i:04d}",
        "address": f"Keizersgracht {100 + i}\n1015 CJ Amsterdam",
        "language": ("nl", "en")[i % 2],
        "interests": f"interest-{i}, cycling" if i % 3 else None,
        "time_zone": TIME_ZONES[i % len(TIME_ZONES)],
    }


def _sign_up_people(runtime: Runtime, count: int = PEOPLE) -> dict[str, PersonProfile]:
    """Sign up ``count`` people with distinct profiles; their expected profiles by id."""
    expected: dict[str, PersonProfile] = {}
    with runtime.database.write() as session:
        for i in range(count):
            email = f"person{i}@example.org"
            extra = _profile_input(i)
            person_id = runtime.accounts.sign_up(
                session, email=email, password=f"pass-phrase-{i}-long",
                profile={k: v for k, v in extra.items() if v is not None},
            )
            expected[person_id] = PersonProfile(email=email, **extra)
    assert len(expected) == count
    return expected


def _disk_ring(runtime: Runtime) -> KeyRing:
    """The key ring as a new process would read it from its file."""
    assert runtime.keyring.path is not None
    return KeyRing.load(runtime.keyring.path)


def _fresh_accounts(runtime: Runtime) -> AccountService:
    """Account services over a key ring re-read from disk, with empty caches."""
    ring = _disk_ring(runtime)
    return AccountService(data_keys=DataKeys(ring), blind_index_key=ring.blind_index_key,
                          passwords=runtime.passwords, clock=runtime.clock)


def _assert_profiles(runtime: Runtime, expected: dict[str, PersonProfile]) -> None:
    accounts = _fresh_accounts(runtime)
    with runtime.database.read() as session:
        actual = {pid: accounts.get_profile(session, pid) for pid in expected}
    assert actual == expected


class KeyRow(NamedTuple):
    """A person_key row as read, detached from any session."""

    kek_id: str
    wrapped: bytes
    rewrapped_at: datetime | None


def _key_rows(database: Database) -> dict[str, KeyRow]:
    with database.read() as session:
        return {row.person_id: KeyRow(row.kek_id, row.wrapped, row.rewrapped_at)
                for row in session.exec(select(PersonKey))}


def _rotation_events(database: Database) -> list[dict[str, object]]:
    with database.read() as session:
        events = session.exec(
            select(AuditEvent).where(AuditEvent.tag == str(AuditTag.KEK_ROTATED))
            .order_by(AuditEvent.seq)
        ).all()
        assert check_log(session).ok
        return [json.loads(e.data) for e in events]


def _raise_after_first_batch(batches: list[int]) -> Callable[[int], None]:
    def on_batch(done: int) -> None:
        batches.append(done)
        raise Killed(f"killed after {done} rewrapped")

    return on_batch


def test_rotation_rewraps_every_data_key_and_all_profiles_still_open(
    runtime: Runtime,
) -> None:
    expected = _sign_up_people(runtime)
    _assert_profiles(runtime, expected)
    old_id = runtime.keyring.active_kek_id
    before = _key_rows(runtime.database)
    assert {row.kek_id for row in before.values()} == {old_id}

    batches: list[int] = []
    report = rotate_keks(runtime.database, runtime.keyring, clock=runtime.clock,
                         batch_size=BATCH, on_batch=batches.append)

    assert report.kek_id != old_id
    assert report.resumed is False
    assert report.rewrapped == PEOPLE
    assert report.remaining == 0
    # ceil(30 / 7) = 5 batches, each reporting the running total.
    assert batches == [7, 14, 21, 28, 30]

    ring_on_disk = _disk_ring(runtime)
    assert ring_on_disk.active_kek_id == report.kek_id
    assert set(ring_on_disk.keks) == {old_id, report.kek_id}

    after = _key_rows(runtime.database)
    assert set(after) == set(before)
    assert {row.kek_id for row in after.values()} == {report.kek_id}
    for person_id, row in after.items():
        assert row.wrapped != before[person_id].wrapped
        assert row.rewrapped_at == runtime.clock.now()

    _assert_profiles(runtime, expected)
    # The services that were running all along see the same thing.
    with runtime.database.read() as session:
        assert {pid: runtime.accounts.get_profile(session, pid) for pid in expected} == expected

    assert _rotation_events(runtime.database) == [
        {"kek_id": report.kek_id, "rewrapped": PEOPLE, "resumed": False}
    ]


def test_rotation_stopped_between_batches_resumes_with_the_same_kek(runtime: Runtime) -> None:
    expected = _sign_up_people(runtime)
    old_id = runtime.keyring.active_kek_id
    assert runtime.keyring.path is not None

    batches: list[int] = []
    with pytest.raises(Killed):
        rotate_keks(runtime.database, runtime.keyring, clock=runtime.clock, batch_size=BATCH,
                    on_batch=_raise_after_first_batch(batches))
    assert batches == [BATCH]

    ring_on_disk = _disk_ring(runtime)
    new_id = ring_on_disk.active_kek_id
    assert new_id != old_id
    assert set(ring_on_disk.keks) == {old_id, new_id}
    by_kek: dict[str, int] = {}
    for row in _key_rows(runtime.database).values():
        by_kek[row.kek_id] = by_kek.get(row.kek_id, 0) + 1
    assert by_kek == {new_id: BATCH, old_id: PEOPLE - BATCH}
    # Half-way, both KEKs are needed and everything still opens.
    _assert_profiles(runtime, expected)
    # The killed run recorded no completed rotation.
    assert _rotation_events(runtime.database) == []
    # Retiring now must not drop the old KEK: it still wraps most data keys.
    assert retire_keks(runtime.database, _disk_ring(runtime)) == []
    assert set(_disk_ring(runtime).keks) == {old_id, new_id}

    # A new process picks it up from the key ring file.
    resumed_ring = _disk_ring(runtime)
    report = rotate_keks(runtime.database, resumed_ring, clock=runtime.clock, batch_size=BATCH)

    assert report.resumed is True
    assert report.kek_id == new_id
    assert report.rewrapped == PEOPLE - BATCH
    ring_after = _disk_ring(runtime)
    assert set(ring_after.keks) == {old_id, new_id}, "resuming must not add a third KEK"
    assert ring_after.active_kek_id == new_id
    assert {row.kek_id for row in _key_rows(runtime.database).values()} == {new_id}
    _assert_profiles(runtime, expected)
    assert _rotation_events(runtime.database) == [
        {"kek_id": new_id, "rewrapped": PEOPLE - BATCH, "resumed": True}
    ]


def test_rotation_killed_inside_a_batch_rolls_that_batch_back(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _sign_up_people(runtime)
    old_id = runtime.keyring.active_kek_id
    real_wrap = keys_module.wrap_key
    calls: list[str] = []

    def dying_wrap(kek: bytes, kek_id: str, owner_id: str, data_key: bytes) -> bytes:
        calls.append(owner_id)
        if len(calls) == BATCH + 3:  # part-way through the second batch
            raise Killed("killed mid-batch")
        return real_wrap(kek, kek_id, owner_id, data_key)

    monkeypatch.setattr(keys_module, "wrap_key", dying_wrap)
    with pytest.raises(Killed):
        rotate_keks(runtime.database, runtime.keyring, clock=runtime.clock, batch_size=BATCH)
    monkeypatch.undo()

    new_id = runtime.keyring.active_kek_id
    assert new_id != old_id
    rows = _key_rows(runtime.database)
    on_new = sorted(pid for pid, row in rows.items() if row.kek_id == new_id)
    # Only the first, committed batch moved; the two rewraps of the second were rolled back.
    assert on_new == sorted(calls[:BATCH])
    assert sum(1 for row in rows.values() if row.kek_id == old_id) == PEOPLE - BATCH
    _assert_profiles(runtime, expected)

    report = rotate_keks(runtime.database, _disk_ring(runtime), clock=runtime.clock,
                         batch_size=BATCH)
    assert (report.resumed, report.kek_id, report.rewrapped) == (True, new_id, PEOPLE - BATCH)
    assert len(_disk_ring(runtime).keks) == 2
    assert {row.kek_id for row in _key_rows(runtime.database).values()} == {new_id}
    _assert_profiles(runtime, expected)


def test_retiring_after_a_complete_rotation_drops_the_old_kek(runtime: Runtime) -> None:
    expected = _sign_up_people(runtime, count=12)
    old_id = runtime.keyring.active_kek_id
    assert runtime.keyring.path is not None

    report = rotate_keks(runtime.database, runtime.keyring, clock=runtime.clock,
                         batch_size=BATCH)
    retired = retire_keks(runtime.database, runtime.keyring)

    assert retired == [old_id]
    on_disk = _disk_ring(runtime)
    assert set(on_disk.keks) == {report.kek_id}
    assert old_id not in json.loads(runtime.keyring.path.read_text(encoding="utf-8"))["keks"]
    assert old_id not in runtime.keyring.keks
    _assert_profiles(runtime, expected)
    # Retiring again has nothing left to do.
    assert retire_keks(runtime.database, runtime.keyring) == []
    assert set(_disk_ring(runtime).keks) == {report.kek_id}


def test_a_second_rotation_adds_a_third_kek_and_retiring_keeps_only_it(
    runtime: Runtime,
) -> None:
    expected = _sign_up_people(runtime, count=10)
    first = rotate_keks(runtime.database, runtime.keyring, clock=runtime.clock,
                        batch_size=BATCH)
    second = rotate_keks(runtime.database, runtime.keyring, clock=runtime.clock,
                         batch_size=BATCH)
    assert second.resumed is False
    assert second.kek_id != first.kek_id
    assert second.rewrapped == 10
    assert len(_disk_ring(runtime).keks) == 3
    assert len(retire_keks(runtime.database, runtime.keyring)) == 2
    assert set(_disk_ring(runtime).keks) == {second.kek_id}
    _assert_profiles(runtime, expected)


def test_people_who_sign_up_after_a_rotation_use_the_new_kek(runtime: Runtime) -> None:
    expected = _sign_up_people(runtime, count=5)
    report = rotate_keks(runtime.database, runtime.keyring, clock=runtime.clock,
                         batch_size=BATCH)
    with runtime.database.write() as session:
        late = runtime.accounts.sign_up(session, email="late@example.org",
                                        password="a late pass phrase")
    expected[late] = PersonProfile(email="late@example.org")
    assert _key_rows(runtime.database)[late].kek_id == report.kek_id
    assert retire_keks(runtime.database, runtime.keyring) != []
    _assert_profiles(runtime, expected)


def test_rotation_refuses_a_batch_size_below_one(runtime: Runtime) -> None:
    old = set(runtime.keyring.keks)
    with pytest.raises(ValueError, match="batch_size"):
        rotate_keks(runtime.database, runtime.keyring, clock=runtime.clock, batch_size=0)
    assert set(_disk_ring(runtime).keks) == old


def test_a_running_server_signs_up_under_the_kek_an_operator_rotated_to(
    runtime: Runtime,
) -> None:
    """The server keeps its ring in memory; ``prefvault keys rotate/retire`` run elsewhere.

    A data key wrapped after that under the server's stale active KEK (now
    retired) would be lost at the next restart.
    """
    expected = _sign_up_people(runtime, count=4)
    operator_ring = _disk_ring(runtime)
    report = rotate_keks(runtime.database, operator_ring, clock=runtime.clock,
                         batch_size=BATCH)
    retired = retire_keks(runtime.database, operator_ring)
    assert retired != [] and retired[0] in runtime.keyring.keks  # the server's view is stale

    with runtime.database.write() as session:
        late = runtime.accounts.sign_up(session, email="after-retire@example.org",
                                        password="a late pass phrase")
    expected[late] = PersonProfile(email="after-retire@example.org")

    assert _key_rows(runtime.database)[late].kek_id == report.kek_id
    _assert_profiles(runtime, expected)  # as after a restart: the ring re-read from disk
