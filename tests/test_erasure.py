"""Erasure: the person's data key is shredded, every row naming them goes, the log stays."""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from vault.crypto.envelope import DataKey, DecryptionError, unwrap_key
from vault.crypto.keyring import KeyRing, KeyRingError
from vault.db import Database
from vault.errors import AuthenticationFailed, NotFound
from vault.extensions import Runtime
from vault.models import (
    AuditEvent,
    ContactPermission,
    GlobalRules,
    Merchant,
    Person,
    PersonKey,
    Profile,
    Subscription,
    TermsHistory,
    WebhookOutbox,
)
from vault.models.subscription import ACTIVE, ERASED
from vault.models.types import new_id
from vault.services.accounts import AccountService, PersonProfile, open_profile
from vault.services.audit import AuditTag, check_log
from vault.services.keys import DataKeys, retire_keks, rotate_keks
from vault.services.merchants import find_client, register_client
from vault.services.rules import set_rules
from vault.services.terms_history import open_record as open_kept_terms


@dataclass(frozen=True)
class Member:
    """A signed-up person and what they were signed up with."""

    person_id: str
    email: str
    password: str
    profile: PersonProfile


@dataclass(frozen=True)
class World:
    """Three people, one shop; ``target`` is erased, the others must survive."""

    target: Member
    others: tuple[Member, ...]
    merchant_id: str
    subscriptions: dict[str, str]  # person_id -> subscription id
    grids: dict[str, bytes]  # subscription id -> the plaintext permission record


def _canary_profile(tag: str, i: int) -> dict[str, str]:
    return {
        "name": f"Canary {tag} Name",
        "phone": f"+31 6 9876 {i:04d}",
        "address": f"Canarystraat {i} {tag}",
        "interests": f"canary-interest-{tag}",
        "language": "en",
    }


def _sign_up(runtime: Runtime, session: Session, tag: str, i: int) -> Member:
    email = f"canary-{tag}@example.org"
    password = f"canary pass phrase {tag}"
    extra = _canary_profile(tag, i)
    person_id = runtime.accounts.sign_up(session, email=email, password=password, profile=extra)
    return Member(person_id, email, password, PersonProfile(email=email, **extra))


def _subscribe(runtime: Runtime, session: Session, person_id: str,
               merchant_id: str) -> tuple[str, bytes]:
    """Insert a subscription with a sealed contact-permission record; (id, plaintext)."""
    now = runtime.clock.now()
    key = runtime.data_keys.for_person(session, person_id)
    sub_id = new_id()
    shared = json.dumps(["email", "name"]).encode()
    session.add(Subscription(
        id=sub_id, person_id=person_id, merchant_id=merchant_id, subject=new_id(),
        status=ACTIVE, created_at=now, updated_at=now,
        shared_fields=key.encrypt(shared, table="subscription", row_id=sub_id,
                                  field="shared_fields"),
    ))
    session.flush()
    record = json.dumps({"permissions": [
        {"channel": "email", "purpose": "order_updates", "allowed": True,
         "max_per_week": 3, "quiet_hours": None, "expires_at": None},
    ]}).encode()
    session.add(ContactPermission(
        subscription_id=sub_id, version=1, updated_at=now,
        record=key.encrypt(record, table="contact_permission", row_id=sub_id, field="record"),
    ))
    return sub_id, record


@pytest.fixture
def world(runtime: Runtime) -> World:
    with runtime.database.write() as session:
        members = [_sign_up(runtime, session, tag, i)
                   for i, tag in enumerate(("alpha", "bravo", "charlie"))]
        register_client(session, clock=runtime.clock, name="Canary Shop",
                        client_id="canary-shop", redirect_uris=["https://shop.example/cb"],
                        webhook_url="https://shop.example/hooks")
        merchant_id = find_client(session, "canary-shop").id
        target, survivor = members[1], members[0]
        subscriptions: dict[str, str] = {}
        grids: dict[str, bytes] = {}
        for member in (target, survivor):
            sub_id, record = _subscribe(runtime, session, member.person_id, merchant_id)
            subscriptions[member.person_id] = sub_id
            grids[sub_id] = record
    return World(target=target, others=(members[0], members[2]), merchant_id=merchant_id,
                 subscriptions=subscriptions, grids=grids)


def _fresh_accounts(runtime: Runtime) -> AccountService:
    """Account services over the key ring re-read from disk, with empty caches."""
    assert runtime.keyring.path is not None
    ring = KeyRing.load(runtime.keyring.path)
    return AccountService(data_keys=DataKeys(ring), blind_index_key=ring.blind_index_key,
                          passwords=runtime.passwords, clock=runtime.clock)


def _audit_count(session: Session) -> int:
    return session.exec(select(func.count()).select_from(AuditEvent)).one()


def _erase(runtime: Runtime, person_id: str) -> None:
    with runtime.database.write() as session:
        receipt = runtime.accounts.erase(session, person_id)
        assert receipt.person_ref == person_id
        assert receipt.subscriptions_closed == 1


def test_erasure_removes_every_personal_row_and_leaves_a_tombstone(
    runtime: Runtime, world: World
) -> None:
    target = world.target.person_id
    sub_id = world.subscriptions[target]
    with runtime.database.read() as session:
        # Everything is there before, so the absences below are the erasure's doing.
        assert session.get(Profile, target) is not None
        assert session.get(GlobalRules, target) is not None
        assert session.get(PersonKey, target) is not None
        assert session.get(ContactPermission, sub_id) is not None
        person_before = session.get(Person, target)
        assert person_before is not None and person_before.email_index is not None
        assert person_before.password_hash is not None
        audit_before = _audit_count(session)
        signed_up_events = session.exec(
            select(AuditEvent.id).where(AuditEvent.person_ref == target)
        ).all()
    assert signed_up_events

    _erase(runtime, target)

    with runtime.database.read() as session:
        assert session.get(Profile, target) is None
        assert session.get(GlobalRules, target) is None
        assert session.get(PersonKey, target) is None
        assert session.get(ContactPermission, sub_id) is None

        person = session.get(Person, target)
        assert person is not None
        assert person.email_index is None
        assert person.password_hash is None
        assert person.erased_at == runtime.clock.now()

        sub = session.get(Subscription, sub_id)
        assert sub is not None
        assert sub.status == ERASED
        assert sub.shared_fields is None
        assert sub.revoked_at == runtime.clock.now()

        outbox = session.exec(
            select(WebhookOutbox).where(WebhookOutbox.event_type == "subscription.revoked")
        ).all()
        assert [(o.merchant_id, o.subject, o.status) for o in outbox] == [
            (world.merchant_id, sub.subject, "pending")
        ]
        payload = json.loads(outbox[0].payload)
        assert payload["type"] == "subscription.revoked"
        assert payload["subject"] == sub.subject
        assert payload["data"] == {"status": ERASED}
        assert "Canary" not in outbox[0].payload and target not in outbox[0].payload

        # The log keeps every event, including the erased person's, and gains one.
        assert _audit_count(session) == audit_before + 1
        assert set(signed_up_events) <= set(session.exec(
            select(AuditEvent.id).where(AuditEvent.person_ref == target)).all())
        erased = session.exec(
            select(AuditEvent).where(AuditEvent.tag == str(AuditTag.PERSON_ERASED))
        ).one()
        assert erased.person_ref == target
        assert json.loads(erased.data) == {"subscriptions": 1, "merchants_notified": 1}
        check = check_log(session)
        assert check.ok, check.reason
        assert check.events == audit_before + 1


def test_the_other_people_are_untouched_by_an_erasure(runtime: Runtime, world: World) -> None:
    _erase(runtime, world.target.person_id)
    accounts = _fresh_accounts(runtime)
    survivor_sub = world.subscriptions[world.others[0].person_id]
    with runtime.database.write() as session:
        for member in world.others:
            assert accounts.get_profile(session, member.person_id) == member.profile
            assert session.get(GlobalRules, member.person_id) is not None
            assert accounts.authenticate(session, email=member.email,
                                         password=member.password) == member.person_id
        sub = session.get(Subscription, survivor_sub)
        assert sub is not None and sub.status == ACTIVE
        row = session.get(ContactPermission, survivor_sub)
        assert row is not None
        key = accounts.data_keys.for_person(session, world.others[0].person_id)
        opened = key.decrypt(row.record, table="contact_permission", row_id=survivor_sub,
                             field="record")
        assert opened == world.grids[survivor_sub]
        # Only the erased person's subscription produced a webhook.
        revoked = session.exec(
            select(WebhookOutbox.subject).where(
                WebhookOutbox.event_type == "subscription.revoked")
        ).all()
        assert sub.subject not in revoked and len(revoked) == 1


def test_the_erased_person_can_no_longer_log_in_or_be_read(
    runtime: Runtime, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    target = world.target
    with runtime.database.write() as session:
        assert runtime.accounts.authenticate(
            session, email=target.email, password=target.password) == target.person_id
        assert runtime.accounts.get_profile(session, target.person_id) == target.profile

    _erase(runtime, target.person_id)

    for accounts in (runtime.accounts, _fresh_accounts(runtime)):
        with runtime.database.write() as session:
            with pytest.raises(AuthenticationFailed) as caught:
                accounts.authenticate(session, email=target.email, password=target.password)
            assert str(caught.value) == "email address or password is incorrect"
            with pytest.raises(NotFound):
                accounts.get_profile(session, target.person_id)
            with pytest.raises(NotFound):
                accounts.data_keys.for_person(session, target.person_id)
            with pytest.raises(NotFound):
                accounts.erase(session, target.person_id)
    # The refused logins were logged without the address that was tried.
    assert "login refused" in caplog.text
    assert target.email not in caplog.text.lower()
    assert target.password not in caplog.text


def test_the_address_of_an_erased_person_can_sign_up_again(
    runtime: Runtime, world: World
) -> None:
    target = world.target
    _erase(runtime, target.person_id)
    with runtime.database.write() as session:
        again = runtime.accounts.sign_up(session, email=target.email, password="a new phrase!")
    assert again != target.person_id
    with runtime.database.write() as session:
        assert runtime.accounts.authenticate(
            session, email=target.email, password="a new phrase!") == again
        assert runtime.accounts.get_profile(session, again) == PersonProfile(email=target.email)


# -- backups: erasure reaches an old copy once the KEK that wrapped it is retired ----------


def _sqlite_path(runtime: Runtime) -> Path:
    path = make_url(runtime.database.url).database
    assert path
    return Path(path)


def _backup(source: Path, target: Path) -> None:
    """A consistent copy through SQLite's online backup API (WAL included)."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def _open_profile_from_copy(copy: Path, ring_path: Path, person_id: str) -> PersonProfile:
    """What a thief holding the copy and today's key ring file could read."""
    ring = KeyRing.load(ring_path)
    database = Database(f"sqlite:///{copy}")
    try:
        with database.read() as session:
            key_row = session.get(PersonKey, person_id)
            profile_row = session.get(Profile, person_id)
            assert key_row is not None and profile_row is not None
            key = DataKeys(ring).open(person_id, key_row.kek_id, key_row.wrapped)
            return open_profile(key, profile_row)
    finally:
        database.dispose()


def _try_every_kek_on_copy(copy: Path, ring: KeyRing, person_id: str) -> list[str]:
    """Ids of the ring's KEKs that open the person's wrapped key in the copy."""
    connection = sqlite3.connect(copy)
    try:
        kek_id, wrapped = connection.execute(
            "SELECT kek_id, wrapped FROM person_key WHERE person_id = ?", (person_id,)
        ).fetchone()
    finally:
        connection.close()
    opened: list[str] = []
    for candidate_id, kek in ring.keks.items():
        for label in {kek_id, candidate_id}:
            try:
                DataKey(unwrap_key(kek, label, person_id, wrapped))
            except DecryptionError:
                continue
            opened.append(candidate_id)
    return opened


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_retiring_the_kek_after_erasure_makes_an_old_backup_unreadable(
    runtime: Runtime, world: World, tmp_path: Path
) -> None:
    target = world.target
    ring_path = runtime.keyring.path
    assert ring_path is not None
    copy = tmp_path / "backup-before-erasure.db"
    _backup(_sqlite_path(runtime), copy)

    _erase(runtime, target.person_id)

    # Erasure alone does not reach the copy: its wrapped key still opens with the ring.
    assert _open_profile_from_copy(copy, ring_path, target.person_id) == target.profile

    report = rotate_keks(runtime.database, runtime.keyring, clock=runtime.clock, batch_size=2)
    assert report.rewrapped == len(world.others)
    # Rotated but not retired: the old KEK is still in the ring, so the copy still opens.
    assert _open_profile_from_copy(copy, ring_path, target.person_id) == target.profile

    retired = retire_keks(runtime.database, runtime.keyring)
    assert len(retired) == 1

    with pytest.raises(KeyRingError, match=f"holds no KEK '{retired[0]}'"):
        _open_profile_from_copy(copy, ring_path, target.person_id)
    # Nor does any KEK left in the ring open it, whatever id it is tried under.
    assert _try_every_kek_on_copy(copy, KeyRing.load(ring_path), target.person_id) == []
    # The copy's sealed fields are there, just unreadable.
    connection = sqlite3.connect(copy)
    try:
        sealed_name = connection.execute(
            "SELECT name FROM profile WHERE person_id = ?", (target.person_id,)
        ).fetchone()[0]
    finally:
        connection.close()
    assert sealed_name and b"Canary" not in sealed_name

    # The live vault is unharmed: the survivors still open with the retired-down ring.
    accounts = _fresh_accounts(runtime)
    with runtime.database.read() as session:
        for member in world.others:
            assert accounts.get_profile(session, member.person_id) == member.profile
        assert check_log(session).ok


def test_the_database_never_holds_a_profile_value_in_clear(
    runtime: Runtime, world: World
) -> None:
    """Every canary sits only in ciphertext, before and after erasure."""
    members = (world.target, *world.others)
    canaries = [m.email for m in members] + [
        v for m in members for v in (m.profile.name, m.profile.phone, m.profile.address,
                                     m.profile.interests) if v
    ]

    def dump() -> str:
        parts: list[str] = []
        with runtime.database.read() as session:
            for model in (Person, PersonKey, Profile, GlobalRules, Subscription,
                          ContactPermission, TermsHistory, WebhookOutbox, AuditEvent,
                          Merchant):
                for row in session.exec(select(model)):
                    parts.append(repr(row.model_dump()))
        return "\n".join(parts)

    # A profile change is logged in the consent log, which erasure keeps.
    changes = {"phone": "+31 6 5555 0001", "address": "Canary Update Lane 9",
               "interests": "canary-updated-interest"}
    with runtime.database.write() as session:
        runtime.accounts.update_profile(session, world.target.person_id, changes)
    canaries += list(changes.values())

    before = dump()
    assert world.target.person_id in before  # the dump does see the rows
    assert "person:profile:updated" in before
    assert not [c for c in canaries if c in before]
    _erase(runtime, world.target.person_id)
    after = dump()
    assert not [c for c in canaries if c in after]


def test_the_history_of_terms_is_kept_but_no_key_left_opens_it(
    runtime: Runtime, world: World
) -> None:
    target = world.target.person_id
    for rules in ({"channels_off": ["sms"]}, {"channels_off": ["post"]}):
        runtime.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
        with runtime.database.write() as session:
            set_rules(session, target, rules, data_keys=runtime.data_keys, clock=runtime.clock)
    runtime.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    with runtime.database.read() as session:
        key_before = runtime.data_keys.for_person(session, target)

    _erase(runtime, target)

    sub_id = world.subscriptions[target]
    with runtime.database.read() as session:
        kept = session.exec(select(TermsHistory).where(TermsHistory.subscription_id == sub_id)
                            .order_by(TermsHistory.valid_from)).all()
        left = session.exec(select(PersonKey)).all()
        sub = session.get(Subscription, sub_id)
    # The intervals and statuses stay (no personal data); the records are sealed.
    assert [k.status for k in kept] == ["active", "active"]
    assert sub is not None and sub.terms_since == kept[-1].valid_until == runtime.clock.now()
    assert sub.terms is None and sub.wrapped_key is None
    accounts = _fresh_accounts(runtime)
    assert {k.person_id for k in left} == {m.person_id for m in world.others}
    for each in kept:
        assert each.terms is not None
        for key_row in left:
            key = accounts.data_keys.open(key_row.person_id, key_row.kek_id,
                                          bytes(key_row.wrapped))
            with pytest.raises(DecryptionError):
                open_kept_terms(key, sub_id, each.id, bytes(each.terms))
        # Only the shredded key opened them.
        open_kept_terms(key_before, sub_id, each.id, bytes(each.terms))
