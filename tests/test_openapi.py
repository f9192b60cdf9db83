"""The OpenAPI document: committed, current, valid, and complete for ``/api/v1``.

The document is generated from the marshmallow schemas; ``prefvault openapi
-o openapi/openapi.json`` rewrites the committed copy, and the first test
fails whenever the two disagree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from vault.api import API_PREFIX
from vault.app import create_app
from vault.config import Settings
from vault.crypto.keyring import KeyRing
from vault.extensions import EXTENSION
from vault.openapi import SPEC_PATH, build_spec, render
from vault.services.scopes import AUDITOR_SCOPES, MERCHANT_SCOPES

PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"
HTTP_METHODS = ("get", "put", "post", "delete", "patch")


def _app(directory: Path, **overrides: object) -> Flask:
    settings = Settings(var_dir=directory, database_url=f"sqlite:///{directory / 'vault.db'}",
                        environment="test", password_hash_profile="fast",
                        **overrides).resolved()  # type: ignore[arg-type]
    return create_app(settings, keyring=KeyRing.generate())


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    application = _app(tmp_path_factory.mktemp("openapi"))
    yield application
    application.extensions[EXTENSION].database.dispose()


@pytest.fixture(scope="module")
def spec(app: Flask) -> dict[str, Any]:
    return build_spec(app)


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (one level is all the document uses)."""
    ref = node.get("$ref")
    if ref is None:
        return node
    target: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return _resolve(spec, target)


def test_the_committed_document_is_what_the_code_renders(spec: dict[str, Any]) -> None:
    committed = SPEC_PATH.read_text(encoding="utf-8")
    assert committed == render(spec), (
        "openapi/openapi.json is out of date: run `prefvault openapi -o openapi/openapi.json`")


def test_the_document_does_not_depend_on_the_deployment(
        spec: dict[str, Any], tmp_path: Path) -> None:
    other = _app(tmp_path, issuer="https://vault.example.net")
    try:
        assert render(build_spec(other)) == render(spec)
    finally:
        other.extensions[EXTENSION].database.dispose()


def test_the_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    committed = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    assert committed["openapi"] == "3.1.0"
    validate(committed)
    errors = [error.message for error in OpenAPIV31SpecValidator(spec).iter_errors()]
    assert errors == []


def test_every_api_route_is_documented_and_nothing_else(app: Flask,
                                                        spec: dict[str, Any]) -> None:
    routes: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX + "/"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method.lower() in HTTP_METHODS:
                routes.add((path, method.lower()))
    documented = {(path, method) for path, method, _ in _operations(spec)}
    assert routes, "no API routes found"
    assert routes == documented
    assert {path for path, _ in routes} >= {
        f"{API_PREFIX}/decisions", f"{API_PREFIX}/decisions/batch", f"{API_PREFIX}/contacts",
        f"{API_PREFIX}/subscriptions", f"{API_PREFIX}/subscriptions/{{subject}}",
        f"{API_PREFIX}/audit/events", f"{API_PREFIX}/audit/tree-head",
        f"{API_PREFIX}/audit/proofs/consistency", f"{API_PREFIX}/audit/proofs/inclusion",
        f"{API_PREFIX}/subscriptions/{{subject}}/receipt"}


def test_every_operation_declares_oauth2_and_problem_responses(spec: dict[str, Any]) -> None:
    scheme = spec["components"]["securitySchemes"]["oauth2"]
    flow = scheme["flows"]["clientCredentials"]
    assert scheme["type"] == "oauth2"
    assert flow["tokenUrl"] == "/oauth/token"
    assert set(flow["scopes"]) == {*MERCHANT_SCOPES, *AUDITOR_SCOPES}
    operations = list(_operations(spec))
    assert len(operations) == 10
    for path, method, operation in operations:
        where = f"{method.upper()} {path}"
        security = operation.get("security")
        assert isinstance(security, list) and len(security) == 1, where
        ((name, scopes),) = security[0].items()
        assert name == "oauth2", where
        assert len(scopes) == 1, where
        if path.startswith(f"{API_PREFIX}/audit/"):
            assert scopes == ["audit:read"], where
        else:
            assert scopes[0] in MERCHANT_SCOPES, where

        responses = operation["responses"]
        expected = {"401", "403"} | ({"400", "413", "415", "422"} if method == "post" else set())
        assert expected <= set(responses), where
        assert any(code.startswith("2") for code in responses), where
        errors = {code: _resolve(spec, r) for code, r in responses.items()
                  if code == "default" or code.startswith(("4", "5"))}
        for code, response in errors.items():
            assert list(response["content"]) == [PROBLEM_JSON], f"{where} {code}"
            schema = response["content"][PROBLEM_JSON]["schema"]
            assert schema == {"$ref": PROBLEM_REF}, f"{where} {code}"
            assert response.get("description"), f"{where} {code}"
        if method == "post":
            body = operation["requestBody"]
            assert body["required"] is True, where
            assert list(body["content"]) == ["application/json"], where


def test_the_problem_schema_names_type_and_field(spec: dict[str, Any]) -> None:
    properties = spec["components"]["schemas"]["Problem"]["properties"]
    assert {"type", "title", "status", "detail", "field"} <= set(properties)


def test_webhook_payloads_are_documented(spec: dict[str, Any]) -> None:
    assert set(spec["webhooks"]) == {"subscription.created", "subscription.updated",
                                     "subscription.revoked", "profile.updated"}
    assert "WebhookEvent" in spec["components"]["schemas"]


def test_every_operation_has_a_stable_unique_operation_id(spec: dict[str, Any]) -> None:
    """Links name their target by operationId, and clients generate method names from it."""
    ids = [operation.get("operationId") for _, _, operation in _operations(spec)]
    assert all(isinstance(found, str) and re.fullmatch(r"[a-z][A-Za-z]+", found)
               for found in ids), ids
    assert len(set(ids)) == len(ids), ids


def _links(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, method, operation in _operations(spec):
        for status, response in operation["responses"].items():
            for name, found in _resolve(spec, response).get("links", {}).items():
                yield f"{method.upper()} {path} {status} {name}", found


def _parameters(spec: dict[str, Any]) -> dict[str, set[str]]:
    """Each operation's parameters as ``<in>.<name>``, those of its path included."""
    found: dict[str, set[str]] = {}
    for path, _, operation in _operations(spec):
        declared = [*spec["paths"][path].get("parameters", []), *operation.get("parameters", [])]
        found[operation["operationId"]] = {f"{p['in']}.{p['name']}" for p in declared}
    return found


def _request_fields(spec: dict[str, Any]) -> dict[str, set[str]]:
    """Each operation's JSON request body fields (none for a GET)."""
    found: dict[str, set[str]] = {}
    for _, _, operation in _operations(spec):
        body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        schema = _resolve(spec, body.get("schema", {}))
        found[operation["operationId"]] = set(schema.get("properties", {}))
    return found


def _expressions(link: dict[str, Any]) -> list[str]:
    values: list[Any] = [*link.get("parameters", {}).values(),
                         *link.get("requestBody", {}).values()]
    return [item for value in values for item in (value if isinstance(value, list) else [value])]


def test_every_link_leads_to_an_operation_that_takes_what_it_gives(
        spec: dict[str, Any]) -> None:
    """A link to a missing operation, parameter or body field would be silently useless."""
    parameters, fields = _parameters(spec), _request_fields(spec)
    links = list(_links(spec))
    assert len(links) >= 15
    for where, found in links:
        target = found["operationId"]
        assert target in parameters, where
        assert found.get("description"), where
        assert set(found.get("parameters", {})) <= parameters[target], where
        assert set(found.get("requestBody", {})) <= fields[target], where
        for expression in _expressions(found):
            assert re.fullmatch(r"\$response\.body#(/[a-z_0-9]+)+", expression), where
