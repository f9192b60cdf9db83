"""The "My profile" page: the sealed fields, who sees each one, edits and the password.

Values are always read back through the account service (the database holds
ciphertext only). Bad input comes back at its field and writes nothing; a
new language or time zone is used from the very next page.
"""

from __future__ import annotations

import re

import pytest
from api_helpers import (
    PASSWORD,
    Vault,
    register_merchant,
    revoke,
    row_counts,
    rows,
    sign_up,
    subscribe,
)
from flask import Flask
from flask.testing import FlaskClient
from ui_helpers import Browser, csrf_token, log_in, logged_in
from werkzeug.test import TestResponse

from vault.clock import FixedClock
from vault.extensions import Runtime
from vault.services.accounts import PersonProfile

HTML = {"Accept": "text/html"}
WRITES = ("audit_event", "profile", "person", "webhook_outbox")
FULL_PROFILE = {"name": "Zoë de Vries", "phone": "+31 6 1234 5678",
                "address": "Keizersgracht 1\n1015 CC Amsterdam", "language": "en",
                "interests": "cycling, bread"}


@pytest.fixture
def vault(app: Flask, client: FlaskClient, runtime: Runtime, clock: FixedClock) -> Vault:
    return Vault(app, client, runtime, clock)


def profile_of(runtime: Runtime, person_id: str) -> PersonProfile:
    with runtime.database.read() as session:
        return runtime.accounts.get_profile(session, person_id)


def sealed_row(runtime: Runtime, person_id: str) -> dict[str, object]:
    return rows(runtime, "SELECT * FROM profile WHERE person_id = :p", p=person_id)[0]


def submit(browser: Browser, runtime: Runtime, **changes: str) -> TestResponse:
    """The profile form as the page shows it, with ``changes``."""
    profile = profile_of(runtime, browser.person_id)
    data = {"name": profile.name or "", "email": profile.email, "phone": profile.phone or "",
            "address": profile.address or "", "language": profile.language or "",
            "interests": profile.interests or "", "time_zone": profile.time_zone, **changes}
    return browser.post_form("/profile", data=data, headers=HTML)


def seen_by(html: str, field: str) -> str:
    match = re.search(rf'<p class="seen-by" id="{field}-seen">([^<]*)</p>', html)
    assert match, f"no seen-by line for {field}"
    return match.group(1)


def notice(html: str) -> str:
    match = re.search(r'<p class="notice" role="status">([^<]*)</p>', html)
    assert match, "no notice"
    return match.group(1)


def assert_marked(html: str, field: str, message: str) -> None:
    tag = re.search(rf'<(?:input|select|textarea)\b[^>]*\bid="{field}"[^>]*>', html)
    assert tag, field
    assert 'aria-invalid="true"' in tag.group(0)
    described = re.search(r'aria-describedby="([^"]+)"', tag.group(0))
    assert described and f"{field}-error" in described.group(1).split()
    error = re.search(rf'<p id="{field}-error" class="field-error">([^<]*)</p>', html)
    assert error and message in error.group(1), error and error.group(1)


# -- the page -------------------------------------------------------------------------------


def test_the_page_shows_the_values_and_which_shops_see_each_field(vault: Vault) -> None:
    browser = logged_in(vault, profile=FULL_PROFILE)
    books = register_merchant(vault.runtime, "Book Shop")
    bikes = register_merchant(vault.runtime, "Fietsen & Co")
    gone = register_merchant(vault.runtime, "Old Shop")
    subscribe(vault.runtime, books, scope="contact:email:offers profile:email profile:name",
              person_id=browser.person_id)
    subscribe(vault.runtime, bikes, scope="contact:email:offers profile:name profile:interests",
              person_id=browser.person_id)
    revoke(vault.runtime, subscribe(vault.runtime, gone, scope="profile:phone",
                                    person_id=browser.person_id))

    page = browser.get("/profile")

    assert page.status_code == 200
    assert "<h1>My profile</h1>" in page.text
    assert 'value="Zoë de Vries"' in page.text
    assert ">Keizersgracht 1\n1015 CC Amsterdam</textarea>" in page.text
    assert seen_by(page.text, "name") == "Shops that see this: Book Shop, Fietsen &amp; Co"
    assert seen_by(page.text, "email") == "Shops that see this: Book Shop"
    assert seen_by(page.text, "interests") == "Shops that see this: Fietsen &amp; Co"
    for field in ("phone", "address", "language"):
        assert seen_by(page.text, field) == "No shop sees this.", field
    assert "Old Shop" not in page.text, "a revoked shop sees nothing"
    assert "what you choose to tell shops about your motives and tastes" in page.text.lower()
    name_input = re.search(r'<input id="name"[^>]*>', page.text)
    assert name_input and 'aria-describedby="name-seen"' in name_input.group(0)


def test_the_page_needs_a_login(vault: Vault) -> None:
    response = vault.client.get("/profile")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


# -- editing --------------------------------------------------------------------------------


def test_an_edit_round_trips_through_the_sealed_profile(vault: Vault) -> None:
    browser = logged_in(vault, profile=FULL_PROFILE)
    shop = register_merchant(vault.runtime)
    subscribe(vault.runtime, shop, scope="profile:phone", person_id=browser.person_id)
    outbox = row_counts(vault.runtime, ("webhook_outbox",))["webhook_outbox"]

    response = submit(browser, vault.runtime, name="Zoë van Dijk", phone="",
                      address="Dorpsstraat 2\r\n1234 AB Ergens", interests="jazz")

    assert response.status_code == 302
    assert response.headers["Location"] == "/profile"
    profile = profile_of(vault.runtime, browser.person_id)
    assert (profile.name, profile.phone, profile.address, profile.interests) == (
        "Zoë van Dijk", None, "Dorpsstraat 2\r\n1234 AB Ergens", "jazz")
    page = browser.get("/profile")
    assert notice(page.text) == ("Saved. You changed your name, your phone number, "
                                 "your postal address, and your interests (what you told "
                                 "about your tastes and motives).")
    assert 'value="Zoë van Dijk"' in page.text
    row = sealed_row(vault.runtime, browser.person_id)
    assert row["phone"] is None
    assert all(b"Dijk" not in v for v in row.values() if isinstance(v, bytes))
    assert row_counts(vault.runtime, ("webhook_outbox",))["webhook_outbox"] == outbox + 1, \
        "the shop that sees the phone number is told it changed"


def test_saving_without_a_change_writes_nothing(vault: Vault) -> None:
    browser = logged_in(vault, profile=FULL_PROFILE)
    before = row_counts(vault.runtime, WRITES)
    assert submit(browser, vault.runtime).status_code == 302
    assert notice(browser.get("/profile").text) == "Nothing changed."
    assert row_counts(vault.runtime, WRITES) == before


def test_a_new_login_address_works_at_the_next_login(vault: Vault) -> None:
    browser = logged_in(vault)
    new = "renamed@example.org"
    assert submit(browser, vault.runtime, email=new).status_code == 302
    assert log_in(vault.app.test_client(), new).status_code == 302
    assert log_in(vault.app.test_client(), browser.email).status_code == 401


def test_a_new_language_and_time_zone_apply_from_the_next_page(vault: Vault) -> None:
    browser = logged_in(vault, profile={"language": "en"})

    response = submit(browser, vault.runtime, language="nl", time_zone="America/Curacao")

    assert response.status_code == 302
    with browser.client.session_transaction() as session:
        assert (session["lang"], session["tz"]) == ("nl", "America/Curacao")
    page = browser.get("/profile")
    assert '<html lang="nl">' in page.text
    assert "<h1>Mijn profiel</h1>" in page.text
    assert notice(page.text) == "Opgeslagen. Je hebt je taal en je tijdzone gewijzigd."
    assert "America/Curacao" in browser.get("/rules").text
    profile = profile_of(vault.runtime, browser.person_id)
    assert (profile.language, profile.time_zone) == ("nl", "America/Curacao")


BAD_PROFILES = [
    ("email", {"email": "not-an-email"}, "Enter a valid e-mail address"),
    ("email", {"email": ""}, "Enter your e-mail address."),
    ("name", {"name": "n" * 201}, "at most 200 characters"),
    ("name", {"name": "Zo\u202ee"}, "cannot be used here"),
    ("phone", {"phone": "call me maybe"}, "at least 6 digits"),
    ("address", {"address": "a" * 501}, "at most 500 characters"),
    ("interests", {"interests": "a\x00b"}, "cannot be used here"),
    ("language", {"language": "de"}, "Choose English or Nederlands."),
    ("time_zone", {"time_zone": "Mars/Olympus_Mons"}, "Choose a time zone from the list."),
]


@pytest.mark.parametrize(("field", "changes", "message"), BAD_PROFILES,
                         ids=[f"{f}-{i}" for i, (f, _c, _m) in enumerate(BAD_PROFILES)])
def test_bad_input_is_shown_at_its_field_and_writes_nothing(
        vault: Vault, field: str, changes: dict[str, str], message: str) -> None:
    browser = logged_in(vault, profile=FULL_PROFILE)
    shop = register_merchant(vault.runtime)
    subscribe(vault.runtime, shop, scope="profile:name profile:phone",
              person_id=browser.person_id)
    before = row_counts(vault.runtime, WRITES)
    sealed = sealed_row(vault.runtime, browser.person_id)

    response = submit(browser, vault.runtime, **{"interests": "a change", **changes})

    assert response.status_code == 400
    assert_marked(response.text, field, message)
    assert f'href="#{field}"' in response.text
    assert "Nothing was saved." in response.text
    assert row_counts(vault.runtime, WRITES) == before
    assert sealed_row(vault.runtime, browser.person_id) == sealed
    assert seen_by(response.text, "name") == "Shops that see this: Book Shop"


def test_every_bad_field_is_marked_at_once(vault: Vault) -> None:
    browser = logged_in(vault)
    response = submit(browser, vault.runtime, email="nope", phone="??", time_zone="Nowhere")
    assert response.status_code == 400
    assert_marked(response.text, "email", "valid e-mail address")
    assert_marked(response.text, "phone", "at least 6 digits")
    assert_marked(response.text, "time_zone", "Choose a time zone")
    assert 'value="??"' in response.text


def test_an_address_of_another_account_is_refused_at_the_field(vault: Vault) -> None:
    other = "already@example.org"
    sign_up(vault.runtime, other)
    browser = logged_in(vault)
    before = row_counts(vault.runtime, WRITES)

    response = submit(browser, vault.runtime, email=other, name="Changed Too")

    assert response.status_code == 409
    assert_marked(response.text, "email", "Another account already uses this e-mail address.")
    assert row_counts(vault.runtime, WRITES) == before
    assert profile_of(vault.runtime, browser.person_id).name is None


def test_a_post_without_or_with_a_wrong_csrf_token_changes_nothing(vault: Vault) -> None:
    browser = logged_in(vault, profile=FULL_PROFILE)
    before = row_counts(vault.runtime, WRITES)
    data = {"name": "Forged", "email": browser.email, "time_zone": "UTC"}
    for extra in ({}, {"csrf_token": "forged"}):
        for path in ("/profile", "/profile/password"):
            response = browser.client.post(path, data={**data, **extra,
                                                       "current_password": PASSWORD,
                                                       "new_password": "x" * 20,
                                                       "new_password_confirm": "x" * 20},
                                           headers=HTML)
            assert response.status_code == 400, path
            assert "This form has expired" in response.text
    assert row_counts(vault.runtime, WRITES) == before
    assert profile_of(vault.runtime, browser.person_id).name == FULL_PROFILE["name"]
    assert log_in(vault.app.test_client(), browser.email).status_code == 302


def test_the_page_reads_in_dutch(vault: Vault) -> None:
    browser = logged_in(vault, profile={"language": "nl"})
    page = browser.get("/profile")
    assert '<html lang="nl">' in page.text
    for dutch in ("<h1>Mijn profiel</h1>", "Je gegevens", "Geen enkele winkel ziet dit.",
                  "Telefoonnummer", "Je wachtwoord wijzigen", "Mijn profiel opslaan"):
        assert dutch in page.text, dutch
    bad = submit(browser, vault.runtime, phone="bel me")
    assert "Vul een telefoonnummer in met minstens 6 cijfers" in bad.text


# -- the password ---------------------------------------------------------------------------


NEW_PASSWORD = "a different long passphrase"


def change_password(browser: Browser, current: str, new: str,
                    confirm: str | None = None) -> TestResponse:
    return browser.post_form("/profile", "/profile/password", data={
        "current_password": current, "new_password": new,
        "new_password_confirm": new if confirm is None else confirm}, headers=HTML)


def test_changing_the_password_starts_a_fresh_session(vault: Vault) -> None:
    browser = logged_in(vault)
    before = browser.client.get_cookie("session")
    assert before is not None
    with browser.client.session_transaction() as session:
        session["planted"] = "x"

    response = change_password(browser, PASSWORD, NEW_PASSWORD)

    assert response.status_code == 302
    assert response.headers["Location"] == "/profile"
    page = browser.get("/profile")
    assert page.status_code == 200
    assert notice(page.text) == "Your password is changed."
    with browser.client.session_transaction() as session:
        assert "planted" not in session
        assert session["person_id"] == browser.person_id
    assert log_in(vault.app.test_client(), browser.email, NEW_PASSWORD).status_code == 302
    assert log_in(vault.app.test_client(), browser.email, PASSWORD).status_code == 401


@pytest.mark.parametrize(("field", "current", "new", "confirm", "message"), [
    ("current_password", "not my password", NEW_PASSWORD, None,
     "This is not your current password."),
    ("current_password", "", NEW_PASSWORD, None, "Enter your current password."),
    ("new_password", PASSWORD, "short", None, "at least 12 characters"),
    ("new_password_confirm", PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "!", "not the same"),
])
def test_a_refused_password_change_is_shown_at_its_field_and_changes_nothing(
        vault: Vault, field: str, current: str, new: str, confirm: str | None,
        message: str) -> None:
    browser = logged_in(vault)
    before = row_counts(vault.runtime, WRITES)

    response = change_password(browser, current, new, confirm)

    assert response.status_code == 400
    assert_marked(response.text, field, message)
    assert PASSWORD not in response.text and NEW_PASSWORD not in response.text
    assert row_counts(vault.runtime, WRITES) == before
    assert log_in(vault.app.test_client(), browser.email, PASSWORD).status_code == 302
    assert csrf_token(response.text)
