"""The authorization code flow as a merchant and a person live it, over real HTTP.

The merchant is Authlib's httpx OAuth 2 client (PKCE S256), configured from
the vault's discovery document; the person is a cookie-keeping HTTP client
that fills in the login and consent forms, CSRF token included.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from oauth_helpers import (
    ID_TOKEN_ALG,
    LiveVault,
    Merchant,
    OAuthError,
    Person,
    consent,
    http_client,
    query_of,
    register_merchant,
    sign_up,
    verify_id_token,
)
from sqlalchemy import text

from vault.oauth.tokens import token_hash

SCOPE = "openid contact:email:offers contact:sms:order_updates profile:name profile:email"


@pytest.fixture
def person(live_vault: LiveVault) -> Iterator[Person]:
    sign_up(live_vault, "ada@example.org",
            profile={"name": "Ada Lovelace", "phone": "+31612345678"})
    with Person(live_vault.base_url, "ada@example.org") as browser:
        browser.log_in()
        yield browser


@pytest.fixture
def shop(live_vault: LiveVault) -> Merchant:
    return register_merchant(live_vault, "Book Shop")


def test_discovery_documents_agree_and_name_every_endpoint(live_vault: LiveVault) -> None:
    base = live_vault.base_url
    with http_client() as http:
        oauth = http.get(f"{base}/.well-known/oauth-authorization-server").json()
        oidc = http.get(f"{base}/.well-known/openid-configuration").json()
        jwks = http.get(oidc["jwks_uri"]).json()
    endpoints = ("authorization_endpoint", "token_endpoint", "revocation_endpoint",
                 "introspection_endpoint", "userinfo_endpoint", "jwks_uri")
    assert oauth["issuer"] == oidc["issuer"] == base
    for name in endpoints:
        assert oauth[name] == oidc[name]
        assert oidc[name].startswith(base + "/")
    assert oidc["code_challenge_methods_supported"] == ["S256"]
    assert oidc["response_types_supported"] == ["code"]
    assert oidc["id_token_signing_alg_values_supported"] == [ID_TOKEN_ALG]
    assert "implicit" not in oidc["grant_types_supported"]
    assert "password" not in oidc["grant_types_supported"]
    assert [k["alg"] for k in jwks["keys"]] == [ID_TOKEN_ALG]
    assert all("d" not in k for k in jwks["keys"])


def test_code_flow_with_pkce_issues_tokens_and_a_verifiable_id_token(
        live_vault: LiveVault, person: Person, shop: Merchant) -> None:
    flow = shop.start(SCOPE)
    assert "code_challenge_method=S256" in flow.url
    ticked = ["contact:email:offers", "profile:name"]
    location = consent(person, flow.url, grant=ticked)
    assert location.startswith(shop.redirect_uri + "?")
    assert query_of(location)["state"] == flow.state

    token = shop.finish(flow, location)

    assert token["token_type"].lower() == "bearer"
    assert token["access_token"] and token["refresh_token"]
    assert token["subject"].startswith("sub_")
    assert set(token["scope"].split()) == {"openid", *ticked}
    claims = verify_id_token(token["id_token"], shop.metadata["jwks_uri"],
                             now=int(live_vault.clock.now().timestamp()),
                             issuer=live_vault.base_url, client_id=shop.client_id,
                             nonce=flow.nonce)
    assert claims["sub"] == token["subject"]
    assert claims["aud"] in (shop.client_id, [shop.client_id])
    assert claims["iss"] == live_vault.base_url
    assert claims["nonce"] == flow.nonce
    introspected = shop.introspect(token["access_token"])
    assert introspected["active"] is True
    assert introspected["sub"] == token["subject"]
    assert introspected["client_id"] == shop.client_id


def test_a_person_may_grant_fewer_scopes_than_asked(person: Person, shop: Merchant) -> None:
    token = shop.connect(person, SCOPE, grant=["contact:sms:order_updates"])

    assert set(token["scope"].split()) == {"openid", "contact:sms:order_updates"}
    assert shop.introspect(token["access_token"])["scope"] == token["scope"]
    # A tampered form cannot grant more than the merchant asked for.
    forged = shop.connect(person, SCOPE, grant=["contact:email:offers", "contact:phone:offers",
                                                "decisions", "profile:address"])
    assert set(forged["scope"].split()) == {"openid", "contact:email:offers"}


def test_deny_redirects_with_access_denied_and_the_state(person: Person, shop: Merchant) -> None:
    flow = shop.start(SCOPE)

    location = consent(person, flow.url, deny=True)

    assert location.startswith(shop.redirect_uri + "?")
    params = query_of(location)
    assert params["error"] == "access_denied"
    assert params["state"] == flow.state
    assert "code" not in params


def test_nothing_is_pre_ticked_and_allowing_nothing_is_refused(person: Person,
                                                               shop: Merchant) -> None:
    page = person.open_consent(shop.start(SCOPE).url)

    assert page.status_code == 200
    assert sorted(page.scopes) == sorted(SCOPE.split()[1:])
    assert not any(item.checked for item in page.items)
    assert " checked" not in page.html
    assert "Book Shop" in page.html
    response = person.answer(page, grant=[])
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "Tick at least one thing" in response.text


def test_connecting_again_shows_what_was_allowed_before(person: Person, shop: Merchant) -> None:
    first = shop.connect(person, SCOPE, grant=["contact:email:offers", "profile:name"])

    page = person.open_consent(shop.start(SCOPE).url)

    before = {item.scope for item in page.items if item.granted_before}
    assert before == {"contact:email:offers", "profile:name"}
    assert page.html.count("(you allowed this before)") == 2
    assert not any(item.checked for item in page.items)
    second = shop.finish(flow := shop.start(SCOPE),
                         consent(person, flow.url, grant=["contact:sms:order_updates"]))
    assert second["subject"] == first["subject"]
    assert set(second["scope"].split()) == {"openid", "contact:sms:order_updates"}


def test_two_merchants_know_one_person_by_different_subjects(
        live_vault: LiveVault, person: Person, shop: Merchant) -> None:
    other = register_merchant(live_vault, "Garden Centre")

    one = shop.connect(person, SCOPE, grant=["contact:email:offers"])
    two = other.connect(person, SCOPE, grant=["contact:email:offers"])

    assert one["subject"] != two["subject"]
    assert shop.userinfo(one["access_token"]).json()["sub"] == one["subject"]
    assert other.userinfo(two["access_token"]).json()["sub"] == two["subject"]


def test_userinfo_returns_only_the_profile_fields_granted(person: Person, shop: Merchant) -> None:
    token = shop.connect(person, "openid profile:name profile:email profile:phone",
                         grant=["profile:name"])

    response = shop.userinfo(token["access_token"])

    assert response.status_code == 200
    assert response.json() == {"sub": token["subject"], "name": "Ada Lovelace"}
    # Without ``openid`` there is no id_token and no userinfo.
    plain = shop.connect(person, "profile:name", grant=["profile:name"])
    assert "id_token" not in plain
    assert shop.userinfo(plain["access_token"]).status_code == 403


def test_refresh_rotates_and_reuse_of_an_old_refresh_token_ends_the_family(
        person: Person, shop: Merchant) -> None:
    first = shop.connect(person, SCOPE, grant=["contact:email:offers"])
    second = shop.refresh(first["refresh_token"])
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert second["scope"] == first["scope"]
    third = shop.refresh(second["refresh_token"])
    assert shop.introspect(third["access_token"])["active"] is True

    with pytest.raises(OAuthError) as refused:
        shop.refresh(first["refresh_token"])

    assert refused.value.error == "invalid_grant"
    assert shop.introspect(third["access_token"]) == {"active": False}
    assert shop.introspect(third["refresh_token"]) == {"active": False}
    with pytest.raises(OAuthError) as also_refused:
        shop.refresh(third["refresh_token"])
    assert also_refused.value.error == "invalid_grant"


def test_a_code_older_than_ten_minutes_is_refused(live_vault: LiveVault, person: Person,
                                                 shop: Merchant) -> None:
    flow = shop.start(SCOPE)
    location = consent(person, flow.url, grant=["contact:email:offers"])
    live_vault.clock.advance(timedelta(minutes=11))

    with pytest.raises(OAuthError) as refused:
        shop.finish(flow, location)

    assert refused.value.error == "invalid_grant"


def test_access_tokens_expire_and_a_refresh_family_dies_after_ninety_days(
        live_vault: LiveVault, person: Person, shop: Merchant) -> None:
    token = shop.connect(person, SCOPE, grant=["contact:email:offers"])
    live_vault.clock.advance(timedelta(seconds=token["expires_in"] + 1))
    assert shop.introspect(token["access_token"]) == {"active": False}
    assert shop.userinfo(token["access_token"]).status_code == 401

    live_vault.clock.advance(timedelta(days=89))
    token = shop.refresh(token["refresh_token"])  # rotation does not extend the deadline
    assert shop.introspect(token["access_token"])["active"] is True
    live_vault.clock.advance(timedelta(days=1))

    with pytest.raises(OAuthError) as refused:
        shop.refresh(token["refresh_token"])

    assert refused.value.error == "invalid_grant"


def test_revoking_on_the_subscriptions_page_ends_the_merchants_tokens(
        person: Person, shop: Merchant) -> None:
    token = shop.connect(person, SCOPE, grant=["contact:email:offers"])
    assert shop.userinfo(token["access_token"]).status_code == 200
    form = next(f for f in person.subscriptions_page() if f.action.endswith("/revoke"))
    assert person.http.post(form.action, data={}).status_code == 400  # no CSRF token
    assert shop.introspect(token["access_token"])["active"] is True

    response = person.revoke("Book Shop")

    assert response.status_code == 302
    assert shop.introspect(token["access_token"]) == {"active": False}
    assert shop.introspect(token["refresh_token"]) == {"active": False}
    assert shop.userinfo(token["access_token"]).status_code == 401
    with pytest.raises(OAuthError) as refused:
        shop.refresh(token["refresh_token"])
    assert refused.value.error == "invalid_grant"
    assert not any(text == "Revoke Book Shop"
                   for form in person.subscriptions_page() for _, _, text in form.buttons)


def test_tokens_and_codes_are_stored_only_as_hashes(live_vault: LiveVault, person: Person,
                                                    shop: Merchant) -> None:
    flow = shop.start(SCOPE)
    location = consent(person, flow.url, grant=["contact:email:offers", "profile:name"])
    code = query_of(location)["code"]
    first = shop.finish(flow, location)
    second = shop.refresh(first["refresh_token"])
    secrets = [code, first["access_token"], first["refresh_token"],
               second["access_token"], second["refresh_token"]]

    with live_vault.runtime.database.read() as session:
        tokens = [tuple(row) for row in session.execute(text("SELECT * FROM oauth_token"))]
        codes = [tuple(row) for row in session.execute(text("SELECT * FROM oauth_code"))]

    assert len(tokens) == 2 and len(codes) == 1
    cells = [str(cell) for row in tokens + codes for cell in row if cell is not None]
    for secret in secrets:
        assert not any(secret in cell for cell in cells)
        assert token_hash(secret) in cells
