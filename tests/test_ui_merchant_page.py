"""The merchant page: the permission grid, its limits, the history, through the Flask test client.

Every save is made as a browser makes it: the page's own form, CSRF token
and version included, with only the inputs a person would touch changed.
Each kind of change is checked where it matters, in the merchant's next
decision; each bad input is refused at its field with nothing written.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from api_helpers import (
    API,
    START,
    Subscribed,
    Vault,
    merchant_with_token,
    register_merchant,
    revoke,
    row_counts,
    rows,
    set_permission,
    subscribe,
)
from flask import Flask
from flask.testing import FlaskClient
from oauth_helpers import Form, parse_page
from ui_helpers import Browser, logged_in
from werkzeug.datastructures import MultiDict
from werkzeug.test import TestResponse

from vault.clock import FixedClock
from vault.extensions import Runtime
from vault.models import Merchant
from vault.services import subscriptions as subscription_service
from vault.services.scopes import PersonGrant

SCOPE = "contact:email:offers contact:sms:offers contact:phone:service profile:name"
TABLES = ("contact_permission", "audit_event", "webhook_outbox", "subscription")


@pytest.fixture
def vault(app: Flask, client: FlaskClient, runtime: Runtime, clock: FixedClock) -> Vault:
    """conftest's app, client, runtime and clock (once per backend)."""
    return Vault(app, client, runtime, clock)


@pytest.fixture
def shop(vault: Vault) -> tuple[Any, dict[str, str]]:
    return merchant_with_token(vault, "Book Shop")


@pytest.fixture
def person(vault: Vault) -> Browser:
    return logged_in(vault)


@pytest.fixture
def sub(vault: Vault, shop: tuple[Any, dict[str, str]], person: Browser) -> Subscribed:
    return subscribe(vault.runtime, shop[0], person_id=person.person_id, scope=SCOPE)


@pytest.fixture
def headers(shop: tuple[Any, dict[str, str]]) -> dict[str, str]:
    return shop[1]


def page_url(sub: Subscribed) -> str:
    return f"/subscriptions/{sub.subscription_id}"


def text_of(response: TestResponse) -> str:
    """The page as a person reads it: tags dropped, whitespace folded, entities decoded."""
    html = re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))
    html = html.replace("&#39;", "'").replace("&amp;", "&").replace("&#34;", '"')
    return re.sub(r" ([:,.?)])", r"\1", " ".join(html.split()))


def grid_form(html: str) -> Form:
    return next(f for f in parse_page(html).forms if f.action.endswith("/permissions"))


def submitted(form: Form) -> list[tuple[str, str]]:
    """What a browser sends for ``form``: every input, checkboxes only when ticked."""
    return [(f.name, f.value) for f in form.fields
            if f.name and (f.type != "checkbox" or f.checked)]


def save(person: Browser, sub: Subscribed, *, html: str | None = None,
         tick: tuple[str, ...] = (), untick: tuple[str, ...] = (),
         values: dict[str, str] | None = None, drop: tuple[str, ...] = (),
         **options: Any) -> TestResponse:
    """Change the grid form as a person would (from ``html``, else a fresh page) and post it."""
    html = html if html is not None else person.get(page_url(sub)).text
    form = grid_form(html)
    data = [(name, value) for name, value in submitted(form)
            if not (name == "allow" and value in untick) and name not in drop]
    data += [("allow", key) for key in tick]
    for name, value in (values or {}).items():
        assert any(n == name for n, _ in data), f"the form has no input {name}"
        data = [(n, value if n == name else v) for n, v in data]
    return person.client.post(form.action, data=MultiDict(data), **options)


def decide(vault: Vault, headers: dict[str, str], subject: str, channel: str = "email",
           purpose: str = "offers", at: datetime | None = None) -> dict[str, Any]:
    body = {"subject": subject, "channel": channel, "purpose": purpose}
    if at is not None:
        body["at"] = at.isoformat()
    response = vault.client.post(f"{API}/decisions", json=body, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def report(vault: Vault, headers: dict[str, str], subject: str, channel: str = "email",
           purpose: str = "offers") -> None:
    response = vault.client.post(f"{API}/contacts", headers=headers,
                                 json={"subject": subject, "channel": channel,
                                       "purpose": purpose})
    assert response.status_code == 201, response.get_data(as_text=True)


def stored(vault: Vault, sub: Subscribed) -> tuple[object, ...]:
    """Everything a save could write: the sealed grid, its version and the evidence tables."""
    row = rows(vault.runtime, "SELECT version, record, updated_at FROM contact_permission "
                              "WHERE subscription_id = :id", id=sub.subscription_id)[0]
    return (row["version"], bytes(row["record"]), row["updated_at"],  # type: ignore[arg-type]
            row_counts(vault.runtime, TABLES))


def flashes(response: TestResponse) -> list[str]:
    return [" ".join(re.sub(r"<[^>]+>", "", m).replace("&#39;", "'").split())
            for m in re.findall(r'<p class="notice" role="status">(.*?)</p>', response.text,
                                re.S)]


# -- what the page shows --------------------------------------------------------------------


def test_the_page_shows_the_grid_the_shared_fields_and_what_is_not_available(
        person: Browser, sub: Subscribed) -> None:
    page = person.get(page_url(sub))
    text = text_of(page)
    form = grid_form(page.text)

    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert "What Book Shop can see your name" in text
    ticked = [f.value for f in form.fields if f.type == "checkbox" and f.checked]
    assert sorted(ticked) == ["email:offers", "phone:service", "sms:offers"]
    assert "Offers and newsletters E-mail" in text
    assert "Not available: phone call, letter by post, app notification." in text
    assert "Service and help" in text and "Not available: e-mail, text message (SMS)" in text
    assert ("Not available by any channel: About your orders A shopping cart you left Offers "
            "based on what you did or who you are Surveys Offers from partners (third "
            "parties)") in text
    # every input has a label, and the limits of a cell are labelled with that cell
    ids = re.findall(r'<input type="(?:checkbox|number|time|date)" id="([^"]+)"', page.text)
    assert len(ids) == 3 * 5
    assert all(f'<label for="{input_id}">' in page.text for input_id in ids)
    assert re.search(r'<label for="max_per_week-email-offers">At most this many times a week'
                     r'<span class="vh"> \(Offers and newsletters by e-mail\)</span></label>',
                     page.text)
    assert 'name="max_per_week:email:offers"' in page.text
    assert '<input type="hidden" name="version" value="1">' in page.text


def test_a_revoked_shops_page_has_history_but_no_form(vault: Vault, person: Browser,
                                                      sub: Subscribed) -> None:
    revoke(vault.runtime, sub)

    page = person.get(page_url(sub))

    assert page.status_code == 200
    assert "You revoked this shop's access on November 23, 2026." in text_of(page)
    assert "/permissions" not in page.text
    assert "Revoke Book Shop" not in text_of(page)
    assert "You revoked Book Shop's access." in text_of(page)


# -- saving, each change reflected in the decision API --------------------------------------


def test_switching_a_permission_off_and_on_again(vault: Vault, person: Browser,
                                                 sub: Subscribed,
                                                 headers: dict[str, str]) -> None:
    off = save(person, sub, untick=("email:offers",))

    assert off.status_code == 302 and off.headers["Location"] == page_url(sub)
    assert decide(vault, headers, sub.subject)["reason"] == "not_granted"
    page = person.get(page_url(sub))
    assert flashes(page) == ["Saved. What changed:",
                             "Offers and newsletters by e-mail: now off"]
    assert decide(vault, headers, sub.subject, "sms")["reason"] == "allowed"

    on = save(person, sub, tick=("email:offers",))

    assert on.status_code == 302
    assert decide(vault, headers, sub.subject)["reason"] == "allowed"
    assert flashes(person.get(page_url(sub)))[1:] == [
        "Offers and newsletters by e-mail: now allowed"]


def test_max_per_week_is_saved_and_caps_the_shop(vault: Vault, person: Browser, sub: Subscribed,
                                                 headers: dict[str, str]) -> None:
    response = save(person, sub, values={"max_per_week:email:offers": "2"})

    assert response.status_code == 302
    page = person.get(page_url(sub))
    assert flashes(page)[1:] == ["Offers and newsletters by e-mail: now at most 2 per week"]
    assert 'name="max_per_week:email:offers" value="2"' in page.text
    report(vault, headers, sub.subject)
    assert decide(vault, headers, sub.subject)["reason"] == "allowed"
    report(vault, headers, sub.subject)
    assert decide(vault, headers, sub.subject)["reason"] == "frequency_cap"
    assert decide(vault, headers, sub.subject, "sms")["reason"] == "allowed"

    save(person, sub, values={"max_per_week:email:offers": ""})

    assert decide(vault, headers, sub.subject)["reason"] == "allowed"
    assert flashes(person.get(page_url(sub)))[1:] == [
        "Offers and newsletters by e-mail: no weekly limit any more"]


def test_quiet_hours_are_saved_in_the_persons_time_zone(vault: Vault, person: Browser,
                                                        sub: Subscribed,
                                                        headers: dict[str, str]) -> None:
    # 10:00 UTC is 11:00 in Amsterdam, the person's zone
    response = save(person, sub, values={"quiet_from:email:offers": "10:30",
                                         "quiet_to:email:offers": "12.00"})

    assert response.status_code == 302
    page = person.get(page_url(sub))
    assert flashes(page)[1:] == [
        "Offers and newsletters by e-mail: now not between 10:30 and 12:00"]
    assert 'name="quiet_to:email:offers" value="12:00"' in page.text
    answer = decide(vault, headers, sub.subject)
    assert answer["reason"] == "quiet_hours"
    assert answer["next_allowed_at"].startswith("2026-11-23T11:00:00")
    assert decide(vault, headers, sub.subject, "sms")["reason"] == "allowed"


def test_an_expiry_date_is_saved_as_the_last_day_in_the_persons_time_zone(
        vault: Vault, person: Browser, sub: Subscribed, headers: dict[str, str]) -> None:
    response = save(person, sub, values={"expires_on:email:offers": "2026-11-30"})

    assert response.status_code == 302
    page = person.get(page_url(sub))
    assert flashes(page)[1:] == ["Offers and newsletters by e-mail: now until November 30, 2026"]
    assert 'name="expires_on:email:offers" value="2026-11-30"' in page.text
    late_on_the_day = datetime.fromisoformat("2026-11-30T22:59:00+00:00")  # 23:59 in Amsterdam
    assert decide(vault, headers, sub.subject, at=late_on_the_day)["reason"] == "allowed"
    assert decide(vault, headers, sub.subject,
                  at=late_on_the_day + timedelta(minutes=1))["reason"] == "expired"

    again = save(person, sub)  # the same date again is no change
    assert again.status_code == 302
    assert flashes(person.get(page_url(sub))) == [
        "Nothing to save: everything was already set like this."]


def test_several_changes_are_saved_together_and_each_is_listed(
        vault: Vault, person: Browser, sub: Subscribed, headers: dict[str, str]) -> None:
    before = row_counts(vault.runtime, ("audit_event",))["audit_event"]

    save(person, sub, untick=("sms:offers",),
         values={"max_per_week:phone:service": "1", "quiet_from:phone:service": "21:00",
                 "quiet_to:phone:service": "09:00"})

    assert flashes(person.get(page_url(sub))) == [
        "Saved. What changed:",
        "Offers and newsletters by text message (SMS): now off",
        "Service and help by phone call: now at most 1 per week, "
        "now not between 21:00 and 09:00",
    ]
    assert row_counts(vault.runtime, ("audit_event",))["audit_event"] == before + 2
    assert decide(vault, headers, sub.subject, "sms")["reason"] == "not_granted"
    assert decide(vault, headers, sub.subject, "phone", "service")["reason"] == "allowed"


def test_an_ended_permission_can_stay_as_it_is_while_others_change(
        vault: Vault, person: Browser, sub: Subscribed, headers: dict[str, str]) -> None:
    with vault.runtime.database.write() as session:
        subscription_service.set_permission(
            session, person_id=sub.person_id, subscription_id=sub.subscription_id,
            channel="email", purpose="offers", allowed=True,
            expires_at=START - timedelta(days=2), data_keys=vault.runtime.data_keys,
            clock=vault.runtime.clock)
    page = person.get(page_url(sub))
    assert '<span class="tag">ended</span>' in page.text
    assert 'name="expires_on:email:offers" value="2026-11-21"' in page.text

    response = save(person, sub, html=page.text, values={"max_per_week:sms:offers": "3"})

    assert response.status_code == 302
    assert flashes(person.get(page_url(sub)))[1:] == [
        "Offers and newsletters by text message (SMS): now at most 3 per week"]
    assert decide(vault, headers, sub.subject)["reason"] == "expired"


# -- refused saves --------------------------------------------------------------------------


BAD_INPUTS = [
    ("max_per_week-email-offers", {"max_per_week:email:offers": "two"},
     "Enter a whole number, such as 2, or leave this empty for no limit."),
    ("max_per_week-email-offers", {"max_per_week:email:offers": "0"},
     "Enter a number from 1 to 1000, or leave this empty for no limit."),
    ("max_per_week-email-offers", {"max_per_week:email:offers": "1001"},
     "Enter a number from 1 to 1000, or leave this empty for no limit."),
    ("max_per_week-email-offers", {"max_per_week:email:offers": "-3"},
     "Enter a whole number, such as 2, or leave this empty for no limit."),
    ("quiet_from-email-offers", {"quiet_from:email:offers": "25:00",
                                 "quiet_to:email:offers": "07:00"},
     "Enter a time as hours and minutes, such as 21:00."),
    ("quiet_to-email-offers", {"quiet_from:email:offers": "22:00"},
     "Enter both times, or leave both empty for no quiet hours."),
    ("quiet_to-email-offers", {"quiet_from:email:offers": "22:00",
                               "quiet_to:email:offers": "22:00"},
     "Quiet hours must end at a different time than they start."),
    ("expires_on-email-offers", {"expires_on:email:offers": "2026-11-22"},
     "This day has passed. Choose today or a later day, or leave this empty for no end date."),
    ("expires_on-email-offers", {"expires_on:email:offers": "30-11-2026"},
     "Enter a date as year-month-day, such as 2027-01-31."),
    ("expires_on-email-offers", {"expires_on:email:offers": "2026-02-30"},
     "Enter a date as year-month-day, such as 2027-01-31."),
    ("expires_on-email-offers", {"expires_on:email:offers": "9999-12-31"},
     "Choose a day within the next 100 years, or leave this empty for no end date."),
]


@pytest.mark.parametrize(("input_id", "values", "message"), BAD_INPUTS,
                         ids=[f"{i}-{'-'.join(v.values())}" for i, v, _ in BAD_INPUTS])
def test_a_bad_input_is_refused_at_its_field_and_nothing_is_written(
        vault: Vault, person: Browser, sub: Subscribed, headers: dict[str, str],
        input_id: str, values: dict[str, str], message: str) -> None:
    before = stored(vault, sub)

    # a good change to another cell in the same form is not saved either
    response = save(person, sub, untick=("sms:offers",),
                    values={**values, "max_per_week:phone:service": "3"})

    assert response.status_code == 400
    assert stored(vault, sub) == before
    html = response.text
    tag = re.search(rf'<input [^>]*id="{input_id}"[^>]*>', html)
    assert tag, html
    assert 'aria-invalid="true"' in tag.group(0)
    assert f'{input_id}-error' in tag.group(0)  # aria-describedby
    assert re.search(rf'<p class="field-error" id="{input_id}-error">{re.escape(message)}</p>',
                     html.replace("&#39;", "'"))
    assert "Nothing was saved" in text_of(response)
    assert f'href="#{input_id}"' in html  # the summary links to the field
    # what the person typed is kept, so they only fix the one field
    for name, value in values.items():
        assert f'name="{name}" value="{value}"' in html
    assert 'value="sms:offers" checked' not in html
    assert decide(vault, headers, sub.subject, "sms")["reason"] == "allowed"


def test_switching_on_what_was_never_granted_is_refused(vault: Vault, person: Browser,
                                                        sub: Subscribed,
                                                        headers: dict[str, str]) -> None:
    before = stored(vault, sub)

    response = save(person, sub, tick=("post:offers",))

    assert response.status_code == 400
    assert "This shop can only use what you allowed when you connected it." in text_of(response)
    assert stored(vault, sub) == before
    assert decide(vault, headers, sub.subject, "post")["reason"] == "not_granted"


def test_a_cell_switched_off_elsewhere_can_be_switched_on_again_here(
        vault: Vault, person: Browser, sub: Subscribed, headers: dict[str, str]) -> None:
    set_permission(vault.runtime, sub, "email", "offers", allowed=False)

    response = save(person, sub, tick=("email:offers",))

    assert response.status_code == 302
    assert decide(vault, headers, sub.subject)["reason"] == "allowed"


def test_a_save_from_a_stale_page_is_refused_and_keeps_the_newer_save(
        vault: Vault, person: Browser, sub: Subscribed, headers: dict[str, str]) -> None:
    first_tab = person.get(page_url(sub)).text
    second_tab = person.get(page_url(sub)).text
    assert save(person, sub, html=second_tab,
                values={"max_per_week:email:offers": "1"}).status_code == 302
    before = stored(vault, sub)

    stale = save(person, sub, html=first_tab, untick=("sms:offers",))

    assert stale.status_code == 409
    assert ("These settings were changed in another tab or window after you opened this page, "
            "so nothing was saved.") in text_of(stale)
    assert stored(vault, sub) == before
    assert decide(vault, headers, sub.subject, "sms")["reason"] == "allowed"
    # the page shows the settings as they are now, with the new version
    assert 'name="max_per_week:email:offers" value="1"' in stale.text
    assert f'name="version" value="{before[0]}"' in stale.text
    again = save(person, sub, html=stale.text, untick=("sms:offers",))
    assert again.status_code == 302
    assert decide(vault, headers, sub.subject, "sms")["reason"] == "not_granted"


@pytest.mark.parametrize("version", ["", "x1", "9" * 40])
def test_a_form_without_a_readable_version_is_refused(vault: Vault, person: Browser,
                                                      sub: Subscribed, version: str) -> None:
    before = stored(vault, sub)

    response = save(person, sub, values={"version": version, "max_per_week:email:offers": "1"})

    assert response.status_code in (400, 409)
    assert stored(vault, sub) == before


def test_saving_for_a_revoked_shop_is_refused(vault: Vault, person: Browser,
                                              sub: Subscribed) -> None:
    html = person.get(page_url(sub)).text
    revoke(vault.runtime, sub)
    before = stored(vault, sub)

    response = save(person, sub, html=html, values={"max_per_week:email:offers": "1"})

    assert response.status_code == 409
    assert "Book Shop's access has ended, so nothing was saved." in text_of(response)
    assert stored(vault, sub) == before


@pytest.mark.parametrize("token", [None, "forged"], ids=["missing", "wrong"])
def test_a_save_without_a_valid_csrf_token_changes_nothing(
        vault: Vault, person: Browser, sub: Subscribed, headers: dict[str, str],
        token: str | None) -> None:
    html = person.get(page_url(sub)).text
    before = stored(vault, sub)
    data = [(name, value) for name, value in submitted(grid_form(html))
            if name != "csrf_token" and value != "sms:offers"]
    if token is not None:
        data.append(("csrf_token", token))

    response = person.client.post(f"{page_url(sub)}/permissions", data=MultiDict(data))

    assert response.status_code == 400
    assert "This form has expired" in text_of(response)
    assert stored(vault, sub) == before
    assert decide(vault, headers, sub.subject, "sms")["reason"] == "allowed"


# -- the history ----------------------------------------------------------------------------


def test_the_history_tells_the_whole_relationship_in_the_persons_time_zone(
        vault: Vault, shop: tuple[Any, dict[str, str]]) -> None:
    merchant, headers = shop
    person = logged_in(vault, profile={"time_zone": "America/New_York"})
    sub = subscribe(vault.runtime, merchant, person_id=person.person_id,
                    scope="contact:email:offers profile:email")
    vault.clock.advance(timedelta(minutes=10))
    save(person, sub, values={"max_per_week:email:offers": "2"})
    vault.clock.advance(timedelta(minutes=10))
    report(vault, headers, sub.subject)
    report(vault, headers, sub.subject, "phone", "offers")
    vault.clock.advance(timedelta(minutes=10))
    revoke(vault.runtime, sub)

    page = person.get(page_url(sub))
    history = text_of(page).split("History", 1)[1]

    entries = re.findall(r"<li(?: class=\"violation\")?>\s*<time datetime=\"([^\"]+)\">",
                         page.text)
    assert entries == sorted(entries, reverse=True) and len(entries) == 5
    # 10:00 UTC is 5:00 in New York on 23 November
    assert "November 23, 2026 at 5:00 AM You connected Book Shop." in history
    assert "Reach you by e-mail with offers and newsletters" in history
    assert "See your e-mail address" in history
    assert ("November 23, 2026 at 5:10 AM You changed: Offers and newsletters by e-mail now "
            "at most 2 per week") in history
    assert "Book Shop reached you: Offers and newsletters by e-mail" in history
    assert ("Not allowed Book Shop reached you: Offers and newsletters by phone call Why this "
            "was not allowed: you had not allowed this") in history
    assert "November 23, 2026 at 5:30 AM You revoked Book Shop's access." in history
    assert history.count("Not allowed") == 1


def test_the_history_shows_only_this_relationship(vault: Vault,
                                                  shop: tuple[Any, dict[str, str]],
                                                  person: Browser, sub: Subscribed) -> None:
    other_shop = register_merchant(vault.runtime, "Garden Centre")
    subscribe(vault.runtime, other_shop, person_id=person.person_id)
    someone_else = subscribe(vault.runtime, shop[0])
    report(vault, shop[1], someone_else.subject)

    history = text_of(person.get(page_url(sub))).split("History", 1)[1]

    assert history.count("You connected Book Shop.") == 1
    assert "Garden Centre" not in history
    assert "reached you" not in history


def test_declined_parts_of_a_request_show_in_the_history(vault: Vault, person: Browser,
                                                         shop: tuple[Any, dict[str, str]]
                                                         ) -> None:
    with vault.runtime.database.write() as session:
        row = session.get(Merchant, shop[0].id)
        assert row is not None
        created = subscription_service.grant(
            session, person_id=person.person_id, merchant=row,
            granted=PersonGrant.parse("contact:email:order_updates"),
            requested=PersonGrant.parse("contact:email:order_updates contact:phone:offers "
                                        "profile:phone"),
            data_keys=vault.runtime.data_keys, clock=vault.runtime.clock)
        sub_id = created.id

    history = text_of(person.get(f"/subscriptions/{sub_id}")).split("History", 1)[1]

    assert "Reach you by e-mail about your orders (confirmation, delivery)" in history
    assert "You said no to: Reach you by phone call with offers and newsletters" in history
    assert "You said no to: See your phone number" in history


# -- in Dutch -------------------------------------------------------------------------------


@pytest.mark.parametrize("by_profile", [False, True], ids=["accept-language", "profile"])
def test_the_merchant_page_speaks_dutch(vault: Vault, shop: tuple[Any, dict[str, str]],
                                        by_profile: bool) -> None:
    merchant, headers = shop
    person = logged_in(vault, profile={"language": "nl"} if by_profile else None)
    language = {} if by_profile else {"Accept-Language": "nl"}
    sub = subscribe(vault.runtime, merchant, person_id=person.person_id, scope=SCOPE)
    report(vault, headers, sub.subject, "post")

    page = person.get(page_url(sub), headers=language)
    text = text_of(page)
    bad = save(person, sub, html=page.text, values={"max_per_week:email:offers": "veel"},
               headers=language)
    good = save(person, sub, values={"max_per_week:email:offers": "2"}, headers=language)
    saved = person.get(page_url(sub), headers=language)

    assert "Wat Book Shop kan zien je naam" in text
    assert "Hoe Book Shop je mag benaderen" in text
    assert "Aanbiedingen en nieuwsbrieven E-mail" in text
    assert "Niet beschikbaar: telefoon, post, app-melding." in text
    assert "Wijzigingen opslaan" in text
    assert "Geschiedenis" in text and "Je hebt Book Shop gekoppeld." in text
    assert "23 november 2026 om 11:00" in text
    assert "Niet toegestaan" in text
    assert "Book Shop intrekken" in text
    assert bad.status_code == 400
    assert "Er is niets opgeslagen" in text_of(bad)
    assert "Vul een heel getal in" in text_of(bad)
    assert good.status_code == 302
    assert "Aanbiedingen en nieuwsbrieven per e-mail: nu hoogstens 2 per week" in text_of(saved)
    for english in ("How Book Shop may reach you", "Save changes", "History", "Not available"):
        assert english not in text
