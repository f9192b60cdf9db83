"""The sealed terms record follows every change to what it is built from.

Each subscription row carries its terms (permissions, the person's rules,
time zone and channel order, shared fields) sealed as one record, and a copy
of the person's wrapped data key. Every kind of change rewrites them in its
own transaction, and the next decision, single or in a campaign, follows.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from api_helpers import (
    API,
    ApiMerchant,
    Subscribed,
    Vault,
    erase,
    merchant_with_token,
    revoke,
    set_global_rules,
    set_permission,
    subscribe,
)
from flask import Flask
from flask.testing import FlaskClient
from sqlmodel import select

from vault.clock import FixedClock
from vault.crypto.envelope import DataKey, DecryptionError, unwrap_key
from vault.extensions import Runtime
from vault.models import Merchant, PersonKey, Subscription
from vault.services import subscriptions as subscription_service
from vault.services import terms
from vault.services.keys import retire_keks, rotate_keks
from vault.services.rules import get_rules
from vault.services.scopes import PersonGrant

SCOPE = "contact:email:offers contact:sms:offers profile:email profile:phone"


@pytest.fixture
def vault(app: Flask, client: FlaskClient, runtime: Runtime, clock: FixedClock) -> Vault:
    return Vault(app, client, runtime, clock)


def _row(runtime: Runtime, sub: Subscribed) -> Subscription:
    with runtime.database.read() as session:
        row = session.get(Subscription, sub.subscription_id)
        assert row is not None
        return row


def _person_key(runtime: Runtime, person_id: str) -> PersonKey | None:
    with runtime.database.read() as session:
        return session.get(PersonKey, person_id)


def _opened(runtime: Runtime, sub: Subscribed) -> tuple[terms.Judged, terms.Detail]:
    """The stored record, opened with the key copy beside it (checked against PersonKey)."""
    row = _row(runtime, sub)
    key_row = _person_key(runtime, sub.person_id)
    assert row.terms is not None and row.wrapped_key is not None and key_row is not None
    assert (row.key_kek_id, bytes(row.wrapped_key)) == (key_row.kek_id, bytes(key_row.wrapped))
    key = DataKey(unwrap_key(runtime.keyring.kek(row.key_kek_id), row.key_kek_id,
                             sub.person_id, bytes(row.wrapped_key)))
    plaintext = terms.open_record(key, row.id, bytes(row.terms))
    return terms.parse_judged(terms.judged_part(plaintext)), terms.parse_detail(plaintext)


def _sources(runtime: Runtime, sub: Subscribed) -> dict[str, object]:
    """What the record must say, read from the tables it is built from."""
    with runtime.database.read() as session:
        row = session.get(Subscription, sub.subscription_id)
        assert row is not None
        view = subscription_service.view(session, row, data_keys=runtime.data_keys)
        rules = get_rules(session, sub.person_id, data_keys=runtime.data_keys)
    profile_row = _profile(runtime, sub.person_id)
    return {"status": row.status, "permissions": view.permissions, "rules": rules.to_json(),
            "time_zone": profile_row["time_zone"], "channel_order": profile_row["order"],
            "shared_fields": view.shared_fields}


def _profile(runtime: Runtime, person_id: str) -> dict[str, Any]:
    with runtime.database.read() as session:
        profile = runtime.accounts.get_profile(session, person_id)
    return {"time_zone": profile.time_zone, "order": profile.channel_order}


def _assert_follows_sources(runtime: Runtime, sub: Subscribed) -> None:
    judged, detail = _opened(runtime, sub)
    assert {"status": judged.status, "permissions": judged.permissions,
            "rules": judged.rules.to_json(), "time_zone": detail.time_zone,
            "channel_order": detail.channel_order,
            "shared_fields": detail.shared_fields} == _sources(runtime, sub)


def _ask(vault: Vault, headers: dict[str, str], sub: Subscribed, channel: str = "email",
         purpose: str = "offers") -> tuple[dict[str, Any], dict[str, Any]]:
    """The single answer and the campaign answer for ``sub`` (which must agree)."""
    single = vault.client.post(f"{API}/decisions", headers=headers, json={
        "subject": sub.subject, "channel": channel, "purpose": purpose})
    batch = vault.client.post(f"{API}/decisions/batch", headers=headers, json={
        "subjects": [sub.subject], "channel": channel, "purpose": purpose})
    assert single.status_code == batch.status_code == 200
    one, (many,) = single.get_json(), batch.get_json()["results"]
    assert (one["allowed"], one["reason"], one["next_allowed_at"]) == (
        many["allowed"], many["reason"], many["next_allowed_at"])
    return one, many


def _subscribed(vault: Vault, name: str = "Book Shop") -> tuple[ApiMerchant, dict[str, str],
                                                                Subscribed]:
    merchant, headers = merchant_with_token(vault, name)
    return merchant, headers, subscribe(vault.runtime, merchant, scope=SCOPE,
                                        profile={"phone": "+31 6 1234 5678"})


def test_a_grant_seals_the_terms_beside_a_copy_of_the_wrapped_key(vault: Vault) -> None:
    _, headers, sub = _subscribed(vault)

    _assert_follows_sources(vault.runtime, sub)
    row = _row(vault.runtime, sub)
    assert row.terms is not None
    assert b'"offers"' not in bytes(row.terms) and b'"email"' not in bytes(row.terms)
    assert _ask(vault, headers, sub)[0]["reason"] == "allowed"


def test_the_record_opens_only_as_its_own_row(vault: Vault) -> None:
    merchant, _, sub = _subscribed(vault)
    other = subscribe(vault.runtime, merchant, person_id=None)
    row, other_row = _row(vault.runtime, sub), _row(vault.runtime, other)
    key_row = _person_key(vault.runtime, sub.person_id)
    assert key_row is not None and row.terms is not None and other_row.terms is not None
    key = vault.runtime.data_keys.open(sub.person_id, key_row.kek_id, bytes(key_row.wrapped))

    with pytest.raises(DecryptionError):
        terms.open_record(key, other_row.id, bytes(row.terms))
    with pytest.raises(DecryptionError):
        terms.open_record(key, row.id, bytes(other_row.terms))


def test_a_permission_edit_rewrites_the_record_and_the_next_decision_follows(
    vault: Vault,
) -> None:
    _, headers, sub = _subscribed(vault)
    before = _row(vault.runtime, sub).terms

    set_permission(vault.runtime, sub, "email", "offers", allowed=False)

    assert _row(vault.runtime, sub).terms != before
    _assert_follows_sources(vault.runtime, sub)
    assert _ask(vault, headers, sub)[0]["reason"] == "not_granted"

    set_permission(vault.runtime, sub, "post", "offers")

    _assert_follows_sources(vault.runtime, sub)
    assert _ask(vault, headers, sub, "post")[0]["reason"] == "allowed"


def test_a_rules_edit_rewrites_the_record_of_every_subscription_of_the_person(
    vault: Vault,
) -> None:
    _, headers, sub = _subscribed(vault)
    second, second_headers = merchant_with_token(vault, "Tea Shop")
    again = subscribe(vault.runtime, second, scope=SCOPE, person_id=sub.person_id)

    set_global_rules(vault.runtime, sub.person_id,
                     {"blocked": [{"channel": "email", "purpose": "offers"}]})

    for each, each_headers in ((sub, headers), (again, second_headers)):
        _assert_follows_sources(vault.runtime, each)
        assert _ask(vault, each_headers, each)[0]["reason"] == "blocked_by_person"
        assert _ask(vault, each_headers, each, "sms")[0]["reason"] == "allowed"


def test_a_time_zone_change_rewrites_the_record_and_quiet_hours_follow_it(
    vault: Vault,
) -> None:
    _, headers, sub = _subscribed(vault)
    # 10:00 UTC: 11:00 in Amsterdam, 19:00 in Tokyo.
    set_global_rules(vault.runtime, sub.person_id,
                     {"quiet_hours": {"start": "18:00", "end": "08:00"}})
    assert _ask(vault, headers, sub)[0]["reason"] == "allowed"

    with vault.runtime.database.write() as session:
        vault.runtime.accounts.update_profile(session, sub.person_id, {"time_zone": "Asia/Tokyo"})

    _assert_follows_sources(vault.runtime, sub)
    answer, _ = _ask(vault, headers, sub)
    assert answer["reason"] == "quiet_hours"
    assert answer["next_allowed_at"] == (vault.clock.now() + timedelta(hours=13)).isoformat()


def test_a_channel_order_change_rewrites_the_record_and_alternatives_follow_it(
    vault: Vault,
) -> None:
    _, headers, sub = _subscribed(vault)
    set_permission(vault.runtime, sub, "post", "offers")
    set_permission(vault.runtime, sub, "email", "offers", allowed=False)
    assert _ask(vault, headers, sub)[0]["alternatives"] == ["sms", "post"]

    with vault.runtime.database.write() as session:
        vault.runtime.accounts.update_profile(
            session, sub.person_id,
            {"channel_order": ["post", "push", "email", "phone", "sms"]})

    _assert_follows_sources(vault.runtime, sub)
    assert _ask(vault, headers, sub)[0]["alternatives"] == ["post", "sms"]


def test_a_profile_change_that_terms_do_not_hold_leaves_the_record_alone(vault: Vault) -> None:
    _, _, sub = _subscribed(vault)
    before = _row(vault.runtime, sub).terms

    with vault.runtime.database.write() as session:
        vault.runtime.accounts.update_profile(session, sub.person_id, {"name": "Ada"})

    assert _row(vault.runtime, sub).terms == before


def test_a_new_grant_rewrites_the_shared_fields_and_reach_follows_them(vault: Vault) -> None:
    merchant, headers, sub = _subscribed(vault)
    assert _ask(vault, headers, sub, "sms")[0]["reach"] == "+31 6 1234 5678"

    with vault.runtime.database.write() as session:
        row = session.get(Merchant, merchant.id)
        assert row is not None
        granted = PersonGrant.parse("contact:email:offers contact:sms:offers profile:email")
        subscription_service.grant(session, person_id=sub.person_id, merchant=row,
                                   granted=granted, requested=granted,
                                   data_keys=vault.runtime.data_keys, clock=vault.runtime.clock)

    _assert_follows_sources(vault.runtime, sub)
    assert _opened(vault.runtime, sub)[1].shared_fields == ("email",)
    answer, _ = _ask(vault, headers, sub, "sms")
    assert answer["reason"] == "allowed" and answer["reach"] is None


def test_revocation_drops_the_record_and_a_new_grant_builds_it_again(vault: Vault) -> None:
    merchant, headers, sub = _subscribed(vault)

    revoke(vault.runtime, sub)

    row = _row(vault.runtime, sub)
    assert (row.terms, row.key_kek_id, row.wrapped_key) == (None, None, None)
    assert _ask(vault, headers, sub)[0]["reason"] == "revoked"

    again = subscribe(vault.runtime, merchant, scope=SCOPE, person_id=sub.person_id)

    assert again.subscription_id == sub.subscription_id
    _assert_follows_sources(vault.runtime, sub)
    assert _ask(vault, headers, sub)[0]["reason"] == "allowed"


def test_erasure_drops_the_record_and_the_key_copy(vault: Vault) -> None:
    _, headers, sub = _subscribed(vault)

    erase(vault.runtime, sub.person_id)

    row = _row(vault.runtime, sub)
    assert (row.status, row.terms, row.key_kek_id, row.wrapped_key) == (
        "erased", None, None, None)
    assert _person_key(vault.runtime, sub.person_id) is None
    assert _ask(vault, headers, sub)[0]["reason"] == "erased"


def test_an_active_subscription_without_terms_grants_nothing(vault: Vault) -> None:
    _, headers, sub = _subscribed(vault)
    with vault.runtime.database.write() as session:
        row = session.get(Subscription, sub.subscription_id)
        assert row is not None
        terms.forget(row)
        session.add(row)

    assert _ask(vault, headers, sub)[0]["reason"] == "not_granted"


def test_key_rotation_rewraps_the_copy_and_decisions_survive_retiring_the_old_kek(
    vault: Vault,
) -> None:
    _, headers, sub = _subscribed(vault)
    revoked = subscribe(vault.runtime, merchant_with_token(vault, "Tea Shop")[0])
    revoke(vault.runtime, revoked)
    old = _row(vault.runtime, sub)
    record = old.terms

    report = rotate_keks(vault.runtime.database, vault.runtime.keyring,
                         clock=vault.runtime.clock)
    retired = retire_keks(vault.runtime.database, vault.runtime.keyring)

    row = _row(vault.runtime, sub)
    assert old.key_kek_id in retired
    assert row.key_kek_id == report.kek_id and row.wrapped_key != old.wrapped_key
    assert row.terms == record  # the data key, and so the record, is unchanged
    assert _row(vault.runtime, revoked).wrapped_key is None
    _assert_follows_sources(vault.runtime, sub)
    vault.runtime.data_keys._cache.clear()
    assert _ask(vault, headers, sub)[0]["reason"] == "allowed"


def test_rotation_brings_a_stale_copy_up_to_date_and_retiring_keeps_a_kek_a_copy_uses(
    vault: Vault,
) -> None:
    _, headers, sub = _subscribed(vault)
    stale = _row(vault.runtime, sub)
    rotate_keks(vault.runtime.database, vault.runtime.keyring, clock=vault.runtime.clock)
    # As a grant racing the rotation would have left it: a copy under the old KEK.
    with vault.runtime.database.write() as session:
        row = session.get(Subscription, sub.subscription_id)
        assert row is not None
        row.key_kek_id, row.wrapped_key = stale.key_kek_id, stale.wrapped_key
        session.add(row)

    assert stale.key_kek_id not in retire_keks(vault.runtime.database, vault.runtime.keyring)
    assert _ask(vault, headers, sub)[0]["reason"] == "allowed"

    report = rotate_keks(vault.runtime.database, vault.runtime.keyring,
                         clock=vault.runtime.clock)
    retire_keks(vault.runtime.database, vault.runtime.keyring)

    assert _row(vault.runtime, sub).key_kek_id == report.kek_id
    _assert_follows_sources(vault.runtime, sub)
    assert _ask(vault, headers, sub)[0]["reason"] == "allowed"


def test_every_active_subscription_has_terms_matching_its_key_row(vault: Vault) -> None:
    merchant, _, sub = _subscribed(vault)
    others = [subscribe(vault.runtime, merchant) for _ in range(3)]
    revoke(vault.runtime, others[0])
    erase(vault.runtime, others[1].person_id)
    # Changes to the person's rules and time zone rebuild only active subscriptions' terms.
    set_global_rules(vault.runtime, others[0].person_id, {"channels_off": ["sms"]})
    with vault.runtime.database.write() as session:
        vault.runtime.accounts.update_profile(session, others[0].person_id,
                                              {"time_zone": "Asia/Tokyo"})

    with vault.runtime.database.read() as session:
        rows = session.exec(select(Subscription)).all()
    for row in rows:
        assert (row.terms is not None) == (row.status == "active"), row.status
    for each in (sub, others[2]):
        _assert_follows_sources(vault.runtime, each)
