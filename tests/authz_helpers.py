"""The principals of the authorization matrix and the world they act in.

One ``World`` per test: two people, two merchants, an auditor and the
credentials each principal presents, all made through the real routes
(people log in through the login form, merchants take client-credentials
tokens at ``/oauth/token``, the person-granted tokens come from the
authorization code flow with PKCE on the consent page).

Who knows what, so that a leak can be recognised in any answer:

- person A granted merchant A ``contact:email:offers profile:name`` and
  merchant B ``contact:email:offers profile:email`` (consent page, with
  ``openid``: each merchant holds a person-granted token);
- person B granted merchant A ``contact:email:offers profile:email``;
- so merchant A may learn A's name and B's e-mail address, merchant B may
  learn A's e-mail address, the auditor sees pseudonymous ids only.

``World.foreign_markers(principal)`` lists the values a principal must never
see; every answer of the matrix is searched for them.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urlsplit

from api_helpers import (
    PASSWORD,
    REDIRECT_URI,
    ApiMerchant,
    Vault,
    basic_auth,
    bearer,
    register_merchant,
    subscribe,
    token_header,
)
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from flask.testing import FlaskClient
from sqlalchemy import inspect, text
from ui_helpers import Browser, csrf_token, log_in, logged_in
from werkzeug.test import TestResponse

from vault.services.scopes import MERCHANT_SCOPES
from vault.services.subscriptions import new_subject

# -- principals -----------------------------------------------------------------------------

ANONYMOUS = "anonymous"
BOGUS = "bogus"
PERSON = "person"
MERCHANT = "merchant"
AUDITOR = "auditor"
PERSON_TOKEN = "person-token"


@dataclass(frozen=True)
class Principal:
    """Who calls: a kind, whose (``A``/``B``) and, for a token, which scopes.

    A person-granted token is person A's; ``merchant`` says which merchant holds it.
    """

    name: str
    kind: str
    owner: str = ""
    scopes: tuple[str, ...] = ()
    merchant: str = ""

    @property
    def is_client(self) -> bool:
        """A registered client that authenticates at the token-side endpoints."""
        return self.kind in (MERCHANT, AUDITOR)


def _merchant_principals(owner: str) -> list[Principal]:
    """All scopes, each scope alone, and all but each scope."""
    found = [Principal(f"merchant {owner} [all]", MERCHANT, owner, MERCHANT_SCOPES)]
    found += [Principal(f"merchant {owner} [{s}]", MERCHANT, owner, (s,))
              for s in MERCHANT_SCOPES]
    found += [Principal(f"merchant {owner} [-{s}]", MERCHANT, owner,
                        tuple(x for x in MERCHANT_SCOPES if x != s))
              for s in MERCHANT_SCOPES]
    return found


PRINCIPALS: tuple[Principal, ...] = (
    Principal(ANONYMOUS, ANONYMOUS),
    Principal("bogus credentials", BOGUS),
    Principal("person A", PERSON, "A"),
    Principal("person B", PERSON, "B"),
    *_merchant_principals("A"),
    *_merchant_principals("B"),
    Principal("auditor [audit:read]", AUDITOR, "", ("audit:read",)),
    Principal("person A's token for merchant A", PERSON_TOKEN, "A",
              ("openid", "contact:email:offers", "profile:name"), merchant="A"),
    Principal("person A's token for merchant B", PERSON_TOKEN, "A",
              ("openid", "contact:email:offers", "profile:email"), merchant="B"),
)
BY_NAME = {p.name: p for p in PRINCIPALS}


def names(*groups: Iterable[str]) -> frozenset[str]:
    return frozenset(name for group in groups for name in group)


def merchants(owner: str, scope: str | None = None) -> frozenset[str]:
    """Merchant ``owner``'s principals, or only those whose token carries ``scope``."""
    return frozenset(p.name for p in PRINCIPALS if p.kind == MERCHANT and p.owner == owner
                     and (scope is None or scope in p.scopes))


PERSONS = frozenset(p.name for p in PRINCIPALS if p.kind == PERSON)
EVERYONE = frozenset(BY_NAME)
CLIENTS = frozenset(p.name for p in PRINCIPALS if p.is_client)
AUDITORS = frozenset(p.name for p in PRINCIPALS if p.kind == AUDITOR)
PERSON_TOKENS = frozenset(p.name for p in PRINCIPALS if p.kind == PERSON_TOKEN)

#: what merchants ask for on the consent page; person A grants A and B different fields
ASKED_A = "openid contact:email:offers contact:sms:offers profile:name profile:email"
GRANTED_A = ("contact:email:offers", "profile:name")
GRANTED_B = ("contact:email:offers", "profile:email")
#: what person B's (service-made) subscription to merchant A grants
SHARES_EMAIL = "contact:email:offers profile:email"


# -- the world ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One person: their browser and the values that identify them."""

    browser: Browser
    name: str
    phone: str

    @property
    def person_id(self) -> str:
        return self.browser.person_id

    @property
    def email(self) -> str:
        return self.browser.email


@dataclass(frozen=True)
class Link:
    """A subscription: its internal id and the merchant's pairwise subject."""

    subscription_id: str
    subject: str


@dataclass(frozen=True)
class Issued:
    """A person-granted token pair of merchant A."""

    access_token: str
    refresh_token: str
    subject: str
    scope: str


@dataclass
class World:
    vault: Vault
    person_a: Member
    person_b: Member
    merchant_a: ApiMerchant
    merchant_b: ApiMerchant
    auditor: ApiMerchant
    aa: Link  # person A ↔ merchant A (consent page)
    ab: Link  # person A ↔ merchant B
    ba: Link  # person B ↔ merchant A
    person_token: Issued  # merchant A's, for person A
    first_tree_size: int
    tokens: dict[str, str] = field(default_factory=dict)
    snapshot_query: str = ""
    #: person A's CSRF token, for fresh token pairs through the consent form
    consent_csrf: str | None = None
    #: a cookie jar (and its CSRF token) per principal that is not a person
    jars: dict[str, tuple[FlaskClient, str]] = field(default_factory=dict)

    # -- credentials ------------------------------------------------------------------------

    def member(self, owner: str) -> Member:
        return self.person_a if owner == "A" else self.person_b

    def client_of(self, owner: str) -> ApiMerchant:
        return self.merchant_a if owner == "A" else self.merchant_b

    def credentials(self, who: Principal) -> ApiMerchant:
        return self.auditor if who.kind == AUDITOR else self.client_of(who.owner)

    def fresh_client(self) -> FlaskClient:
        return self.vault.app.test_client()

    def second_session(self, who: Principal) -> FlaskClient:
        """Another browser of the same person, logged in through the form."""
        client = self.fresh_client()
        response = log_in(client, self.member(who.owner).email)
        assert response.status_code == 302, response.text
        return client

    def jar(self, who: Principal) -> tuple[FlaskClient, str]:
        """The cookie jar of a principal that is not a person, and its CSRF token.

        Kept for the whole test (a request that logs in or out takes a fresh
        one instead), so a form post needs no extra page view for its token.
        """
        if who.name not in self.jars:
            client = self.fresh_client()
            self.jars[who.name] = (client, csrf_token(client.get("/login").text))
        return self.jars[who.name]

    # -- state ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, tuple[int, str]]:
        """Every table's row count and a digest of its rows (an update shows too)."""
        with self.vault.runtime.database.read_engine.connect() as connection:
            found = connection.execute(text(self.snapshot_query)).all()
        return {str(name): (int(count), hashlib.sha256(str(content or "").encode()).hexdigest())
                for name, count, content in found}

    # -- what each principal must never see -------------------------------------------------

    def foreign_markers(self, who: Principal) -> set[str]:
        a, b = self.person_a, self.person_b
        personal = {a.person_id, a.email, a.name, a.phone, b.person_id, b.email, b.name, b.phone}
        internal = {self.aa.subscription_id, self.ab.subscription_id, self.ba.subscription_id}
        subjects = {self.aa.subject, self.ab.subject, self.ba.subject}
        if who.kind == PERSON:
            other = b if who.owner == "A" else a
            theirs = {self.ba} if who.owner == "A" else {self.aa, self.ab}
            return ({other.person_id, other.email, other.name, other.phone}
                    | {link.subscription_id for link in theirs}
                    | {link.subject for link in theirs})
        if who.kind == MERCHANT and who.owner == "A":
            return (personal - {a.name, b.email}) | internal | {self.ab.subject}
        if who.kind == MERCHANT:
            return (personal - {a.email}) | internal | {self.aa.subject, self.ba.subject}
        if who.kind == AUDITOR:
            # The consent log carries pseudonymous ids only (person ids and subjects).
            return {a.email, a.name, a.phone, b.email, b.name, b.phone}
        if who.kind == PERSON_TOKEN and who.merchant == "A":
            return (personal - {a.name}) | internal | {self.ab.subject, self.ba.subject}
        if who.kind == PERSON_TOKEN:
            return (personal - {a.email}) | internal | {self.aa.subject, self.ba.subject}
        return personal | internal | subjects


# -- building it ----------------------------------------------------------------------------


def _snapshot_query(vault: Vault) -> str:
    """One query giving each table's name, row count and rows as one text, in a stable order."""
    database = vault.runtime.database
    parts = []
    with database.read_engine.connect() as connection:
        inspector = inspect(connection)
        for name in sorted(inspector.get_table_names()):
            assert name.isidentifier()
            if database.dialect == "postgresql":
                parts.append(f"SELECT '{name}', count(*), md5(coalesce(string_agg(t::text, "
                             f"'|' ORDER BY t::text), '')) FROM \"{name}\" t")
            else:
                row = " || ',' || ".join(f'quote("{column["name"]}")'
                                         for column in inspector.get_columns(name))
                parts.append(f"SELECT '{name}', count(*), group_concat(r, '|') FROM "
                             f"(SELECT {row} AS r FROM \"{name}\" ORDER BY r)")
    return " UNION ALL ".join(parts)


def connect_on_consent_page(vault: Vault, browser: Browser, merchant: ApiMerchant, *,
                            scope: str, grant: Iterable[str],
                            csrf: str | None = None) -> dict[str, str]:
    """The authorization code flow with PKCE S256, through the consent page; the tokens.

    With the CSRF token of the person's session (``csrf``) the consent form is
    posted without opening the page first, as a second tab would.
    """
    verifier = secrets.token_urlsafe(48)
    query = urlencode({
        "response_type": "code", "client_id": merchant.client_id,
        "redirect_uri": REDIRECT_URI, "scope": scope, "state": secrets.token_hex(8),
        "nonce": secrets.token_hex(8), "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256"})
    if csrf is None:
        page = browser.client.get(f"/oauth/authorize?{query}")
        assert page.status_code == 200, page.text
        csrf = csrf_token(page.text)
    answer = browser.client.post(f"/oauth/authorize?{query}", data={
        "csrf_token": csrf, "action": "allow", "grant": list(grant)})
    assert answer.status_code == 302, answer.text
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    response = vault.client.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier}, headers=basic_auth(merchant.client_id,
                                                        merchant.client_secret))
    assert response.status_code == 200, response.text
    return dict(response.get_json())


def fresh_person_token(world: World) -> Issued:
    """A new token pair of merchant A for person A (the same grant again)."""
    browser = world.person_a.browser
    if world.consent_csrf is None:
        world.consent_csrf = csrf_token(browser.client.get("/login").text)
    token = connect_on_consent_page(world.vault, browser, world.merchant_a, scope=ASKED_A,
                                    grant=GRANTED_A, csrf=world.consent_csrf)
    return Issued(token["access_token"], token["refresh_token"], token["subject"],
                  token["scope"])


def checkpoint(vault: Vault) -> int:
    """Sign a tree head over the consent log as it is now; its size."""
    from vault.services import tree_heads

    rt = vault.runtime
    with rt.database.write() as session:
        return tree_heads.checkpoint(session, signing_key=rt.keyring.signing_key,
                                     clock=rt.clock).tree_size


def _member(vault: Vault, name: str) -> Member:
    tag = secrets.token_hex(4)
    full_name = f"{name} Matrixperson{tag}"
    phone = f"+31 6 {secrets.randbelow(10**8):08d}"
    browser = logged_in(vault, email=f"{name.lower()}.{tag}@example.org",
                        profile={"name": full_name, "phone": phone})
    return Member(browser, full_name, phone)


def build_world(vault: Vault) -> World:
    """People, merchants, an auditor, their subscriptions and every principal's credentials."""
    rt = vault.runtime
    person_a = _member(vault, "Ada")
    person_b = _member(vault, "Bob")
    merchant_a = register_merchant(rt, "Shop Alpha")
    merchant_b = register_merchant(rt, "Shop Beta")
    auditor = register_merchant(rt, "Consent Auditors", kind="auditor")

    token = connect_on_consent_page(vault, person_a.browser, merchant_a,
                                    scope=ASKED_A, grant=GRANTED_A)
    assert set(token["scope"].split()) == {"openid", *GRANTED_A}
    first_tree_size = checkpoint(vault)
    token_b = connect_on_consent_page(vault, person_a.browser, merchant_b,
                                      scope=ASKED_A, grant=GRANTED_B)
    ba = subscribe(rt, merchant_a, scope=SHARES_EMAIL, person_id=person_b.person_id)
    world = World(
        vault=vault, person_a=person_a, person_b=person_b, merchant_a=merchant_a,
        merchant_b=merchant_b, auditor=auditor, aa=_link(vault, token["subject"]),
        ab=_link(vault, token_b["subject"]), ba=Link(ba.subscription_id, ba.subject),
        person_token=Issued(token["access_token"], token["refresh_token"], token["subject"],
                            token["scope"]),
        first_tree_size=first_tree_size, snapshot_query=_snapshot_query(vault))
    for who in PRINCIPALS:
        if who.is_client:
            header = token_header(vault.client, world.credentials(who), " ".join(who.scopes))
            world.tokens[who.name] = header["Authorization"].removeprefix("Bearer ")
        elif who.kind == PERSON_TOKEN:
            world.tokens[who.name] = (token if who.merchant == "A" else token_b)["access_token"]
    return world


def _link(vault: Vault, subject: str) -> Link:
    with vault.runtime.database.read() as session:
        found = session.connection().execute(
            text("SELECT id FROM subscription WHERE subject = :s"), {"s": subject}).scalar_one()
    return Link(str(found), subject)


def unknown_subject() -> str:
    """A subject in the vault's own format that no merchant was ever given."""
    return new_subject()


# -- sending a request as a principal -------------------------------------------------------

#: how a route authenticates its caller
BEARER = "bearer"  # an access token (the API, userinfo)
CLIENT = "client"  # client authentication (token, revocation, introspection)
PAGE = "page"  # the person's session cookie
PUBLIC = "public"  # nobody in particular


@dataclass(frozen=True)
class Request:
    """One request of a cell. ``form`` is a page form (a CSRF token is added);
    ``data`` is an OAuth form (no CSRF); ``json`` an API body."""

    method: str
    path: str
    json: object = None
    form: Mapping[str, object] | None = None
    data: Mapping[str, object] | None = None
    #: sent from a new session (people: logged in again): the request logs in or out
    fresh_session: bool = False

    def text(self) -> str:
        """Everything the caller itself put in the request (it may see that back)."""
        return " ".join(str(part) for part in (self.path, self.json, self.form, self.data)
                        if part is not None)


def send(world: World, who: Principal, auth: str, request: Request) -> TestResponse:
    """Send ``request`` the way ``who`` would present itself to a route of kind ``auth``.

    People bring their session cookie (and nothing else) everywhere; clients
    bring their token to resource routes and pages, and authenticate
    themselves at the token-side endpoints; bogus credentials are a random
    bearer token, or merchant A's client id with a wrong secret.
    """
    csrf = ""
    if who.kind == PERSON:
        client = (world.second_session(who) if request.fresh_session
                  else world.member(who.owner).browser.client)
    elif request.fresh_session:
        client = world.fresh_client()
    else:
        client, csrf = world.jar(who)
    headers: dict[str, str] = {}
    if auth == CLIENT and who.is_client:
        issued = world.credentials(who)
        headers = basic_auth(issued.client_id, issued.client_secret)
    elif auth == CLIENT and who.kind == BOGUS:
        headers = basic_auth(world.merchant_a.client_id, "not-the-secret")
    elif who.kind == BOGUS:
        headers = bearer(secrets.token_urlsafe(48))
    elif who.name in world.tokens:
        headers = bearer(world.tokens[who.name])
    options: dict[str, object] = {"headers": headers}
    if request.json is not None:
        options["json"] = request.json
    if request.form is not None:
        csrf = csrf or csrf_token(client.get("/login").text)
        options["data"] = {**request.form, "csrf_token": csrf}
    elif request.data is not None:
        options["data"] = dict(request.data)
    return client.open(request.path, method=request.method, **options)  # type: ignore[arg-type]


# -- forms as a browser fills them in -------------------------------------------------------


class _FormReader(HTMLParser):
    """The fields of every ``<form>``: inputs, checked boxes, selected options, textareas."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[tuple[str, list[tuple[str, str]]]] = []
        self._fields: list[tuple[str, str]] | None = None
        self._select: str | None = None
        self._options: list[tuple[str, bool]] = []
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self._fields = []
            self.forms.append((a.get("action") or "", self._fields))
        elif self._fields is None:
            return
        elif tag == "input" and a.get("name"):
            kind = (a.get("type") or "text").lower()
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            if kind not in ("submit", "button", "image", "reset"):
                self._fields.append((a["name"] or "", a.get("value") or ""))
        elif tag == "select":
            self._select, self._options = a.get("name"), []
        elif tag == "option" and self._select is not None:
            self._options.append((a.get("value") or "", "selected" in a))
        elif tag == "textarea":
            self._textarea, self._text = a.get("name"), ""

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if self._fields is None:
            return
        if tag == "select" and self._select:
            chosen = [v for v, selected in self._options if selected] or \
                [v for v, _ in self._options[:1]]
            self._fields += [(self._select, v) for v in chosen]
            self._select = None
        elif tag == "textarea" and self._textarea:
            self._fields.append((self._textarea, self._text.strip("\n")))
            self._textarea = None
        elif tag == "form":
            self._fields = None


def page_form(html: str, action: str) -> dict[str, str | list[str]]:
    """The form posting to ``action`` as the page filled it in (no CSRF token)."""
    reader = _FormReader()
    reader.feed(html)
    for form_action, pairs in reader.forms:
        if urlsplit(form_action).path == action:
            values: dict[str, str | list[str]] = {}
            for name, value in pairs:
                if name == "csrf_token":
                    continue
                if name in values:
                    earlier = values[name]
                    values[name] = [*(earlier if isinstance(earlier, list) else [earlier]),
                                    value]
                else:
                    values[name] = value
            return values
    raise AssertionError(f"no form posting to {action}")


def own_form(browser: Browser, page: str, action: str | None = None) -> dict[str, str | list[str]]:
    """The form on one of the person's own pages, as shown to them."""
    response = browser.client.get(page)
    assert response.status_code == 200, response.text
    return page_form(response.text, action or page)


__all__ = [
    "ANONYMOUS",
    "AUDITOR",
    "AUDITORS",
    "BEARER",
    "BOGUS",
    "BY_NAME",
    "CLIENT",
    "CLIENTS",
    "EVERYONE",
    "GRANTED_A",
    "GRANTED_B",
    "MERCHANT",
    "PAGE",
    "PASSWORD",
    "PERSON",
    "PERSONS",
    "PERSON_TOKEN",
    "PERSON_TOKENS",
    "PRINCIPALS",
    "PUBLIC",
    "Issued",
    "Link",
    "Member",
    "Principal",
    "Request",
    "World",
    "build_world",
    "checkpoint",
    "fresh_person_token",
    "merchants",
    "names",
    "own_form",
    "page_form",
    "send",
    "unknown_subject",
]
