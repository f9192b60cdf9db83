"""A reported contact is judged by the terms in force when it was made.

Every change that replaces a subscription's terms or status keeps the state
it leaves in ``terms_history``, with the interval it was in force, sealed
with the person's data key and bound to its row. A report about a moment in
the past reads that state; decisions and campaigns never read the history.
The stories here play out over days: the clock starts ten days back, the
person changes something, and the shop reports a contact from before (or
after) the change once the clock is back at ``START``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from api_helpers import (
    API,
    START,
    ApiMerchant,
    Subscribed,
    Vault,
    erase,
    register_merchant,
    revoke,
    rows,
    set_global_rules,
    set_permission,
    subscribe,
    token_header,
)
from flask import Flask
from flask.testing import FlaskClient
from sqlmodel import select

from vault.clock import FixedClock
from vault.crypto.envelope import DataKey, DecryptionError
from vault.db import Driver
from vault.extensions import Runtime
from vault.models import PersonKey, Subscription, TermsHistory
from vault.services import terms, terms_history
from vault.services.decision_store import load_terms_at
from vault.services.keys import retire_keks, rotate_keks

CONTACTS = f"{API}/contacts"
DECISIONS = f"{API}/decisions"
DAY = timedelta(days=1)
#: when the stories begin: the person subscribes
BEGIN = START - 10 * DAY
#: when the person changes something
CHANGE = START - 5 * DAY


@pytest.fixture
def vault(app: Flask, client: FlaskClient, runtime: Runtime, clock: FixedClock) -> Vault:
    return Vault(app, client, runtime, clock)


def _subscribed(vault: Vault, scope: str = "contact:email:offers profile:email",
                ) -> tuple[ApiMerchant, Subscribed]:
    """A shop and a person who subscribed to it at ``BEGIN``; the clock is left at ``CHANGE``."""
    vault.clock.set(BEGIN)
    merchant = register_merchant(vault.runtime)
    sub = subscribe(vault.runtime, merchant, scope=scope)
    vault.clock.set(CHANGE)
    return merchant, sub


def _report(vault: Vault, merchant: ApiMerchant, sub: Subscribed, at: datetime,
            channel: str = "email", purpose: str = "offers") -> dict[str, Any]:
    """The shop reports, at ``START``, a contact made at ``at``."""
    vault.clock.set(START)
    response = vault.client.post(CONTACTS, headers=token_header(vault.client, merchant), json={
        "subject": sub.subject, "channel": channel, "purpose": purpose,
        "at": at.isoformat()})
    assert response.status_code == 201, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    return body


def _verdict(body: dict[str, Any]) -> tuple[bool, str, bool]:
    return body["allowed"], body["reason"], body["violation"]


def _history(runtime: Runtime, sub: Subscribed) -> list[TermsHistory]:
    with runtime.database.read() as session:
        return list(session.exec(select(TermsHistory).where(
            TermsHistory.subscription_id == sub.subscription_id)
            .order_by(TermsHistory.valid_from)))


def _row(runtime: Runtime, sub: Subscribed) -> Subscription:
    with runtime.database.read() as session:
        row = session.get(Subscription, sub.subscription_id)
        assert row is not None
        return row


def _person_key(runtime: Runtime, person_id: str) -> DataKey:
    with runtime.database.read() as session:
        key_row = session.get(PersonKey, person_id)
        assert key_row is not None
    return runtime.data_keys.open(person_id, key_row.kek_id, bytes(key_row.wrapped))


def _judged(runtime: Runtime, sub: Subscribed, kept: TermsHistory) -> terms.Judged:
    assert kept.terms is not None
    plaintext = terms_history.open_record(_person_key(runtime, sub.person_id),
                                          sub.subscription_id, kept.id, bytes(kept.terms))
    return terms.parse_judged(terms.judged_part(plaintext))


# -- revocation ---------------------------------------------------------------------------


def test_a_contact_made_while_allowed_and_reported_after_a_revocation_is_allowed(
        vault: Vault) -> None:
    merchant, sub = _subscribed(vault)
    revoke(vault.runtime, sub)

    before = _report(vault, merchant, sub, CHANGE - DAY)
    after = _report(vault, merchant, sub, CHANGE + DAY)

    assert _verdict(before) == (True, "allowed", False)
    assert _verdict(after) == (False, "revoked", True)
    (kept,) = _history(vault.runtime, sub)
    assert (kept.status, kept.valid_from, kept.valid_until) == ("active", BEGIN, CHANGE)
    assert _row(vault.runtime, sub).terms_since == CHANGE
    stored = rows(vault.runtime, "SELECT allowed, reason FROM contact_event "
                  "WHERE subscription_id = :s ORDER BY occurred_at", s=sub.subscription_id)
    assert [(bool(r["allowed"]), r["reason"]) for r in stored] == [
        (True, "allowed"), (False, "revoked")]


def test_a_contact_made_while_revoked_stays_a_violation_after_a_new_grant(
        vault: Vault) -> None:
    merchant, sub = _subscribed(vault)
    revoke(vault.runtime, sub)
    vault.clock.set(CHANGE + 2 * DAY)
    subscribe(vault.runtime, merchant, person_id=sub.person_id)

    assert _verdict(_report(vault, merchant, sub, CHANGE + DAY)) == (False, "revoked", True)
    assert _verdict(_report(vault, merchant, sub, CHANGE - DAY)) == (True, "allowed", False)
    assert _verdict(_report(vault, merchant, sub, CHANGE + 3 * DAY)) == (
        True, "allowed", False)
    kept = _history(vault.runtime, sub)
    assert [(k.status, k.valid_from, k.valid_until, k.terms is None) for k in kept] == [
        ("active", BEGIN, CHANGE, False), ("revoked", CHANGE, CHANGE + 2 * DAY, True)]


# -- permissions and rules ----------------------------------------------------------------


def test_a_contact_made_while_a_permission_was_off_stays_a_violation_after_it_is_on(
        vault: Vault) -> None:
    merchant, sub = _subscribed(vault)
    set_permission(vault.runtime, sub, "sms", "offers")

    assert _verdict(_report(vault, merchant, sub, CHANGE - DAY, "sms")) == (
        False, "not_granted", True)
    assert _verdict(_report(vault, merchant, sub, CHANGE + DAY, "sms")) == (
        True, "allowed", False)
    (kept,) = _history(vault.runtime, sub)
    assert ("sms", "offers") not in _judged(vault.runtime, sub, kept).permissions


def test_a_contact_made_while_allowed_stays_allowed_after_the_permission_is_off(
        vault: Vault) -> None:
    merchant, sub = _subscribed(vault)
    set_permission(vault.runtime, sub, "email", "offers", allowed=False)

    assert _verdict(_report(vault, merchant, sub, CHANGE - DAY)) == (True, "allowed", False)
    assert _verdict(_report(vault, merchant, sub, CHANGE + DAY)) == (
        False, "not_granted", True)


def test_a_global_block_judges_only_the_contacts_made_after_it(vault: Vault) -> None:
    merchant, sub = _subscribed(vault)
    set_global_rules(vault.runtime, sub.person_id,
                     {"blocked": [{"channel": "email", "purpose": "offers"}]})
    vault.clock.set(CHANGE + 2 * DAY)
    set_global_rules(vault.runtime, sub.person_id, {})

    assert _verdict(_report(vault, merchant, sub, CHANGE - DAY)) == (True, "allowed", False)
    assert _verdict(_report(vault, merchant, sub, CHANGE + DAY)) == (
        False, "blocked_by_person", True)
    assert _verdict(_report(vault, merchant, sub, CHANGE + 3 * DAY)) == (
        True, "allowed", False)


def test_quiet_hours_are_judged_in_the_time_zone_in_force_at_the_contact(
        vault: Vault) -> None:
    merchant, sub = _subscribed(vault)
    # Quiet 18:00-08:00 from BEGIN on; the person moves to Tokyo at CHANGE.
    vault.clock.set(BEGIN)
    set_global_rules(vault.runtime, sub.person_id,
                     {"quiet_hours": {"start": "18:00", "end": "08:00"}})
    vault.clock.set(CHANGE)
    with vault.runtime.database.write() as session:
        vault.runtime.accounts.update_profile(session, sub.person_id, {"time_zone": "Asia/Tokyo"})

    # 10:00 UTC: 11:00 in Amsterdam (allowed), 19:00 in Tokyo (quiet).
    assert _verdict(_report(vault, merchant, sub, CHANGE - DAY)) == (True, "allowed", False)
    assert _verdict(_report(vault, merchant, sub, CHANGE + DAY)) == (
        False, "quiet_hours", True)
    # 23:30 UTC: 00:30 in Amsterdam (quiet), 08:30 in Tokyo (allowed).
    night = CHANGE - DAY + timedelta(hours=13, minutes=30)
    assert _verdict(_report(vault, merchant, sub, night)) == (False, "quiet_hours", True)
    assert _verdict(_report(vault, merchant, sub, night + 2 * DAY)) == (
        True, "allowed", False)


def test_the_weekly_cap_counts_the_contacts_before_the_moment_under_the_cap_then(
        vault: Vault) -> None:
    merchant, sub = _subscribed(vault)
    set_permission(vault.runtime, sub, "email", "offers", max_per_week=1)

    # Before the cap: any number of contacts; the first after it is over the cap already.
    assert _verdict(_report(vault, merchant, sub, CHANGE - 2 * DAY))[0] is True
    assert _verdict(_report(vault, merchant, sub, CHANGE - DAY))[0] is True
    assert _verdict(_report(vault, merchant, sub, CHANGE + DAY)) == (
        False, "frequency_cap", True)
    # Contacts reported later do not count toward an earlier moment.
    assert _verdict(_report(vault, merchant, sub, CHANGE - 3 * DAY)) == (
        True, "allowed", False)


def test_a_change_that_gives_the_same_terms_keeps_no_history(vault: Vault) -> None:
    _, sub = _subscribed(vault)
    before = _row(vault.runtime, sub)

    set_global_rules(vault.runtime, sub.person_id, {})
    with vault.runtime.database.write() as session:
        vault.runtime.accounts.update_profile(session, sub.person_id, {"name": "Ada"})

    assert _history(vault.runtime, sub) == []
    after = _row(vault.runtime, sub)
    assert (after.terms, after.terms_since) == (before.terms, BEGIN)


def test_changes_in_one_moment_keep_only_the_states_that_were_in_force(vault: Vault) -> None:
    _, sub = _subscribed(vault)
    set_permission(vault.runtime, sub, "sms", "offers")
    set_permission(vault.runtime, sub, "post", "offers")  # the same moment: sms-only never held
    vault.clock.set(CHANGE + DAY)
    set_permission(vault.runtime, sub, "push", "offers")

    kept = _history(vault.runtime, sub)
    assert [(k.valid_from, k.valid_until) for k in kept] == [
        (BEGIN, CHANGE), (CHANGE, CHANGE + DAY)]
    assert ("post", "offers") in _judged(vault.runtime, sub, kept[1]).permissions
    assert _row(vault.runtime, sub).terms_since == CHANGE + DAY


# -- what the history gives away, and to whom ---------------------------------------------


def test_a_kept_record_opens_only_as_its_own_row_of_its_own_subscription(
        vault: Vault) -> None:
    merchant, sub = _subscribed(vault, "contact:email:offers contact:sms:offers")
    set_permission(vault.runtime, sub, "sms", "offers", allowed=False)
    vault.clock.set(CHANGE + DAY)
    set_permission(vault.runtime, sub, "post", "offers")
    first, second = _history(vault.runtime, sub)
    key = _person_key(vault.runtime, sub.person_id)
    assert first.terms is not None and second.terms is not None
    assert b'"offers"' not in bytes(first.terms) and b'"sms"' not in bytes(first.terms)

    for row_id, sealed in ((second.id, first.terms), (first.id, second.terms)):
        with pytest.raises(DecryptionError):
            terms_history.open_record(key, sub.subscription_id, row_id, bytes(sealed))
    with pytest.raises(DecryptionError):
        terms_history.open_record(key, "0" * 32, first.id, bytes(first.terms))
    with pytest.raises(DecryptionError):  # nor as the current record of the subscription
        terms.open_record(key, sub.subscription_id, bytes(first.terms))

    # Moved to the other row in the database, the record no longer opens for a report.
    with vault.runtime.database.write() as session:
        session.connection().execute(sa.text(
            "UPDATE terms_history SET terms = :t WHERE id = :id"),
            {"t": bytes(second.terms), "id": first.id})
    with vault.runtime.database.driver() as db, pytest.raises(DecryptionError):
        load_terms_at(db, merchant_id=merchant.id, subject=sub.subject, purpose="offers",
                      at=CHANGE - DAY, data_keys=vault.runtime.data_keys)


def test_erasure_makes_the_history_unreadable_and_reports_answer_erased(
        vault: Vault) -> None:
    merchant, sub = _subscribed(vault)
    neighbour = subscribe(vault.runtime, merchant)  # a key that stays in the vault
    set_permission(vault.runtime, sub, "sms", "offers")
    key_before = _person_key(vault.runtime, sub.person_id)
    vault.clock.set(CHANGE + DAY)

    erase(vault.runtime, sub.person_id)

    kept = _history(vault.runtime, sub)
    assert [(k.status, k.valid_until) for k in kept] == [
        ("active", CHANGE), ("active", CHANGE + DAY)]
    row = _row(vault.runtime, sub)
    assert (row.status, row.terms, row.wrapped_key, row.terms_since) == (
        "erased", None, None, CHANGE + DAY)
    with vault.runtime.database.read() as session:
        assert session.get(PersonKey, sub.person_id) is None
        left = [(k.person_id, k.kek_id, bytes(k.wrapped))
                for k in session.exec(select(PersonKey))]
    assert neighbour.person_id in {person_id for person_id, _, _ in left}
    vault.runtime.data_keys._cache.clear()
    for each in kept:
        assert each.terms is not None
        for person_id, kek_id, wrapped in left:
            with pytest.raises(DecryptionError):
                terms_history.open_record(vault.runtime.data_keys.open(person_id, kek_id, wrapped),
                                          sub.subscription_id, each.id, bytes(each.terms))
        # The key destroyed by the erasure is what it took (held only by this test).
        terms_history.open_record(key_before, sub.subscription_id, each.id, bytes(each.terms))
    for moment in (CHANGE - DAY, CHANGE + timedelta(hours=1), START):
        assert _verdict(_report(vault, merchant, sub, moment)) == (False, "erased", True)


def test_key_rotation_and_retiring_the_old_kek_keep_the_history_openable(
        vault: Vault) -> None:
    merchant, sub = _subscribed(vault)
    revoke(vault.runtime, sub)
    old_kek = vault.runtime.keyring.active_kek_id

    report = rotate_keks(vault.runtime.database, vault.runtime.keyring,
                         clock=vault.runtime.clock)
    retired = retire_keks(vault.runtime.database, vault.runtime.keyring)
    vault.runtime.data_keys._cache.clear()

    assert old_kek in retired and report.kek_id in vault.runtime.keyring.keks
    (kept,) = _history(vault.runtime, sub)
    assert _judged(vault.runtime, sub, kept).status == "active"
    assert _verdict(_report(vault, merchant, sub, CHANGE - DAY)) == (True, "allowed", False)


# -- decisions do not read it, and it does not grow for ever ------------------------------


def test_decisions_and_campaigns_never_read_the_history(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    merchant, sub = _subscribed(vault)
    set_permission(vault.runtime, sub, "sms", "offers")
    vault.clock.set(START)
    headers = token_header(vault.client, merchant)
    statements: list[str] = []
    # Decisions speak to the driver directly (``Driver``); the rest goes through SQLAlchemy.
    driver_rows = Driver.rows

    def rows_seen(self: Driver, sql: str, params: Any) -> list[tuple[Any, ...]]:
        statements.append(sql)
        return driver_rows(self, sql, params)

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    monkeypatch.setattr(Driver, "rows", rows_seen)
    engines = {vault.runtime.database.read_engine, vault.runtime.database.write_engine}
    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        past = (CHANGE - DAY).isoformat()
        single = vault.client.post(DECISIONS, headers=headers, json={
            "subject": sub.subject, "channel": "sms", "purpose": "offers", "at": past})
        batch = vault.client.post(f"{DECISIONS}/batch", headers=headers, json={
            "subjects": [sub.subject], "channel": "sms", "purpose": "offers", "at": past})
    finally:
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", seen)

    # A question about the past is answered by today's terms, as DESIGN's decisions are.
    assert single.get_json()["reason"] == batch.get_json()["results"][0]["reason"] == "allowed"
    assert sum("subscription s" in s for s in statements) >= 2
    assert not any("terms_history" in s for s in statements)

    # The same check sees a contact report read it.
    statements.clear()
    assert _verdict(_report(vault, merchant, sub, CHANGE - DAY, "sms"))[1] == "not_granted"
    assert any("terms_history" in s for s in statements)


def test_pruning_deletes_only_what_no_report_may_still_be_about(vault: Vault) -> None:
    _, sub = _subscribed(vault)
    set_permission(vault.runtime, sub, "sms", "offers")  # kept: [BEGIN, CHANGE)
    vault.clock.set(START)
    set_permission(vault.runtime, sub, "post", "offers")  # kept: [CHANGE, START)
    window_end = CHANGE + terms_history.RETENTION

    assert terms_history.prune(vault.runtime.database, now=window_end) == 0
    assert len(_history(vault.runtime, sub)) == 2

    pruned = terms_history.prune(vault.runtime.database, now=window_end + timedelta(seconds=1),
                                 batch_size=1)

    assert pruned == 1
    (kept,) = _history(vault.runtime, sub)
    assert (kept.valid_from, kept.valid_until) == (CHANGE, START)
    # The oldest contact that may still be reported then is well inside what is kept.
    assert window_end - terms_history.REPORT_WINDOW > kept.valid_from
