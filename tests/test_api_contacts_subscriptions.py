"""``POST /api/v1/contacts`` and ``GET /api/v1/subscriptions[/{subject}]``.

Reported contacts are judged by the vault at the moment they happened (a
violation is recorded and audited) and count toward the weekly cap; a
merchant reads its own subscriptions, page by page, and never a profile value
or another merchant's subscription.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from api_helpers import (
    API,
    START,
    Vault,
    assert_problem,
    merchant_with_token,
    revoke,
    row_counts,
    rows,
    set_permission,
    subscribe,
    token_header,
)
from flask import Flask
from flask.testing import FlaskClient

from vault.clock import FixedClock
from vault.extensions import Runtime
from vault.openapi import build_spec

CONTACTS = f"{API}/contacts"
DECISIONS = f"{API}/decisions"
SUBSCRIPTIONS = f"{API}/subscriptions"
OFFERS_BY_EMAIL = {"channel": "email", "purpose": "offers"}


@pytest.fixture
def vault(app: Flask, client: FlaskClient, runtime: Runtime, clock: FixedClock) -> Vault:
    """conftest's app, client, runtime and clock (once per backend)."""
    return Vault(app, client, runtime, clock)


def report(vault: Vault, headers: dict[str, str], subject: str, /, **extra: object) -> Any:
    return vault.client.post(CONTACTS, json={"subject": subject, **OFFERS_BY_EMAIL, **extra},
                             headers=headers)


def audit_tags(vault: Vault, subject: str) -> list[str]:
    found = rows(vault.runtime, "SELECT tag FROM audit_event WHERE subject = :s ORDER BY seq",
                 s=subject)
    return [str(row["tag"]) for row in found]


# -- contacts -------------------------------------------------------------------------------


def test_an_allowed_contact_is_recorded_without_violation(vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant)
    decision = vault.client.post(DECISIONS, json={"subject": sub.subject, **OFFERS_BY_EMAIL},
                                 headers=headers).get_json()
    before = row_counts(vault.runtime)

    response = report(vault, headers, sub.subject, decision_id=decision["decision_id"])

    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["allowed"], body["reason"], body["violation"]) == (True, "allowed", False)
    assert (body["subject"], body["channel"], body["purpose"]) == (sub.subject, "email", "offers")
    assert body["occurred_at"] == START.isoformat()
    assert row_counts(vault.runtime) == {**before,
                                         "contact_event": before["contact_event"] + 1,
                                         "audit_event": before["audit_event"] + 1}
    (event,) = rows(vault.runtime, "SELECT * FROM contact_event WHERE id = :id",
                    id=body["contact_id"])
    assert (event["subscription_id"], event["merchant_id"]) == \
        (sub.subscription_id, merchant.id)
    assert event["decision_id"] == decision["decision_id"]
    assert bool(event["allowed"]) is True
    assert audit_tags(vault, sub.subject)[-1] == "contact:report:allowed"


def test_a_contact_that_was_not_allowed_is_a_recorded_violation(vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant)

    response = report(vault, headers, sub.subject, channel="sms")

    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["allowed"], body["reason"], body["violation"]) == (False, "not_granted", True)
    (event,) = rows(vault.runtime, "SELECT allowed, reason FROM contact_event WHERE id = :id",
                    id=body["contact_id"])
    assert (bool(event["allowed"]), event["reason"]) == (False, "not_granted")
    violations = rows(vault.runtime, "SELECT * FROM audit_event WHERE subject = :s AND tag = :t",
                      s=sub.subject, t="contact:report:violation")
    assert len(violations) == 1
    data = json.loads(str(violations[0]["data"]))
    assert (data["contact_id"], data["channel"], data["allowed"]) == \
        (body["contact_id"], "sms", False)
    assert violations[0]["merchant_id"] == merchant.id
    assert violations[0]["person_ref"] == sub.person_id


def test_a_contact_after_revocation_is_a_violation(vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant)
    assert report(vault, headers, sub.subject).get_json()["violation"] is False
    revoke(vault.runtime, sub)

    late = report(vault, headers, sub.subject).get_json()

    assert (late["violation"], late["reason"]) == (True, "revoked")
    assert audit_tags(vault, sub.subject)[-1] == "contact:report:violation"


def test_contacts_count_toward_the_weekly_cap(vault: Vault) -> None:
    # The cap is set three days back, so both contacts below are judged under it.
    vault.clock.set(START - timedelta(days=3))
    merchant, _ = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant)
    set_permission(vault.runtime, sub, "email", "offers", max_per_week=2)
    vault.clock.set(START)
    headers = token_header(vault.client, merchant)

    first = report(vault, headers, sub.subject, at=(START - timedelta(days=2)).isoformat())
    second = report(vault, headers, sub.subject)
    assert [first.get_json()["violation"], second.get_json()["violation"]] == [False, False]

    decision = vault.client.post(DECISIONS, json={"subject": sub.subject, **OFFERS_BY_EMAIL},
                                 headers=headers).get_json()
    assert (decision["allowed"], decision["reason"]) == (False, "frequency_cap")
    assert decision["next_allowed_at"] == (START + timedelta(days=5)).isoformat()

    third = report(vault, headers, sub.subject).get_json()
    assert (third["violation"], third["reason"]) == (True, "frequency_cap")
    # Another purpose has its own count.
    set_permission(vault.runtime, sub, "email", "surveys", max_per_week=2)
    assert report(vault, headers, sub.subject, purpose="surveys").get_json()["violation"] \
        is False


def test_a_contact_with_an_unknown_or_foreign_subject_is_404_and_writes_nothing(
        vault: Vault) -> None:
    _, headers = merchant_with_token(vault, "Shop A")
    other, _ = merchant_with_token(vault, "Shop B")
    theirs = subscribe(vault.runtime, other)
    before = row_counts(vault.runtime)

    unknown = report(vault, headers, "sub_nobody")
    foreign = report(vault, headers, theirs.subject)

    assert_problem(unknown, 404, "not-found", "subject")
    assert_problem(foreign, 404, "not-found", "subject")
    assert unknown.get_json() == foreign.get_json()
    assert row_counts(vault.runtime) == before


def test_a_quoted_decision_must_be_this_shops_answer_about_this_contact(vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault, "Shop A")
    _, other_headers = merchant_with_token(vault, "Shop B")
    sub, second = subscribe(vault.runtime, merchant), subscribe(vault.runtime, merchant)

    def ask(subject: str, asking: dict[str, str], purpose: str = "offers") -> str:
        return str(vault.client.post(DECISIONS, json={
            "subject": subject, "channel": "email", "purpose": purpose},
            headers=asking).get_json()["decision_id"])

    quoted = {
        # Shop B asking about Shop A's subject: same subject, channel and purpose.
        "another shop's": ask(sub.subject, other_headers),
        "another person's": ask(second.subject, headers),
        "another purpose's": ask(sub.subject, headers, purpose="surveys"),
        "a made-up": "d" * 32,
    }
    before = row_counts(vault.runtime)
    answers = {name: report(vault, headers, sub.subject, decision_id=decision_id)
               for name, decision_id in quoted.items()}

    for name, answer in answers.items():
        assert answer.status_code == 400, name
        assert_problem(answer, 400, "invalid-request", "decision_id")
    assert answers["another shop's"].get_json() == answers["a made-up"].get_json()
    assert row_counts(vault.runtime) == before
    own = report(vault, headers, sub.subject, decision_id=ask(sub.subject, headers))
    assert own.status_code == 201


@pytest.mark.parametrize(("extra", "status", "field"), [
    pytest.param({"at": "2026-11-23T10:06:00+00:00"}, 400, "at", id="in-the-future"),
    pytest.param({"at": "2026-11-24T10:00:00Z"}, 400, "at", id="tomorrow"),
    pytest.param({"at": "2026-10-22T09:00:00Z"}, 400, "at", id="over-31-days-ago"),
    pytest.param({"at": "2026-11-23T09:00:00"}, 422, "at", id="at-without-time-zone"),
    pytest.param({"channel": "pigeon"}, 422, "channel", id="unknown-channel"),
    pytest.param({"purpose": "gossip"}, 422, "purpose", id="unknown-purpose"),
    pytest.param({"decision_id": "d" * 65}, 422, "decision_id", id="decision-id-too-long"),
    pytest.param({"subject": ["sub_a"]}, 422, "subject", id="subject-list"),
    pytest.param({"subject": "s" * 129}, 422, "subject", id="subject-129-chars"),
    pytest.param({"note": "hi"}, 422, "note", id="unknown-field"),
])
def test_a_bad_contact_report_is_a_problem_and_writes_nothing(
        vault: Vault, extra: dict[str, object], status: int, field: str) -> None:
    merchant, headers = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant)
    before = row_counts(vault.runtime)

    response = report(vault, headers, sub.subject, **extra)

    assert_problem(response, status, "invalid-request", field)
    assert row_counts(vault.runtime) == before


def test_a_contact_report_needs_json_and_the_contacts_scope(vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant)
    before = row_counts(vault.runtime)
    body = json.dumps({"subject": sub.subject, **OFFERS_BY_EMAIL})

    as_text = vault.client.post(CONTACTS, data=body, content_type="text/plain",
                                headers=headers)
    assert_problem(as_text, 415, "unsupported-media-type")
    malformed = vault.client.post(CONTACTS, data=body[:-1], content_type="application/json",
                                  headers=headers)
    assert_problem(malformed, 400, "invalid-request", "body")
    read_only = token_header(vault.client, merchant, scope="decisions subscriptions:read")
    assert_problem(vault.client.post(CONTACTS, data=body, content_type="application/json",
                                     headers=read_only), 403, "insufficient-scope")
    assert row_counts(vault.runtime) == before


# -- subscriptions --------------------------------------------------------------------------


def test_pages_of_two_visit_every_subscription_once_in_a_stable_order(vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault)
    other, _ = merchant_with_token(vault, "Other Shop")
    mine = {subscribe(vault.runtime, merchant).subject for _ in range(5)}
    subscribe(vault.runtime, other)

    def walk() -> tuple[list[str], list[int]]:
        seen: list[str] = []
        sizes: list[int] = []
        cursor: str | None = None
        for _ in range(10):
            query = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            response = vault.client.get(SUBSCRIPTIONS, query_string=query, headers=headers)
            assert response.status_code == 200, response.get_data(as_text=True)
            page = response.get_json()
            sizes.append(len(page["items"]))
            seen += [item["subject"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return seen, sizes
        raise AssertionError("pagination did not end")

    first, sizes = walk()
    assert sizes == [2, 2, 1]
    assert len(first) == len(set(first)) == 5
    assert set(first) == mine
    assert walk()[0] == first
    whole = vault.client.get(SUBSCRIPTIONS, headers=headers).get_json()
    assert [item["subject"] for item in whole["items"]] == first
    assert whole["next_cursor"] is None


@pytest.mark.parametrize(("query", "status", "field"), [
    pytest.param("cursor=%21%21%21", 422, "cursor", id="not-a-token"),
    pytest.param("cursor=Li4vLi4v", 400, "cursor", id="not-an-id"),
    pytest.param("cursor=" + "A" * 201, 422, "cursor", id="cursor-too-long"),
    pytest.param("limit=0", 422, "limit", id="limit-zero"),
    pytest.param("limit=501", 422, "limit", id="limit-too-big"),
    pytest.param("limit=two", 422, "limit", id="limit-not-a-number"),
])
def test_a_bad_page_request_is_a_problem(vault: Vault, query: str, status: int,
                                         field: str) -> None:
    merchant, headers = merchant_with_token(vault)
    subscribe(vault.runtime, merchant)
    response = vault.client.get(f"{SUBSCRIPTIONS}?{query}", headers=headers)
    assert_problem(response, status, "invalid-request", field)


def test_one_subscription_shows_its_terms_but_no_profile_value(vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault)
    profile = {"name": "Ada Lovelace", "phone": "+31612345678", "address": "1 Analytical Way",
               "interests": "engines"}
    sub = subscribe(vault.runtime, merchant, profile=profile,
                    scope="contact:email:offers contact:sms:order_updates "
                          "profile:email profile:name profile:phone")
    set_permission(vault.runtime, sub, "email", "offers", max_per_week=3)

    response = vault.client.get(f"{SUBSCRIPTIONS}/{sub.subject}", headers=headers)

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"subject", "status", "created_at", "updated_at", "permissions",
                         "shared_fields"}
    assert (body["subject"], body["status"]) == (sub.subject, "active")
    assert sorted(body["shared_fields"]) == ["email", "name", "phone"]
    permissions = {(p["channel"], p["purpose"]): p for p in body["permissions"]}
    assert set(permissions) == {("email", "offers"), ("sms", "order_updates")}
    assert permissions[("email", "offers")]["max_per_week"] == 3
    assert all(p["allowed"] for p in permissions.values())
    raw = response.get_data(as_text=True)
    for value in (*profile.values(), sub.email, sub.person_id, sub.subscription_id):
        assert value not in raw

    listed = vault.client.get(SUBSCRIPTIONS, headers=headers).get_json()["items"]
    assert listed == [body]


def test_a_revoked_subscription_is_listed_without_its_terms(vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant)
    revoke(vault.runtime, sub)
    body = vault.client.get(f"{SUBSCRIPTIONS}/{sub.subject}", headers=headers).get_json()
    assert (body["status"], body["permissions"], body["shared_fields"]) == ("revoked", [], [])


def test_another_merchants_subscription_is_not_found(vault: Vault) -> None:
    _, headers = merchant_with_token(vault, "Shop A")
    other, other_headers = merchant_with_token(vault, "Shop B")
    theirs = subscribe(vault.runtime, other)

    foreign = vault.client.get(f"{SUBSCRIPTIONS}/{theirs.subject}", headers=headers)
    unknown = vault.client.get(f"{SUBSCRIPTIONS}/sub_nobody", headers=headers)

    assert_problem(foreign, 404, "not-found", "subject")
    assert foreign.get_json() == unknown.get_json()
    assert vault.client.get(SUBSCRIPTIONS, headers=headers).get_json() == \
        {"items": [], "next_cursor": None}
    assert vault.client.get(f"{SUBSCRIPTIONS}/{theirs.subject}",
                            headers=other_headers).status_code == 200


def test_reading_subscriptions_needs_the_read_scope(vault: Vault) -> None:
    merchant, _ = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant)
    headers = token_header(vault.client, merchant, scope="decisions contacts:write")
    for path in (SUBSCRIPTIONS, f"{SUBSCRIPTIONS}/{sub.subject}"):
        body = assert_problem(vault.client.get(path, headers=headers), 403,
                              "insufficient-scope")
        assert sub.subject not in json.dumps(body)


def test_a_retried_report_with_the_same_idempotency_key_is_recorded_once(
    vault: Vault,
) -> None:
    merchant, headers = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant)
    keyed = {**headers, "Idempotency-Key": "order-42-mail"}
    body = {"subject": sub.subject, **OFFERS_BY_EMAIL}
    before = row_counts(vault.runtime)["contact_event"]

    first = vault.client.post(CONTACTS, json=body, headers=keyed)
    again = vault.client.post(CONTACTS, json=body, headers=keyed)

    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    assert row_counts(vault.runtime)["contact_event"] == before + 1
    other = vault.client.post(CONTACTS, json={**body, "channel": "sms"}, headers=keyed)
    assert other.status_code == 400 and other.get_json()["field"] == "Idempotency-Key"
    assert row_counts(vault.runtime)["contact_event"] == before + 1
    fresh = vault.client.post(CONTACTS, json=body,
                              headers={**headers, "Idempotency-Key": "order-43-mail"})
    assert fresh.status_code == 201
    assert row_counts(vault.runtime)["contact_event"] == before + 2


def test_the_documented_idempotency_key_is_the_one_the_vault_takes(vault: Vault) -> None:
    """The OpenAPI document once allowed any string up to 255 characters, so a fuzzer's
    empty or spaced key was refused although the document promised it would be taken."""
    merchant, headers = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant)
    (documented,) = [parameter["schema"] for parameter in
                     build_spec(vault.app)["paths"][CONTACTS]["post"]["parameters"]
                     if parameter["name"] == "Idempotency-Key"]
    pattern = re.compile(documented.get("pattern", ""))
    outcomes = set()
    for key in ("", "order 42", "order-42\t", "é-42", "x" * 256, "!", "order-42~mail", "x" * 255):
        allowed = (documented.get("minLength", 0) <= len(key) <= documented["maxLength"]
                   and pattern.search(key) is not None)
        response = report(vault, {**headers, "Idempotency-Key": key}, sub.subject)
        assert response.status_code == (201 if allowed else 400), (key, response.get_json())
        outcomes.add(allowed)
    assert outcomes == {True, False}
