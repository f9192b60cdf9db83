"""My data: the page, and deleting the account with a password, a CSRF token and a receipt.

Deleting is crypto-shredding (``AccountService.erase``): these tests check
what the person does and sees, and that a refused request changes nothing.
"""

from __future__ import annotations

import re

import pytest
from api_helpers import (
    API,
    PASSWORD,
    Vault,
    merchant_with_token,
    row_counts,
    rows,
    subscribe,
)
from flask import Flask
from flask.testing import FlaskClient
from ui_helpers import Browser, csrf_token, log_in, logged_in

from vault.clock import FixedClock
from vault.extensions import Runtime

#: every table an erasure writes to or deletes from
TOUCHED = ("person", "person_key", "profile", "global_rules", "subscription",
           "contact_permission", "audit_event", "webhook_outbox")
DELETE = "/my-data/delete"


@pytest.fixture
def vault(app: Flask, client: FlaskClient, runtime: Runtime, clock: FixedClock) -> Vault:
    return Vault(app, client, runtime, clock)


@pytest.fixture
def connected(vault: Vault) -> tuple[Browser, dict[str, str], str]:
    """A logged-in person subscribed to a shop, the shop's bearer header and the subject."""
    merchant, headers = merchant_with_token(vault, "Book Shop")
    person = logged_in(vault, profile={"name": "Anna de Vries"})
    sub = subscribe(vault.runtime, merchant, scope="contact:email:offers profile:email",
                    person_id=person.person_id)
    return person, headers, sub.subject


def person_row(vault: Vault, person_id: str) -> dict[str, object]:
    (row,) = rows(vault.runtime, "SELECT * FROM person WHERE id = :id", id=person_id)
    return row


def decision(vault: Vault, headers: dict[str, str], subject: str) -> dict[str, object]:
    response = vault.client.post(f"{API}/decisions", headers=headers,
                                 json={"subject": subject, "channel": "email",
                                       "purpose": "offers"})
    assert response.status_code == 200, response.text
    return response.get_json()  # type: ignore[no-any-return]


def test_the_my_data_page_offers_the_download_and_the_deletion(vault: Vault) -> None:
    person = logged_in(vault)

    response = person.get("/my-data")

    assert response.status_code == 200
    html = response.text
    assert "<h1>My data</h1>" in html
    assert 'href="/my-data/export"' in html
    assert 'href="/my-data/delete"' in html
    assert "activity.css" in html
    assert 'style="' not in html and "<script" not in html


@pytest.mark.parametrize("path", ["/my-data", "/my-data/export", DELETE])
def test_my_data_needs_a_login(vault: Vault, path: str) -> None:
    response = vault.client.get(path)
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_the_confirmation_step_explains_and_changes_nothing(vault: Vault, connected) -> None:  # type: ignore[no-untyped-def]
    person, headers, subject = connected
    before = row_counts(vault.runtime, TOUCHED)

    response = person.get(DELETE)

    assert response.status_code == 200
    html = response.text
    assert "Your personal key is destroyed" in html
    assert "Every shop connected to you is told straight away" in html
    assert "The consent log keeps its entries" in html
    assert 'type="password"' in html and 'autocomplete="current-password"' in html
    assert '<label for="password">' in html
    assert 'name="csrf_token"' in html
    assert row_counts(vault.runtime, TOUCHED) == before
    assert person_row(vault, person.person_id)["erased_at"] is None
    assert decision(vault, headers, subject)["allowed"] is True


@pytest.mark.parametrize("password", ["", "not my password"])
def test_a_wrong_password_is_refused_at_the_field_and_nothing_is_erased(
        vault: Vault, connected, password: str) -> None:  # type: ignore[no-untyped-def]
    person, headers, subject = connected
    before = row_counts(vault.runtime, TOUCHED)

    response = person.post_form(DELETE, data={"password": password})

    assert response.status_code == 400
    html = response.text
    assert 'aria-invalid="true"' in html and 'id="password-error"' in html
    assert ("not right. Nothing was deleted" in html) or ("Type your password" in html)
    assert row_counts(vault.runtime, TOUCHED) == before
    assert person_row(vault, person.person_id)["erased_at"] is None
    assert person.get("/my-data").status_code == 200  # still logged in
    assert decision(vault, headers, subject)["allowed"] is True


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_a_post_without_a_valid_csrf_token_changes_nothing(vault: Vault, connected,  # type: ignore[no-untyped-def]
                                                           token: str | None) -> None:
    person, _headers, _subject = connected
    person.get(DELETE)
    before = row_counts(vault.runtime, TOUCHED)
    data = {"password": PASSWORD} | ({"csrf_token": token} if token else {})

    response = person.client.post(DELETE, data=data)

    assert response.status_code == 400
    assert "Nothing was changed" in response.text
    assert row_counts(vault.runtime, TOUCHED) == before
    assert person_row(vault, person.person_id)["erased_at"] is None


def test_the_right_password_erases_the_account_and_shows_a_receipt(vault: Vault,
                                                                   connected) -> None:  # type: ignore[no-untyped-def]
    person, headers, subject = connected

    response = person.post_form(DELETE, data={"password": PASSWORD})

    assert response.status_code == 200, response.text
    html = response.text
    assert "<h1>Your account has been deleted</h1>" in html
    assert person.person_id in html
    (event,) = rows(vault.runtime, "SELECT seq FROM audit_event WHERE tag = :tag AND "
                    "person_ref = :p", tag="person:account:erased", p=person.person_id)
    seq = int(event["seq"])  # type: ignore[call-overload]
    assert f"number {seq} (leaf {seq - 1} of the log" in html
    assert re.search(r"<dt>Shops disconnected</dt>\s*<dd>1</dd>", html)
    assert '<time datetime="2026-11-23T10:00:00Z">' in html
    assert "Log out" not in html  # the receipt is shown to a logged-out visitor
    # the person row is a tombstone, the key is gone
    tombstone = person_row(vault, person.person_id)
    assert tombstone["erased_at"] is not None
    assert tombstone["email_index"] is None and tombstone["password_hash"] is None
    assert rows(vault.runtime, "SELECT * FROM person_key WHERE person_id = :p",
                p=person.person_id) == []
    # the merchant is told, and the vault answers "erased"
    answer = decision(vault, headers, subject)
    assert (answer["allowed"], answer["reason"]) == (False, "erased")
    # logged out, and no way back in
    assert person.get("/my-data").status_code == 302
    assert log_in(vault.app.test_client(), person.email).status_code == 401


def test_the_receipt_is_only_on_the_answer_to_the_post(vault: Vault, connected) -> None:  # type: ignore[no-untyped-def]
    person, _headers, _subject = connected
    person.post_form(DELETE, data={"password": PASSWORD})

    again = person.get(DELETE)

    assert again.status_code == 302 and "/login" in again.headers["Location"]


def test_another_persons_password_does_not_delete(vault: Vault, connected) -> None:  # type: ignore[no-untyped-def]
    person, _headers, _subject = connected
    other = logged_in(vault)
    before = row_counts(vault.runtime, TOUCHED)
    page = other.get(DELETE)

    response = other.client.post(DELETE, data={"csrf_token": csrf_token(page.text),
                                                "password": "another " + PASSWORD})

    assert response.status_code == 400
    assert row_counts(vault.runtime, TOUCHED) == before
    assert person_row(vault, person.person_id)["erased_at"] is None
    assert person_row(vault, other.person_id)["erased_at"] is None


def test_my_data_pages_are_in_dutch(vault: Vault, connected) -> None:  # type: ignore[no-untyped-def]
    person = logged_in(vault, profile={"language": "nl"})

    page = person.get("/my-data").text
    confirm = person.get(DELETE).text
    wrong = person.post_form(DELETE, data={"password": "fout"}).text
    receipt = person.post_form(DELETE, data={"password": PASSWORD}).text

    assert "<h1>Mijn gegevens</h1>" in page and "Alles downloaden" in page
    assert "Mijn account verwijderen" in page
    assert "<h1>Je account verwijderen</h1>" in confirm
    assert "Je persoonlijke sleutel wordt vernietigd" in confirm
    assert "Dat wachtwoord klopt niet. Er is niets verwijderd." in wrong
    assert "<h1>Je account is verwijderd</h1>" in receipt
    assert '<html lang="nl">' in receipt  # the language outlives the log-out
    assert "Kenmerk" in receipt and "november 2026" in receipt
    for english in ("Download everything", "Delete my account", "Your account has been"):
        assert english not in page + confirm + receipt
