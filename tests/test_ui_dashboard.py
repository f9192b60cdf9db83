"""The dashboard "Who may reach me" and revoking a shop, through the Flask test client.

A person sees only their own shops, in plain words, with the contacts each
reported lately (violations flagged), and revokes one in two clicks: the
dashboard's button opens a confirmation page that changes nothing, and only
its POST revokes. Merchants are set up and report contacts through the API,
as they would.
"""

from __future__ import annotations

import re
from datetime import timedelta
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
from ui_helpers import Browser, csrf_token, logged_in
from werkzeug.test import TestResponse

from vault.clock import FixedClock
from vault.extensions import Runtime

TABLES = ("subscription", "contact_permission", "audit_event", "webhook_outbox", "oauth_token")


@pytest.fixture
def vault(app: Flask, client: FlaskClient, runtime: Runtime, clock: FixedClock) -> Vault:
    """conftest's app, client, runtime and clock (once per backend)."""
    return Vault(app, client, runtime, clock)


def decide(vault: Vault, headers: dict[str, str], subject: str, channel: str = "email",
           purpose: str = "offers") -> dict[str, Any]:
    response = vault.client.post(f"{API}/decisions", headers=headers,
                                 json={"subject": subject, "channel": channel,
                                       "purpose": purpose})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def report(vault: Vault, headers: dict[str, str], subject: str, channel: str = "email",
           purpose: str = "offers", **extra: object) -> None:
    response = vault.client.post(f"{API}/contacts", headers=headers,
                                 json={"subject": subject, "channel": channel,
                                       "purpose": purpose, **extra})
    assert response.status_code == 201, response.get_data(as_text=True)


def text_of(response: TestResponse) -> str:
    """The page as a person reads it: tags dropped, whitespace folded, entities decoded."""
    html = re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))
    html = html.replace("&#39;", "'").replace("&amp;", "&").replace("&#34;", '"')
    return re.sub(r" ([:,.?)])", r"\1", " ".join(html.split()))


def status_of(vault: Vault, sub: Subscribed) -> str:
    return str(rows(vault.runtime, "SELECT status FROM subscription WHERE id = :id",
                    id=sub.subscription_id)[0]["status"])


def snapshot(vault: Vault) -> tuple[dict[str, int], list[dict[str, object]]]:
    """Row counts of the tables a revoke touches, and every subscription's state."""
    return (row_counts(vault.runtime, TABLES),
            rows(vault.runtime, "SELECT id, status, revoked_at, updated_at FROM subscription "
                                "ORDER BY id"))


def revoke_url(sub: Subscribed) -> str:
    return f"/subscriptions/{sub.subscription_id}/revoke"


# -- what the dashboard shows ---------------------------------------------------------------


def test_an_empty_vault_says_no_shop_is_subscribed(vault: Vault) -> None:
    person = logged_in(vault)

    page = person.get("/subscriptions")

    assert page.status_code == 200
    assert "No shop is subscribed to you." in text_of(page)
    assert page.headers["Cache-Control"] == "no-store"


def test_the_dashboard_needs_a_login(vault: Vault) -> None:
    response = vault.client.get("/subscriptions")

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_the_dashboard_shows_only_the_persons_own_shops_in_plain_words(vault: Vault) -> None:
    books = register_merchant(vault.runtime, "Book Shop")
    garden = register_merchant(vault.runtime, "Garden Centre")
    person = logged_in(vault)
    mine = subscribe(vault.runtime, books, person_id=person.person_id,
                     scope="contact:email:offers contact:sms:offers "
                           "contact:email:order_updates profile:email profile:name")
    theirs = subscribe(vault.runtime, garden, scope="contact:phone:surveys profile:address")
    their_books = subscribe(vault.runtime, books, person_id=theirs.person_id,
                            scope="contact:post:partner_offers")

    page = person.get("/subscriptions")
    text = text_of(page)

    assert page.status_code == 200
    assert "Book Shop" in text
    assert "Garden Centre" not in text
    assert theirs.subscription_id not in page.text
    assert their_books.subscription_id not in page.text
    assert f'href="/subscriptions/{mine.subscription_id}"' in page.text
    assert "Can see your e-mail address, your name" in text
    assert "About your orders: e-mail" in text
    assert "Offers and newsletters: e-mail, text message (SMS)" in text
    assert "Revoke Book Shop" in text
    # what the other person allowed never shows, nor any raw scope
    assert "letter by post" not in text and "your postal address" not in text
    assert "contact:" not in text and "profile:" not in text


def test_limits_and_switched_off_permissions_show_on_the_card(vault: Vault) -> None:
    books = register_merchant(vault.runtime)
    person = logged_in(vault)
    sub = subscribe(vault.runtime, books, person_id=person.person_id,
                    scope="contact:email:offers contact:sms:offers contact:email:service")
    set_permission(vault.runtime, sub, "email", "offers", max_per_week=2)
    set_permission(vault.runtime, sub, "sms", "offers", allowed=False)
    set_permission(vault.runtime, sub, "email", "service", allowed=False)

    text = text_of(person.get("/subscriptions"))

    assert "Offers and newsletters: e-mail (at most 2 per week)" in text
    assert "text message (SMS)" not in text
    assert "Service and help" not in text
    assert "Can see nothing from your profile" in text


def test_contacts_of_the_last_30_days_are_counted_and_a_violation_is_flagged(
        vault: Vault) -> None:
    books, headers = merchant_with_token(vault, "Book Shop")
    person = logged_in(vault)
    sub = subscribe(vault.runtime, books, person_id=person.person_id,
                    scope="contact:email:offers")
    report(vault, headers, sub.subject)
    report(vault, headers, sub.subject, at=(START - timedelta(days=2)).isoformat())
    report(vault, headers, sub.subject, channel="sms")  # never allowed: a violation
    report(vault, headers, sub.subject, at=(START - timedelta(days=30, hours=1)).isoformat())

    page = person.get("/subscriptions")
    text = text_of(page)

    assert "Contacts in the last 30 days 3 contacts" in text
    assert "Not allowed 1 of them was not allowed." in text
    assert '<span class="flag">' in page.text
    assert f'href="/subscriptions/{sub.subscription_id}#history"' in page.text


def test_a_shop_without_violations_is_not_flagged(vault: Vault) -> None:
    books, headers = merchant_with_token(vault, "Book Shop")
    person = logged_in(vault)
    sub = subscribe(vault.runtime, books, person_id=person.person_id)
    report(vault, headers, sub.subject)

    page = person.get("/subscriptions")

    assert "Contacts in the last 30 days 1 contact" in text_of(page)
    assert "Not allowed" not in text_of(page)


def test_revoked_shops_are_listed_apart_without_a_revoke_button(vault: Vault) -> None:
    books = register_merchant(vault.runtime, "Book Shop")
    garden = register_merchant(vault.runtime, "Garden Centre")
    person = logged_in(vault)
    subscribe(vault.runtime, books, person_id=person.person_id)
    gone = subscribe(vault.runtime, garden, person_id=person.person_id)
    revoke(vault.runtime, gone)

    page = person.get("/subscriptions")
    text = text_of(page)

    active, _, ended = text.partition("Shops you revoked")
    assert "Book Shop" in active and "Garden Centre" not in active
    assert "Show 1 shop Garden Centre revoked on November 23, 2026" in ended
    assert "Revoke Book Shop" in text
    assert "Revoke Garden Centre" not in text


# -- revoking -------------------------------------------------------------------------------


def test_revoking_takes_a_confirmation_and_the_next_decision_is_revoked(vault: Vault) -> None:
    books, headers = merchant_with_token(vault, "Book Shop")
    person = logged_in(vault)
    sub = subscribe(vault.runtime, books, person_id=person.person_id,
                    scope="contact:email:offers profile:email")
    dashboard = person.get("/subscriptions")
    # the dashboard's button opens the confirmation page with a plain GET
    assert re.search(rf'<form method="get" action="{revoke_url(sub)}">\s*'
                     r'<button type="submit" class="danger">Revoke Book Shop</button>',
                     dashboard.text)
    before = snapshot(vault)

    confirm = person.get(revoke_url(sub))

    assert confirm.status_code == 200
    text = text_of(confirm)
    assert "Revoke Book Shop?" in text
    assert "Book Shop can no longer see your data (your e-mail address)" in text
    assert "Yes, revoke" in text
    assert 'href="/subscriptions">Cancel</a>' in confirm.text
    assert snapshot(vault) == before, "opening the confirmation page changes nothing"
    assert decide(vault, headers, sub.subject)["reason"] == "allowed"

    done = person.client.post(revoke_url(sub), data={"csrf_token": csrf_token(confirm.text)})

    assert done.status_code == 302
    assert done.headers["Location"] == "/subscriptions"
    assert status_of(vault, sub) == "revoked"
    assert decide(vault, headers, sub.subject)["reason"] == "revoked"
    after = person.get("/subscriptions")
    assert "Revoked. Book Shop can no longer reach you or see your data." in text_of(after)
    assert "Revoke Book Shop" not in text_of(after)
    tags = [r["tag"] for r in rows(vault.runtime, "SELECT tag FROM audit_event WHERE subject = "
                                                  ":subject ORDER BY seq", subject=sub.subject)]
    assert tags == ["subscription:grant:approved", "subscription:grant:revoked"]


def test_revoking_twice_says_it_was_already_revoked(vault: Vault) -> None:
    books = register_merchant(vault.runtime)
    person = logged_in(vault)
    sub = subscribe(vault.runtime, books, person_id=person.person_id)
    confirm = person.get(revoke_url(sub))
    person.client.post(revoke_url(sub), data={"csrf_token": csrf_token(confirm.text)})
    before = snapshot(vault)

    again = person.client.post(revoke_url(sub), data={"csrf_token": csrf_token(confirm.text)},
                               follow_redirects=True)

    assert "Book Shop's access had already been revoked." in text_of(again)
    assert snapshot(vault) == before
    page = person.get(revoke_url(sub))
    assert "You already revoked Book Shop's access on November 23, 2026." in text_of(page)
    assert "Yes, revoke" not in text_of(page)


def test_cancel_on_the_confirmation_goes_back_where_the_person_came_from(vault: Vault) -> None:
    books = register_merchant(vault.runtime)
    person = logged_in(vault)
    sub = subscribe(vault.runtime, books, person_id=person.person_id)

    from_merchant_page = person.get(f"{revoke_url(sub)}?from=merchant")

    assert f'href="/subscriptions/{sub.subscription_id}">Cancel</a>' in from_merchant_page.text


@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_a_revoke_without_a_valid_csrf_token_changes_nothing(vault: Vault,
                                                             token: str | None) -> None:
    books, headers = merchant_with_token(vault, "Book Shop")
    person = logged_in(vault)
    sub = subscribe(vault.runtime, books, person_id=person.person_id)
    person.get(revoke_url(sub))
    before = snapshot(vault)

    response = person.client.post(revoke_url(sub),
                                  data={"csrf_token": token} if token else {})

    assert response.status_code == 400
    assert "Nothing was changed." in text_of(response)
    assert snapshot(vault) == before
    assert decide(vault, headers, sub.subject)["reason"] == "allowed"


def test_another_persons_subscription_is_404_and_nothing_changes(vault: Vault) -> None:
    books, headers = merchant_with_token(vault, "Book Shop")
    person = logged_in(vault)
    subscribe(vault.runtime, books, person_id=person.person_id)
    theirs = subscribe(vault.runtime, books)
    token = csrf_token(person.get("/subscriptions").text)
    before = snapshot(vault)

    html = {"Accept": "text/html"}  # as a browser asks
    responses = [
        person.get(revoke_url(theirs), headers=html),
        person.client.post(revoke_url(theirs), data={"csrf_token": token}, headers=html),
        person.get(f"/subscriptions/{theirs.subscription_id}", headers=html),
        person.client.post(f"/subscriptions/{theirs.subscription_id}/permissions", headers=html,
                           data={"csrf_token": token, "version": "1", "cell": "email:offers",
                                 "max_per_week:email:offers": "1"}),
        person.get("/subscriptions/no-such-id/revoke", headers=html),
        person.client.post("/subscriptions/no-such-id/revoke", data={"csrf_token": token},
                           headers=html),
    ]

    assert [r.status_code for r in responses] == [404] * len(responses)
    assert all("This page does not exist, or it is not yours to see." in text_of(r)
               for r in responses)
    assert snapshot(vault) == before
    assert status_of(vault, theirs) == "active"
    assert decide(vault, headers, theirs.subject)["reason"] == "allowed"


# -- in Dutch -------------------------------------------------------------------------------


def _dutch_person(vault: Vault, by_profile: bool) -> tuple[Browser, dict[str, str]]:
    if by_profile:
        return logged_in(vault, profile={"language": "nl"}), {}
    return logged_in(vault), {"Accept-Language": "nl"}


@pytest.mark.parametrize("by_profile", [False, True], ids=["accept-language", "profile"])
def test_the_dashboard_and_the_confirmation_speak_dutch(vault: Vault, by_profile: bool) -> None:
    books, headers = merchant_with_token(vault, "Boekhandel")
    person, language = _dutch_person(vault, by_profile)
    sub = subscribe(vault.runtime, books, person_id=person.person_id,
                    scope="contact:email:offers profile:email")
    report(vault, headers, sub.subject, channel="sms")

    dashboard = text_of(person.get("/subscriptions", headers=language))
    confirm_page = person.get(revoke_url(sub), headers=language)
    confirm = text_of(confirm_page)
    done = person.client.post(revoke_url(sub), headers=language, follow_redirects=True,
                              data={"csrf_token": csrf_token(confirm_page.text)})

    assert "Wie mag mij benaderen" in dashboard
    assert "Mag zien je e-mailadres" in dashboard
    assert "Aanbiedingen en nieuwsbrieven: e-mail" in dashboard
    assert "1 contactmoment" in dashboard and "Niet toegestaan" in dashboard
    assert "Boekhandel intrekken" in dashboard
    assert "Boekhandel intrekken?" in confirm
    assert "Ja, intrekken" in confirm and "Annuleren" in confirm
    assert "Ingetrokken. Boekhandel kan je niet meer benaderen" in text_of(done)
    assert "Ingetrokken winkels" in text_of(done)
    assert "Who may reach me" not in dashboard + confirm


@pytest.mark.parametrize("path", ["/subscriptions/a%00b", "/subscriptions/a%00b/revoke",
                                  "/subscriptions/a%00b/receipt", "/subscriptions/" + "x" * 65])
def test_an_impossible_id_in_a_page_path_is_not_found(vault: Vault, path: str) -> None:
    browser = logged_in(vault)
    response = browser.get(path)
    assert response.status_code == 404 and response.mimetype == "text/html"
