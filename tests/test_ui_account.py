"""Sign-up, login and the session through the web pages (Flask test client, both backends).

A sign-up is checked through the account service (the database holds only
ciphertext); bad input must come back at its field and write nothing; login
must not tell an unknown address from a wrong password; the session must
end on time and start afresh at login.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from api_helpers import PASSWORD, Vault, row_counts, rows, sign_up, unique_email
from flask import Flask
from flask.testing import FlaskClient
from ui_helpers import csrf_token, log_in, logged_in
from werkzeug.test import TestResponse

from vault.clock import FixedClock
from vault.extensions import Runtime
from vault.services.accounts import PersonProfile

ACCOUNT_TABLES = ("person", "person_key", "profile", "global_rules", "audit_event")
HTML = {"Accept": "text/html"}


@pytest.fixture
def vault(app: Flask, client: FlaskClient, runtime: Runtime, clock: FixedClock) -> Vault:
    return Vault(app, client, runtime, clock)


def control(html: str, control_id: str) -> str:
    """The opening tag of the form control with this id."""
    match = re.search(rf'<(?:input|select|textarea)\b[^>]*\bid="{re.escape(control_id)}"[^>]*>',
                      html)
    assert match, f"no control {control_id!r} on the page"
    return match.group(0)


def assert_marked(html: str, field: str, message: str) -> None:
    """The field is marked invalid and points at its message, which says ``message``."""
    tag = control(html, field)
    assert 'aria-invalid="true"' in tag
    described = re.search(r'aria-describedby="([^"]+)"', tag)
    assert described and f"{field}-error" in described.group(1).split()
    error = re.search(rf'<p id="{field}-error" class="field-error">([^<]*)</p>', html)
    assert error, f"no message at {field}"
    assert message in error.group(1)


def profile_of(runtime: Runtime, person_id: str) -> PersonProfile:
    with runtime.database.read() as session:
        return runtime.accounts.get_profile(session, person_id)


def person_in_session(client: FlaskClient) -> str | None:
    with client.session_transaction() as session:
        value = session.get("person_id")
    return value if isinstance(value, str) else None


def sign_up_form(client: FlaskClient, **fields: str) -> TestResponse:
    page = client.get("/signup")
    data = {"csrf_token": csrf_token(page.text), "email": unique_email("new"),
            "password": PASSWORD, "password_confirm": PASSWORD, "name": "",
            "language": "en", "time_zone": "Europe/Amsterdam", **fields}
    return client.post("/signup", data=data)


# -- sign up --------------------------------------------------------------------------------


def test_the_sign_up_page_preselects_the_page_language_and_amsterdam(vault: Vault) -> None:
    page = vault.client.get("/signup", headers={"Accept-Language": "nl"})
    assert page.status_code == 200
    assert '<html lang="nl">' in page.text
    assert "Account aanmaken" in page.text
    assert re.search(r'<option value="nl" lang="nl" selected>', page.text)
    assert re.search(r'<option value="Europe/Amsterdam" selected>', page.text)
    for field in ("email", "password", "password_confirm", "name", "language", "time_zone"):
        assert re.search(rf'<label for="{field}">', page.text), field
        control(page.text, field)
    english = vault.app.test_client().get("/signup", headers={"Accept-Language": "en"})
    assert re.search(r'<option value="en" lang="en" selected>', english.text)
    assert "Create an account" in english.text


def test_the_login_page_links_to_sign_up(vault: Vault) -> None:
    page = vault.client.get("/login")
    assert 'href="/signup"' in page.text
    assert "Create an account" in page.text


def test_signing_up_logs_in_and_the_profile_holds_the_values_sealed(vault: Vault) -> None:
    email = unique_email("zoe")
    response = sign_up_form(vault.client, email=email, name="Zoë de Vries", language="nl",
                            time_zone="America/Paramaribo")

    assert response.status_code == 302
    assert response.headers["Location"] == "/subscriptions"
    person_id = person_in_session(vault.client)
    assert person_id
    with vault.client.session_transaction() as session:
        assert (session["lang"], session["tz"]) == ("nl", "America/Paramaribo")
    profile = profile_of(vault.runtime, person_id)
    assert (profile.email, profile.name, profile.language, profile.time_zone) == (
        email, "Zoë de Vries", "nl", "America/Paramaribo")
    dashboard = vault.client.get("/subscriptions")
    assert dashboard.status_code == 200
    assert '<html lang="nl">' in dashboard.text
    stored = rows(vault.runtime, "SELECT * FROM profile WHERE person_id = :p", p=person_id)
    assert len(stored) == 1
    for value in stored[0].values():
        if isinstance(value, bytes):
            assert b"de Vries" not in value and email.encode() not in value
        else:
            assert "Zo" not in str(value) and email not in str(value)
    again = vault.app.test_client()
    assert log_in(again, email).status_code == 302


def test_an_address_with_an_account_is_told_to_log_in_and_nothing_is_written(
        vault: Vault) -> None:
    email = unique_email("taken")
    sign_up(vault.runtime, email)
    before = row_counts(vault.runtime, ACCOUNT_TABLES)

    response = sign_up_form(vault.client, email=email.upper(), name="Someone Else")

    assert response.status_code == 409
    assert_marked(response.text, "email", "An account with this e-mail address already exists.")
    assert 'href="/login"' in response.text and "Log in instead" in response.text
    assert row_counts(vault.runtime, ACCOUNT_TABLES) == before
    assert person_in_session(vault.client) is None


BAD_SIGN_UPS = [
    ("email", {"email": "not-an-email"}, "Enter a valid e-mail address"),
    ("email", {"email": "someone@"}, "Enter a valid e-mail address"),
    ("email", {"email": "   "}, "Enter your e-mail address."),
    ("password", {"password": "short", "password_confirm": "short"}, "at least 12 characters"),
    ("password", {"password": "x" * 1025, "password_confirm": "x" * 1025},
     "at most 1024 characters"),
    ("password_confirm", {"password_confirm": PASSWORD + "!"},
     "The two passwords are not the same."),
    ("name", {"name": "n" * 201}, "at most 200 characters"),
    ("name", {"name": "Zo\u202ee"}, "cannot be used here"),
    ("language", {"language": "de"}, "Choose English or Nederlands."),
    ("time_zone", {"time_zone": "Mars/Olympus_Mons"}, "Choose a time zone from the list."),
    ("time_zone", {"time_zone": ""}, "Choose a time zone from the list."),
]


@pytest.mark.parametrize(("field", "override", "message"), BAD_SIGN_UPS,
                         ids=[f"{f}-{i}" for i, (f, _o, _m) in enumerate(BAD_SIGN_UPS)])
def test_bad_sign_up_input_is_shown_at_its_field_and_writes_nothing(
        vault: Vault, field: str, override: dict[str, str], message: str) -> None:
    before = row_counts(vault.runtime, ACCOUNT_TABLES)

    response = sign_up_form(vault.client, **override)

    assert response.status_code == 400
    assert_marked(response.text, field, message)
    assert f'href="#{field}"' in response.text, "the summary links to the field"
    assert row_counts(vault.runtime, ACCOUNT_TABLES) == before
    assert person_in_session(vault.client) is None
    assert 'type="password"' in response.text and PASSWORD not in response.text


def test_several_bad_fields_are_all_marked_at_once(vault: Vault) -> None:
    response = sign_up_form(vault.client, email="nope", password="short",
                            password_confirm="short", time_zone="Nowhere")
    assert response.status_code == 400
    assert_marked(response.text, "email", "valid e-mail address")
    assert_marked(response.text, "password", "at least 12 characters")
    assert_marked(response.text, "time_zone", "Choose a time zone")
    assert 'value="nope"' in response.text, "what was typed is kept (except passwords)"


def test_sign_up_without_or_with_a_wrong_csrf_token_writes_nothing(vault: Vault) -> None:
    before = row_counts(vault.runtime, ACCOUNT_TABLES)
    data = {"email": unique_email(), "password": PASSWORD, "password_confirm": PASSWORD,
            "language": "en", "time_zone": "Europe/Amsterdam"}
    vault.client.get("/signup")
    for token in (None, "not-the-token"):
        body = data if token is None else {**data, "csrf_token": token}
        response = vault.client.post("/signup", data=body, headers=HTML)
        assert response.status_code == 400
        assert "This form has expired" in response.text
    assert row_counts(vault.runtime, ACCOUNT_TABLES) == before
    assert person_in_session(vault.client) is None


def test_a_logged_in_person_is_sent_from_sign_up_to_the_dashboard(vault: Vault) -> None:
    browser = logged_in(vault)
    response = browser.get("/signup")
    assert response.status_code == 302
    assert response.headers["Location"] == "/subscriptions"


# -- log in ---------------------------------------------------------------------------------


def _without_form_noise(html: str, email: str) -> str:
    html = re.sub(r'name="csrf_token" value="[^"]+"', "", html)
    return html.replace(email, "EMAIL")


def test_login_fails_alike_for_an_unknown_address_and_a_wrong_password(vault: Vault) -> None:
    email = unique_email("known")
    sign_up(vault.runtime, email)
    unknown = unique_email("unknown")

    wrong_password = log_in(vault.app.test_client(), email, PASSWORD + "!")
    no_account = log_in(vault.app.test_client(), unknown, PASSWORD)

    assert wrong_password.status_code == no_account.status_code == 401
    assert "That e-mail address and password do not match." in wrong_password.text
    assert (_without_form_noise(wrong_password.text, email)
            == _without_form_noise(no_account.text, unknown))


def test_failed_logins_are_limited_per_account_but_not_other_accounts(vault: Vault) -> None:
    victim, other = unique_email("victim"), unique_email("other")
    sign_up(vault.runtime, victim)
    sign_up(vault.runtime, other)
    client = vault.app.test_client()
    token = csrf_token(client.get("/login").text)

    def attempt(email: str, password: str) -> TestResponse:
        return client.post("/login", headers=HTML, data={
            "csrf_token": token, "email": email, "password": password})

    for _ in range(5):
        assert attempt(victim, "wrong password!").status_code == 401
    blocked = attempt(victim, "wrong password!")
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert "Too many attempts" in blocked.text
    assert attempt(victim, PASSWORD).status_code == 429, "even the right password waits"

    allowed = attempt(other, PASSWORD)
    assert allowed.status_code == 302
    assert person_in_session(client)


# -- the session ----------------------------------------------------------------------------


def test_the_session_ends_after_thirty_idle_minutes(vault: Vault) -> None:
    browser = logged_in(vault)
    for _ in range(3):
        vault.clock.advance(timedelta(minutes=29))
        assert browser.get("/profile").status_code == 200
    vault.clock.advance(timedelta(minutes=31))
    response = browser.get("/profile")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert person_in_session(browser.client) is None


def test_the_session_ends_twelve_hours_after_login_even_when_busy(vault: Vault) -> None:
    browser = logged_in(vault)
    for step in [timedelta(minutes=25)] * 28 + [timedelta(minutes=15)]:
        vault.clock.advance(step)
        assert browser.get("/rules").status_code == 200
    vault.clock.advance(timedelta(minutes=10))  # 12 h 05 min after the login
    response = browser.get("/rules")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_the_session_cookie_is_http_only_lax_and_new_at_login(vault: Vault) -> None:
    email = unique_email()
    sign_up(vault.runtime, email)
    client = vault.app.test_client()
    page = client.get("/login")
    before = client.get_cookie("session")
    assert before is not None
    with client.session_transaction() as session:
        session["planted"] = "by someone else"
    planted = client.get_cookie("session")
    assert planted is not None

    response = client.post("/login", data={"csrf_token": csrf_token(page.text),
                                           "email": email, "password": PASSWORD})

    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    after = client.get_cookie("session")
    assert after is not None and after.value not in (before.value, planted.value)
    with client.session_transaction() as session:
        assert "planted" not in session
        assert "csrf_token" not in session, "the pre-login CSRF secret is gone too"
        assert session["person_id"]


def test_signing_up_starts_a_fresh_session_too(vault: Vault) -> None:
    client = vault.client
    client.get("/signup")
    with client.session_transaction() as session:
        session["planted"] = "by someone else"
    response = sign_up_form(client)
    assert response.status_code == 302
    with client.session_transaction() as session:
        assert "planted" not in session
