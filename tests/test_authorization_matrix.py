"""Authorization matrix: every route of the app x every principal.

``MATRIX`` is keyed by endpoint name and says, for each route and method,
how to call it (a path built from person A's and merchant A's resources, a
body) and which principals may succeed. It cannot silently miss a route:
one test fails when the app has an endpoint (or a method of one) the matrix
does not classify, another when the matrix names one that is gone.

What each cell must answer:

- an allowed cell really succeeds (its own check: 2xx with the right
  content, or for a page 200 / the redirect a successful form post gives);
- a denied API call is 401 (no or bad credentials, or a person's session
  cookie: cookies never authorize the API) or 403 (wrong scope, wrong kind
  of client) as problem+json; the token-side OAuth endpoints answer 401
  ``invalid_client`` to anyone who is not a client;
- a denied page redirects to /login, or answers 404 when a person opens
  another person's resource;
- merchant B asking about merchant A's subject gets exactly what an unknown
  subject gets (same status, same body apart from echoed ids, same rows
  written);
- merchant B's introspection of merchant A's token is ``{"active": false}``;
  its revocation or refresh is refused as RFC 7009 §2.1 / RFC 6749 §6 ask
  (``invalid_grant``, nothing more in the body) and has no effect;
- every denied cell leaves every table exactly as it was (counts and
  contents), and no answer of any cell, allowed or not, carries a value the
  caller must not see (``World.foreign_markers``; signed tokens in answers
  are decoded and searched too).

Run with ``-s`` to see the matrix and its counts.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode, urlsplit

import pytest
from api_helpers import (
    API,
    PASSWORD,
    REDIRECT_URI,
    Vault,
    assert_problem,
    basic_auth,
    register_merchant,
    rows,
    sign_up,
    subscribe,
    unique_email,
)
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authz_helpers import (
    ANONYMOUS,
    AUDITORS,
    BEARER,
    BOGUS,
    CLIENT,
    CLIENTS,
    EVERYONE,
    GRANTED_A,
    PAGE,
    PERSON,
    PERSON_TOKENS,
    PERSONS,
    PRINCIPALS,
    PUBLIC,
    Principal,
    Request,
    World,
    build_world,
    checkpoint,
    fresh_person_token,
    merchants,
    names,
    own_form,
    send,
    unknown_subject,
)
from flask import Flask
from flask.testing import FlaskClient
from ui_helpers import Browser
from werkzeug.test import TestResponse

from vault.clock import FixedClock
from vault.config import Settings
from vault.extensions import Runtime
from vault.services.rules import get_rules


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Rate limits out of the way: the matrix signs up, logs in and takes tokens far more
    often a minute than anyone would (the limits have their own tests)."""
    generous = "100000 per minute"
    return settings.replace(rate_limit_login_account=generous,
                            rate_limit_login_address=generous,
                            rate_limit_signup=generous, rate_limit_token=generous)


@pytest.fixture
def vault(app: Flask, client: FlaskClient, runtime: Runtime, clock: FixedClock) -> Vault:
    return Vault(app, client, runtime, clock)


# -- outcomes -------------------------------------------------------------------------------

OK = "ok"
UNAUTHENTICATED = "401"
FORBIDDEN = "403"
LOGIN = "login"
NOT_YOURS = "404"
AS_UNKNOWN = "unknown"
NOT_ISSUED = "not-issued-to-caller"
SCOPE_REFUSED = "scope"
ALREADY_IN = "already-logged-in"

#: how each outcome is shown in the printed matrix
SYMBOLS = {OK: "ok", UNAUTHENTICATED: "401", FORBIDDEN: "403", LOGIN: "lgn", NOT_YOURS: "404",
           AS_UNKNOWN: "unk", NOT_ISSUED: "nil", SCOPE_REFUSED: "scp", ALREADY_IN: "in"}


@dataclass(frozen=True)
class Target:
    """What a cell acts on: person A's and merchant A's resources, or fresh ones."""

    subject: str
    subjects: tuple[str, ...]
    subscription_id: str
    access_token: str
    refresh_token: str
    tree_sizes: tuple[int, int]
    email: str = ""


Build = Callable[[World, Principal, Target], Request]
Check = Callable[[World, Principal, Target, TestResponse], None]
Fresh = Callable[[World, Principal], Target]


@dataclass(frozen=True)
class Call:
    """One way to call a route, and who may succeed.

    ``special`` gives the outcome for principals that are neither allowed
    nor denied the default way; ``fresh`` makes the resources of an allowed
    cell that changes or ends something (so later cells still find person A's
    and merchant A's as they were); ``last`` runs the call after all others
    (erasing an account).
    """

    method: str
    auth: str
    build: Build
    allowed: frozenset[str]
    check: Check
    special: Mapping[str, str] = field(default_factory=dict)
    fresh: Fresh | None = None
    label: str = ""
    last: bool = False


def main_target(world: World) -> Target:
    return Target(subject=world.aa.subject, subjects=(world.aa.subject, world.ba.subject),
                  subscription_id=world.aa.subscription_id,
                  access_token=world.person_token.access_token,
                  refresh_token=world.person_token.refresh_token,
                  tree_sizes=(world.first_tree_size, world.first_tree_size))


def expected(call: Call, who: Principal) -> str:
    """The outcome the design gives ``who`` for ``call``: allowed, special, or the default
    refusal of the route's kind."""
    if who.name in call.allowed:
        return OK
    if who.name in call.special:
        return call.special[who.name]
    if call.auth == BEARER:
        return UNAUTHENTICATED if who.kind in (ANONYMOUS, BOGUS, PERSON) else FORBIDDEN
    if call.auth == CLIENT and not who.is_client:
        return UNAUTHENTICATED
    if call.auth == PAGE:
        return NOT_YOURS if who.kind == PERSON else LOGIN
    raise AssertionError(f"the matrix does not say what {who.name} gets here")


# -- fresh resources for cells that change something ----------------------------------------


def fresh_tokens(world: World, who: Principal) -> Target:
    issued = fresh_person_token(world)
    return replace(main_target(world), access_token=issued.access_token,
                   refresh_token=issued.refresh_token)


def fresh_subscription(world: World, who: Principal) -> Target:
    """A new subscription of the caller (a person) to a shop of its own."""
    shop = register_merchant(world.vault.runtime, "Throwaway Shop")
    person_id = world.member(who.owner).person_id
    link = subscribe(world.vault.runtime, shop, person_id=person_id,
                     scope="contact:email:offers contact:sms:offers profile:email")
    return replace(main_target(world), subject=link.subject,
                   subscription_id=link.subscription_id)


def fresh_account(world: World, who: Principal) -> Target:
    email = unique_email("matrix")
    sign_up(world.vault.runtime, email)
    return replace(main_target(world), email=email)


def fresh_tree_head(world: World, who: Principal) -> Target:
    return replace(main_target(world),
                   tree_sizes=(world.first_tree_size, checkpoint(world.vault)))


# -- allowed-cell checks --------------------------------------------------------------------


def json_of(response: TestResponse) -> dict[str, object]:
    body = response.get_json(silent=True)
    assert isinstance(body, dict), response.get_data(as_text=True)[:500]
    return body


def status(expected_status: int) -> Check:
    def check(world: World, who: Principal, target: Target, response: TestResponse) -> None:
        assert response.status_code == expected_status, response.get_data(as_text=True)[:500]

    return check


def page_with(*texts: str) -> Check:
    """A 200 HTML page showing each of ``texts``."""

    def check(world: World, who: Principal, target: Target, response: TestResponse) -> None:
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        assert response.mimetype == "text/html"
        for text in texts:
            assert text in response.text, text

    return check


def own_page_with_name(world: World, who: Principal, target: Target,
                       response: TestResponse) -> None:
    page_with()(world, who, target, response)
    assert world.member(who.owner).name in response.text


def redirects_to(path: str) -> Check:
    def check(world: World, who: Principal, target: Target, response: TestResponse) -> None:
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        assert urlsplit(response.headers["Location"]).path == path, response.headers["Location"]

    return check


def check_decision(world: World, who: Principal, target: Target, response: TestResponse) -> None:
    body = json_of(response)
    assert response.status_code == 200, body
    assert (body["subject"], body["allowed"], body["reason"]) == (target.subject, True, "allowed")
    assert body["reach"] is None  # person A shares no e-mail address with merchant A


def check_batch(world: World, who: Principal, target: Target, response: TestResponse) -> None:
    body = json_of(response)
    assert response.status_code == 200, body
    results = body["results"]
    assert isinstance(results, list)
    assert [r["subject"] for r in results] == list(target.subjects)
    assert all(r["allowed"] and r["reason"] == "allowed" for r in results), results


def check_contact(world: World, who: Principal, target: Target, response: TestResponse) -> None:
    body = json_of(response)
    assert response.status_code == 201, body
    assert (body["subject"], body["violation"]) == (target.subject, False)


def check_list(world: World, who: Principal, target: Target, response: TestResponse) -> None:
    body = json_of(response)
    assert response.status_code == 200, body
    mine = ({world.aa.subject, world.ba.subject} if who.owner == "A" else {world.ab.subject})
    assert {item["subject"] for item in body["items"]} == mine  # type: ignore[attr-defined]


def check_subscription(world: World, who: Principal, target: Target,
                       response: TestResponse) -> None:
    body = json_of(response)
    assert response.status_code == 200, body
    assert (body["subject"], body["status"], body["shared_fields"]) == \
        (target.subject, "active", ["name"])


def check_receipt(world: World, who: Principal, target: Target, response: TestResponse) -> None:
    body = json_of(response)
    assert response.status_code == 200, body
    claims = jwt_claims(str(body["receipt"]))
    assert claims["sub"] == target.subject
    assert claims["controller"]["client_id"] == world.merchant_a.client_id  # type: ignore[index]


def check_receipt_download(world: World, who: Principal, target: Target,
                           response: TestResponse) -> None:
    body = json_of(response)
    assert response.status_code == 200, body
    assert "attachment" in response.headers["Content-Disposition"]
    claims = jwt_claims(str(body["receipt"]))
    assert claims["sub"] == target.subject
    assert claims["controller"]["client_id"] == world.merchant_a.client_id  # type: ignore[index]


def check_export(world: World, who: Principal, target: Target, response: TestResponse) -> None:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines() if line]
    assert lines[0]["kind"] == "tree_head"
    assert len(lines) > 1


def check_tree_head(world: World, who: Principal, target: Target,
                    response: TestResponse) -> None:
    body = json_of(response)
    assert response.status_code == 200, body
    assert int(body["tree_size"]) >= world.first_tree_size  # type: ignore[call-overload]


def check_consistency(world: World, who: Principal, target: Target,
                      response: TestResponse) -> None:
    body = json_of(response)
    assert response.status_code == 200, body
    sizes = (body["first"]["tree_size"], body["second"]["tree_size"])  # type: ignore[index]
    assert sizes == target.tree_sizes


def check_inclusion(world: World, who: Principal, target: Target,
                    response: TestResponse) -> None:
    body = json_of(response)
    assert response.status_code == 200, body
    assert body["index"] == 0 and body["proof"] is not None


def check_userinfo(world: World, who: Principal, target: Target, response: TestResponse) -> None:
    body = json_of(response)
    assert response.status_code == 200, body
    # Only the field granted to this merchant, and the pairwise subject it knows.
    if who.merchant == "A":
        assert body == {"sub": world.aa.subject, "name": world.person_a.name}
    else:
        assert body == {"sub": world.ab.subject, "email": world.person_a.email}


def check_client_token(world: World, who: Principal, target: Target,
                       response: TestResponse) -> None:
    body = json_of(response)
    assert response.status_code == 200, body
    assert body["access_token"] and "refresh_token" not in body
    assert set(str(body["scope"]).split()) == set(who.scopes)
    assert "subject" not in body


def check_refresh(world: World, who: Principal, target: Target, response: TestResponse) -> None:
    body = json_of(response)
    assert response.status_code == 200, body
    assert body["access_token"] != target.access_token
    assert body["subject"] == world.aa.subject


def check_introspection(world: World, who: Principal, target: Target,
                        response: TestResponse) -> None:
    body = json_of(response)
    assert response.status_code == 200, body
    assert body["active"] is True, body
    assert (body["client_id"], body["sub"]) == (world.merchant_a.client_id, world.aa.subject)


def check_revocation(world: World, who: Principal, target: Target,
                     response: TestResponse) -> None:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert introspect(world, target.access_token) == {"active": False}


def check_public_json(world: World, who: Principal, target: Target,
                      response: TestResponse) -> None:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    json_of(response)


def check_consent_page(world: World, who: Principal, target: Target,
                       response: TestResponse) -> None:
    page_with(world.merchant_a.name, 'value="contact:email:offers"')(world, who, target, response)


def check_consent_given(world: World, who: Principal, target: Target,
                        response: TestResponse) -> None:
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?") and "code=" in location, location


def check_revoked(world: World, who: Principal, target: Target, response: TestResponse) -> None:
    redirects_to("/subscriptions")(world, who, target, response)
    assert subscription_status(world, target.subscription_id) == "revoked"


def check_permissions_saved(world: World, who: Principal, target: Target,
                            response: TestResponse) -> None:
    redirects_to(f"/subscriptions/{target.subscription_id}")(world, who, target, response)
    (row,) = rows(world.vault.runtime, "SELECT version FROM contact_permission "
                  "WHERE subscription_id = :id", id=target.subscription_id)
    assert row["version"] == 2


def check_rules_saved(world: World, who: Principal, target: Target,
                      response: TestResponse) -> None:
    redirects_to("/rules")(world, who, target, response)
    rt = world.vault.runtime
    with rt.database.read() as session:
        stored = get_rules(session, world.member(who.owner).person_id, data_keys=rt.data_keys)
    assert ("phone", "surveys") in stored.blocked


def check_profile_saved(world: World, who: Principal, target: Target,
                        response: TestResponse) -> None:
    redirects_to("/profile")(world, who, target, response)
    rt = world.vault.runtime
    with rt.database.read() as session:
        stored = rt.accounts.get_profile(session, world.member(who.owner).person_id)
    assert stored.interests == INTERESTS


def check_export_download(world: World, who: Principal, target: Target,
                          response: TestResponse) -> None:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    assert world.member(who.owner).email in response.get_data(as_text=True)


def check_erased(world: World, who: Principal, target: Target, response: TestResponse) -> None:
    page_with()(world, who, target, response)
    mine = world.aa if who.owner == "A" else world.ba
    assert subscription_status(world, mine.subscription_id) == "erased"
    if who.owner == "A":  # person B, not yet erased, keeps everything
        assert subscription_status(world, world.ba.subscription_id) == "active"


def subscription_status(world: World, subscription_id: str) -> str:
    (row,) = rows(world.vault.runtime, "SELECT status FROM subscription WHERE id = :id",
                  id=subscription_id)
    return str(row["status"])


def introspect(world: World, token: str) -> dict[str, object]:
    response = world.vault.client.post("/oauth/introspect", data={"token": token},
                                       headers=basic_auth(world.merchant_a.client_id,
                                                          world.merchant_a.client_secret))
    assert response.status_code == 200, response.text
    return json_of(response)


# -- request builders -----------------------------------------------------------------------


def api_post(path: str, body: Callable[[Target], dict[str, object]]) -> Build:
    return lambda world, who, target: Request("POST", API + path, json=body(target))


def api_get(path: Callable[[World, Target], str]) -> Build:
    return lambda world, who, target: Request("GET", API + path(world, target))


def oauth_form(path: str, data: Callable[[World, Principal, Target], dict[str, object]],
               method: str = "POST") -> Build:
    return lambda world, who, target: Request(method, path, data=data(world, who, target))


def get(path: str | Callable[[World, Target], str]) -> Build:
    return lambda world, who, target: Request(
        "GET", path(world, target) if callable(path) else path)


def page_post(path: Callable[[World, Target], str],
              form: Callable[[World, Principal, Target], Mapping[str, object]],
              *, fresh_session: bool = False) -> Build:
    return lambda world, who, target: Request("POST", path(world, target),
                                              form=form(world, who, target),
                                              fresh_session=fresh_session)


def owner_browser(world: World, who: Principal, target: Target) -> Browser:
    """The person whose form a cell posts: the caller if a person, else person A."""
    return world.member(who.owner if who.kind == PERSON else "A").browser


def authorize_query(world: World) -> str:
    return urlencode({
        "response_type": "code", "client_id": world.merchant_a.client_id,
        "redirect_uri": REDIRECT_URI, "state": "matrix-state",
        "scope": "openid contact:email:offers contact:sms:offers profile:name profile:email",
        "code_challenge": create_s256_code_challenge("m" * 64),
        "code_challenge_method": "S256"})


def permissions_form(world: World, who: Principal, target: Target) -> dict[str, object]:
    """The permission grid of ``target`` as person A sees it, with a weekly cap added."""
    page = f"/subscriptions/{target.subscription_id}"
    form = own_form(world.person_a.browser, page, f"{page}/permissions")
    cap = next(name for name in form
               if name.startswith("max_per_week") and name.endswith("email:offers"))
    return {**form, cap: "3"}


def rules_form(world: World, who: Principal, target: Target) -> dict[str, object]:
    form = own_form(owner_browser(world, who, target), "/rules")
    return {**form, "new_channel": "phone", "new_purpose": "surveys"}


INTERESTS = "gardening and old maps"


def profile_form(world: World, who: Principal, target: Target) -> dict[str, object]:
    form = own_form(owner_browser(world, who, target), "/profile")
    return {**form, "interests": INTERESTS}


def escalation_scope(who: Principal) -> str:
    return "decisions" if who.name in AUDITORS else "audit:read"


DECISION_BODY = {"channel": "email", "purpose": "offers"}
A_DECIDES = merchants("A", "decisions")
A_WRITES = merchants("A", "contacts:write")
A_READS = merchants("A", "subscriptions:read")
B_DECIDES = merchants("B", "decisions")
B_WRITES = merchants("B", "contacts:write")
B_READS = merchants("B", "subscriptions:read")
OTHER_CLIENTS = names(merchants("B"), AUDITORS)
PERSON_A_ONLY = frozenset({"person A"})
NOT_A_PERSON = EVERYONE - PERSONS


def each(names_: frozenset[str], outcome: str) -> dict[str, str]:
    return dict.fromkeys(names_, outcome)


# -- the matrix -----------------------------------------------------------------------------

MATRIX: dict[str, tuple[Call, ...]] = {
    # The merchant API: merchant A's own resources, merchant B's token asking about them.
    "decisions.ask_decision": (Call(
        "POST", BEARER, api_post("/decisions", lambda t: {"subject": t.subject, **DECISION_BODY}),
        allowed=A_DECIDES, special=each(B_DECIDES, AS_UNKNOWN), check=check_decision),),
    "decisions.ask_batch": (Call(
        "POST", BEARER,
        api_post("/decisions/batch", lambda t: {"subjects": list(t.subjects), **DECISION_BODY}),
        allowed=A_DECIDES, special=each(B_DECIDES, AS_UNKNOWN), check=check_batch),),
    "contacts.report_contact": (Call(
        "POST", BEARER, api_post("/contacts", lambda t: {"subject": t.subject, **DECISION_BODY}),
        allowed=A_WRITES, special=each(B_WRITES, AS_UNKNOWN), check=check_contact),),
    "subscriptions.list_subscriptions": (Call(
        "GET", BEARER, api_get(lambda w, t: "/subscriptions"),
        allowed=A_READS | B_READS, check=check_list),),
    "subscriptions.get_subscription": (Call(
        "GET", BEARER, api_get(lambda w, t: f"/subscriptions/{t.subject}"),
        allowed=A_READS, special=each(B_READS, AS_UNKNOWN), check=check_subscription),),
    "subscriptions.get_receipt": (Call(
        "GET", BEARER, api_get(lambda w, t: f"/subscriptions/{t.subject}/receipt"),
        allowed=A_READS, special=each(B_READS, AS_UNKNOWN), check=check_receipt),),
    # The consent log: auditors only.
    "audit.export_events": (
        Call("GET", BEARER, api_get(lambda w, t: "/audit/events"), allowed=AUDITORS,
             check=check_export),
        Call("GET", BEARER,
             api_get(lambda w, t: f"/audit/events?merchant={w.merchant_a.client_id}"),
             allowed=AUDITORS, check=check_export, label="merchant A's events"),
    ),
    "audit.latest_tree_head": (Call(
        "GET", BEARER, api_get(lambda w, t: "/audit/tree-head"), allowed=AUDITORS,
        check=check_tree_head),),
    "audit.consistency_proof": (Call(
        "GET", BEARER, api_get(lambda w, t: "/audit/proofs/consistency?"
                               f"first={t.tree_sizes[0]}&second={t.tree_sizes[1]}"),
        allowed=AUDITORS, check=check_consistency, fresh=fresh_tree_head),),
    "audit.inclusion_proof": (Call(
        "GET", BEARER, api_get(lambda w, t: "/audit/proofs/inclusion?index=0"),
        allowed=AUDITORS, check=check_inclusion),),
    # OAuth: the resource route for person-granted tokens...
    "oauth.userinfo": (
        Call("GET", BEARER, get("/oauth/userinfo"), allowed=PERSON_TOKENS,
             check=check_userinfo),
        Call("POST", BEARER, oauth_form("/oauth/userinfo", lambda w, p, t: {}),
             allowed=PERSON_TOKENS, check=check_userinfo),
    ),
    # ...and the token-side endpoints, where clients authenticate themselves.
    "oauth.issue_token": (
        Call("POST", CLIENT, oauth_form("/oauth/token", lambda w, p, t: {
            "grant_type": "client_credentials", "scope": " ".join(p.scopes) or "decisions"}),
             allowed=CLIENTS, check=check_client_token, label="client credentials"),
        Call("POST", CLIENT, oauth_form("/oauth/token", lambda w, p, t: {
            "grant_type": "client_credentials", "scope": escalation_scope(p)}),
             allowed=frozenset(), special=each(CLIENTS, SCOPE_REFUSED), check=status(200),
             label="another kind's scope"),
        Call("POST", CLIENT, oauth_form("/oauth/token", lambda w, p, t: {
            "grant_type": "refresh_token", "refresh_token": t.refresh_token}),
             allowed=merchants("A"), special=each(OTHER_CLIENTS, NOT_ISSUED),
             check=check_refresh, fresh=fresh_tokens, label="refresh A's person token"),
    ),
    "oauth.introspect_token": (
        Call("POST", CLIENT, oauth_form("/oauth/introspect",
                                        lambda w, p, t: {"token": t.access_token}),
             allowed=merchants("A"), special=each(OTHER_CLIENTS, NOT_ISSUED),
             check=check_introspection, label="A's person token"),
        Call("POST", CLIENT, oauth_form("/oauth/introspect", lambda w, p, t: {
            "token": t.refresh_token, "token_type_hint": "refresh_token"}),
             allowed=merchants("A"), special=each(OTHER_CLIENTS, NOT_ISSUED),
             check=check_introspection, label="A's refresh token"),
    ),
    "oauth.revoke_token": (
        Call("POST", CLIENT, oauth_form("/oauth/revoke",
                                        lambda w, p, t: {"token": t.access_token}),
             allowed=merchants("A"), special=each(OTHER_CLIENTS, NOT_ISSUED),
             check=check_revocation, fresh=fresh_tokens, label="A's person token"),
        Call("POST", CLIENT, oauth_form("/oauth/revoke", lambda w, p, t: {
            "token": t.refresh_token, "token_type_hint": "refresh_token"}),
             allowed=merchants("A"), special=each(OTHER_CLIENTS, NOT_ISSUED),
             check=check_revocation, fresh=fresh_tokens, label="A's refresh token"),
    ),
    # Public documents.
    "health.health": (Call("GET", PUBLIC, get("/health"), allowed=EVERYONE,
                           check=check_public_json),),
    "oauth.jwks": (Call("GET", PUBLIC, get("/.well-known/jwks.json"), allowed=EVERYONE,
                        check=check_public_json),),
    "oauth.authorization_server_metadata": (Call(
        "GET", PUBLIC, get("/.well-known/oauth-authorization-server"), allowed=EVERYONE,
        check=check_public_json),),
    "oauth.openid_configuration": (Call(
        "GET", PUBLIC, get("/.well-known/openid-configuration"), allowed=EVERYONE,
        check=check_public_json),),
    # The consent page: a logged-in person, for merchant A.
    "oauth.authorize": (
        Call("GET", PAGE, get(lambda w, t: f"/oauth/authorize?{authorize_query(w)}"),
             allowed=PERSONS, check=check_consent_page),
        Call("POST", PAGE, page_post(
            lambda w, t: f"/oauth/authorize?{authorize_query(w)}",
            lambda w, p, t: {"action": "allow",
                             "grant": list(GRANTED_A) if p.owner == "A"
                             else ["contact:email:offers", "profile:email"]}),
             allowed=PERSONS, check=check_consent_given),
    ),
    # The person's pages.
    "ui.home": (Call("GET", PAGE, get("/"), allowed=PERSONS,
                     check=redirects_to("/subscriptions")),),
    "ui.login": (
        Call("GET", PUBLIC, get("/login"), allowed=EVERYONE, check=page_with('name="password"')),
        Call("POST", PUBLIC, page_post(lambda w, t: "/login", lambda w, p, t: {
            "email": t.email, "password": PASSWORD}, fresh_session=True),
             allowed=EVERYONE, check=redirects_to("/subscriptions"), fresh=fresh_account),
    ),
    "ui.logout": (Call("POST", PUBLIC, page_post(lambda w, t: "/logout", lambda w, p, t: {},
                                                 fresh_session=True),
                       allowed=EVERYONE, check=redirects_to("/login")),),
    "ui.set_language": (Call("POST", PUBLIC, page_post(
        lambda w, t: "/language", lambda w, p, t: {"lang": "en", "next": "/login"}),
        allowed=EVERYONE, check=redirects_to("/login")),),
    "ui.signup": (
        Call("GET", PUBLIC, get("/signup"), allowed=NOT_A_PERSON,
             special=each(PERSONS, ALREADY_IN), check=page_with('name="password_confirm"')),
        Call("POST", PUBLIC, page_post(lambda w, t: "/signup", lambda w, p, t: {
            "email": unique_email("signup"), "password": PASSWORD,
            "password_confirm": PASSWORD, "name": "", "language": "en",
            "time_zone": "Europe/Amsterdam"}, fresh_session=True),
             allowed=NOT_A_PERSON, special=each(PERSONS, ALREADY_IN),
             check=redirects_to("/subscriptions")),
    ),
    "ui.subscriptions": (Call("GET", PAGE, get("/subscriptions"), allowed=PERSONS,
                              check=page_with("Shop Alpha")),),
    "ui.merchant": (Call("GET", PAGE, get(lambda w, t: f"/subscriptions/{t.subscription_id}"),
                         allowed=PERSON_A_ONLY, check=page_with("Shop Alpha")),),
    "ui.receipt": (Call(
        "GET", PAGE, get(lambda w, t: f"/subscriptions/{t.subscription_id}/receipt"),
        allowed=PERSON_A_ONLY, check=check_receipt_download),),
    "ui.revoke_confirm": (Call(
        "GET", PAGE, get(lambda w, t: f"/subscriptions/{t.subscription_id}/revoke"),
        allowed=PERSON_A_ONLY, check=page_with("Shop Alpha")),),
    "ui.revoke": (Call(
        "POST", PAGE, page_post(lambda w, t: f"/subscriptions/{t.subscription_id}/revoke",
                                lambda w, p, t: {}),
        allowed=PERSON_A_ONLY, check=check_revoked, fresh=fresh_subscription),),
    "ui.save_permissions": (Call(
        "POST", PAGE, page_post(lambda w, t: f"/subscriptions/{t.subscription_id}/permissions",
                                permissions_form),
        allowed=PERSON_A_ONLY, check=check_permissions_saved, fresh=fresh_subscription),),
    "ui.rules": (
        Call("GET", PAGE, get("/rules"), allowed=PERSONS, check=page_with('name="version"')),
        Call("POST", PAGE, page_post(lambda w, t: "/rules", rules_form), allowed=PERSONS,
             check=check_rules_saved),
    ),
    "ui.profile": (
        Call("GET", PAGE, get("/profile"), allowed=PERSONS, check=own_page_with_name),
        Call("POST", PAGE, page_post(lambda w, t: "/profile", profile_form), allowed=PERSONS,
             check=check_profile_saved),
    ),
    "ui.change_password": (Call("POST", PAGE, page_post(lambda w, t: "/profile/password",
                                                        lambda w, p, t: {
        "current_password": PASSWORD, "new_password": PASSWORD,
        "new_password_confirm": PASSWORD}), allowed=PERSONS, check=redirects_to("/profile")),),
    "ui.activity": (
        Call("GET", PAGE, get("/activity"), allowed=PERSONS, check=page_with("Shop Alpha")),
        Call("GET", PAGE, get(lambda w, t: f"/activity?merchant={t.subscription_id}"),
             allowed=PERSON_A_ONLY, check=page_with("Shop Alpha"), label="one subscription"),
    ),
    "ui.my_data": (Call("GET", PAGE, get("/my-data"), allowed=PERSONS,
                        check=page_with('href="/my-data/export"')),),
    "ui.my_data_export": (Call("GET", PAGE, get("/my-data/export"), allowed=PERSONS,
                               check=check_export_download),),
    "ui.my_data_delete": (Call("GET", PAGE, get("/my-data/delete"), allowed=PERSONS,
                               check=page_with('name="password"')),),
    "ui.my_data_delete_confirmed": (Call(
        "POST", PAGE, page_post(lambda w, t: "/my-data/delete",
                                lambda w, p, t: {"password": PASSWORD}),
        allowed=PERSONS, check=check_erased, last=True),),
}

#: routes no principal matrix applies to
UNCLASSIFIED_ON_PURPOSE = frozenset({"static"})


def is_page_route(endpoint: str) -> bool:
    return endpoint.startswith("ui.") or endpoint == "oauth.authorize"


# -- running the cells ----------------------------------------------------------------------

_JWT = re.compile(r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


def _b64(segment: str) -> str:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode(
            "utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""


def jwt_claims(token: str) -> dict[str, object]:
    document = json.loads(_b64(token.split(".")[1]))
    assert isinstance(document, dict)
    return document


def visible_text(response: TestResponse) -> str:
    """The answer as its caller can read it: body, headers and decoded signed tokens."""
    text = response.get_data(as_text=True) + "\n" + str(response.headers)
    decoded = [_b64(part) for token in _JWT.findall(text) for part in token.split(".")[:2]]
    return "\n".join([text, *decoded])


def changes(before: Mapping[str, tuple[int, str]],
            after: Mapping[str, tuple[int, str]]) -> dict[str, int]:
    """Per changed table, how many rows it gained (0: rows were changed in place)."""
    return {name: after[name][0] - before[name][0] for name in after
            if after[name] != before.get(name)}


def normalised(document: object) -> object:
    """An answer without what differs between two subjects: ids and the echoed subject."""
    if isinstance(document, dict):
        return {k: normalised(v) for k, v in document.items()
                if k not in ("decision_id", "subject", "request_id", "instance")}
    if isinstance(document, list):
        return [normalised(item) for item in document]
    return document


def check_denial(world: World, call: Call, outcome: str, request: Request,
                 response: TestResponse, target: Target) -> None:
    body_text = response.get_data(as_text=True)[:500]
    if outcome == UNAUTHENTICATED and call.auth == CLIENT:
        assert response.status_code == 401, body_text
        assert json_of(response)["error"] == "invalid_client"
    elif outcome == UNAUTHENTICATED:
        assert_problem(response, 401, "unauthenticated")
    elif outcome == FORBIDDEN:
        body = assert_problem(response, 403)
        assert body["type"] in ("https://prefvault.example/problems/insufficient-scope",
                                "https://prefvault.example/problems/forbidden"), body
    elif outcome == LOGIN:
        assert response.status_code == 302, body_text
        assert urlsplit(response.headers["Location"]).path == "/login"
    elif outcome == NOT_YOURS:
        assert response.status_code == 404, body_text
    elif outcome == ALREADY_IN:
        assert response.status_code == 302, body_text
        assert urlsplit(response.headers["Location"]).path == "/subscriptions"
    elif outcome == SCOPE_REFUSED:
        assert response.status_code == 400, body_text
        assert json_of(response)["error"] == "invalid_scope"
    elif outcome == NOT_ISSUED:
        body = json_of(response)
        if request.path == "/oauth/introspect":
            assert (response.status_code, body) == (200, {"active": False})
        else:
            # RFC 7009 §2.1 and RFC 6749 §6: refused, and the answer says nothing more
            # (an auditor may not refresh at all: unauthorized_client).
            assert response.status_code == 400, body
            assert body["error"] in ("invalid_grant", "unauthorized_client"), body
            assert set(body) <= {"error", "error_description"}, body
        assert introspect(world, target.access_token)["active"] is True
    else:
        raise AssertionError(f"unknown outcome {outcome}")


def check_unknown_subject(response: TestResponse) -> None:
    """The answer about a subject the caller was never given: a decision saying so, or 404."""
    body = response.get_json(silent=True)
    if isinstance(body, dict) and "results" in body:
        assert {(r["allowed"], r["reason"]) for r in body["results"]} == \
            {(False, "unknown_subject")}, body
    elif isinstance(body, dict) and "reason" in body:
        assert (body["allowed"], body["reason"]) == (False, "unknown_subject"), body
    else:
        assert_problem(response, 404, "not-found", "subject")


@dataclass
class Tally:
    """What the cells found: counts per outcome, failures, and each row of the matrix."""

    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    #: the cells that let a denied caller succeed or showed a value it must not see
    leaky: set[str] = field(default_factory=set)
    rows: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def leaks(self) -> int:
        return len(self.leaky)

    @property
    def cells(self) -> int:
        return sum(self.outcomes.values())


State = dict[str, tuple[int, str]]


def run_cell(world: World, endpoint: str, call: Call, who: Principal, tally: Tally,
             state: State | None) -> tuple[str, State | None]:
    """Run one cell; its outcome, and the stored state after it when known to be current.

    A denied cell is compared with the state before it (the previous cell's
    ``after`` when nothing ran in between); an allowed cell may write, so the
    next cell takes a new snapshot.
    """
    outcome = expected(call, who)
    where = f"{endpoint} {call.method} {call.label}".strip() + f" x {who.name} ({outcome})"
    after: State | None = None
    try:
        target = call.fresh(world, who) if outcome == OK and call.fresh else main_target(world)
        request = call.build(world, who, target)
        before = world.snapshot() if state is None or outcome == OK else state
        response = send(world, who, call.auth, request)
        after = world.snapshot() if outcome != OK else None
    except AssertionError as error:
        tally.failures.append(f"{where}: could not run the cell: {error}")
        return outcome, None
    tally.outcomes[outcome] += 1
    seen = visible_text(response)
    leaked = sorted(m for m in world.foreign_markers(who)
                    if m not in request.text() and m in seen)
    if leaked:
        tally.leaky.add(where)
        tally.failures.append(f"{where}: LEAK of {leaked} in {response.status_code} answer")
    try:
        if outcome == OK:
            call.check(world, who, target, response)
        elif outcome == AS_UNKNOWN:
            assert after is not None
            twin = replace(target, subject=unknown_subject(),
                           subjects=tuple(unknown_subject() for _ in target.subjects))
            twin_request = call.build(world, who, twin)
            twin_response = send(world, who, call.auth, twin_request)
            final = world.snapshot()
            assert (response.status_code, response.mimetype) == \
                (twin_response.status_code, twin_response.mimetype)
            assert normalised(response.get_json()) == normalised(twin_response.get_json()), \
                (response.get_json(), twin_response.get_json())
            assert changes(before, after) == changes(after, final)
            after = final
            check_unknown_subject(response)
        else:
            check_denial(world, call, outcome, request, response, target)
            assert changes(before, after or {}) == {}, "a denied call changed stored state"
    except (AssertionError, KeyError) as error:
        if outcome != OK and response.status_code < 300:
            tally.leaky.add(where)
        tally.failures.append(f"{where}: {type(error).__name__} {error}"[:1500])
        after = None
    return outcome, after


def run_matrix(world: World, endpoints: list[str]) -> Tally:
    tally = Tally()
    calls = [(endpoint, call) for endpoint in endpoints for call in MATRIX[endpoint]]
    calls.sort(key=lambda item: item[1].last)
    state: State | None = None
    for endpoint, call in calls:
        row = []
        for who in PRINCIPALS:
            outcome, state = run_cell(world, endpoint, call, who, tally, state)
            row.append(SYMBOLS[outcome])
        tally.rows.append((f"{endpoint} {call.method} {call.label}".strip(), row))
    return tally


_SHORT = {"anonymous": "anon", "bogus credentials": "bogus", "person A": "pA", "person B": "pB",
          "auditor [audit:read]": "aud", "person A's token for merchant A": "tokA",
          "person A's token for merchant B": "tokB"}


def short(who: Principal) -> str:
    if who.name in _SHORT:
        return _SHORT[who.name]
    scopes = who.name.split("[")[1].rstrip("]")
    abbreviation = {"all": "*", "decisions": "d", "contacts:write": "c",
                    "subscriptions:read": "s"}
    prefix = "-" if scopes.startswith("-") else ""
    return f"m{who.owner}{prefix}{abbreviation[scopes.lstrip('-')]}"


def report(title: str, tally: Tally, seconds: float) -> None:
    width = max(len(name) for name, _ in tally.rows)
    print(f"\n{title}: routes x principals")
    print(" " * width + " " + " ".join(f"{short(p):>5}" for p in PRINCIPALS))
    for name, row in tally.rows:
        print(f"{name:<{width}} " + " ".join(f"{cell:>5}" for cell in row))
    allowed = tally.outcomes[OK]
    print(f"{title}: {tally.cells} cells checked, {allowed} allowed, "
          f"{tally.cells - allowed} denied ({dict(sorted(tally.outcomes.items()))}), "
          f"leaks = {tally.leaks}, failures = {len(tally.failures)}, {seconds:.1f} s")


def check_matrix(vault: Vault, title: str, endpoints: list[str]) -> None:
    started = time.monotonic()
    world = build_world(vault)
    tally = run_matrix(world, endpoints)
    report(title, tally, time.monotonic() - started)
    assert not tally.failures, "\n".join(tally.failures)
    assert tally.leaks == 0


# -- the tests ------------------------------------------------------------------------------


def app_routes(app: Flask) -> Iterator[tuple[str, frozenset[str]]]:
    for rule in app.url_map.iter_rules():
        if rule.endpoint not in UNCLASSIFIED_ON_PURPOSE:
            yield rule.endpoint, frozenset((rule.methods or set()) - {"HEAD", "OPTIONS"})


def test_every_route_and_method_of_the_app_is_in_the_matrix(app: Flask) -> None:
    missing = sorted({endpoint for endpoint, _ in app_routes(app)} - MATRIX.keys())
    assert not missing, f"add these endpoints to MATRIX: {missing}"
    for endpoint, methods in app_routes(app):
        covered = {call.method for call in MATRIX[endpoint]}
        assert methods <= covered, f"{endpoint}: add calls for {sorted(methods - covered)}"


def test_the_matrix_names_no_route_or_method_the_app_lacks(app: Flask) -> None:
    routes: dict[str, set[str]] = {}
    for endpoint, methods in app_routes(app):
        routes.setdefault(endpoint, set()).update(methods)
    gone = sorted(MATRIX.keys() - routes.keys())
    assert not gone, f"remove these endpoints from MATRIX: {gone}"
    for endpoint, calls in MATRIX.items():
        extra = {call.method for call in calls} - routes[endpoint]
        assert not extra, f"{endpoint} no longer answers {sorted(extra)}"


def test_every_principal_gets_a_decided_outcome_in_every_cell() -> None:
    for endpoint, calls in MATRIX.items():
        for call in calls:
            for who in PRINCIPALS:
                assert expected(call, who) in SYMBOLS, (endpoint, who.name)
            assert set(call.allowed) | set(call.special) <= EVERYONE, endpoint


def test_api_and_oauth_routes_answer_only_the_principals_the_design_allows(
        vault: Vault) -> None:
    check_matrix(vault, "API and OAuth",
                 [endpoint for endpoint in MATRIX if not is_page_route(endpoint)])


def test_pages_answer_only_their_own_person(vault: Vault) -> None:
    check_matrix(vault, "Pages", [endpoint for endpoint in MATRIX if is_page_route(endpoint)])
