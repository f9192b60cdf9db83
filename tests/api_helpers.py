"""Factories for the merchant JSON API tests.

Everything is set up through the real services (accounts, merchants,
subscriptions) and exercised through the Flask test client; tokens come from
``POST /oauth/token`` with the client-credentials grant, as a merchant gets
them.

The test modules bundle conftest's ``app``, ``client``, ``runtime`` and
``clock`` into one ``Vault`` (per test, once per backend).
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from werkzeug.test import TestResponse

from vault.clock import FixedClock
from vault.extensions import Runtime
from vault.models import Merchant
from vault.services import subscriptions as subscription_service
from vault.services.merchants import find_client, register_client
from vault.services.rules import set_rules
from vault.services.scopes import PersonGrant

API = "/api/v1"
REDIRECT_URI = "https://shop.example/cb"
PASSWORD = "correct horse battery staple"
PROBLEM_JSON = "application/problem+json"
PROBLEMS = "https://prefvault.example/problems/"
#: the moment every test starts at (the same as conftest's ``clock``)
START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

#: the tables a request to the merchant API may write to
EVIDENCE_TABLES = ("decision", "decision_batch", "contact_event", "audit_event")

_serial = itertools.count(1)


# -- the vault ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vault:
    """An app over a migrated database, its test client, the runtime and the clock."""

    app: Flask
    client: FlaskClient
    runtime: Runtime
    clock: FixedClock


# -- merchants and their tokens -------------------------------------------------------------


@dataclass(frozen=True)
class ApiMerchant:
    """A registered client and what it needs to call the API."""

    id: str
    client_id: str
    client_secret: str
    name: str


def basic_auth(client_id: str, client_secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


def register_merchant(runtime: Runtime, name: str = "Book Shop", *,
                      kind: str = "merchant") -> ApiMerchant:
    """Register a merchant (or, with ``kind='auditor'``, an auditor) through the service."""
    with runtime.database.write() as session:
        issued = register_client(session, clock=runtime.clock, name=name, kind=kind,
                                 redirect_uris=[REDIRECT_URI] if kind == "merchant" else [])
        merchant_id = find_client(session, issued.client_id).id
    return ApiMerchant(merchant_id, issued.client_id, issued.client_secret, name)


def request_token(client: FlaskClient, client_id: str, client_secret: str,
                  scope: str | None = None) -> TestResponse:
    """``POST /oauth/token`` with the client-credentials grant and HTTP Basic auth."""
    data = {"grant_type": "client_credentials"} | ({"scope": scope} if scope else {})
    return client.post("/oauth/token", data=data, headers=basic_auth(client_id, client_secret))


def token_header(client: FlaskClient, merchant: ApiMerchant,
                 scope: str | None = None) -> dict[str, str]:
    """An ``Authorization: Bearer`` header for ``merchant`` (all its own scopes by default)."""
    response = request_token(client, merchant.client_id, merchant.client_secret, scope)
    assert response.status_code == 200, response.get_data(as_text=True)
    return bearer(str(response.get_json()["access_token"]))


def merchant_with_token(vault: Vault, name: str = "Book Shop",
                        scope: str | None = None) -> tuple[ApiMerchant, dict[str, str]]:
    """A new merchant and a bearer header for it."""
    merchant = register_merchant(vault.runtime, name)
    return merchant, token_header(vault.client, merchant, scope)


# -- people and their subscriptions ---------------------------------------------------------


@dataclass(frozen=True)
class Subscribed:
    """A person subscribed to a merchant: ids, the pairwise subject and the email address."""

    person_id: str
    subscription_id: str
    subject: str
    email: str


def unique_email(name: str = "person") -> str:
    return f"{name}.{next(_serial)}@example.org"


def sign_up(runtime: Runtime, email: str | None = None, *,
            profile: Mapping[str, object] | None = None) -> str:
    """A person with a profile; returns the person id."""
    with runtime.database.write() as session:
        return runtime.accounts.sign_up(session, email=email or unique_email(),
                                        password=PASSWORD, profile=profile)


def subscribe(runtime: Runtime, merchant: ApiMerchant, *,
              scope: str = "contact:email:offers profile:email",
              profile: Mapping[str, object] | None = None,
              email: str | None = None, person_id: str | None = None) -> Subscribed:
    """A person (new unless ``person_id`` is given) who granted ``scope`` to ``merchant``."""
    email = email or unique_email()
    if person_id is None:
        person_id = sign_up(runtime, email, profile=profile)
    granted = PersonGrant.parse(scope)
    with runtime.database.write() as session:
        row = session.get(Merchant, merchant.id)
        assert row is not None
        sub = subscription_service.grant(session, person_id=person_id, merchant=row,
                                         granted=granted, requested=granted,
                                         data_keys=runtime.data_keys, clock=runtime.clock)
        return Subscribed(person_id, sub.id, sub.subject, email)


def set_permission(runtime: Runtime, sub: Subscribed, channel: str, purpose: str, *,
                   allowed: bool = True, max_per_week: int | None = None) -> None:
    """The person changes one permission of ``sub``."""
    with runtime.database.write() as session:
        subscription_service.set_permission(
            session, person_id=sub.person_id, subscription_id=sub.subscription_id,
            channel=channel, purpose=purpose, allowed=allowed, max_per_week=max_per_week,
            data_keys=runtime.data_keys, clock=runtime.clock)


def set_global_rules(runtime: Runtime, person_id: str, rules: Mapping[str, object]) -> None:
    with runtime.database.write() as session:
        set_rules(session, person_id, rules, data_keys=runtime.data_keys, clock=runtime.clock)


def revoke(runtime: Runtime, sub: Subscribed) -> None:
    with runtime.database.write() as session:
        subscription_service.revoke(session, person_id=sub.person_id,
                                    subscription_id=sub.subscription_id,
                                    data_keys=runtime.data_keys, clock=runtime.clock)


def erase(runtime: Runtime, person_id: str) -> None:
    with runtime.database.write() as session:
        runtime.accounts.erase(session, person_id)


# -- looking at what was stored -------------------------------------------------------------


def row_counts(runtime: Runtime, tables: Iterable[str] = EVIDENCE_TABLES) -> dict[str, int]:
    """How many rows each of ``tables`` holds."""
    counts: dict[str, int] = {}
    with runtime.database.read() as session:
        for table in tables:
            assert table.isidentifier()
            counts[table] = int(session.connection().execute(
                text(f"SELECT count(*) FROM {table}")).scalar_one())
    return counts


def rows(runtime: Runtime, query: str, **params: object) -> list[dict[str, object]]:
    """The rows of a literal SQL query, as dicts."""
    with runtime.database.read() as session:
        result = session.connection().execute(text(query), params)
        return [dict(row._mapping) for row in result]


def assert_problem(response: TestResponse, status: int, problem: str | None = None,
                   field: str | None = None) -> dict[str, object]:
    """An RFC 9457 answer with this status (and this stable type and field, if given)."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json()
    assert isinstance(body, dict)
    assert body["status"] == status
    assert str(body["type"]).startswith(PROBLEMS)
    assert isinstance(body.get("title"), str) and body["title"]
    assert isinstance(body.get("detail"), str) and body["detail"]
    if problem is not None:
        assert body["type"] == PROBLEMS + problem, body
    if field is not None:
        assert body.get("field") == field, body
    return body
