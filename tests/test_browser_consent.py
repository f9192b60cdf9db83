"""A person connects a shop in a real browser (Debian's Chromium) and revokes it.

The shop's side runs as a merchant would: a real OAuth client library
exchanging the code, and token introspection to see the revocation bite.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from playwright.sync_api import Page, Route

from vault.services.merchants import register_client

REDIRECT_URI = "https://fietsen.example/connect/callback"
EMAIL = "lotte@example.org"
PASSWORD = "een heel lang wachtwoord"
ASKED = "contact:email:order_updates contact:phone:abandoned_cart contact:email:offers " \
        "profile:email"


def test_a_person_grants_part_of_a_request_in_the_browser_then_revokes(
    live_vault, page: Page, screenshots: Path  # type: ignore[no-untyped-def]
) -> None:
    runtime = live_vault.runtime
    with runtime.database.write() as session:
        runtime.accounts.sign_up(session, email=EMAIL, password=PASSWORD,
                                 profile={"name": "Lotte"})
        shop = register_client(session, clock=runtime.clock, name="Fietsen & Co",
                               redirect_uris=[REDIRECT_URI])
    verifier = generate_token(64)
    query = httpx.QueryParams({
        "response_type": "code", "client_id": shop.client_id, "redirect_uri": REDIRECT_URI,
        "scope": ASKED, "state": "s-123", "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256"})
    callbacks: list[str] = []

    def capture(route: Route) -> None:
        callbacks.append(route.request.url)
        route.fulfill(status=200, body="shop callback")

    page.route("https://fietsen.example/**", capture)
    page.goto(f"{live_vault.base_url}/oauth/authorize?{query}")

    page.get_by_label("E-mail address").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Fietsen & Co asks to subscribe to you").wait_for()
    boxes = page.get_by_role("checkbox")
    assert boxes.count() == 4
    assert all(not boxes.nth(i).is_checked() for i in range(4)), "nothing is pre-ticked"
    page.screenshot(path=screenshots / "consent.png", full_page=True)

    page.get_by_label("Reach you by e-mail about your orders (confirmation, delivery)").check()
    page.get_by_label("See your e-mail address").check()
    page.get_by_role("button", name="Allow selected").click()
    page.wait_for_url("https://fietsen.example/**")

    params = parse_qs(urlsplit(callbacks[-1]).query)
    assert params["state"] == ["s-123"]
    token = httpx.post(f"{live_vault.base_url}/oauth/token", auth=(shop.client_id,
                       shop.client_secret), data={
        "grant_type": "authorization_code", "code": params["code"][0],
        "redirect_uri": REDIRECT_URI, "code_verifier": verifier}).json()
    assert token["scope"].split() == ["contact:email:order_updates", "profile:email"]

    def active() -> bool:
        return bool(httpx.post(f"{live_vault.base_url}/oauth/introspect",
                               auth=(shop.client_id, shop.client_secret),
                               data={"token": token["access_token"]}).json()["active"])

    assert active()
    page.goto(f"{live_vault.base_url}/subscriptions")
    page.screenshot(path=screenshots / "subscriptions.png", full_page=True)
    page.get_by_role("button", name="Revoke Fietsen & Co").click()
    page.get_by_role("heading", name="Revoke Fietsen & Co?").wait_for()
    assert active(), "the confirmation page changes nothing"
    page.get_by_role("button", name="Yes, revoke").click()
    page.get_by_role("status").wait_for()
    assert not active()
    page.screenshot(path=screenshots / "revoked.png", full_page=True)
