"""The "My rules" page: global rules and channel order, through the form and into decisions.

A rule saved on the page must be what a merchant's next decision follows
(``blocked_by_person``, ``quiet_hours``, the order of ``alternatives``);
bad input and stale tabs must write nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from html.parser import HTMLParser
from typing import Any

import pytest
from api_helpers import API, Vault, merchant_with_token, row_counts, subscribe
from flask import Flask
from flask.testing import FlaskClient
from ui_helpers import Browser, logged_in
from werkzeug.test import TestResponse

from vault.clock import FixedClock
from vault.extensions import Runtime
from vault.services.rules import RuleSet, get_rules

OFFERS_EVERYWHERE = ("contact:email:offers contact:sms:offers contact:phone:offers "
                     "contact:email:surveys contact:sms:surveys profile:email")
HTML = {"Accept": "text/html"}
Form = dict[str, list[str]]


@pytest.fixture
def vault(app: Flask, client: FlaskClient, runtime: Runtime, clock: FixedClock) -> Vault:
    return Vault(app, client, runtime, clock)


class _FormReader(HTMLParser):
    """What a browser would send for the page's form with ``action`` as it stands."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action = action
        self.inside = False
        self.fields: Form = {}
        self._select: str | None = None
        self._options: list[tuple[str, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = attr.get("action") == self.action
        if not self.inside:
            return
        if tag == "input" and "name" in attr:
            if attr.get("type") == "checkbox" and "checked" not in attr:
                return
            self.fields.setdefault(attr["name"], []).append(attr.get("value", ""))
        elif tag == "select":
            self._select, self._options = attr["name"], []
        elif tag == "option" and self._select is not None:
            self._options.append((attr.get("value", ""), "selected" in attr))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self._select is not None:
            chosen = [v for v, selected in self._options if selected] or [self._options[0][0]]
            self.fields[self._select] = chosen[:1]
            self._select = None
        elif tag == "form":
            self.inside = False


def form_of(html: str, action: str = "/rules") -> Form:
    reader = _FormReader(action)
    reader.feed(html)
    assert reader.fields, f"no form posting to {action}"
    return reader.fields


def post(browser: Browser, form: Mapping[str, Iterable[str] | str], **changes: Any) -> TestResponse:
    data: Form = {k: [v] if isinstance(v, str) else list(v) for k, v in form.items()}
    for name, value in changes.items():
        data[name] = [value] if isinstance(value, str) else list(value)
    return browser.client.post("/rules", data=data, headers=HTML)


def save(browser: Browser, **changes: Any) -> TestResponse:
    """Open the page, change some fields, save; the page after the redirect."""
    response = post(browser, form_of(browser.get("/rules").text), **changes)
    assert response.status_code == 302, response.text
    assert response.headers["Location"] == "/rules"
    return browser.get("/rules")


def ask(vault: Vault, headers: dict[str, str], subject: str, channel: str,
        purpose: str = "offers") -> dict[str, Any]:
    response = vault.client.post(f"{API}/decisions", headers=headers,
                                 json={"subject": subject, "channel": channel,
                                       "purpose": purpose})
    assert response.status_code == 200, response.text
    return response.get_json()


def stored_rules(runtime: Runtime, person_id: str) -> RuleSet:
    with runtime.database.read() as session:
        return get_rules(session, person_id, data_keys=runtime.data_keys)


def stored_order(runtime: Runtime, person_id: str) -> tuple[str, ...]:
    with runtime.database.read() as session:
        return runtime.accounts.get_profile(session, person_id).channel_order


def connected(vault: Vault, **profile: object) -> tuple[Browser, dict[str, str], str]:
    """A logged-in person subscribed to a shop: the browser, the shop's header, the subject."""
    browser = logged_in(vault, profile=profile or None)
    merchant, headers = merchant_with_token(vault)
    sub = subscribe(vault.runtime, merchant, scope=OFFERS_EVERYWHERE,
                    person_id=browser.person_id)
    return browser, headers, sub.subject


def notices(html: str) -> list[str]:
    block = re.search(r'<div class="notice" role="status">(.*?)</div>', html, re.S)
    assert block, "no saved notice"
    return [" ".join(re.sub(r"<[^>]+>", " ", item).split())
            for item in re.findall(r"<li>(.*?)</li>", block.group(1), re.S)]


# -- the page -------------------------------------------------------------------------------


def test_the_page_shows_every_part_labelled_and_nothing_set(vault: Vault) -> None:
    browser = logged_in(vault)
    page = browser.get("/rules")
    assert page.status_code == 200
    assert "<h1>My rules</h1>" in page.text
    assert 'href="/static/account.css"' in page.text
    assert "You have no rules like this yet." in page.text
    for control_id in ("new_channel", "new_purpose", "quiet_start", "quiet_end",
                       "off-email", "off-push", "position_email", "position_push"):
        assert f'<label for="{control_id}">' in page.text, control_id
    form = form_of(page.text)
    assert form["version"] == ["1"]
    assert form["order_before"] == ["email,sms,phone,post,push"]
    assert "off" not in form and "blocked" not in form, "nothing is pre-ticked"
    assert form["quiet_start"] == form["quiet_end"] == [""]


def test_the_page_needs_a_login(vault: Vault) -> None:
    response = vault.client.get("/rules")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


# -- rules reach decisions ------------------------------------------------------------------


def test_a_blocked_pair_is_saved_listed_and_followed_by_decisions(vault: Vault) -> None:
    browser, headers, subject = connected(vault)
    assert ask(vault, headers, subject, "phone")["reason"] == "allowed"

    page = save(browser, new_channel="phone", new_purpose="offers")

    assert notices(page.text) == [
        "Added: Never contact me by phone call with offers and newsletters"]
    assert 'value="phone:offers" checked' in page.text
    assert stored_rules(vault.runtime, browser.person_id).blocked == (("phone", "offers"),)
    assert ask(vault, headers, subject, "phone")["reason"] == "blocked_by_person"
    assert ask(vault, headers, subject, "email")["reason"] == "allowed"

    page = save(browser, blocked=[])
    assert notices(page.text) == [
        "Removed: Never contact me by phone call with offers and newsletters"]
    assert ask(vault, headers, subject, "phone")["reason"] == "allowed"


def test_any_purpose_and_any_channel_block_widely(vault: Vault) -> None:
    browser, headers, subject = connected(vault)
    save(browser, new_channel="sms", new_purpose="*")
    page = save(browser, new_channel="*", new_purpose="surveys")

    assert "Never contact me by text message (SMS), for any purpose" in page.text
    assert "Never contact me with surveys, by any channel" in page.text
    assert stored_rules(vault.runtime, browser.person_id).blocked == (
        ("sms", "*"), ("*", "surveys"))
    assert ask(vault, headers, subject, "sms")["reason"] == "blocked_by_person"
    assert ask(vault, headers, subject, "email", "surveys")["reason"] == "blocked_by_person"
    assert ask(vault, headers, subject, "email")["reason"] == "allowed"


def test_a_channel_switched_off_is_off_for_every_shop(vault: Vault) -> None:
    browser, headers, subject = connected(vault)
    page = save(browser, off=["email", "post"])
    assert notices(page.text) == ["Switched off for every shop: e-mail",
                                  "Switched off for every shop: letter by post"]
    assert ask(vault, headers, subject, "email")["reason"] == "blocked_by_person"
    assert ask(vault, headers, subject, "sms")["reason"] == "allowed"

    page = save(browser, off=["post"])
    assert notices(page.text) == ["Switched on again: e-mail"]
    assert ask(vault, headers, subject, "email")["reason"] == "allowed"


def test_quiet_hours_across_midnight_hold_every_shop_off(vault: Vault) -> None:
    # The clock stands at 10:00 UTC, 11:00 in Amsterdam.
    browser, headers, subject = connected(vault)
    page = save(browser, quiet_start="21:00", quiet_end="12:00")

    assert notices(page.text) == ["Quiet hours are now 21:00 to 12:00."]
    answer = ask(vault, headers, subject, "email")
    assert answer["reason"] == "quiet_hours"
    assert answer["next_allowed_at"].startswith("2026-11-23T11:00:00")

    page = save(browser, quiet_start="22.00", quiet_end="7:00")
    assert notices(page.text) == ["Quiet hours are now 22:00 to 07:00."]
    assert ask(vault, headers, subject, "email")["reason"] == "allowed"

    page = save(browser, quiet_start="", quiet_end="")
    assert notices(page.text) == ["Quiet hours are off."]
    assert stored_rules(vault.runtime, browser.person_id).quiet_hours is None


def test_the_channel_order_orders_the_alternatives(vault: Vault) -> None:
    browser, headers, subject = connected(vault)
    assert ask(vault, headers, subject, "email")["alternatives"] == ["sms", "phone"]
    rules_before = stored_rules(vault.runtime, browser.person_id)

    page = save(browser, position_phone="1")

    assert notices(page.text) == [
        "Preferred order is now: phone call, e-mail, text message (SMS), letter by post, "
        "app notification."]
    assert stored_order(vault.runtime, browser.person_id) == (
        "phone", "email", "sms", "post", "push")
    assert ask(vault, headers, subject, "email")["alternatives"] == ["phone", "sms"]
    assert stored_rules(vault.runtime, browser.person_id).version == rules_before.version, \
        "an order change alone is not a rules change"
    listed = re.findall(r'<select id="position_(\w+)"', page.text)
    assert listed == ["phone", "email", "sms", "post", "push"]

    save(browser, position_sms="1", position_phone="3")
    assert stored_order(vault.runtime, browser.person_id)[:3] == ("sms", "email", "phone")
    assert ask(vault, headers, subject, "email")["alternatives"] == ["sms", "phone"]


def test_saving_without_a_change_writes_nothing(vault: Vault) -> None:
    browser = logged_in(vault)
    save(browser, new_channel="phone", new_purpose="offers")
    before = row_counts(vault.runtime, ("audit_event",))
    version = stored_rules(vault.runtime, browser.person_id).version

    page = save(browser)

    assert notices(page.text) == ["Nothing changed."]
    assert row_counts(vault.runtime, ("audit_event",)) == before
    assert stored_rules(vault.runtime, browser.person_id).version == version


# -- two tabs -------------------------------------------------------------------------------


def test_a_save_from_a_stale_tab_is_a_conflict_and_writes_nothing(vault: Vault) -> None:
    browser = logged_in(vault)
    first_tab = form_of(browser.get("/rules").text)
    second_tab = form_of(browser.get("/rules").text)
    assert post(browser, first_tab, new_channel="phone", new_purpose="offers").status_code == 302
    browser.get("/rules")
    saved = stored_rules(vault.runtime, browser.person_id)
    before = row_counts(vault.runtime, ("audit_event", "global_rules", "profile"))

    response = post(browser, second_tab, off=["email"], position_push="1")

    assert response.status_code == 409
    assert "Your rules were changed in another window" in response.text
    assert "Nothing was saved" in response.text
    assert 'value="phone:offers" checked' in response.text, "the page shows the rules as now"
    assert stored_rules(vault.runtime, browser.person_id) == saved
    assert stored_order(vault.runtime, browser.person_id)[0] == "email"
    assert row_counts(vault.runtime, ("audit_event", "global_rules", "profile")) == before
    assert form_of(response.text)["version"] == [str(saved.version)]


def test_an_order_saved_in_another_tab_is_a_conflict_too(vault: Vault) -> None:
    browser = logged_in(vault)
    first_tab = form_of(browser.get("/rules").text)
    second_tab = form_of(browser.get("/rules").text)
    assert post(browser, first_tab, position_post="1").status_code == 302

    response = post(browser, second_tab, position_push="1")

    assert response.status_code == 409
    assert stored_order(vault.runtime, browser.person_id)[0] == "post"


# -- bad input ------------------------------------------------------------------------------


BAD_RULES = [
    ("new_purpose", {"new_channel": "phone"}, "Choose a purpose too"),
    ("new_channel", {"new_purpose": "offers"}, "Choose a channel too"),
    ("new_channel", {"new_channel": "*", "new_purpose": "*"}, "not \u201cany\u201d for both"),
    ("new_channel", {"new_channel": "fax", "new_purpose": "offers"},
     "Choose a channel from the list."),
    ("new_purpose", {"new_channel": "sms", "new_purpose": "spam"},
     "Choose a purpose from the list."),
    ("quiet_end", {"quiet_start": "21:00"}, "Fill in both times"),
    ("quiet_start", {"quiet_end": "07:00"}, "Fill in both times"),
    ("quiet_start", {"quiet_start": "25:00", "quiet_end": "07:00"}, "24-hour clock"),
    ("quiet_end", {"quiet_start": "21:00", "quiet_end": "late"}, "24-hour clock"),
    ("quiet_end", {"quiet_start": "21:00", "quiet_end": "21:00"}, "end at another time"),
    ("position_email", {"position_email": "9"}, "Choose a place from the list."),
    ("position_sms", {"position_sms": ""}, "Choose a place from the list."),
]


@pytest.mark.parametrize(("field", "changes", "message"), BAD_RULES,
                         ids=[f"{f}-{i}" for i, (f, _c, _m) in enumerate(BAD_RULES)])
def test_bad_input_is_shown_at_its_field_and_writes_nothing(
        vault: Vault, field: str, changes: dict[str, str], message: str) -> None:
    browser = logged_in(vault)
    form = form_of(browser.get("/rules").text)
    before = row_counts(vault.runtime, ("audit_event", "global_rules", "profile"))
    rules_before = stored_rules(vault.runtime, browser.person_id)

    response = post(browser, form, off=["sms"], **changes)

    assert response.status_code == 400
    tag = re.search(rf'<(?:input|select)\b[^>]*\bid="{field}"[^>]*>', response.text)
    assert tag and 'aria-invalid="true"' in tag.group(0)
    assert f"{field}-error" in tag.group(0)
    error = re.search(rf'<p id="{field}-error" class="field-error">([^<]*)</p>', response.text)
    assert error and message in error.group(1)
    assert 'value="sms" checked' in response.text, "what the person chose is kept"
    assert stored_rules(vault.runtime, browser.person_id) == rules_before
    assert row_counts(vault.runtime, ("audit_event", "global_rules", "profile")) == before


@pytest.mark.parametrize(("field", "changes"), [
    ("blocked", {"blocked": ["fax:offers"]}),
    ("off", {"off": ["email", "pigeon"]}),
])
def test_a_tampered_list_is_refused_at_its_group(vault: Vault, field: str,
                                                  changes: dict[str, list[str]]) -> None:
    browser = logged_in(vault)
    form = form_of(browser.get("/rules").text)
    before = row_counts(vault.runtime, ("audit_event", "global_rules"))
    response = post(browser, form, **changes)
    assert response.status_code == 400
    assert f'<p id="{field}-error" class="field-error">' in response.text
    assert f'href="#{field}"' in response.text
    assert row_counts(vault.runtime, ("audit_event", "global_rules")) == before


@pytest.mark.parametrize("missing", ["version", "order_before"])
def test_a_form_without_its_hidden_fields_is_refused(vault: Vault, missing: str) -> None:
    browser = logged_in(vault)
    form = form_of(browser.get("/rules").text)
    del form[missing]
    before = row_counts(vault.runtime, ("audit_event", "global_rules", "profile"))
    response = post(browser, form, new_channel="phone", new_purpose="offers")
    assert response.status_code == 400
    assert "This form could not be read" in response.text
    assert row_counts(vault.runtime, ("audit_event", "global_rules", "profile")) == before


def test_a_post_without_or_with_a_wrong_csrf_token_changes_nothing(vault: Vault) -> None:
    browser = logged_in(vault)
    form = form_of(browser.get("/rules").text)
    before = row_counts(vault.runtime, ("audit_event", "global_rules", "profile"))
    for token in ([], ["forged"]):
        response = post(browser, form, csrf_token=token, new_channel="phone",
                        new_purpose="offers")
        assert response.status_code == 400
        assert "This form has expired" in response.text
    assert row_counts(vault.runtime, ("audit_event", "global_rules", "profile")) == before
    assert stored_rules(vault.runtime, browser.person_id).blocked == ()


# -- Dutch ----------------------------------------------------------------------------------


def test_the_page_and_what_changed_read_in_dutch(vault: Vault) -> None:
    browser = logged_in(vault, profile={"language": "nl"})
    page = browser.get("/rules")
    assert '<html lang="nl">' in page.text
    for dutch in ("<h1>Mijn regels</h1>", "Wat geen enkele winkel mag",
                  "Rusttijden voor elke winkel", "Mijn regels opslaan", "elk kanaal", "Kies…"):
        assert dutch in page.text, dutch

    page = save(browser, new_channel="phone", new_purpose="offers", quiet_start="21:00",
                quiet_end="09:00")

    assert notices(page.text) == [
        "Toegevoegd: Benader me nooit per telefoon met aanbiedingen en nieuwsbrieven",
        "Je rusttijden zijn nu van 21:00 tot 09:00."]
    bad = post(browser, form_of(page.text), new_channel="phone")
    assert "Kies ook een doel" in bad.text
