"""The person's pages in a real browser (Debian's Chromium): every page, both languages.

For every page, in English and in Dutch: axe-core finds no serious or
critical accessibility violation, nothing overflows a 390 px wide phone
screen, and a screenshot is kept as a test artifact. Then the whole story
end to end — sign up, connect a shop through the consent page, narrow a
permission, set a cap, revoke — with the shop asking the decision API
after every step; the revoke by keyboard alone; and forms with a missing
or forged CSRF token changing nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from api_helpers import PASSWORD, ApiMerchant, register_merchant, subscribe
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from vault.models import Merchant
from vault.services.contacting import report_contact

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
SERIOUS = ("serious", "critical")


@dataclass
class Seeded:
    base_url: str
    email: str
    subscription_id: str
    shop: ApiMerchant


@pytest.fixture
def seeded(live_vault) -> Seeded:  # type: ignore[no-untyped-def]
    """A person subscribed to two shops, with contacts reported (one a violation)."""
    runtime = live_vault.runtime
    shop = register_merchant(runtime, "Fietsen & Co")
    other = register_merchant(runtime, "Boekhandel De Lezer")
    sub = subscribe(runtime, shop, scope="contact:email:offers contact:email:order_updates "
                                        "contact:sms:order_updates profile:email profile:name",
                    profile={"name": "Lotte de Vries", "interests": "Racefietsen"})
    subscribe(runtime, other, person_id=sub.person_id, email=sub.email,
              scope="contact:post:offers profile:address")
    with runtime.database.write() as session:
        for channel, purpose, days in (("email", "offers", 3), ("phone", "offers", 1)):
            report_contact(session, merchant_id=shop.id, subject=sub.subject, channel=channel,
                           purpose=purpose, decision_id=None,
                           at=runtime.clock.now() - timedelta(days=days),
                           data_keys=runtime.data_keys, clock=runtime.clock)
    return Seeded(live_vault.base_url, sub.email, sub.subscription_id, shop)


def _context(browser: Browser, language: str, viewport: dict[str, int]) -> BrowserContext:
    return browser.new_context(locale="nl-NL" if language == "nl" else "en-GB",
                               extra_http_headers={"Accept-Language": language},
                               viewport=viewport)  # type: ignore[arg-type]


def _log_in(page: Page, base_url: str, email: str) -> None:
    page.goto(f"{base_url}/login")
    page.locator("#email").fill(email)
    page.locator("#password").fill(PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{base_url}/subscriptions")


def _person_pages(seeded: Seeded) -> list[tuple[str, str]]:
    return [
        ("dashboard", "/subscriptions"),
        ("merchant", f"/subscriptions/{seeded.subscription_id}"),
        ("rules", "/rules"),
        ("profile", "/profile"),
        ("activity", "/activity"),
        ("my-data", "/my-data"),
        ("delete", "/my-data/delete"),
    ]


def _check_page(page: Page, name: str, folder: Path) -> list[str]:
    """Accessibility and layout problems of the page as it is now; screenshot kept."""
    problems: list[str] = []
    result = Axe().run(page)
    for violation in result.response["violations"]:
        if violation["impact"] in SERIOUS:
            targets = [node["target"] for node in violation["nodes"]][:3]
            problems.append(f"{name}: axe {violation['id']} ({violation['impact']}) {targets}")
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth")
    if overflow > 0:
        problems.append(f"{name}: {overflow}px horizontal overflow")
    page.screenshot(path=folder / f"{name}.png", full_page=True)
    return problems


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
@pytest.mark.parametrize("language", ["en", "nl"])
def test_every_page_is_accessible_and_fits(seeded: Seeded, browser: Browser, language: str,
                                           viewport: dict[str, int],
                                           screenshots: Path) -> None:
    context = _context(browser, language, viewport)
    page = context.new_page()
    problems: list[str] = []
    for name, path in (("login", "/login"), ("signup", "/signup")):
        page.goto(seeded.base_url + path)
        assert page.locator("html").get_attribute("lang") == language
        problems += _check_page(page, name, screenshots)
    _log_in(page, seeded.base_url, seeded.email)
    for name, path in _person_pages(seeded):
        response = page.goto(seeded.base_url + path)
        assert response is not None and response.status == 200, f"{name}: {path}"
        assert page.locator("html").get_attribute("lang") == language
        problems += _check_page(page, name, screenshots)
    page.goto(f"{seeded.base_url}/subscriptions")
    page.locator("main form button.danger").first.click()
    problems += _check_page(page, "revoke-confirm", screenshots)
    response = page.goto(f"{seeded.base_url}/no-such-page")
    assert response is not None and response.status == 404
    problems += _check_page(page, "not-found", screenshots)
    context.close()
    assert problems == []


def _decision(base_url: str, token: str, subject: str, channel: str, purpose: str) -> dict:
    response = httpx.post(f"{base_url}/api/v1/decisions",
                          headers={"Authorization": f"Bearer {token}"},
                          json={"subject": subject, "channel": channel, "purpose": purpose})
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
def person_page(browser: Browser) -> Iterator[Page]:
    context = _context(browser, "en", DESKTOP)
    yield context.new_page()
    context.close()


def test_sign_up_connect_narrow_cap_and_revoke_end_to_end(
        live_vault, person_page: Page, screenshots: Path) -> None:  # type: ignore[no-untyped-def]
    page, base = person_page, live_vault.base_url
    shop = register_merchant(live_vault.runtime, "Fietsen & Co")
    token = httpx.post(f"{base}/oauth/token", auth=(shop.client_id, shop.client_secret),
                       data={"grant_type": "client_credentials"}).json()["access_token"]

    page.goto(f"{base}/signup")
    page.get_by_label("E-mail address").fill("anna@example.org")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.locator("input[type=password]").nth(1).fill(PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{base}/subscriptions")

    verifier = generate_token(64)
    redirect_uri = "https://shop.example/cb"
    query = httpx.QueryParams({
        "response_type": "code", "client_id": shop.client_id, "redirect_uri": redirect_uri,
        "scope": "contact:email:offers contact:email:order_updates contact:phone:offers "
                 "profile:email",
        "state": "st", "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256"})
    callbacks: list[str] = []

    def capture(route: Route) -> None:
        callbacks.append(route.request.url)
        route.fulfill(status=200, body="shop")

    page.route("https://shop.example/**", capture)
    page.goto(f"{base}/oauth/authorize?{query}")
    page.get_by_label("Reach you by e-mail with offers and newsletters").check()
    page.get_by_label("Reach you by e-mail about your orders (confirmation, delivery)").check()
    page.get_by_label("See your e-mail address").check()
    page.get_by_role("button", name="Allow selected").click()
    page.wait_for_url("https://shop.example/**")
    code = parse_qs(urlsplit(callbacks[-1]).query)["code"][0]
    granted = httpx.post(f"{base}/oauth/token", auth=(shop.client_id, shop.client_secret),
                         data={"grant_type": "authorization_code", "code": code,
                               "redirect_uri": redirect_uri, "code_verifier": verifier}).json()
    subject = granted["subject"]
    assert _decision(base, token, subject, "email", "offers")["allowed"] is True
    assert _decision(base, token, subject, "phone", "offers")["reason"] == "not_granted"

    # narrow: switch off offers by e-mail on the merchant page
    page.goto(f"{base}/subscriptions")
    page.get_by_role("link", name="Fietsen & Co").first.click()
    page.screenshot(path=screenshots / "merchant-before.png", full_page=True)
    offers = page.locator("input[type=checkbox][name$='email:offers'], "
                          "input[type=checkbox][value='email:offers']").first
    offers.uncheck()
    page.locator("main form button[type=submit]").first.click()
    page.get_by_role("status").first.wait_for()
    assert _decision(base, token, subject, "email", "offers")["allowed"] is False

    # cap: at most one order update per week
    cap = page.locator("input[name$='email:order_updates:max_per_week'], "
                       "input[name='max_per_week:email:order_updates']").first
    cap.fill("1")
    page.locator("main form button[type=submit]").first.click()
    page.get_by_role("status").first.wait_for()
    assert _decision(base, token, subject, "email", "order_updates")["allowed"] is True
    reported = httpx.post(f"{base}/api/v1/contacts", headers={"Authorization": f"Bearer {token}"},
                          json={"subject": subject, "channel": "email",
                                "purpose": "order_updates"})
    assert reported.status_code == 201, reported.text
    capped = _decision(base, token, subject, "email", "order_updates")
    assert (capped["allowed"], capped["reason"]) == (False, "frequency_cap")

    # revoke from the dashboard: two clicks
    page.goto(f"{base}/subscriptions")
    page.get_by_role("button", name="Revoke Fietsen & Co").click()
    page.locator("main form button.danger").click()
    page.get_by_role("status").first.wait_for()
    page.screenshot(path=screenshots / "revoked.png", full_page=True)
    assert _decision(base, token, subject, "email", "order_updates")["reason"] == "revoked"


def test_a_shop_can_be_revoked_with_the_keyboard_alone(
        seeded: Seeded, person_page: Page) -> None:
    page = person_page
    _log_in(page, seeded.base_url, seeded.email)
    revoke = page.get_by_role("button", name="Revoke Fietsen & Co")
    for _ in range(60):
        page.keyboard.press("Tab")
        if revoke.evaluate("element => element === document.activeElement"):
            break
    else:
        pytest.fail("the revoke button is not reachable with Tab")
    page.keyboard.press("Enter")
    confirm = page.locator("main form button.danger")
    confirm.wait_for()
    for _ in range(30):
        if confirm.evaluate("element => element === document.activeElement"):
            break
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.get_by_role("status").first.wait_for()
    with httpx.Client(base_url=seeded.base_url) as http:
        token = http.post("/oauth/token", auth=(seeded.shop.client_id, seeded.shop.client_secret),
                          data={"grant_type": "client_credentials"}).json()["access_token"]
    subs = httpx.get(f"{seeded.base_url}/api/v1/subscriptions",
                     headers={"Authorization": f"Bearer {token}"}).json()
    assert [item["status"] for item in subs["items"]] == ["revoked"]


@pytest.mark.parametrize("forged", ["", "forged-token"], ids=["missing", "wrong"])
def test_a_form_with_a_missing_or_forged_csrf_token_changes_nothing(
        seeded: Seeded, person_page: Page, forged: str, live_vault) -> None:  # type: ignore[no-untyped-def]
    page = person_page
    _log_in(page, seeded.base_url, seeded.email)
    page.get_by_role("button", name="Revoke Fietsen & Co").click()
    page.locator("main form input[name=csrf_token]").evaluate(
        "(input, value) => { input.value = value; }", forged)
    page.locator("main form button.danger").click()
    expect(page.locator("h1")).to_have_text("This form has expired")
    with live_vault.runtime.database.read() as session:
        from vault.models import Subscription

        sub = session.get(Subscription, seeded.subscription_id)
        assert sub is not None and sub.status == "active"
        assert session.get(Merchant, sub.merchant_id) is not None
