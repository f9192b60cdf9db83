"""Helpers for the OAuth tests: a person with a browser, a merchant with an OAuth client.

Everything goes over real HTTP to the ``live_vault`` server. The person is an
``httpx.Client`` that keeps cookies and reads the HTML forms (CSRF token
included) the way a browser would; the merchant uses Authlib's httpx OAuth 2
client with PKCE S256, configured from the vault's discovery document.
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from authlib.common.security import generate_token
from joserfc import jwt
from joserfc.jwk import KeySet

from vault.clock import FixedClock
from vault.extensions import Runtime
from vault.services.merchants import register_client

with warnings.catch_warnings():
    # Authlib 1.9 prefers the ``httpx2`` fork and warns once, at import, when it
    # falls back to plain httpx (which is what this project installs).
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import OAuth2Client, OAuthError

REDIRECT_URI = "https://shop.example/cb"
PASSWORD = "correct horse battery staple"
ID_TOKEN_ALG = "Ed25519"
MERCHANT_DEFAULT_SCOPE = "decisions contacts:write subscriptions:read"


# Building an SSL context loads the CA bundle, which takes longer than a request to the
# vault; every client here shares one (the vault is plain HTTP on 127.0.0.1 anyway).
_SSL_CONTEXT = ssl.create_default_context()


def http_client(**kwargs: Any) -> httpx.Client:
    """A new httpx client that skips the costly per-client SSL setup."""
    return httpx.Client(verify=_SSL_CONTEXT, timeout=30, **kwargs)


class LiveVault(Protocol):
    """What the tests use of conftest's ``live_vault`` fixture."""

    base_url: str
    runtime: Runtime
    clock: FixedClock


# -- HTML forms -----------------------------------------------------------------------------


@dataclass
class FormField:
    """One ``<input>`` of a form, as the browser sees it."""

    name: str
    value: str
    type: str
    checked: bool


@dataclass
class Form:
    """One ``<form>``: where it posts, its inputs and the text of its buttons."""

    action: str
    method: str
    fields: list[FormField] = field(default_factory=list)
    buttons: list[tuple[str, str, str]] = field(default_factory=list)  # (name, value, text)

    def value(self, name: str) -> str:
        for item in self.fields:
            if item.name == name:
                return item.value
        raise KeyError(name)


@dataclass
class ConsentItem:
    """One line of the consent page: a checkbox, its label and the "allowed before" hint."""

    scope: str
    checked: bool
    label: str = ""
    granted_before: bool = False


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.items: list[ConsentItem] = []
        self._form: Form | None = None
        self._button: list[str] | None = None
        self._in_choice = 0
        self._text_target: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self._form = Form(action=a.get("action") or "", method=(a.get("method") or "get"))
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None:
            item = FormField(a.get("name") or "", a.get("value") or "", a.get("type") or "text",
                             "checked" in a)
            self._form.fields.append(item)
            if item.type == "checkbox" and self._in_choice:
                self.items.append(ConsentItem(item.value, item.checked))
        elif tag == "button" and self._form is not None:
            self._button = [a.get("name") or "", a.get("value") or "", ""]
        elif tag == "div" and a.get("class") == "choice":
            self._in_choice = 1
        elif tag == "div" and self._in_choice:
            self._in_choice += 1
        elif tag == "label" and self._in_choice:
            self._text_target = "label"
        elif tag == "span" and self._in_choice and a.get("class") == "hint":
            self._text_target = "hint"

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "button" and self._button is not None and self._form is not None:
            name, value, text = self._button
            self._form.buttons.append((name, value, text.strip()))
            self._button = None
        elif tag == "div" and self._in_choice:
            self._in_choice -= 1
        elif tag in ("label", "span"):
            self._text_target = None

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button[2] += data
        if self._text_target and self.items:
            if self._text_target == "label":
                self.items[-1].label += data.strip()
            elif "you allowed this before" in data:
                self.items[-1].granted_before = True


def parse_page(html: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    return parser


@dataclass
class ConsentPage:
    """The consent page as served for one authorize URL."""

    url: str
    status_code: int
    html: str
    items: list[ConsentItem]
    csrf_token: str
    response: httpx.Response

    @property
    def scopes(self) -> list[str]:
        return [item.scope for item in self.items]


# -- the person -----------------------------------------------------------------------------


def sign_up(live_vault: LiveVault, email: str, *, profile: dict[str, object] | None = None,
            password: str = PASSWORD) -> str:
    """Create an account directly through the service; returns the person id."""
    with live_vault.runtime.database.write() as session:
        return live_vault.runtime.accounts.sign_up(session, email=email, password=password,
                                                   profile=profile)


class Person:
    """A person at a browser: cookies, HTML forms with their CSRF tokens, no auto-redirects."""

    def __init__(self, base_url: str, email: str, password: str = PASSWORD) -> None:
        self.base_url = base_url
        self.email = email
        self.password = password
        self.http = http_client(base_url=base_url, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Person:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def log_in(self) -> None:
        page = self.http.get("/login")
        assert page.status_code == 200, page.text
        form = next(f for f in parse_page(page.text).forms
                    if (f.action or "").split("?")[0].endswith("/login"))
        response = self.http.post(form.action or "/login", data={
            "csrf_token": form.value("csrf_token"),
            "next": form.value("next"),
            "email": self.email,
            "password": self.password,
        })
        assert response.status_code == 302, response.text

    def open_consent(self, authorize_url: str) -> ConsentPage:
        """GET the authorize URL as a logged-in person; the page whatever its status."""
        response = self.http.get(authorize_url)
        parsed = parse_page(response.text)
        token = ""
        for form in parsed.forms:
            try:
                token = form.value("csrf_token")
            except KeyError:
                continue
        return ConsentPage(authorize_url, response.status_code, response.text, parsed.items,
                           token, response)

    def answer(self, page: ConsentPage, *, grant: Iterable[str] = (),
               deny: bool = False) -> httpx.Response:
        """Submit the consent form (it posts back to the authorize URL)."""
        data: dict[str, str | list[str]] = {"csrf_token": page.csrf_token,
                                            "action": "deny" if deny else "allow",
                                            "grant": list(grant)}
        return self.http.post(page.url, data=data)

    def subscriptions_page(self) -> list[Form]:
        response = self.http.get("/subscriptions")
        assert response.status_code == 200, response.text
        return parse_page(response.text).forms

    def revoke(self, merchant_name: str) -> httpx.Response:
        """Press "Revoke <merchant>" on the subscriptions page, then "Yes, revoke"."""
        form = next(
            f for f in self.subscriptions_page()
            if any(text == f"Revoke {merchant_name}" for _, _, text in f.buttons)
        )
        assert form.method.lower() == "get", "the dashboard's button only opens the confirmation"
        page = self.http.get(form.action)
        assert page.status_code == 200, page.text
        confirm = next(f for f in parse_page(page.text).forms
                       if f.method.lower() == "post" and f.action.endswith("/revoke")
                       and any(text == "Yes, revoke" for _, _, text in f.buttons))
        return self.http.post(confirm.action, data={"csrf_token": confirm.value("csrf_token")})


def consent(person: Person, authorize_url: str, *, grant: Iterable[str] = (),
            deny: bool = False) -> str:
    """Open the consent page, allow ``grant`` (or deny); the redirect Location, not followed."""
    page = person.open_consent(authorize_url)
    assert page.status_code == 200, page.html
    response = person.answer(page, grant=grant, deny=deny)
    assert response.status_code == 302, response.text
    return response.headers["Location"]


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# -- the merchant ---------------------------------------------------------------------------


def discover(base_url: str) -> dict[str, Any]:
    with http_client() as http:
        response = http.get(f"{base_url}/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    return response.json()


@dataclass
class Flow:
    """One authorization in progress: the URL the person is sent to and what checks the answer."""

    url: str
    state: str
    verifier: str
    nonce: str


class Merchant:
    """A registered client speaking OAuth to the vault through Authlib's httpx client."""

    def __init__(self, live_vault: LiveVault, client_id: str, client_secret: str, name: str,
                 redirect_uri: str, metadata: dict[str, Any]) -> None:
        self.live_vault = live_vault
        self.client_id = client_id
        self.client_secret = client_secret
        self.name = name
        self.redirect_uri = redirect_uri
        self.metadata = metadata

    @property
    def auth(self) -> tuple[str, str]:
        return (self.client_id, self.client_secret)

    @contextmanager
    def oauth(self, scope: str | None = None) -> Iterator[OAuth2Client]:
        client = OAuth2Client(
            client_id=self.client_id, client_secret=self.client_secret, scope=scope,
            redirect_uri=self.redirect_uri, code_challenge_method="S256",
            token_endpoint=self.metadata["token_endpoint"], timeout=30, verify=_SSL_CONTEXT,
        )
        try:
            yield client
        finally:
            client.close()

    def start(self, scope: str) -> Flow:
        """The authorize URL (PKCE S256, state and nonce) to send the person to."""
        verifier = generate_token(64)
        nonce = generate_token(16)
        with self.oauth(scope) as client:
            url, state = client.create_authorization_url(
                self.metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
        return Flow(url, state, verifier, nonce)

    def finish(self, flow: Flow, location: str) -> dict[str, Any]:
        """Exchange the code in the redirect for tokens (raises ``OAuthError`` if refused)."""
        with self.oauth() as client:
            token = client.fetch_token(authorization_response=location, state=flow.state,
                                       code_verifier=flow.verifier)
        return dict(token)

    def connect(self, person: Person, scope: str, grant: Iterable[str]) -> dict[str, Any]:
        """The whole flow: authorize, the person allows ``grant``, exchange the code."""
        flow = self.start(scope)
        return self.finish(flow, consent(person, flow.url, grant=grant))

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        with self.oauth() as client:
            return dict(client.refresh_token(self.metadata["token_endpoint"],
                                             refresh_token=refresh_token))

    def post(self, endpoint: str, data: dict[str, str]) -> httpx.Response:
        """A client-authenticated POST (HTTP Basic) to one of the discovered endpoints."""
        with http_client() as http:
            return http.post(self.metadata[endpoint], data=data, auth=self.auth)

    def token_request(self, data: dict[str, str]) -> httpx.Response:
        return self.post("token_endpoint", data)

    def introspect(self, token: str) -> dict[str, Any]:
        response = self.post("introspection_endpoint", {"token": token})
        assert response.status_code == 200, response.text
        return response.json()

    def revoke(self, token: str, hint: str | None = None) -> httpx.Response:
        data = {"token": token} | ({"token_type_hint": hint} if hint else {})
        return self.post("revocation_endpoint", data)

    def userinfo(self, access_token: str) -> httpx.Response:
        with http_client() as http:
            return http.get(self.metadata["userinfo_endpoint"],
                            headers={"Authorization": f"Bearer {access_token}"})

    def authorize_url(self, **params: str) -> str:
        """A hand-made authorize URL, for requests a well-behaved client library won't make."""
        query = {"response_type": "code", "client_id": self.client_id,
                 "redirect_uri": self.redirect_uri, "state": generate_token(16)} | params
        query = {k: v for k, v in query.items() if v is not None}
        return f"{self.metadata['authorization_endpoint']}?{urlencode(query)}"


def register_merchant(live_vault: LiveVault, name: str = "Shop", *,
                      redirect_uris: Iterable[str] = (REDIRECT_URI,),
                      kind: str = "merchant") -> Merchant:
    """Register a client through the service and configure it from discovery."""
    uris = list(redirect_uris) if kind == "merchant" else []
    rt = live_vault.runtime
    with rt.database.write() as session:
        issued = register_client(session, clock=rt.clock, name=name, redirect_uris=uris,
                                 kind=kind)
    return Merchant(live_vault, issued.client_id, issued.client_secret, name,
                    uris[0] if uris else "", discover(live_vault.base_url))


def verify_id_token(id_token: str, jwks_uri: str, *, now: int, issuer: str, client_id: str,
                    nonce: str) -> dict[str, Any]:
    """Verify an id_token's Ed25519 signature (key from the JWKS) and claims; the claims."""
    with http_client() as http:
        jwks = http.get(jwks_uri).json()
    token = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=[ID_TOKEN_ALG])
    assert token.header["alg"] == ID_TOKEN_ALG
    assert token.header["kid"] in {key["kid"] for key in jwks["keys"]}
    jwt.JWTClaimsRegistry(
        now=now, leeway=5,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
        nonce={"essential": True, "value": nonce},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    ).validate(token.claims)
    return dict(token.claims)


__all__ = [
    "ID_TOKEN_ALG",
    "MERCHANT_DEFAULT_SCOPE",
    "PASSWORD",
    "REDIRECT_URI",
    "ConsentItem",
    "ConsentPage",
    "Flow",
    "Form",
    "LiveVault",
    "Merchant",
    "OAuthError",
    "Person",
    "consent",
    "discover",
    "http_client",
    "parse_page",
    "query_of",
    "register_merchant",
    "sign_up",
    "verify_id_token",
]
