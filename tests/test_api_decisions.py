"""``POST /api/v1/decisions`` and ``/decisions/batch`` through the Flask test client.

Who may ask, what the answer says as the person changes their mind, how bad
input is refused (and that a refused request writes nothing), and the
evidence each answer leaves behind.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from api_helpers import (
    API,
    START,
    Vault,
    assert_problem,
    basic_auth,
    bearer,
    erase,
    merchant_with_token,
    register_merchant,
    request_token,
    revoke,
    row_counts,
    rows,
    set_global_rules,
    set_permission,
    sign_up,
    subscribe,
    token_header,
)
from flask import Flask
from flask.testing import FlaskClient

from vault.api import decisions as decisions_api
from vault.api.schemas import BatchRequestSchema, DecisionRequestSchema
from vault.clock import FixedClock
from vault.extensions import Runtime
from vault.services.decision_store import results_json
from vault.services.decisions import Verdict
from vault.services.merchants import rotate_client_secret

DECISIONS = f"{API}/decisions"
BATCH = f"{API}/decisions/batch"
CONTACTS = f"{API}/contacts"
OFFERS_BY_EMAIL = {"channel": "email", "purpose": "offers"}


@pytest.fixture
def vault(app: Flask, client: FlaskClient, runtime: Runtime, clock: FixedClock) -> Vault:
    """conftest's app, client, runtime and clock (once per backend)."""
    return Vault(app, client, runtime, clock)


def ask(vault: Vault, headers: dict[str, str], subject: str, **extra: object) -> dict[str, Any]:
    """A decision that must be answered (200); its body."""
    response = vault.client.post(DECISIONS, json={"subject": subject, **OFFERS_BY_EMAIL, **extra},
                                 headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()


# -- who may ask ----------------------------------------------------------------------------


ROUTES = [
    ("POST", DECISIONS, {"subject": "sub_x", "channel": "fax"}),
    ("POST", BATCH, {"subjects": "not a list"}),
    ("POST", CONTACTS, {"subject": 7}),
    ("GET", f"{API}/subscriptions?limit=0", None),
    ("GET", f"{API}/subscriptions/sub_x", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_no_token_is_401_before_the_body_is_even_looked_at(
        vault: Vault, method: str, path: str, body: object) -> None:
    before = row_counts(vault.runtime)
    response = vault.client.open(path, method=method, json=body)
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")
    assert row_counts(vault.runtime) == before


def test_a_garbage_or_basic_credential_is_401(vault: Vault) -> None:
    _, headers = merchant_with_token(vault)
    for authorization in ("Bearer not-a-token", "Bearer " + "x" * 600, "Basic Zm9vOmJhcg=="):
        response = vault.client.post(DECISIONS, json={"subject": "s", **OFFERS_BY_EMAIL},
                                     headers={"Authorization": authorization})
        body = assert_problem(response, 401, "unauthenticated")
        assert "WWW-Authenticate" in response.headers
        assert "errors" not in body
    assert ask(vault, headers, "s")["reason"] == "unknown_subject"


def test_a_token_without_the_decisions_scope_is_403(vault: Vault) -> None:
    merchant, _ = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant)
    headers = token_header(vault.client, merchant, scope="subscriptions:read")
    before = row_counts(vault.runtime)
    for path, body in ((DECISIONS, {"subject": sub.subject, **OFFERS_BY_EMAIL}),
                       (BATCH, {"subjects": [sub.subject], **OFFERS_BY_EMAIL}),
                       (DECISIONS, {"subject": sub.subject, "channel": "fax"})):
        response = vault.client.post(path, json=body, headers=headers)
        assert_problem(response, 403, "insufficient-scope")
    assert row_counts(vault.runtime) == before


def test_an_auditor_cannot_ask_decisions(vault: Vault) -> None:
    merchant, _ = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant)
    auditor = register_merchant(vault.runtime, "Auditor", kind="auditor")
    refused = request_token(vault.client, auditor.client_id, auditor.client_secret,
                            scope="decisions")
    assert refused.status_code == 400
    assert refused.get_json()["error"] == "invalid_scope"
    headers = token_header(vault.client, auditor)
    before = row_counts(vault.runtime)
    response = vault.client.post(DECISIONS, json={"subject": sub.subject, **OFFERS_BY_EMAIL},
                                 headers=headers)
    body = assert_problem(response, 403, "insufficient-scope")
    assert sub.subject not in json.dumps(body)
    assert row_counts(vault.runtime) == before


def test_another_merchants_subject_looks_exactly_like_an_unknown_one(vault: Vault) -> None:
    shop_a, headers_a = merchant_with_token(vault, "Shop A")
    _, headers_b = merchant_with_token(vault, "Shop B")
    sub = subscribe(vault.runtime, shop_a, profile={"name": "Ada"})
    assert ask(vault, headers_a, sub.subject)["allowed"] is True

    theirs = ask(vault, headers_b, sub.subject)
    unknown = ask(vault, headers_b, "sub_" + "q" * 24)

    assert theirs["allowed"] is False
    assert theirs["reason"] == "unknown_subject"
    assert theirs["reach"] is None
    assert theirs["alternatives"] == []
    ignore = ("decision_id", "subject")
    assert {k: v for k, v in theirs.items() if k not in ignore} == \
        {k: v for k, v in unknown.items() if k not in ignore}
    assert theirs.keys() == unknown.keys()

    batch = vault.client.post(BATCH, json={"subjects": [sub.subject, "sub_nobody"],
                                           **OFFERS_BY_EMAIL}, headers=headers_b)
    first, second = batch.get_json()["results"]
    assert {**first, "subject": None} == {**second, "subject": None}
    assert first["reason"] == "unknown_subject"


def test_a_rotated_client_secret_gets_no_more_tokens(vault: Vault) -> None:
    merchant = register_merchant(vault.runtime)
    assert request_token(vault.client, merchant.client_id, merchant.client_secret) \
        .status_code == 200
    with vault.runtime.database.write() as session:
        issued = rotate_client_secret(session, merchant.client_id, clock=vault.runtime.clock)

    old = request_token(vault.client, merchant.client_id, merchant.client_secret)
    assert old.status_code == 401
    assert old.get_json()["error"] == "invalid_client"
    assert "access_token" not in old.get_json()
    new = request_token(vault.client, issued.client_id, issued.client_secret)
    assert new.status_code == 200
    assert ask(vault, bearer(new.get_json()["access_token"]), "s")["reason"] == \
        "unknown_subject"


def test_a_revoked_or_expired_token_is_refused_at_once_though_it_was_just_used(
        vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault)
    assert ask(vault, headers, "sub_a")["reason"] == "unknown_subject"
    revoked = vault.client.post("/oauth/revoke", data={
        "token": headers["Authorization"].split()[1], "token_type_hint": "access_token"},
        headers=basic_auth(merchant.client_id, merchant.client_secret))
    assert revoked.status_code == 200
    for path, body in ((DECISIONS, {"subject": "sub_a", **OFFERS_BY_EMAIL}),
                       (BATCH, {"subjects": ["sub_a"], **OFFERS_BY_EMAIL})):
        assert_problem(vault.client.post(path, json=body, headers=headers), 401,
                       "unauthenticated")

    headers = token_header(vault.client, merchant)
    assert ask(vault, headers, "sub_a")["reason"] == "unknown_subject"
    vault.clock.advance(timedelta(hours=1))
    assert_problem(vault.client.post(DECISIONS, json={"subject": "sub_a", **OFFERS_BY_EMAIL},
                                     headers=headers), 401, "unauthenticated")


# -- the answer follows the person ----------------------------------------------------------


def test_narrowing_a_permission_turns_allowed_into_not_granted(vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant)
    first = ask(vault, headers, sub.subject)
    assert (first["allowed"], first["reason"]) == (True, "allowed")
    assert first["next_allowed_at"] is None
    assert first["valid_until"] == (START + timedelta(minutes=5)).isoformat()

    set_permission(vault.runtime, sub, "email", "offers", allowed=False)

    second = ask(vault, headers, sub.subject)
    assert (second["allowed"], second["reason"]) == (False, "not_granted")
    assert second["reach"] is None
    assert second["next_allowed_at"] is None


def test_a_weekly_cap_is_reached_by_reported_contacts(vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant)
    set_permission(vault.runtime, sub, "email", "offers", max_per_week=2)
    contact = {"subject": sub.subject, **OFFERS_BY_EMAIL}

    assert vault.client.post(CONTACTS, json=contact, headers=headers).status_code == 201
    assert ask(vault, headers, sub.subject)["reason"] == "allowed"
    vault.clock.advance(timedelta(minutes=30))
    assert vault.client.post(CONTACTS, json=contact, headers=headers).status_code == 201

    capped = ask(vault, headers, sub.subject)
    assert (capped["allowed"], capped["reason"]) == (False, "frequency_cap")
    assert capped["reach"] is None
    released = START + timedelta(days=7)
    assert capped["next_allowed_at"] == released.isoformat()

    vault.clock.set(released)
    headers = token_header(vault.client, merchant)  # the old token expired meanwhile
    assert ask(vault, headers, sub.subject)["reason"] == "allowed"


def test_a_global_rule_of_the_person_blocks_every_merchant(vault: Vault) -> None:
    shop_a, headers_a = merchant_with_token(vault, "Shop A")
    shop_b, headers_b = merchant_with_token(vault, "Shop B")
    sub_a = subscribe(vault.runtime, shop_a)
    sub_b = subscribe(vault.runtime, shop_b, person_id=sub_a.person_id)
    assert ask(vault, headers_a, sub_a.subject)["reason"] == "allowed"

    set_global_rules(vault.runtime, sub_a.person_id,
                     {"blocked": [{"channel": "email", "purpose": "offers"}]})

    for headers, sub in ((headers_a, sub_a), (headers_b, sub_b)):
        answer = ask(vault, headers, sub.subject)
        assert (answer["allowed"], answer["reason"]) == (False, "blocked_by_person")
        assert answer["reach"] is None


def test_a_revoked_subscription_answers_revoked(vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant, scope="contact:email:offers contact:sms:offers")
    assert ask(vault, headers, sub.subject)["alternatives"] == ["sms"]

    revoke(vault.runtime, sub)

    answer = ask(vault, headers, sub.subject)
    assert (answer["allowed"], answer["reason"]) == (False, "revoked")
    assert answer["reach"] is None
    assert answer["alternatives"] == []


def test_an_erased_person_answers_erased(vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant)
    assert ask(vault, headers, sub.subject)["reach"] == sub.email

    erase(vault.runtime, sub.person_id)

    answer = ask(vault, headers, sub.subject)
    assert (answer["allowed"], answer["reason"]) == (False, "erased")
    assert answer["reach"] is None
    assert answer["alternatives"] == []
    assert sub.email not in json.dumps(answer)


def test_reach_is_the_email_only_when_the_person_shares_it(vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault)
    profile = {"name": "Ada", "phone": "+31612345678"}
    shared = subscribe(vault.runtime, merchant, profile=profile,
                       scope="contact:email:offers contact:sms:offers profile:email")
    hidden = subscribe(vault.runtime, merchant, profile=profile,
                       scope="contact:email:offers contact:sms:offers profile:name")

    assert ask(vault, headers, shared.subject)["reach"] == shared.email
    withheld = ask(vault, headers, hidden.subject)
    assert (withheld["allowed"], withheld["reach"]) == (True, None)
    # An SMS is allowed too, but the phone number was never shared.
    by_sms = ask(vault, headers, shared.subject, channel="sms")
    assert (by_sms["allowed"], by_sms["reach"]) == (True, None)
    for answer in (withheld, by_sms):
        assert "+31612345678" not in json.dumps(answer)
        assert hidden.email not in json.dumps(answer)


def test_alternatives_follow_the_persons_channel_order(vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault)
    scope = ("contact:email:offers contact:sms:offers contact:post:offers "
             "contact:push:offers contact:email:surveys")
    sub = subscribe(vault.runtime, merchant, scope=scope,
                    profile={"channel_order": ["push", "post", "phone", "email", "sms"]})

    by_phone = ask(vault, headers, sub.subject, channel="phone")
    assert (by_phone["allowed"], by_phone["reason"]) == (False, "not_granted")
    assert by_phone["alternatives"] == ["push", "post", "email", "sms"]
    by_email = ask(vault, headers, sub.subject)
    assert by_email["alternatives"] == ["push", "post", "sms"]

    set_permission(vault.runtime, sub, "post", "offers", allowed=False)
    assert ask(vault, headers, sub.subject)["alternatives"] == ["push", "sms"]


# -- bad input: a problem with a stable type and field, and nothing written -----------------


def _subject(n: int = 1) -> str:
    return "sub_" + "a" * n


BAD_REQUESTS: list[Any] = [
    # (path, raw body or JSON document, content type, status, type, field)
    pytest.param(DECISIONS, b'{"subject": "sub_a", "channel":', "application/json",
                 400, "invalid-request", "body", id="malformed-json"),
    pytest.param(DECISIONS, b'["sub_a", "email", "offers"]', "application/json",
                 422, "invalid-request", "body", id="json-array"),
    pytest.param(BATCH, b'"sub_a"', "application/json",
                 422, "invalid-request", "body", id="json-string"),
    pytest.param(DECISIONS, b"null", "application/json",
                 422, "invalid-request", "body", id="json-null"),
    pytest.param(DECISIONS, {"subject": _subject(), "channel": "fax", "purpose": "offers"},
                 None, 422, "invalid-request", "channel", id="unknown-channel"),
    pytest.param(BATCH, {"subjects": [_subject()], "channel": "email", "purpose": "spam"},
                 None, 422, "invalid-request", "purpose", id="unknown-purpose"),
    pytest.param(DECISIONS, {"subject": 12345, **OFFERS_BY_EMAIL},
                 None, 422, "invalid-request", "subject", id="subject-number"),
    pytest.param(BATCH, {"subjects": "sub_a", **OFFERS_BY_EMAIL},
                 None, 422, "invalid-request", "subjects", id="subjects-string"),
    pytest.param(BATCH, {"subjects": ["sub_a", 7], **OFFERS_BY_EMAIL},
                 None, 422, "invalid-request", "subjects.1", id="subjects-item-number"),
    pytest.param(DECISIONS, {"channel": "email", "purpose": "offers"},
                 None, 422, "invalid-request", "subject", id="missing-subject"),
    pytest.param(BATCH, {"subjects": ["sub_a"], "channel": "email"},
                 None, 422, "invalid-request", "purpose", id="missing-purpose"),
    pytest.param(DECISIONS, {"subject": _subject(), **OFFERS_BY_EMAIL, "urgent": True},
                 None, 422, "invalid-request", "urgent", id="unknown-field"),
    pytest.param(BATCH, {"subjects": [], **OFFERS_BY_EMAIL},
                 None, 422, "invalid-request", "subjects", id="empty-subjects"),
    pytest.param(BATCH, {"subjects": [f"sub_{i}" for i in range(10_001)], **OFFERS_BY_EMAIL},
                 None, 422, "invalid-request", "subjects", id="10001-subjects"),
    pytest.param(DECISIONS, {"subject": _subject(125), **OFFERS_BY_EMAIL},
                 None, 422, "invalid-request", "subject", id="subject-129-chars"),
    pytest.param(BATCH, {"subjects": ["sub_a", _subject(125)], **OFFERS_BY_EMAIL},
                 None, 422, "invalid-request", "subjects.1", id="batch-subject-129-chars"),
    pytest.param(DECISIONS, {"subject": "", **OFFERS_BY_EMAIL},
                 None, 422, "invalid-request", "subject", id="subject-empty"),
    pytest.param(DECISIONS, {"subject": _subject(), **OFFERS_BY_EMAIL,
                             "at": "2026-11-23T12:00:00"},
                 None, 422, "invalid-request", "at", id="at-without-time-zone"),
    pytest.param(DECISIONS, {"subject": _subject(), **OFFERS_BY_EMAIL, "at": "tomorrow"},
                 None, 422, "invalid-request", "at", id="at-not-a-date"),
    pytest.param(DECISIONS, {"subject": _subject(), **OFFERS_BY_EMAIL,
                             "at": "2027-11-25T10:00:00+00:00"},
                 None, 400, "invalid-request", "at", id="at-over-a-year-ahead"),
    pytest.param(BATCH, {"subjects": [_subject()], **OFFERS_BY_EMAIL,
                         "at": "2025-11-20T10:00:00Z"},
                 None, 400, "invalid-request", "at", id="at-over-a-year-ago"),
    pytest.param(DECISIONS, json.dumps({"subject": _subject(), **OFFERS_BY_EMAIL}).encode(),
                 "text/plain", 415, "unsupported-media-type", None, id="text-plain"),
    pytest.param(BATCH, b"subjects=sub_a&channel=email&purpose=offers",
                 "application/x-www-form-urlencoded", 415, "unsupported-media-type", None,
                 id="form-encoded"),
    pytest.param(DECISIONS, b"", None, 415, "unsupported-media-type", None, id="no-body"),
]


@pytest.mark.parametrize(("path", "body", "content_type", "status", "problem", "field"),
                         BAD_REQUESTS)
def test_bad_input_is_a_problem_and_writes_nothing(
        vault: Vault, path: str, body: object, content_type: str | None, status: int,
        problem: str, field: str | None) -> None:
    merchant, headers = merchant_with_token(vault)
    subscribe(vault.runtime, merchant)
    before = row_counts(vault.runtime)
    if isinstance(body, bytes):
        response = vault.client.post(path, data=body, content_type=content_type,
                                     headers=headers)
    else:
        response = vault.client.post(path, json=body, headers=headers)

    assert assert_problem(response, status, problem).get("field") == field
    assert row_counts(vault.runtime) == before


def test_a_body_over_two_megabytes_is_413_and_writes_nothing(vault: Vault) -> None:
    _, headers = merchant_with_token(vault)
    before = row_counts(vault.runtime)
    subjects = [f"sub_{i:0>120}" for i in range(9_000)]
    raw = json.dumps({"subjects": subjects + subjects[:8_000], **OFFERS_BY_EMAIL}).encode()
    assert len(raw) > 2 * 1024 * 1024
    response = vault.client.post(BATCH, data=raw, content_type="application/json",
                                 headers=headers)
    assert_problem(response, 413, "request-entity-too-large")
    assert row_counts(vault.runtime) == before


def test_at_within_a_year_is_answered_for_that_moment(vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant)
    later = START + timedelta(days=300)
    answer = ask(vault, headers, sub.subject, at=later.isoformat())
    assert answer["reason"] == "allowed"
    assert answer["valid_until"] == (later + timedelta(minutes=5)).isoformat()
    stored = rows(vault.runtime, "SELECT asked_at FROM decision WHERE id = :id",
                  id=answer["decision_id"])
    assert len(stored) == 1


# -- evidence -------------------------------------------------------------------------------


def test_a_decision_is_stored_once_under_the_id_it_returns(vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant)
    before = row_counts(vault.runtime)

    answer = ask(vault, headers, sub.subject)

    after = row_counts(vault.runtime)
    assert after == {**before, "decision": before["decision"] + 1}
    stored = rows(vault.runtime, "SELECT * FROM decision WHERE id = :id",
                  id=answer["decision_id"])
    assert len(stored) == 1
    row = stored[0]
    assert (row["merchant_id"], row["subscription_id"], row["subject"]) == \
        (merchant.id, sub.subscription_id, sub.subject)
    assert (row["channel"], row["purpose"]) == ("email", "offers")
    assert (bool(row["allowed"]), row["reason"]) == (True, "allowed")

    unknown = ask(vault, headers, "sub_unknown")
    stored = rows(vault.runtime, "SELECT * FROM decision WHERE id = :id",
                  id=unknown["decision_id"])
    assert len(stored) == 1
    assert stored[0]["subscription_id"] is None
    assert (bool(stored[0]["allowed"]), stored[0]["reason"]) == (False, "unknown_subject")


def test_a_batch_of_ten_thousand_answers_in_input_order_with_one_evidence_row(
        vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault)
    other, _ = merchant_with_token(vault, "Other Shop")
    allowed = subscribe(vault.runtime, merchant)
    narrowed = subscribe(vault.runtime, merchant, scope="contact:sms:offers")
    gone = subscribe(vault.runtime, merchant)
    revoke(vault.runtime, gone)
    theirs = subscribe(vault.runtime, other)
    known = [allowed.subject, narrowed.subject, gone.subject, theirs.subject]
    expected_reason = {allowed.subject: "allowed", narrowed.subject: "not_granted",
                       gone.subject: "revoked", theirs.subject: "unknown_subject"}
    subjects = [f"sub_unknown_{i}" for i in range(9_990)]
    for offset, subject in enumerate(known):
        subjects.insert(offset * 2_500, subject)  # spread through the batch
    subjects += [allowed.subject, "sub_unknown_7", narrowed.subject, allowed.subject,
                 "sub_unknown_7", gone.subject]
    assert len(subjects) == 10_000
    before = row_counts(vault.runtime)

    response = vault.client.post(BATCH, json={"subjects": subjects, **OFFERS_BY_EMAIL},
                                 headers=headers)

    assert response.status_code == 200, response.get_data(as_text=True)
    results = response.get_json()["results"]
    assert [r["subject"] for r in results] == subjects
    for result in results:
        reason = expected_reason.get(result["subject"], "unknown_subject")
        assert result["reason"] == reason
        assert result["allowed"] is (reason == "allowed")
        assert result["next_allowed_at"] is None
        assert set(result) == {"subject", "allowed", "reason", "next_allowed_at"}

    after = row_counts(vault.runtime)
    assert after == {**before, "decision_batch": before["decision_batch"] + 1}
    (batch,) = rows(vault.runtime, "SELECT * FROM decision_batch WHERE merchant_id = :m",
                    m=merchant.id)
    assert batch["size"] == 10_000
    assert batch["allowed_count"] == 3
    assert (batch["channel"], batch["purpose"]) == ("email", "offers")
    stored = gzip.decompress(bytes(batch["results"]))
    assert hashlib.sha256(stored).hexdigest() == batch["results_sha256"]
    assert [r["subject"] for r in json.loads(stored)] == subjects


def test_a_batch_of_one_is_one_evidence_row_of_size_one(vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant)
    set_permission(vault.runtime, sub, "email", "offers", max_per_week=1)
    vault.client.post(CONTACTS, json={"subject": sub.subject, **OFFERS_BY_EMAIL},
                      headers=headers)
    before = row_counts(vault.runtime)

    response = vault.client.post(BATCH, json={"subjects": [sub.subject], **OFFERS_BY_EMAIL},
                                 headers=headers)

    assert response.status_code == 200
    assert response.get_json() == {"results": [{
        "subject": sub.subject, "allowed": False, "reason": "frequency_cap",
        "next_allowed_at": (START + timedelta(days=7)).isoformat()}]}
    assert row_counts(vault.runtime) == {**before,
                                         "decision_batch": before["decision_batch"] + 1}
    (batch,) = rows(vault.runtime, "SELECT size, allowed_count FROM decision_batch "
                    "WHERE merchant_id = :m", m=merchant.id)
    assert (batch["size"], batch["allowed_count"]) == (1, 0)


def test_people_never_appear_in_clear_in_the_evidence(vault: Vault) -> None:
    merchant, headers = merchant_with_token(vault)
    person = sign_up(vault.runtime, profile={"name": "Grace Hopper"})
    sub = subscribe(vault.runtime, merchant, person_id=person)
    ask(vault, headers, sub.subject)
    vault.client.post(BATCH, json={"subjects": [sub.subject], **OFFERS_BY_EMAIL},
                      headers=headers)
    for table in ("decision", "decision_batch"):
        for row in rows(vault.runtime, f"SELECT * FROM {table} WHERE merchant_id = :m",
                        m=merchant.id):
            text = repr(row)
            assert "Grace Hopper" not in text
            assert person not in text


# -- the quick path: exactly the documented answers, for less -------------------------------


def _answers(vault: Vault, headers: dict[str, str],
             requests: list[tuple[str, dict[str, object]]]) -> list[str]:
    """Each response body, decision ids replaced, after checking status and type."""
    bodies = []
    for path, body in requests:
        response = vault.client.post(path, json=body, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.headers["Content-Type"] == "application/json"
        text = response.get_data(as_text=True)
        decision_id = response.get_json().get("decision_id")
        bodies.append(text.replace(decision_id, "ID") if decision_id else text)
    return bodies


def test_the_quick_path_answers_exactly_as_the_documented_one(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    merchant, headers = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant,
                    scope="contact:email:offers contact:sms:offers profile:email")
    set_permission(vault.runtime, sub, "email", "offers", max_per_week=1)
    capped = subscribe(vault.runtime, merchant)
    set_permission(vault.runtime, capped, "email", "offers", max_per_week=1)
    assert vault.client.post(CONTACTS, json={"subject": capped.subject, **OFFERS_BY_EMAIL},
                             headers=headers).status_code == 201
    later = (START + timedelta(hours=30)).isoformat()
    requests: list[tuple[str, dict[str, object]]] = [
        (DECISIONS, {"subject": sub.subject, **OFFERS_BY_EMAIL}),
        (DECISIONS, {"subject": sub.subject, "channel": "sms", "purpose": "offers"}),
        (DECISIONS, {"subject": capped.subject, **OFFERS_BY_EMAIL}),
        (DECISIONS, {"subject": "sub_nobody", **OFFERS_BY_EMAIL, "at": later}),
        (DECISIONS, {"subject": sub.subject, **OFFERS_BY_EMAIL, "at": None}),
        (BATCH, {"subjects": [sub.subject, "sub_nobody", capped.subject, sub.subject],
                 **OFFERS_BY_EMAIL}),
        (BATCH, {"subjects": [capped.subject], **OFFERS_BY_EMAIL, "at": later}),
    ]
    quick_calls: list[object] = []
    real = decisions_api.quick_client_id

    def spy(*args: Any, **kwargs: Any) -> object:
        quick_calls.append(real(*args, **kwargs))
        return quick_calls[-1]

    monkeypatch.setattr(decisions_api, "quick_client_id", spy)
    before = row_counts(vault.runtime)
    quick = _answers(vault, headers, requests)
    assert len(quick_calls) == len(requests) and None not in quick_calls
    middle = row_counts(vault.runtime)

    monkeypatch.setattr(decisions_api, "quick_client_id", lambda *args, **kwargs: None)
    documented = _answers(vault, headers, requests)

    assert quick == documented
    after = row_counts(vault.runtime)
    assert {t: middle[t] - before[t] for t in before} == {t: after[t] - middle[t] for t in after}
    assert middle["decision"] - before["decision"] == 5
    assert middle["decision_batch"] - before["decision_batch"] == 2


@pytest.mark.parametrize("subject", [
    "s", "sub_" + "a" * 124, "a.b~c-d_E9", "sub_" + "a" * 125, "", "sub_x\n", "sub x",
    "s\u00fcb", "sub_\x00", "sub/x", "sub_x\r",
])
def test_the_quick_path_takes_exactly_the_subjects_the_schemas_take(subject: str) -> None:
    taken = not DecisionRequestSchema().validate({"subject": subject, **OFFERS_BY_EMAIL})
    assert taken is not bool(BatchRequestSchema().validate(
        {"subjects": ["sub_ok", subject], **OFFERS_BY_EMAIL}))
    assert bool(decisions_api._ONE_SUBJECT.fullmatch(subject)) is taken
    assert (decisions_api._subjects(["sub_ok", subject]) is not None) is taken


def test_campaign_answers_are_written_as_json_dumps_writes_them() -> None:
    later = START + timedelta(hours=11)
    allowed = Verdict(True, "allowed", None, START)
    quiet = Verdict(False, "quiet_hours", later, later)
    subjects = ["sub_a", 'sub_"q"', "sub_a", "s\u00fcb\n", "sub_b"]
    verdicts = [allowed, quiet, allowed, quiet, Verdict(False, "revoked", None, START)]
    for moment in (str, datetime.isoformat):
        expected = json.dumps([
            {"subject": s, "allowed": v.allowed, "reason": v.reason,
             "next_allowed_at": moment(v.next_allowed_at) if v.next_allowed_at else None}
            for s, v in zip(subjects, verdicts, strict=True)], separators=(",", ":"))
        assert results_json(subjects, verdicts, moment) == expected
    assert results_json(["sub_a"], [allowed], str) == \
        json.dumps([{"subject": "sub_a", "allowed": True, "reason": "allowed",
                     "next_allowed_at": None}], separators=(",", ":"))
