"""Every word a person reads exists in Dutch and English.

The catalogue is checked against the messages the code and templates use,
and the templates are checked for text that bypasses translation.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from api_helpers import Vault, sign_up, unique_email
from flask import Flask
from ui_helpers import csrf_token, log_in, logged_in

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "vault" / "templates"
#: words that are the same in every language
UNTRANSLATED_ON_PURPOSE = {"Preference Vault", "English", "Nederlands"}
_TAG = re.compile(r"<[^>]*>", re.S)
_READ_ATTRIBUTES = re.compile(r'\b(?:aria-label|title|placeholder|alt)="([^"\u00a7]*)"')


@pytest.fixture
def vault(app, client, runtime, clock) -> Vault:  # type: ignore[no-untyped-def]
    return Vault(app, client, runtime, clock)


def test_the_dutch_catalogue_covers_every_message_and_is_compiled() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "translations.py"), "check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _literal_text(app: Flask, path: Path) -> list[str]:
    """Readable text in a template's HTML that is not produced by a Jinja expression."""
    pieces: list[str] = []
    for _line, kind, value in app.jinja_env.lex(path.read_text(encoding="utf-8")):
        pieces.append(value if kind == "data" else "\u00a7")
    html = re.sub("\u00a7+", "\u00a7", "".join(pieces))
    found = [value for value in _READ_ATTRIBUTES.findall(html) if re.search("[A-Za-z]{2,}", value)]
    text = _TAG.sub(" ", html)
    text = re.sub(r"&[a-z]+;|&#\d+;", " ", text)
    for phrase in UNTRANSLATED_ON_PURPOSE:
        text = text.replace(phrase, " ")
    for chunk in text.split("\u00a7"):
        if re.search(r"[A-Za-z]{2,}", chunk):
            found.append(" ".join(chunk.split()))
    return found


def test_no_template_shows_text_that_bypasses_translation(app: Flask) -> None:
    templates = sorted(TEMPLATES.rglob("*.html"))
    assert templates
    offenders = {path.name: text for path in templates if (text := _literal_text(app, path))}
    assert offenders == {}


def test_the_scan_would_catch_a_bare_word(app: Flask, tmp_path: Path) -> None:
    page = tmp_path / "bare.html"
    page.write_text('<p>Hello there</p><nav aria-label="Menu"></nav>{{ _("Fine") }}')
    assert _literal_text(app, page) == ["Menu", "Hello there"]


def test_the_browser_language_picks_dutch_before_login(vault: Vault) -> None:
    page = vault.client.get("/login", headers={"Accept-Language": "nl-NL,nl;q=0.9,en;q=0.5"})
    assert '<html lang="nl">' in page.text
    assert "Inloggen" in page.text and "Wachtwoord" in page.text
    english = vault.app.test_client().get("/login", headers={"Accept-Language": "en-GB"})
    assert '<html lang="en">' in english.text and "Password" in english.text


def test_the_switcher_changes_the_language_and_keeps_the_page(vault: Vault) -> None:
    page = vault.client.get("/login", headers={"Accept-Language": "en"})
    switched = vault.client.post("/language", data={"csrf_token": csrf_token(page.text),
                                                     "lang": "nl", "next": "/login"})
    assert switched.status_code == 302 and switched.headers["Location"].endswith("/login")
    again = vault.client.get("/login", headers={"Accept-Language": "en"})
    assert "Inloggen" in again.text


def test_a_switch_without_csrf_token_changes_nothing(vault: Vault) -> None:
    refused = vault.client.post("/language", data={"lang": "nl", "next": "/login"})
    assert refused.status_code == 400
    page = vault.client.get("/login", headers={"Accept-Language": "en"})
    assert '<html lang="en">' in page.text


def test_the_profile_language_wins_after_login(vault: Vault) -> None:
    email = unique_email()
    sign_up(vault.runtime, email, profile={"language": "nl"})
    client = vault.app.test_client()
    assert log_in(client, email).status_code == 302
    page = client.get("/subscriptions", headers={"Accept-Language": "en"})
    assert '<html lang="nl">' in page.text and "Wie mag mij benaderen" in page.text


def test_switching_language_when_logged_in_is_kept_in_the_profile(vault: Vault) -> None:
    browser = logged_in(vault, profile={"language": "en"})
    switched = browser.post_form("/subscriptions", "/language",
                                 {"lang": "nl", "next": "/subscriptions"})
    assert switched.status_code == 302
    with vault.runtime.database.read() as session:
        assert vault.runtime.accounts.get_profile(session, browser.person_id).language == "nl"
    fresh = vault.app.test_client()
    log_in(fresh, browser.email)
    assert "Uitloggen" in fresh.get("/subscriptions").text


def test_an_unknown_page_is_a_page_for_browsers_and_a_problem_for_programs(
        vault: Vault) -> None:
    page = vault.client.get("/nowhere", headers={"Accept": "text/html",
                                                  "Accept-Language": "nl"})
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "Pagina niet gevonden" in page.text
    problem = vault.client.get("/api/v1/nowhere", headers={"Accept": "text/html"})
    assert problem.status_code == 404 and problem.mimetype == "application/problem+json"
