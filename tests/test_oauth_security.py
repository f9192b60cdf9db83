"""What the authorization server refuses: bad redirect URIs, weak or missing PKCE, replayed
codes, other clients' tokens, scopes a client may not have, and the grants it does not offer.

Every request goes over real HTTP to the ``live_vault`` server, as a merchant's
or an attacker's client would send it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from oauth_helpers import (
    MERCHANT_DEFAULT_SCOPE,
    REDIRECT_URI,
    LiveVault,
    Merchant,
    OAuthError,
    Person,
    consent,
    http_client,
    query_of,
    register_merchant,
    sign_up,
)

SCOPE = "openid contact:email:offers profile:name"
GRANT = ["contact:email:offers", "profile:name"]


@pytest.fixture
def person(live_vault: LiveVault) -> Iterator[Person]:
    sign_up(live_vault, "grace@example.org", profile={"name": "Grace Hopper"})
    with Person(live_vault.base_url, "grace@example.org") as browser:
        browser.log_in()
        yield browser


@pytest.fixture
def shop(live_vault: LiveVault) -> Merchant:
    return register_merchant(live_vault, "Book Shop")


def _pkce() -> tuple[str, str]:
    verifier = generate_token(64)
    return verifier, create_s256_code_challenge(verifier)


def _code(person: Person, shop: Merchant) -> tuple[str, str]:
    """A fresh authorization code (and its PKCE verifier) for ``shop``."""
    verifier, challenge = _pkce()
    url = shop.authorize_url(scope=SCOPE, code_challenge=challenge, code_challenge_method="S256")
    return query_of(consent(person, url, grant=GRANT))["code"], verifier


def _exchange(shop: Merchant, code: str, verifier: str) -> httpx.Response:
    return shop.token_request({"grant_type": "authorization_code", "code": code,
                               "redirect_uri": REDIRECT_URI, "code_verifier": verifier})


def _error(response: httpx.Response) -> str:
    assert "access_token" not in response.text
    return str(response.json()["error"])


# -- redirect URIs ----------------------------------------------------------------------------

REDIRECT_VARIANTS = [
    "https://SHOP.EXAMPLE/cb",  # upper-case host
    "https://shop.example/CB",  # upper-case path
    "https://shop.example/cb/",  # trailing slash
    "https://shop.example/cb?next=/account",  # extra query
    "https://shop.example/cb/evil",  # path suffix
    "https://shop.example/cbx",  # path suffix without a slash
    "https://shop.example/cb/../cb",  # dot segments
    "https://evil.example/cb",  # other host
    "https://shop.example.evil.example/cb",  # registered host as a prefix
    "https://shop.example@evil.example/cb",  # registered host as user info
    "https://shop.example:443/cb",  # explicit default port
    "http://shop.example/cb",  # http instead of https
    "https://shop.example/cb#fragment",  # fragment
    "https://shop.example/%63b",  # percent-encoded path
    "",  # none at all: never guessed
]


def test_only_the_registered_redirect_uri_byte_for_byte_is_accepted(person: Person,
                                                                     shop: Merchant) -> None:
    _, challenge = _pkce()
    good = person.open_consent(shop.authorize_url(
        scope=SCOPE, code_challenge=challenge, code_challenge_method="S256"))
    assert good.status_code == 200

    for variant in REDIRECT_VARIANTS:
        url = shop.authorize_url(redirect_uri=variant, scope=SCOPE, code_challenge=challenge,
                                 code_challenge_method="S256")
        page = person.open_consent(url)
        assert page.status_code == 400, variant
        assert "Location" not in page.response.headers, variant
        assert "cannot be handled" in page.html and page.items == [], variant
        # Posting the consent form anyway (with a valid CSRF token) is no way round it.
        page.csrf_token = good.csrf_token
        for answer in (person.answer(page, grant=GRANT), person.answer(page, deny=True)):
            assert answer.status_code == 400, variant
            assert "Location" not in answer.headers, variant
    assert person.open_consent(shop.authorize_url(
        scope=SCOPE, code_challenge=challenge, code_challenge_method="S256")).status_code == 200
    unknown = person.open_consent(shop.authorize_url(
        client_id="m-unknown", scope=SCOPE, code_challenge=challenge,
        code_challenge_method="S256"))
    assert unknown.status_code == 400
    assert "Location" not in unknown.response.headers


def test_the_consent_page_needs_a_login_and_its_csrf_token(person: Person,
                                                           shop: Merchant) -> None:
    url = shop.start(SCOPE).url
    with http_client() as anonymous:
        response = anonymous.get(url)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")

    page = person.open_consent(url)
    page.csrf_token = ""
    response = person.answer(page, grant=GRANT)

    assert response.status_code == 400
    assert "Location" not in response.headers


# -- PKCE -------------------------------------------------------------------------------------


def test_authorize_refuses_missing_or_weak_pkce(person: Person, shop: Merchant) -> None:
    verifier, challenge = _pkce()
    cases = {
        "missing challenge": {},
        "method plain": {"code_challenge": verifier, "code_challenge_method": "plain"},
        "missing method": {"code_challenge": challenge},
        "unknown method": {"code_challenge": challenge, "code_challenge_method": "S512"},
        "malformed challenge": {"code_challenge": "short", "code_challenge_method": "S256"},
    }
    for case, params in cases.items():
        state = generate_token(16)
        url = shop.authorize_url(scope=SCOPE, state=state, **params)

        page = person.open_consent(url)

        # The redirect URI is valid, so the error goes back to the merchant (RFC 7636 §4.4.1).
        response = page.response
        assert response.status_code == 302, case
        location = response.headers["Location"]
        assert location.startswith(REDIRECT_URI + "?"), case
        assert query_of(location) == {"error": "invalid_request", "state": state,
                                      "error_description": query_of(location)[
                                          "error_description"]}, case
        assert page.items == [], case


def test_the_token_endpoint_refuses_a_missing_malformed_or_wrong_verifier(
        person: Person, shop: Merchant) -> None:
    cases: dict[str, tuple[dict[str, str | None], str]] = {
        "missing verifier": ({"code_verifier": None}, "invalid_request"),
        "malformed verifier": ({"code_verifier": "too-short"}, "invalid_request"),
        "wrong verifier": ({"code_verifier": generate_token(64)}, "invalid_grant"),
        "the challenge as verifier": ({"code_verifier": "<challenge>"}, "invalid_grant"),
        "another redirect URI": ({"redirect_uri": REDIRECT_URI + "/"}, "invalid_grant"),
    }
    for case, (changes, error) in cases.items():
        code, verifier = _code(person, shop)
        data = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": REDIRECT_URI, "code_verifier": verifier}
        for name, value in changes.items():
            if value is None:
                del data[name]
            else:
                data[name] = create_s256_code_challenge(verifier) \
                    if value == "<challenge>" else value

        refused = shop.token_request(data)

        assert refused.status_code == 400, case
        assert _error(refused) == error, case
        # A code is spent by the first attempt: the right request comes too late.
        late = _exchange(shop, code, verifier)
        assert late.status_code == 400 and _error(late) == "invalid_grant", case


# -- single-use codes -------------------------------------------------------------------------


def test_twenty_concurrent_exchanges_of_one_code_yield_exactly_one_token(
        person: Person, shop: Merchant) -> None:
    code, verifier = _code(person, shop)
    racers = 20
    barrier = threading.Barrier(racers)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier}

    def exchange(_: int) -> httpx.Response:
        with http_client() as http:
            barrier.wait(timeout=30)
            return http.post(shop.metadata["token_endpoint"], data=data, auth=shop.auth)

    with ThreadPoolExecutor(max_workers=racers) as pool:
        responses = list(pool.map(exchange, range(racers)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, statuses
    assert statuses.count(400) == racers - 1, statuses
    assert not [s for s in statuses if s >= 500]
    assert all(_error(r) == "invalid_grant" for r in responses if r.status_code == 400)
    winner = next(r.json() for r in responses if r.status_code == 200)
    # Every replay revoked what the code had issued (RFC 6749 §4.1.2).
    assert shop.introspect(winner["access_token"]) == {"active": False}
    with pytest.raises(OAuthError) as refused:
        shop.refresh(winner["refresh_token"])
    assert refused.value.error == "invalid_grant"


# -- one client, its own tokens ---------------------------------------------------------------


def test_a_merchant_cannot_introspect_revoke_or_use_another_merchants_tokens(
        live_vault: LiveVault, person: Person, shop: Merchant) -> None:
    other = register_merchant(live_vault, "Garden Centre")
    token = shop.connect(person, SCOPE, grant=GRANT)

    assert other.introspect(token["access_token"]) == {"active": False}
    assert other.introspect(token["refresh_token"]) == {"active": False}
    for value in (token["access_token"], token["refresh_token"]):
        # RFC 7009 §2.1: a token issued to another client is refused, and stays valid.
        response = other.revoke(value)
        assert response.status_code == 400 and _error(response) == "invalid_grant"
    assert shop.introspect(token["access_token"])["active"] is True
    with pytest.raises(OAuthError) as refused:
        other.refresh(token["refresh_token"])
    assert refused.value.error == "invalid_grant"

    code, verifier = _code(person, shop)
    stolen = other.token_request({"grant_type": "authorization_code", "code": code,
                                  "redirect_uri": REDIRECT_URI, "code_verifier": verifier})
    assert stolen.status_code == 400 and _error(stolen) == "invalid_grant"
    assert _exchange(shop, code, verifier).status_code == 200  # the attempt did not spend it

    impostor = Merchant(live_vault, shop.client_id, "not-the-secret", shop.name,
                        shop.redirect_uri, shop.metadata)
    for endpoint, data in (
        ("token_endpoint", {"grant_type": "client_credentials"}),
        ("token_endpoint", {"grant_type": "refresh_token",
                            "refresh_token": token["refresh_token"]}),
        ("introspection_endpoint", {"token": token["access_token"]}),
        ("revocation_endpoint", {"token": token["access_token"]}),
    ):
        response = impostor.post(endpoint, data)
        assert response.status_code == 401 and _error(response) == "invalid_client", endpoint

    assert shop.introspect(token["access_token"])["active"] is True
    assert shop.refresh(token["refresh_token"])["access_token"]


# -- client credentials and scopes ------------------------------------------------------------


def test_client_credentials_carry_only_the_merchants_own_scopes(person: Person,
                                                                shop: Merchant) -> None:
    default = shop.token_request({"grant_type": "client_credentials"})
    assert default.status_code == 200
    body = default.json()
    assert body["scope"] == MERCHANT_DEFAULT_SCOPE
    assert "refresh_token" not in body and "subject" not in body
    introspected = shop.introspect(body["access_token"])
    assert introspected["active"] is True and "sub" not in introspected

    narrow = shop.token_request({"grant_type": "client_credentials", "scope": "decisions"})
    assert narrow.status_code == 200 and narrow.json()["scope"] == "decisions"

    for scope in ("contact:email:offers", "profile:email", "openid", "decisions openid",
                  "audit:read"):
        refused = shop.token_request({"grant_type": "client_credentials", "scope": scope})
        assert refused.status_code == 400, scope
        assert _error(refused) == "invalid_scope", scope

    # Nor can a person be asked for the merchant's own API scopes.
    page = person.open_consent(shop.start("contact:email:offers decisions").url)
    location = page.response.headers["Location"]
    assert query_of(location)["error"] == "invalid_scope"
    assert "code" not in query_of(location) and page.items == []


def test_an_auditor_gets_only_audit_read_and_no_person_grants(live_vault: LiveVault,
                                                              person: Person) -> None:
    auditor = register_merchant(live_vault, "Audit Office", kind="auditor")

    issued = auditor.token_request({"grant_type": "client_credentials"})
    assert issued.status_code == 200 and issued.json()["scope"] == "audit:read"

    for scope in ("decisions", "audit:read decisions", "contact:email:offers"):
        refused = auditor.token_request({"grant_type": "client_credentials", "scope": scope})
        assert refused.status_code == 400 and _error(refused) == "invalid_scope", scope

    for data in ({"grant_type": "authorization_code", "code": "x" * 43,
                  "redirect_uri": REDIRECT_URI, "code_verifier": "v" * 43},
                 {"grant_type": "refresh_token", "refresh_token": "x" * 64}):
        refused = auditor.token_request(data)
        assert refused.status_code == 400 and _error(refused) == "unauthorized_client"

    _, challenge = _pkce()
    page = person.open_consent(auditor.authorize_url(
        redirect_uri=REDIRECT_URI, scope=SCOPE, code_challenge=challenge,
        code_challenge_method="S256"))
    assert page.status_code == 400
    assert page.items == [] and "Location" not in page.response.headers


def test_implicit_and_password_grants_are_refused(person: Person, shop: Merchant) -> None:
    _, challenge = _pkce()
    state = generate_token(16)
    page = person.open_consent(shop.authorize_url(
        response_type="token", scope=SCOPE, state=state, code_challenge=challenge,
        code_challenge_method="S256"))
    location = page.response.headers.get("Location", "")
    assert page.items == []
    assert "access_token" not in location and "#" not in location
    assert query_of(location) | {"error_description": ""} == {
        "error": "unsupported_response_type", "state": state, "error_description": ""}

    password = shop.token_request({"grant_type": "password", "username": "grace@example.org",
                                   "password": person.password, "scope": SCOPE})
    assert password.status_code == 400
    assert _error(password) == "unsupported_grant_type"


# -- revocation (RFC 7009) --------------------------------------------------------------------


def test_the_owner_can_revoke_its_tokens_and_unknown_tokens_answer_200(
        person: Person, shop: Merchant) -> None:
    token = shop.connect(person, SCOPE, grant=GRANT)

    response = shop.revoke(token["access_token"], "access_token")

    assert response.status_code == 200
    assert shop.introspect(token["access_token"]) == {"active": False}
    assert shop.userinfo(token["access_token"]).status_code == 401

    # Revoking a refresh token ends its whole family.
    first = shop.connect(person, SCOPE, grant=GRANT)
    second = shop.refresh(first["refresh_token"])
    assert shop.revoke(second["refresh_token"], "refresh_token").status_code == 200
    assert shop.introspect(second["access_token"]) == {"active": False}
    with pytest.raises(OAuthError) as refused:
        shop.refresh(second["refresh_token"])
    assert refused.value.error == "invalid_grant"

    for hint in (None, "access_token", "refresh_token"):
        assert shop.revoke(generate_token(48), hint).status_code == 200, hint
    assert shop.introspect(generate_token(48)) == {"active": False}
