"""The person's export (GDPR Art. 20): every section, the documented schema, nobody else.

The schema is ``docs/person-export.schema.json``; every export must validate
against it, and the schema must stay a valid JSON Schema.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
from api_helpers import (
    Vault,
    register_merchant,
    revoke,
    row_counts,
    set_global_rules,
    set_permission,
    subscribe,
)
from flask import Flask
from flask.testing import FlaskClient
from ui_helpers import logged_in

from vault.clock import FixedClock
from vault.errors import NotFound
from vault.extensions import Runtime
from vault.services.contacting import report_contact
from vault.services.person_export import SCHEMA_ID, SCHEMA_VERSION, build_export

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "person-export.schema.json"
EXPORT = "/my-data/export"


@pytest.fixture(scope="module")
def schema() -> dict[str, object]:
    document = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(document)
    return document  # type: ignore[no-any-return]


@pytest.fixture
def vault(app: Flask, client: FlaskClient, runtime: Runtime, clock: FixedClock) -> Vault:
    return Vault(app, client, runtime, clock)


def contact(vault: Vault, merchant_id: str, subject: str, channel: str = "email",
            purpose: str = "offers") -> str:
    rt = vault.runtime
    with rt.database.write() as session:
        return report_contact(session, merchant_id=merchant_id, subject=subject,
                              channel=channel, purpose=purpose, decision_id=None, at=None,
                              data_keys=rt.data_keys, clock=rt.clock).contact_id


def test_the_schema_names_itself_as_the_export_does(schema: dict[str, object]) -> None:
    assert schema["$id"] == SCHEMA_ID
    properties = schema["properties"]
    assert properties["schema"] == {"const": SCHEMA_ID}  # type: ignore[index]
    assert properties["schema_version"] == {"const": SCHEMA_VERSION}  # type: ignore[index]


def test_the_export_holds_every_section_and_matches_the_schema(
        vault: Vault, schema: dict[str, object]) -> None:
    rt = vault.runtime
    book = register_merchant(rt, "Book Shop")
    tea = register_merchant(rt, "Tea House")
    anna = logged_in(vault, profile={"name": "Anna de Vries", "phone": "+31 6 1234 5678",
                                     "interests": "old maps"})
    book_sub = subscribe(rt, book, scope="contact:email:offers profile:email profile:name",
                         person_id=anna.person_id)
    tea_sub = subscribe(rt, tea, scope="contact:sms:order_updates", person_id=anna.person_id)
    set_permission(rt, book_sub, "email", "offers", max_per_week=3)
    set_global_rules(rt, anna.person_id, {"blocked": [{"channel": "phone", "purpose": "*"}],
                                          "quiet_hours": {"start": "21:00", "end": "09:00"}})
    allowed = contact(vault, book.id, book_sub.subject)
    violation = contact(vault, book.id, book_sub.subject, "post", "partner_offers")
    vault.clock.advance(timedelta(minutes=1))
    revoke(rt, tea_sub)

    response = anna.get(EXPORT)

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"] == \
        'attachment; filename="preference-vault-2026-11-23.json"'
    assert response.headers["Cache-Control"] == "no-store"
    document = json.loads(response.get_data(as_text=True))
    jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)

    assert document["schema"] == SCHEMA_ID and document["schema_version"] == 1
    assert document["generated_at"] == "2026-11-23T10:01:00Z"
    assert document["person"]["id"] == anna.person_id
    profile = document["profile"]
    assert (profile["email"], profile["name"], profile["phone"], profile["interests"]) == \
        (anna.email, "Anna de Vries", "+31 6 1234 5678", "old maps")
    assert document["rules"]["blocked"] == [{"channel": "phone", "purpose": "*"}]
    assert document["rules"]["quiet_hours"] == {"start": "21:00", "end": "09:00"}

    by_name = {s["merchant"]["name"]: s for s in document["subscriptions"]}
    assert set(by_name) == {"Book Shop", "Tea House"}
    shop = by_name["Book Shop"]
    assert shop["status"] == "active" and shop["subject"] == book_sub.subject
    assert shop["merchant"]["id"] == book.id
    assert sorted(shop["granted_scopes"]) == ["contact:email:offers", "profile:email",
                                              "profile:name"]
    assert shop["permissions"] == [{"channel": "email", "purpose": "offers", "allowed": True,
                                    "max_per_week": 3, "quiet_hours": None,
                                    "expires_at": None}]
    assert sorted(shop["shared_fields"]) == ["email", "name"]
    contacts = {c["id"]: c for c in shop["contacts"]}
    assert set(contacts) == {allowed, violation}
    assert contacts[allowed]["violation"] is False
    assert (contacts[violation]["allowed"], contacts[violation]["violation"],
            contacts[violation]["reason"]) == (False, True, "not_granted")
    tea_export = by_name["Tea House"]
    assert tea_export["status"] == "revoked" and tea_export["granted_scopes"] == []
    assert tea_export["revoked_at"] == "2026-11-23T10:01:00Z"

    tags = [e["tag"] for e in document["consent_history"]]
    assert tags == ["person:account:created", "subscription:grant:approved",
                    "subscription:grant:approved", "subscription:permission:changed",
                    "person:rules:updated", "contact:report:allowed",
                    "contact:report:violation", "subscription:grant:revoked"]
    seqs = [e["seq"] for e in document["consent_history"]]
    assert seqs == sorted(seqs)


def test_the_export_contains_nothing_of_another_person(vault: Vault,
                                                       schema: dict[str, object]) -> None:
    rt = vault.runtime
    book = register_merchant(rt, "Book Shop")
    hidden = register_merchant(rt, "Hidden Garden")
    anna = logged_in(vault, profile={"name": "Anna"})
    subscribe(rt, book, scope="contact:email:offers", person_id=anna.person_id)
    bram = subscribe(rt, book, scope="contact:phone:service profile:name",
                     profile={"name": "Bram Canary", "address": "Canarystraat 9"})
    bram_hidden = subscribe(rt, hidden, scope="contact:sms:surveys", person_id=bram.person_id)
    bram_contact = contact(vault, book.id, bram.subject, "phone", "service")
    contact(vault, hidden.id, bram_hidden.subject, "sms", "surveys")
    set_global_rules(rt, bram.person_id, {"quiet_hours": {"start": "22:17", "end": "06:43"}})

    text = anna.get(EXPORT).get_data(as_text=True)
    document = json.loads(text)

    jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)
    for secret in (bram.person_id, bram.subject, bram.subscription_id, bram.email,
                   "Bram Canary", "Canarystraat", "Hidden Garden", hidden.id,
                   bram_hidden.subject, bram_contact, "22:17"):
        assert secret not in text, secret
    assert [s["merchant"]["name"] for s in document["subscriptions"]] == ["Book Shop"]
    assert all(e["person_ref"] in (anna.person_id, None) for e in document["consent_history"])


def test_a_person_without_shops_gets_a_valid_export(vault: Vault,
                                                    schema: dict[str, object]) -> None:
    anna = logged_in(vault)
    document = json.loads(anna.get(EXPORT).get_data(as_text=True))
    jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)
    assert document["subscriptions"] == []
    assert [e["tag"] for e in document["consent_history"]] == ["person:account:created"]
    assert document["profile"]["name"] is None


def test_an_erased_person_has_nothing_to_export(runtime: Runtime) -> None:
    book = register_merchant(runtime, "Book Shop")
    sub = subscribe(runtime, book)
    with runtime.database.write() as session:
        runtime.accounts.erase(session, sub.person_id)
    with runtime.database.read() as session, pytest.raises(NotFound):
        build_export(session, sub.person_id, accounts=runtime.accounts,
                     data_keys=runtime.data_keys, clock=runtime.clock)


def test_the_export_writes_nothing(vault: Vault) -> None:
    anna = logged_in(vault)
    before = row_counts(vault.runtime, ("audit_event", "webhook_outbox", "person"))
    assert anna.get(EXPORT).status_code == 200
    assert row_counts(vault.runtime, ("audit_event", "webhook_outbox", "person")) == before
