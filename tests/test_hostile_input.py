"""Hostile input against every JSON API route, the OAuth endpoints and the login form.

Every case below is one hand-written request a careless or malicious client
could send: duplicated query or form parameters, 1 MB values and headers,
bodies just over the 2 MB limit, invalid UTF-8, control characters and line
breaks in every text field, JSON nested 100,000 levels deep, numbers no
float or integer type holds, the wrong content type, empty bodies and JSON
that is not an object.

What each must get (DESIGN.md, invariant 7): a clean 4xx and never a 5xx
(the API in ``application/problem+json`` with a stable ``type``, the OAuth
endpoints in RFC 6749 error JSON, the pages as pages), and nothing written:
every table holds exactly as many rows after the request as before.

A few answers are not a 4xx on purpose, and the tables say so per case:
RFC 7009 answers a revocation of an unknown token with 200 and RFC 7662 an
introspection of one with ``{"active": false}``; once the redirect URI has
been checked, RFC 6749 reports an authorization error by redirecting to the
merchant with ``error=...`` (a consent form that allows nothing is such a
denial); and a login address with white space around it is trimmed, so the
right password still logs in. None of them may write anything.

The tables are grouped by route; each group runs against one fresh vault
per backend. Requests a test client would tidy up (a 1 MB header line, a
chunked body over the limit, a header with a bare newline) go over a raw
socket to a live server. A summary (cases run, 5xx answers, rows changed by refused
requests) is printed at the end of the module.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from api_helpers import (
    API,
    PASSWORD,
    PROBLEM_JSON,
    PROBLEMS,
    REDIRECT_URI,
    ApiMerchant,
    Subscribed,
    Vault,
    basic_auth,
    bearer,
    register_merchant,
    subscribe,
    token_header,
)
from conftest import LiveVault
from flask import Flask
from flask.testing import FlaskClient
from oauth_helpers import parse_page
from sqlalchemy import TextClause, inspect, text
from werkzeug.exceptions import HTTPException
from werkzeug.test import TestResponse

from vault.clock import FixedClock
from vault.config import Settings
from vault.db import Database
from vault.extensions import Runtime

MB = 1024 * 1024
#: just over the app's MAX_CONTENT_LENGTH (2 MB)
OVER_LIMIT = 2 * MB + 1
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART_BOUNDARY = "hostile-boundary"
MULTIPART = f"multipart/form-data; boundary={MULTIPART_BOUNDARY}"

#: characters that have no business in an identifier, a channel, a date or an email
CONTROL = {
    "nul": "\x00",
    "newline": "\n",
    "crlf": "\r\n",
    "tab": "\t",
    "escape": "\x1b[2J",
    "delete": "\x7f",
    "line-separator": "\u2028",
    "bom": "\ufeff",
    "lone-surrogate": "\ud800",
}
#: In a query string or a form, the UTF-8 bytes of a lone surrogate are invalid, and
#: werkzeug keeps such an escape as the literal text "%ED%A0%80": that reaches the
#: views as a wrong (but harmless) value, answered like any other wrong value.
ENCODED = {name: char for name, char in CONTROL.items() if name != "lone-surrogate"}
SURROGATE = "\ud800"


# -- counting every row -----------------------------------------------------------------------


_COUNT_QUERIES: dict[str, TextClause] = {}


def count_rows(database: Database) -> dict[str, int]:
    """How many rows each table of the database holds, tables found by inspection.

    One query counts them all; it is built once per database.
    """
    with database.read_engine.connect() as connection:
        query = _COUNT_QUERIES.get(database.url)
        if query is None:
            quote_name = connection.dialect.identifier_preparer.quote
            names = sorted(inspect(connection).get_table_names())
            query = _COUNT_QUERIES[database.url] = text("SELECT " + ", ".join(
                f"(SELECT count(*) FROM {quote_name(name)}) AS {quote_name(name)}"
                for name in names))
        return {name: int(n) for name, n in connection.execute(query).one()._mapping.items()}


def changed_rows(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Per table, how many rows appeared (or, negative, disappeared)."""
    return {name: after.get(name, 0) - before.get(name, 0)
            for name in sorted(set(before) | set(after))
            if after.get(name, 0) != before.get(name, 0)}


# -- the cases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One hostile request and the answer it must get.

    ``body`` is raw bytes, or a JSON-able document sent as ``application/json``.
    Placeholders ``{subject}``, ``{client_id}`` and ``{client_secret}`` in the
    path, the query, string values of a document and form pairs are filled in
    with the world's real values, so only the hostile part is wrong.
    """

    id: str
    method: str
    path: str
    status: int
    #: API: the problem ``type`` slug; OAuth: the ``error`` code (JSON or redirect)
    error: str | None = None
    #: API: the problem's ``field``
    field: str | None = None
    query: str = ""
    body: object = None
    content_type: str | None = None
    #: "merchant", "auditor", "basic" (the merchant's client credentials), "none"
    auth: str = "merchant"
    headers: tuple[tuple[str, str], ...] = ()
    #: fetch a CSRF token from this page first and send it as ``csrf_token``
    csrf_from: str | None = None
    #: the person is logged in (their session cookie is sent)
    logged_in: bool = False


def _q(text: str, safe: str = "") -> str:
    """Percent-encode UTF-8, lone surrogates included (as the bytes a sloppy encoder makes)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe=safe)


def _form(*pairs: tuple[str, str]) -> bytes:
    """An urlencoded body; pairs may repeat a name."""
    return "&".join(f"{_q(name)}={_q(value, '{}')}" for name, value in pairs).encode()


def _multipart(*pairs: tuple[str, str]) -> bytes:
    parts = [f'--{MULTIPART_BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
             f"{value}\r\n" for name, value in pairs]
    return ("".join(parts) + f"--{MULTIPART_BOUNDARY}--\r\n").encode()


def _set(document: dict[str, Any], path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    """A deep copy of ``document`` with the value at ``path`` replaced."""
    copy = json.loads(json.dumps(document))
    target: Any = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copy


def _raw_with(document: dict[str, Any], path: tuple[str | int, ...], literal: bytes) -> bytes:
    """``document`` as JSON text with the value at ``path`` replaced by a raw literal."""
    marker = "@@hostile@@"
    return json.dumps(_set(document, path, marker)).encode().replace(
        f'"{marker}"'.encode(), literal)


def _field_name(path: tuple[str | int, ...]) -> str:
    return ".".join(str(step) for step in path)


DECISION = {"subject": "{subject}", "channel": "email", "purpose": "offers"}
BATCH = {"subjects": ["{subject}"], "channel": "email", "purpose": "offers"}
CONTACT = {"subject": "{subject}", "channel": "email", "purpose": "offers",
           "decision_id": "{decision}", "at": "2026-11-23T09:59:00+00:00"}
AT = "2026-11-23T10:00:00+00:00"

#: each JSON route: its path, a valid body and every text field in it
JSON_ROUTES: dict[str, tuple[str, dict[str, Any], tuple[tuple[str | int, ...], ...]]] = {
    "decisions": (f"{API}/decisions", {**DECISION, "at": AT},
                  (("subject",), ("channel",), ("purpose",), ("at",))),
    "batch": (f"{API}/decisions/batch", {**BATCH, "at": AT},
              (("subjects", 0), ("channel",), ("purpose",), ("at",))),
    "contacts": (f"{API}/contacts", CONTACT,
                 (("subject",), ("channel",), ("purpose",), ("decision_id",), ("at",))),
}

_VALID_TEXT = {"subject": "{subject}", "subjects": "{subject}", "channel": "email",
               "purpose": "offers", "at": AT, "decision_id": "{decision}"}


def json_route_cases(route: str) -> list[Case]:
    """Everything a JSON body can do wrong, against one route."""
    path, valid, text_fields = JSON_ROUTES[route]
    first = text_fields[0]
    first_name = _field_name(first)
    raw_valid = json.dumps(valid).encode()
    invalid = "invalid-request"
    cases = [
        # the body as a whole
        Case("empty-body-no-type", "POST", path, 415, "unsupported-media-type", body=b""),
        Case("empty-body-json", "POST", path, 422, invalid, body=b"", content_type=JSON),
        Case("whitespace-body", "POST", path, 400, invalid, "body", body=b" \r\n\t ",
             content_type=JSON),
        Case("truncated-json", "POST", path, 400, invalid, "body", body=raw_valid[:-3],
             content_type=JSON),
        Case("invalid-utf8", "POST", path, 400, invalid, "body",
             body=raw_valid.replace(b'"email"', b'"em\xffil"'), content_type=JSON),
        Case("overlong-utf8-slash", "POST", path, 400, invalid, "body",
             body=raw_valid.replace(b'"email"', b'"\xc0\xafemail"'), content_type=JSON),
        Case("utf16-body", "POST", path, 400, invalid, "body",
             body=json.dumps(valid).encode("utf-16"), content_type=JSON),
        Case("nested-arrays-100000", "POST", path, 400, invalid, "body",
             body=b"[" * 100_000, content_type=JSON),
        Case("nested-arrays-100000-closed", "POST", path, 400, invalid, "body",
             body=b"[" * 100_000 + b"]" * 100_000, content_type=JSON),
        Case("nested-objects-100000", "POST", path, 400, invalid, "body",
             body=b'{"a":' * 100_000 + b"1" + b"}" * 100_000, content_type=JSON),
        Case("nested-in-a-field", "POST", path, 400, invalid, "body",
             body=_raw_with(valid, first, b"[" * 100_000 + b"]" * 100_000),
             content_type=JSON),
        Case("nested-500-levels", "POST", path, 422, invalid, first_name,
             body=_raw_with(valid, first, b"[" * 500 + b"]" * 500), content_type=JSON),
        Case("json-array", "POST", path, 422, invalid, "body", body=[valid]),
        Case("json-string", "POST", path, 422, invalid, "body", body="{subject}"),
        Case("json-number", "POST", path, 422, invalid, "body", body=b"12", content_type=JSON),
        Case("json-null", "POST", path, 422, invalid, "body", body=b"null", content_type=JSON),
        Case("json-true", "POST", path, 422, invalid, "body", body=b"true", content_type=JSON),
        Case("two-documents", "POST", path, 400, invalid, "body", body=raw_valid + raw_valid,
             content_type=JSON),
        # numbers no type holds
        Case("float-1e400", "POST", path, 422, invalid, first_name,
             body=_raw_with(valid, first, b"1e400"), content_type=JSON),
        Case("float-minus-1e400-at", "POST", path, 422, invalid, "at",
             body=_raw_with(valid, ("at",), b"-1e400"), content_type=JSON),
        Case("integer-4000-digits", "POST", path, 422, invalid, first_name,
             body=_raw_with(valid, first, str(10**3999).encode()), content_type=JSON),
        Case("integer-5000-digits", "POST", path, 400, invalid, "body",
             body=_raw_with(valid, first, b"9" * 5000), content_type=JSON),
        Case("nan", "POST", path, 422, invalid, first_name,
             body=_raw_with(valid, first, b"NaN"), content_type=JSON),
        Case("infinity-at", "POST", path, 422, invalid, "at",
             body=_raw_with(valid, ("at",), b"Infinity"), content_type=JSON),
        # size
        Case("1mb-text-field", "POST", path, 422, invalid, first_name,
             body=_set(valid, first, "a" * MB)),
        Case("1mb-unknown-field", "POST", path, 422, invalid, "padding",
             body={**valid, "padding": "x" * MB}),
        Case("just-over-2mb", "POST", path, 413, "request-entity-too-large",
             body={**valid, "padding": "x" * OVER_LIMIT}),
        Case("1mb-authorization-header", "POST", path, 401, "unauthenticated", body=valid,
             auth="none", headers=(("Authorization", "Bearer " + "A" * MB),)),
        Case("1mb-junk-header", "POST", path, 422, invalid, first_name,
             body=_set(valid, first, None), headers=(("X-Junk", "j" * MB),)),
        Case("1mb-request-id-header", "POST", path, 422, invalid, first_name,
             body=_set(valid, first, None), headers=(("X-Request-Id", "r" * MB),)),
        # wrong content types
        Case("text-plain", "POST", path, 415, "unsupported-media-type", body=raw_valid,
             content_type="text/plain"),
        Case("form-encoded", "POST", path, 415, "unsupported-media-type",
             body=_form(("channel", "email"), ("purpose", "offers")), content_type=FORM),
        Case("multipart", "POST", path, 415, "unsupported-media-type",
             body=_multipart(("channel", "email")), content_type=MULTIPART),
        Case("xml", "POST", path, 415, "unsupported-media-type",
             body=b"<decision><channel>email</channel></decision>", content_type="application/xml"),
        Case("json-lookalike-type", "POST", path, 415, "unsupported-media-type", body=raw_valid,
             content_type="application/jsonx"),
        # the query string does not count for a JSON route, but must not break it either
        Case("duplicated-query-on-json-route", "POST", path, 422, invalid, first_name,
             query="channel=email&channel=sms&subject=%00", body=_set(valid, first, 7)),
    ]
    for path_in_body in text_fields:
        name = _field_name(path_in_body)
        good = _VALID_TEXT[str(path_in_body[0])]
        for label, char in CONTROL.items():
            cases.append(Case(f"{name}-{label}", "POST", path, 422, invalid, name,
                              body=_set(valid, path_in_body, good + char)))
        cases.append(Case(f"{name}-leading-newline", "POST", path, 422, invalid, name,
                          body=_set(valid, path_in_body, "\n" + good)))
        cases.append(Case(f"{name}-1mb", "POST", path, 422, invalid, name,
                          body=_set(valid, path_in_body, good + "z" * MB)))
        cases.append(Case(f"{name}-object", "POST", path, 422, invalid, name,
                          body=_set(valid, path_in_body, {"$ne": None})))
    return cases


def subscriptions_cases() -> list[Case]:
    path = f"{API}/subscriptions"
    invalid = "invalid-request"
    cases = [
        Case("duplicated-limit", "GET", path, 422, invalid, "limit", query="limit=1&limit=500"),
        Case("duplicated-cursor", "GET", path, 422, invalid, "cursor",
             query="cursor=YQ&cursor=Yg"),
        Case("limit-4000-digits", "GET", path, 422, invalid, "limit", query="limit=" + "9" * 4000),
        Case("limit-5000-digits", "GET", path, 422, invalid, "limit", query="limit=" + "9" * 5000),
        Case("limit-1e400", "GET", path, 422, invalid, "limit", query="limit=1e400"),
        Case("limit-negative", "GET", path, 422, invalid, "limit", query="limit=-1"),
        Case("limit-nan", "GET", path, 422, invalid, "limit", query="limit=NaN"),
        Case("limit-empty", "GET", path, 422, invalid, "limit", query="limit="),
        Case("limit-invalid-utf8", "GET", path, 422, invalid, "limit", query="limit=%FF%FE"),
        Case("cursor-1mb", "GET", path, 422, invalid, "cursor", query="cursor=" + "Q" * MB),
        Case("cursor-not-base64", "GET", path, 400, invalid, "cursor", query="cursor=" + "~" * 8),
        Case("1mb-authorization-header", "GET", path, 401, "unauthenticated", auth="none",
             headers=(("Authorization", "Bearer " + "A" * MB),)),
        Case("basic-instead-of-bearer", "GET", path, 401, "unauthenticated", auth="basic"),
        Case("auditor-token", "GET", path, 403, "insufficient-scope", auth="auditor"),
    ]
    for label, char in CONTROL.items():
        if not char.isspace():  # int() reads " 10\n" as 10, harmlessly
            cases.append(Case(f"limit-{label}", "GET", path, 422, invalid, "limit",
                              query="limit=" + _q("10" + char)))
        cases.append(Case(f"cursor-{label}", "GET", path, 422, invalid, "cursor",
                          query="cursor=" + _q("YQ" + char)))
    return cases


def subscription_cases() -> list[Case]:
    cases = [
        Case("subject-1mb", "GET", f"{API}/subscriptions/" + "s" * MB, 404, "not-found"),
        Case("subject-invalid-utf8", "GET", f"{API}/subscriptions/sub_%FF%FE", 404, "not-found"),
        Case("subject-dot-dot", "GET", f"{API}/subscriptions/..%2F..%2Fadmin", 404, "not-found"),
        Case("duplicated-query", "GET", f"{API}/subscriptions/{{subject}}", 401,
             "unauthenticated", query="access_token=a&access_token=b", auth="none"),
        Case("token-in-query-only", "GET", f"{API}/subscriptions/{{subject}}", 401,
             "unauthenticated", query="access_token=x", auth="none"),
    ]
    receipt = f"{API}/subscriptions/{{subject}}/receipt"
    cases += [
        Case("receipt-subject-1mb", "GET", f"{API}/subscriptions/{'s' * MB}/receipt", 404,
             "not-found"),
        Case("receipt-subject-invalid-utf8", "GET", f"{API}/subscriptions/sub_%FF/receipt", 404,
             "not-found"),
        Case("receipt-auditor-token", "GET", receipt, 403, "insufficient-scope", auth="auditor"),
        Case("receipt-1mb-bearer", "GET", receipt, 401, "unauthenticated", auth="none",
             headers=(("Authorization", "Bearer " + "A" * MB),)),
    ]
    for label, char in CONTROL.items():
        quoted = _q("{subject}" + char, safe="{}")
        cases.append(Case(f"subject-{label}", "GET", f"{API}/subscriptions/{quoted}",
                          404, "not-found"))
        cases.append(Case(f"receipt-subject-{label}", "GET",
                          f"{API}/subscriptions/{quoted}/receipt", 404, "not-found"))
    return cases


def audit_cases() -> list[Case]:
    path = f"{API}/audit/events"
    invalid = "invalid-request"
    cases = [
        Case("duplicated-since", "GET", path, 422, invalid, "since",
             query="since=2026-01-01T00:00:00Z&since=2020-01-01T00:00:00Z", auth="auditor"),
        Case("duplicated-merchant", "GET", path, 422, invalid, "merchant",
             query="merchant={client_id}&merchant=other", auth="auditor"),
        Case("since-1e400", "GET", path, 422, invalid, "since", query="since=1e400",
             auth="auditor"),
        Case("since-5000-digits", "GET", path, 422, invalid, "since",
             query="since=" + "9" * 5000, auth="auditor"),
        Case("since-naive", "GET", path, 422, invalid, "since",
             query="since=2026-01-01T00:00:00", auth="auditor"),
        Case("until-1mb", "GET", path, 422, invalid, "until", query="until=" + "2" * MB,
             auth="auditor"),
        Case("merchant-1mb", "GET", path, 422, invalid, "merchant",
             query="merchant=" + "m" * MB, auth="auditor"),
        Case("format-csv-injection", "GET", path, 422, invalid, "format",
             query="format=" + quote("jsonl\r\nX-Evil: 1"), auth="auditor"),
        Case("merchant-unknown", "GET", path, 404, "not-found", "merchant",
             query="merchant=no-such-client", auth="auditor"),
        Case("merchant-token", "GET", path, 403, "insufficient-scope", auth="merchant"),
    ]
    for label, char in CONTROL.items():
        for name, value in (("since", "2026-01-01T00:00:00Z"), ("until", "2027-01-01T00:00:00Z"),
                            ("merchant", "{client_id}"), ("format", "jsonl")):
            cases.append(Case(f"{name}-{label}", "GET", path, 422, invalid, name,
                              query=f"{name}=" + _q(value + char, safe="{}"),
                              auth="auditor"))
    return cases


def audit_proof_cases() -> list[Case]:
    """The signed tree head and the RFC 9162 proofs."""
    head, consistency = f"{API}/audit/tree-head", f"{API}/audit/proofs/consistency"
    inclusion = f"{API}/audit/proofs/inclusion"
    invalid = "invalid-request"

    def get(case_id: str, path: str, status: int, error: str, field: str | None = None,
            query: str = "", **options: Any) -> Case:
        options.setdefault("auth", "auditor")
        return Case(case_id, "GET", path, status, error, field, query=query, **options)

    cases = [
        get("tree-head-merchant-token", head, 403, "insufficient-scope", auth="merchant"),
        get("tree-head-no-token", head, 401, "unauthenticated", auth="none"),
        get("tree-head-1mb-bearer", head, 401, "unauthenticated", auth="none",
            headers=(("Authorization", "Bearer " + "A" * MB),)),
        get("consistency-duplicated-first", consistency, 422, invalid, "first",
            "first=1&first=2&second=3"),
        get("consistency-missing-second", consistency, 422, invalid, "second", "first=1"),
        get("consistency-4000-digits", consistency, 422, invalid, "second",
            "first=1&second=" + "9" * 4000),
        get("consistency-5000-digits", consistency, 422, invalid, "second",
            "first=1&second=" + "9" * 5000),
        get("consistency-1e400", consistency, 422, invalid, "first", "first=1e400&second=2"),
        get("consistency-negative", consistency, 422, invalid, "first", "first=-1&second=2"),
        get("consistency-nan", consistency, 422, invalid, "first", "first=NaN&second=2"),
        get("consistency-first-after-second", consistency, 400, invalid, None,
            "first=5&second=2"),
        get("consistency-merchant-token", consistency, 403, "insufficient-scope", None,
            "first=1&second=2", auth="merchant"),
        get("inclusion-duplicated-index", inclusion, 422, invalid, "index", "index=0&index=1"),
        get("inclusion-missing-index", inclusion, 422, invalid, "index", "tree_size=1"),
        get("inclusion-index-5000-digits", inclusion, 422, invalid, "index",
            "index=" + "9" * 5000),
        get("inclusion-tree-size-zero", inclusion, 422, invalid, "tree_size",
            "index=0&tree_size=0"),
        get("inclusion-index-1mb", inclusion, 422, invalid, "index", "index=" + "1" * MB),
    ]
    for label, char in ENCODED.items():
        if not char.isspace():  # int() reads " 1\n" as 1, harmlessly
            cases.append(get(f"inclusion-index-{label}", inclusion, 422, invalid, "index",
                             "index=" + _q("0" + char)))
            cases.append(get(f"consistency-first-{label}", consistency, 422, invalid, "first",
                             "first=" + _q("1" + char) + "&second=2"))
    return cases


# -- OAuth ---------------------------------------------------------------------------------------

CC = ("grant_type", "client_credentials")
#: a header value "basic-of:<id>:<secret>" is sent as HTTP Basic credentials, encoded
#: as UTF-8 (lone surrogates as their invalid bytes) after the placeholders are filled
BASIC_OF = "basic-of:"


def token_cases() -> list[Case]:
    path = "/oauth/token"

    def post(case_id: str, status: int, error: str | None, *pairs: tuple[str, str],
             **options: Any) -> Case:
        options.setdefault("auth", "basic")
        return Case(case_id, "POST", path, status, error, body=_form(*pairs),
                    content_type=FORM, **options)

    verifier = "v" * 43
    code = ("grant_type", "authorization_code")
    cases = [
        post("duplicated-grant-type", 400, "invalid_request", CC, CC),
        post("duplicated-scope", 400, "invalid_request", CC, ("scope", "decisions"),
             ("scope", "decisions contacts:write subscriptions:read")),
        post("duplicated-client-id", 400, "invalid_request", CC, ("client_id", "{client_id}"),
             ("client_id", "{client_id}"), ("client_secret", "{client_secret}"), auth="none"),
        post("duplicated-code", 400, "invalid_request", code, ("code", "a"), ("code", "b"),
             ("redirect_uri", REDIRECT_URI), ("code_verifier", verifier)),
        post("missing-grant-type", 400, "unsupported_grant_type", ("scope", "decisions")),
        post("unknown-grant-type", 400, "unsupported_grant_type", ("grant_type", "password"),
             ("username", "a"), ("password", "b")),
        post("scope-1mb", 400, "invalid_scope", CC, ("scope", "s" * MB)),
        post("scope-unknown", 400, "invalid_scope", CC, ("scope", "audit:read")),
        post("code-1mb", 400, "invalid_grant", code, ("code", "c" * MB),
             ("redirect_uri", REDIRECT_URI), ("code_verifier", verifier)),
        post("code-verifier-1mb", 400, "invalid_grant", code, ("code", "c"),
             ("redirect_uri", REDIRECT_URI), ("code_verifier", "v" * MB)),
        post("refresh-token-1mb", 400, "invalid_grant", ("grant_type", "refresh_token"),
             ("refresh_token", "r" * MB)),
        post("client-id-1mb-in-body", 400, "invalid_client", CC, ("client_id", "i" * MB),
             ("client_secret", "s"), auth="none"),
        post("client-secret-1mb", 401, "invalid_client", CC, ("client_id", "{client_id}"),
             ("client_secret", "s" * MB), auth="none"),
        Case("basic-auth-1mb", "POST", path, 401, "invalid_client", body=_form(CC),
             content_type=FORM, auth="none",
             headers=(("Authorization", "Basic " + "Q" * MB),)),
        Case("basic-auth-not-base64", "POST", path, 401, "invalid_client", body=_form(CC),
             content_type=FORM, auth="none", headers=(("Authorization", "Basic %%%%"),)),
        Case("just-over-2mb", "POST", path, 413, "request-entity-too-large",
             body=_form(CC, ("padding", "p" * OVER_LIMIT)), content_type=FORM, auth="basic"),
        Case("invalid-utf8-form", "POST", path, 400, "unsupported_grant_type",
             body=b"grant_type=client_credentials&scope=decisions\xff\xfe", content_type=FORM,
             auth="basic"),
        Case("json-body", "POST", path, 400, "invalid_request",
             body={"grant_type": "client_credentials"}, auth="basic"),
        Case("nested-json-body", "POST", path, 400, "invalid_request",
             body=b"[" * 100_000, content_type=JSON, auth="basic"),
        Case("integer-5000-digits-json-body", "POST", path, 400, "invalid_request",
             body=b'{"grant_type": ' + b"9" * 5000 + b"}", content_type=JSON, auth="basic"),
        Case("text-plain-body", "POST", path, 400, "invalid_request",
             body=b"grant_type=client_credentials", content_type="text/plain", auth="basic"),
        Case("empty-body", "POST", path, 400, "unsupported_grant_type", body=b"",
             auth="basic"),
        Case("multipart-body", "POST", path, 400, "invalid_request",
             body=_multipart(CC), content_type=MULTIPART, auth="basic"),
        Case("get", "GET", path, 405, "method-not-allowed", query="grant_type=client_credentials",
             auth="basic"),
    ]
    cases += [
        post("grant-type-invalid-utf8-escape", 400, "unsupported_grant_type",
             ("grant_type", "client_credentials" + SURROGATE)),
        post("scope-invalid-utf8-escape", 400, "invalid_scope", CC,
             ("scope", "decisions" + SURROGATE)),
        post("client-id-invalid-utf8-escape", 400, "invalid_client", CC,
             ("client_id", "{client_id}" + SURROGATE), ("client_secret", "{client_secret}"),
             auth="none"),
        post("code-invalid-utf8-escape", 400, "invalid_grant", code,
             ("code", "abc" + SURROGATE), ("redirect_uri", REDIRECT_URI),
             ("code_verifier", verifier)),
        post("refresh-token-invalid-utf8-escape", 400, "invalid_grant",
             ("grant_type", "refresh_token"), ("refresh_token", "rt" + SURROGATE)),
        Case("basic-user-lone-surrogate", "POST", path, 401, "invalid_client", body=_form(CC),
             content_type=FORM, auth="none",
             headers=(("Authorization", BASIC_OF + "{client_id}" + SURROGATE + ":x"),)),
    ]
    for label, char in ENCODED.items():
        cases += [
            post(f"grant-type-{label}", 400, "invalid_request",
                 ("grant_type", "client_credentials" + char)),
            post(f"scope-{label}", 400, "invalid_request", CC, ("scope", "decisions" + char)),
            post(f"client-id-{label}", 400, "invalid_request", CC,
                 ("client_id", "{client_id}" + char), ("client_secret", "{client_secret}"),
                 auth="none"),
            post(f"code-{label}", 400, "invalid_request", code, ("code", "abc" + char),
                 ("redirect_uri", REDIRECT_URI), ("code_verifier", verifier)),
            post(f"redirect-uri-{label}", 400, "invalid_request", code, ("code", "abc"),
                 ("redirect_uri", REDIRECT_URI + char), ("code_verifier", verifier)),
            post(f"refresh-token-{label}", 400, "invalid_request",
                 ("grant_type", "refresh_token"), ("refresh_token", "rt" + char)),
            post(f"code-verifier-{label}", 400, "invalid_request", code, ("code", "abc"),
                 ("redirect_uri", REDIRECT_URI), ("code_verifier", verifier + char)),
            post(f"client-secret-{label}", 400, "invalid_request", CC,
                 ("client_id", "{client_id}"), ("client_secret", "{client_secret}" + char),
                 auth="none"),
            Case(f"basic-user-{label}", "POST", path, 401, "invalid_client", body=_form(CC),
                 content_type=FORM, auth="none",
                 headers=(("Authorization",
                           BASIC_OF + "{client_id}" + char + ":{client_secret}"),)),
        ]
    return cases


def token_endpoint_cases(name: str) -> list[Case]:
    """/oauth/revoke and /oauth/introspect: what RFC 7009 and RFC 7662 each answer."""
    path = f"/oauth/{name}"
    # RFC 7009 §2.2: 200 (and nothing done) for a token the server does not know;
    # RFC 7662 §2.2: 200 with {"active": false}.
    unknown = 200

    def post(case_id: str, status: int, error: str | None, *pairs: tuple[str, str],
             **options: Any) -> Case:
        options.setdefault("auth", "basic")
        return Case(case_id, "POST", path, status, error, body=_form(*pairs),
                    content_type=FORM, **options)

    cases = [
        post("duplicated-token", 400, "invalid_request", ("token", "{client_secret}"),
             ("token", "other")),
        post("duplicated-hint", 400, "invalid_request", ("token", "t"),
             ("token_type_hint", "access_token"), ("token_type_hint", "refresh_token")),
        post("missing-token", 400, "invalid_request", ("token_type_hint", "access_token")),
        # Authlib answers an unsupported token type with 401
        post("unknown-hint", 401, "unsupported_token_type", ("token", "t"),
             ("token_type_hint", "id_token")),
        post("token-1mb", unknown, None, ("token", "t" * MB)),
        post("no-client-auth", 401, "invalid_client", ("token", "t"), auth="none"),
        post("client-secret-1mb", 401, "invalid_client", ("token", "t"),
             ("client_id", "{client_id}"), ("client_secret", "s" * MB), auth="none"),
        Case("just-over-2mb", "POST", path, 413, "request-entity-too-large",
             body=_form(("token", "t" * OVER_LIMIT)), content_type=FORM, auth="basic"),
        Case("json-body", "POST", path, 400, "invalid_request", body={"token": "t"},
             auth="basic"),
        Case("nested-json-body", "POST", path, 400, "invalid_request", body=b"[" * 100_000,
             content_type=JSON, auth="basic"),
        Case("empty-body", "POST", path, 400, "invalid_request", body=b"", auth="basic"),
        Case("invalid-utf8-token", "POST", path, 400, "invalid_request", body=b"token=\xff\xfe\xfd",
             content_type=FORM, auth="basic"),
        Case("get", "GET", path, 405, "method-not-allowed", query="token=t", auth="basic"),
    ]
    cases += [
        post("token-invalid-utf8-escape", unknown, None, ("token", "t" + SURROGATE)),
        post("hint-invalid-utf8-escape", 401, "unsupported_token_type", ("token", "t"),
             ("token_type_hint", "access_token" + SURROGATE)),
        post("client-id-invalid-utf8-escape", 400, "invalid_client", ("token", "t"),
             ("client_id", "{client_id}" + SURROGATE), ("client_secret", "{client_secret}"),
             auth="none"),
    ]
    for label, char in ENCODED.items():
        cases += [
            post(f"token-{label}", 400, "invalid_request", ("token", "t" + char)),
            post(f"hint-{label}", 400, "invalid_request", ("token", "t"),
                 ("token_type_hint", "access_token" + char)),
            post(f"client-id-{label}", 400, "invalid_request", ("token", "t"),
                 ("client_id", "{client_id}" + char), ("client_secret", "{client_secret}"),
                 auth="none"),
            post(f"client-secret-{label}", 400, "invalid_request", ("token", "t"),
                 ("client_id", "{client_id}"), ("client_secret", "{client_secret}" + char),
                 auth="none"),
        ]
    return cases


CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(b"v" * 43).digest()).rstrip(b"=").decode()
AUTHORIZE_PARAMS = (("response_type", "code"), ("client_id", "{client_id}"),
                    ("redirect_uri", REDIRECT_URI), ("scope", "contact:email:offers profile:email"),
                    ("state", "st4te"), ("code_challenge", CHALLENGE),
                    ("code_challenge_method", "S256"))


def _authorize_query(*, drop: str | None = None, change: dict[str, str] | None = None,
                     extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = [(k, (change or {}).get(k, v)) for k, v in AUTHORIZE_PARAMS if k != drop]
    return "&".join(f"{_q(k)}={_q(v, '{}')}" for k, v in pairs + list(extra))


def authorize_cases() -> list[Case]:
    """GET /oauth/authorize by a logged-in person, and the consent form posted back.

    Errors about the client or its redirect URI are shown on the vault's own
    page (400); once the redirect URI is known good, RFC 6749 §4.1.2.1 sends
    the error to the merchant in a redirect (302, ``error=...``).
    """
    path = "/oauth/authorize"
    page, redirect = 400, 302

    def get(case_id: str, status: int, error: str | None, query: str) -> Case:
        return Case(case_id, "GET", path, status, error, query=query, auth="none",
                    logged_in=True)

    valid = _authorize_query()

    def consent(case_id: str, status: int, error: str | None, *pairs: tuple[str, str],
                csrf: bool = True, **options: Any) -> Case:
        options.setdefault("content_type", FORM)
        body = options.pop("body", _form(*pairs))
        return Case(case_id, "POST", path, status, error, query=valid, body=body, auth="none",
                    logged_in=True, csrf_from=f"{path}?{valid}" if csrf else None, **options)

    cases = [
        get("duplicated-client-id", page, None,
            _authorize_query(extra=(("client_id", "{client_id}"),))),
        get("duplicated-redirect-uri", page, None,
            _authorize_query(extra=(("redirect_uri", REDIRECT_URI),))),
        get("duplicated-response-type", page, None,
            _authorize_query(extra=(("response_type", "code"),))),
        get("duplicated-scope", page, None,
            _authorize_query(extra=(("scope", "contact:sms:offers"),))),
        get("duplicated-state", page, None, _authorize_query(extra=(("state", "other"),))),
        get("duplicated-code-challenge", page, None,
            _authorize_query(extra=(("code_challenge", CHALLENGE),))),
        get("duplicated-nonce", page, None,
            _authorize_query(extra=(("nonce", "n1"), ("nonce", "n2")))),
        get("nonce-1mb", page, None, _authorize_query(extra=(("nonce", "n" * MB),))),
        get("state-1mb-nul", page, None, _authorize_query(change={"state": "s" * MB + "\x00"})),
        get("client-id-1mb", page, None, _authorize_query(change={"client_id": "c" * MB})),
        get("redirect-uri-1mb", page, None,
            _authorize_query(change={"redirect_uri": REDIRECT_URI + "/" + "r" * MB})),
        get("scope-1mb", redirect, "invalid_scope",
            _authorize_query(change={"scope": "contact:email:offers x" * (MB // 20)})),
        get("redirect-uri-other-site", page, None,
            _authorize_query(change={"redirect_uri": "https://evil.example/cb"})),
        get("no-pkce", redirect, "invalid_request", _authorize_query(drop="code_challenge")),
        get("pkce-plain", redirect, "invalid_request",
            _authorize_query(change={"code_challenge_method": "plain"})),
        get("response-type-token", redirect, "unsupported_response_type",
            _authorize_query(change={"response_type": "token"})),
        get("client-id-invalid-utf8", page, None,
            _authorize_query(drop="client_id") + "&client_id=%FF%FE"),
        consent("post-without-csrf", 400, None, ("action", "allow"),
                ("grant", "contact:email:offers"), csrf=False),
        consent("duplicated-action", 400, None, ("action", "allow"), ("action", "deny"),
                ("grant", "contact:email:offers")),
        Case("consent-with-1mb-nonce", "POST", path, 400, None,
             query=_authorize_query(extra=(("nonce", "n" * MB),)),
             body=_form(("action", "allow"), ("grant", "contact:email:offers")),
             content_type=FORM, auth="none", logged_in=True, csrf_from=f"{path}?{valid}"),
        consent("nothing-ticked", 400, None, ("action", "allow")),
        consent("grant-not-asked-for", 400, None, ("action", "allow"),
                ("grant", "contact:phone:partner_offers")),
        consent("grant-1mb", 400, None, ("action", "allow"), ("grant", "g" * MB)),
        consent("just-over-2mb", 413, None, ("action", "allow"),
                ("grant", "g" * OVER_LIMIT)),
        # no form at all: nothing was allowed, so the answer is the denial
        consent("json-body", 302, "access_denied", body=json.dumps(
            {"action": "allow", "grant": ["contact:email:offers"]}).encode(), content_type=JSON),
        consent("nested-json-body", 302, "access_denied", body=b"[" * 100_000,
                content_type=JSON),
        consent("invalid-utf8", 400, None,
                body=b"action=allow&grant=contact%3Aemail%3Aoffers\xff", content_type=FORM),
    ]
    cases += [
        get("client-id-invalid-utf8-escape", page, None,
            _authorize_query(change={"client_id": "{client_id}" + SURROGATE})),
        get("redirect-uri-invalid-utf8-escape", page, None,
            _authorize_query(change={"redirect_uri": REDIRECT_URI + SURROGATE})),
        get("scope-invalid-utf8-escape", redirect, "invalid_scope",
            _authorize_query(change={"scope": "contact:email:offers" + SURROGATE})),
        get("code-challenge-invalid-utf8-escape", redirect, "invalid_request",
            _authorize_query(change={"code_challenge": CHALLENGE[:-1] + SURROGATE})),
    ]
    for label, char in ENCODED.items():
        cases += [
            get(f"client-id-{label}", page, None,
                _authorize_query(change={"client_id": "{client_id}" + char})),
            get(f"redirect-uri-{label}", page, None,
                _authorize_query(change={"redirect_uri": REDIRECT_URI + char})),
            get(f"scope-{label}", page, None,
                _authorize_query(change={"scope": "contact:email:offers" + char})),
            get(f"code-challenge-{label}", page, None,
                _authorize_query(change={"code_challenge": CHALLENGE[:-1] + char})),
            get(f"nonce-{label}", page, None, _authorize_query(extra=(("nonce", "n" + char),))),
            get(f"state-{label}", page, None, _authorize_query(change={"state": "st" + char})),
            get(f"response-type-{label}", page, None,
                _authorize_query(change={"response_type": "code" + char})),
            get(f"code-challenge-method-{label}", page, None,
                _authorize_query(change={"code_challenge_method": "S256" + char})),
            consent(f"grant-{label}", 400, None, ("action", "allow"),
                    ("grant", "contact:email:offers" + char)),
            consent(f"action-{label}", 302, "access_denied", ("action", "allow" + char),
                    ("grant", "contact:email:offers")),
        ]
    return cases


def login_cases() -> list[Case]:
    """The login form: refused attempts are a page again (400 or 401), never a 5xx."""
    path = "/login"

    def post(case_id: str, status: int, *pairs: tuple[str, str], csrf: bool = True,
             **options: Any) -> Case:
        options.setdefault("content_type", FORM)
        body = options.pop("body", _form(*pairs))
        return Case(case_id, "POST", path, status, body=body, auth="none",
                    csrf_from=path if csrf else None, **options)

    wrong = ("password", "not the password at all")
    cases = [
        post("without-csrf", 400, ("email", "{email}"), ("password", PASSWORD), csrf=False),
        post("duplicated-email", 401, ("email", "nobody@example.org"), ("email", "{email}"),
             ("password", PASSWORD)),
        post("duplicated-password", 401, ("email", "{email}"), ("password", "wrong"),
             ("password", PASSWORD)),
        post("email-1mb", 401, ("email", "e" * MB + "@example.org"), ("password", PASSWORD)),
        post("password-1mb", 401, ("email", "{email}"), ("password", "p" * MB)),
        post("just-over-2mb", 413, ("email", "{email}"), ("password", "p" * OVER_LIMIT)),
        post("invalid-utf8", 400, body=b"email=%FF%FE&password=\xff\xfe", content_type=FORM),
        # no form at all (the CSRF token rides in its header): no credentials either
        post("json-body", 401, body=json.dumps({"email": "{email}", "password": PASSWORD})
             .encode(), content_type=JSON),
        post("nested-json-body", 401, body=b"[" * 100_000, content_type=JSON),
        post("empty-body", 401, body=b"", content_type=None),
        post("multipart-wrong-password", 401, body=_multipart(("email", "{email}"), wrong),
             content_type=MULTIPART),
        post("text-plain", 401, body=b"email=a&password=b", content_type="text/plain"),
        post("next-elsewhere-wrong-password", 401, ("email", "{email}"), wrong,
             ("next", "https://evil.example/")),
    ]
    for label, char in CONTROL.items():
        cases += [
            # surrounding white space is trimmed from a typed address: that one logs in
            post(f"email-{label}", 302 if char.isspace() else 401,
                 ("email", "{email}" + char), ("password", PASSWORD)),
            post(f"password-{label}", 401, ("email", "{email}"), ("password", PASSWORD + char)),
            post(f"next-{label}", 401, ("email", "{email}"), wrong, ("next", "/x" + char)),
        ]
    return cases


def userinfo_cases() -> list[Case]:
    path = "/oauth/userinfo"
    cases = [
        Case("1mb-bearer", "GET", path, 401, "unauthenticated", auth="none",
             headers=(("Authorization", "Bearer " + "A" * MB),)),
        Case("client-token-without-openid", "GET", path, 403, "insufficient-scope"),
        # the token is refused before the body is read
        Case("just-over-2mb-without-openid", "POST", path, 403, "insufficient-scope",
             body=_form(("x", "x" * OVER_LIMIT)), content_type=FORM),
    ]
    for label, char in CONTROL.items():
        if char in ("\n", "\r\n") or not char.isascii():
            continue  # a header value cannot carry a line break, and is Latin-1 on the wire
        cases.append(Case(f"bearer-{label}", "GET", path, 401, "unauthenticated", auth="none",
                          headers=(("Authorization", "Bearer tok" + char),)))
    return cases


SURFACES: dict[str, list[Case]] = {
    "decisions": json_route_cases("decisions"),
    "batch": json_route_cases("batch"),
    "contacts": json_route_cases("contacts"),
    "subscriptions": subscriptions_cases(),
    "subscription": subscription_cases(),
    "audit-events": audit_cases(),
    "audit-proofs": audit_proof_cases(),
    "oauth-token": token_cases(),
    "oauth-revoke": token_endpoint_cases("revoke"),
    "oauth-introspect": token_endpoint_cases("introspect"),
    "oauth-authorize": authorize_cases(),
    "oauth-userinfo": userinfo_cases(),
    "login": login_cases(),
}


# -- the world each group of cases runs in ------------------------------------------------------


@dataclass
class World:
    """A vault with a merchant, an auditor and a subscribed person who is logged in."""

    vault: Vault
    merchant: ApiMerchant
    merchant_auth: dict[str, str]
    auditor_auth: dict[str, str]
    person: Subscribed
    browser: FlaskClient
    values: dict[str, str] = field(default_factory=dict)

    def fill(self, text: str) -> str:
        for name, value in self.values.items():
            text = text.replace("{" + name + "}", value)
        return text


def _fill_document(world: World, document: object) -> object:
    if isinstance(document, str):
        return world.fill(document)
    if isinstance(document, list):
        return [_fill_document(world, item) for item in document]
    if isinstance(document, dict):
        return {key: _fill_document(world, value) for key, value in document.items()}
    return document


def _fill_bytes(world: World, raw: bytes) -> bytes:
    for name, value in world.values.items():
        raw = raw.replace(b"{" + name.encode() + b"}", value.encode())
        raw = raw.replace(b"%7B" + name.encode() + b"%7D", quote(value).encode())
    return raw


def _log_in(browser: FlaskClient, email: str) -> None:
    page = browser.get("/login")
    assert page.status_code == 200
    form = next(f for f in parse_page(page.get_data(as_text=True)).forms
                if (f.action or "").split("?")[0].endswith("/login"))
    response = browser.post("/login", data={"csrf_token": form.value("csrf_token"),
                                            "email": email, "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """conftest's settings with rate limits out of the way: every case must reach the view."""
    lifted = {name: "1000000 per minute" for name in Settings.__dataclass_fields__
              if name.startswith("rate_limit_")}
    return settings.replace(**lifted)


@pytest.fixture
def world(app: Flask, client: FlaskClient, runtime: Runtime, clock: FixedClock) -> World:
    vault = Vault(app, client, runtime, clock)
    merchant = register_merchant(runtime)
    auditor = register_merchant(runtime, "Auditor", kind="auditor")
    person = subscribe(runtime, merchant)
    browser = app.test_client()
    _log_in(browser, person.email)
    merchant_auth = token_header(client, merchant)
    decision = client.post(f"{API}/decisions", headers=merchant_auth, json={
        "subject": person.subject, "channel": "email", "purpose": "offers"}).get_json()
    return World(vault, merchant, merchant_auth, token_header(client, auditor), person, browser,
                 {"subject": person.subject, "client_id": merchant.client_id,
                  "client_secret": merchant.client_secret, "email": person.email,
                  "decision": decision["decision_id"]})


def _csrf_token(browser: FlaskClient, page: str) -> str:
    response = browser.get(page)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    for form in parse_page(response.get_data(as_text=True)).forms:
        try:
            token = form.value("csrf_token")
        except KeyError:
            continue
        if token:
            return token
    raise AssertionError(f"no CSRF token on {page}")


def send(world: World, case: Case) -> TestResponse:
    """Make the case's request through the Flask test client."""
    if case.csrf_from == "/login":
        client = world.vault.app.test_client()  # nobody logged in yet
    elif case.logged_in or case.csrf_from:
        client = world.browser
    else:
        client = world.vault.client
    headers: list[tuple[str, str]] = []
    if _kind(case) == "page":
        headers.append(("Accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"))
    if case.auth == "merchant":
        headers += world.merchant_auth.items()
    elif case.auth == "auditor":
        headers += world.auditor_auth.items()
    elif case.auth == "basic":
        headers += basic_auth(world.merchant.client_id, world.merchant.client_secret).items()
    for name, value in case.headers:
        value = world.fill(value)
        if value.startswith(BASIC_OF):
            raw = value.removeprefix(BASIC_OF).encode("utf-8", "surrogatepass")
            value = "Basic " + base64.b64encode(raw).decode()
        headers.append((name, value))
    body = case.body
    content_type = case.content_type
    if isinstance(body, bytes):
        data = _fill_bytes(world, body)
    elif body is None:
        data = None
    else:
        data = json.dumps(_fill_document(world, body)).encode("utf-8", "surrogatepass")
        content_type = content_type or JSON
    if case.csrf_from is not None:
        token = _csrf_token(client, world.fill(case.csrf_from))
        if content_type == FORM and data is not None:
            data = _form(("csrf_token", token)) + b"&" + data
        else:
            headers.append(("X-CSRFToken", token))
    url = world.fill(case.path) + ("?" + world.fill(case.query) if case.query else "")
    return client.open(url, method=case.method, data=data, content_type=content_type,
                       headers=headers)


# -- judging an answer --------------------------------------------------------------------------


def _kind(case: Case) -> str:
    path = case.path
    if path.startswith(API) or path == "/oauth/userinfo":
        return "api"
    if path in ("/oauth/token", "/oauth/revoke", "/oauth/introspect"):
        return "oauth"
    return "page"


def judge(case: Case, response: TestResponse) -> list[str]:
    """What is wrong with the answer to ``case`` (empty when it is right)."""
    status = response.status_code
    text = response.get_data(as_text=True)
    if status != case.status:
        return [f"status {status}, expected {case.status}: {text[:300]!r}"]
    kind = _kind(case)
    if kind == "api":
        return _judge_problem(case, response)
    if kind == "oauth":
        if status == 200:
            expected = {} if case.path == "/oauth/revoke" else {"active": False}
            body = response.get_json(silent=True)
            return [] if body == expected else [f"answered {text[:200]!r}, expected {expected}"]
        if status in (405, 413):
            return _judge_problem(case, response)
        return _judge_oauth_error(case, response)
    if status in (301, 302, 303, 307) and case.path == "/login":
        location = response.headers.get("Location", "")
        same_site = location.startswith("/") and not location.startswith("//")
        return [] if same_site else [f"logged in and sent to {location[:200]!r}"]
    if status in (301, 302, 303, 307):
        return _judge_redirect(case, response)
    if response.mimetype != "text/html":
        return [f"a page was expected, got {response.mimetype}: {text[:200]!r}"]
    return []


def _judge_problem(case: Case, response: TestResponse) -> list[str]:
    if response.mimetype != PROBLEM_JSON:
        return [f"content type {response.mimetype}, expected {PROBLEM_JSON}"]
    body = response.get_json()
    found: list[str] = []
    if not isinstance(body, dict) or body.get("status") != response.status_code:
        return [f"not a problem document: {body!r}"[:300]]
    if case.error is not None and body.get("type") != PROBLEMS + case.error:
        found.append(f"type {body.get('type')}, expected {PROBLEMS + case.error}")
    if case.field is not None and body.get("field") != case.field:
        found.append(f"field {body.get('field')!r}, expected {case.field!r}")
    if not (isinstance(body.get("title"), str) and isinstance(body.get("detail"), str)):
        found.append("title and detail must be text")
    return found


def _judge_oauth_error(case: Case, response: TestResponse) -> list[str]:
    if response.mimetype != JSON:
        return [f"content type {response.mimetype}, expected {JSON}"]
    body = response.get_json()
    if not isinstance(body, dict) or body.get("error") != case.error:
        return [f"OAuth error {body!r}, expected {case.error!r}"[:300]]
    if response.headers.get("Cache-Control") != "no-store":
        return ["an OAuth error must not be cached"]
    return []


def _judge_redirect(case: Case, response: TestResponse) -> list[str]:
    location = response.headers.get("Location", "")
    if not location.startswith(REDIRECT_URI + "?"):
        return [f"redirected to {location[:200]!r}, expected the merchant's redirect URI"]
    query = parse_qs(urlsplit(location).query)
    if query.get("error") != [case.error]:
        return [f"redirect carries error {query.get('error')}, expected {case.error!r}"]
    if "code" in query:
        return ["an error redirect must not carry a code"]
    return []


# -- the tests -----------------------------------------------------------------------------------


@dataclass
class Tally:
    cases: int = 0
    server_errors: int = 0
    rows_changed: int = 0
    wrong: int = 0


_TALLY: dict[str, Tally] = {}


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print what the module saw, per backend, after its last test."""
    yield
    if not _TALLY:
        return
    lines = ["", "hostile input report"]
    for backend, tally in sorted(_TALLY.items()):
        lines.append(f"  {backend:<10} cases run: {tally.cases:>5}   5xx answers: "
                     f"{tally.server_errors}   rows changed by refused requests: "
                     f"{tally.rows_changed}   wrong answers: {tally.wrong}")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n".join(lines), flush=True)


def _backend(database: Database) -> str:
    return database.dialect


@pytest.mark.parametrize("surface", list(SURFACES))
def test_hostile_requests_get_a_clean_4xx_and_write_nothing(world: World, surface: str) -> None:
    database = world.vault.runtime.database
    tally = _TALLY.setdefault(_backend(database), Tally())
    failures: list[str] = []
    for case in SURFACES[surface]:
        before = count_rows(database)
        response = send(world, case)
        after = count_rows(database)
        tally.cases += 1
        if response.status_code >= 500:
            tally.server_errors += 1
        wrong = judge(case, response)
        changed = changed_rows(before, after)
        if changed:
            tally.rows_changed += sum(abs(n) for n in changed.values())
            wrong.append(f"rows changed: {changed}")
        if wrong:
            tally.wrong += 1
            failures.append(f"{surface}/{case.id}: " + "; ".join(wrong))
    assert not failures, f"{len(failures)} of {len(SURFACES[surface])} cases:\n" + "\n".join(
        failures)


def test_every_route_of_the_api_and_oauth_has_hostile_cases(app: Flask) -> None:
    """A new route must get its own table above before it ships."""
    adapter = app.url_map.bind("vault.test")
    covered = set()
    for cases in SURFACES.values():
        for case in cases:
            path = case.path.replace("{subject}", "sub_x")
            try:
                rule, _ = adapter.match(path, method=case.method, return_rule=True)
            except HTTPException:  # e.g. GET on a POST route: covers nothing
                continue
            covered.add(rule.rule)
    routes = {rule.rule for rule in app.url_map.iter_rules()
              if rule.rule.startswith((API, "/oauth/")) or rule.rule == "/login"}
    assert routes - covered == set(), "routes without hostile cases"


# -- over a real socket --------------------------------------------------------------------------


@dataclass(frozen=True)
class WireCase:
    """A request only a raw connection can make: a test client (or httpx) would refuse it."""

    id: str
    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    chunked: bool = False


WIRE_CASES = [
    WireCase("1mb-header-value", "POST", f"{API}/decisions",
             (("X-Junk", "j" * MB), ("Content-Type", JSON)), b"{}"),
    WireCase("1mb-authorization", "POST", f"{API}/decisions",
             (("Authorization", "Bearer " + "A" * MB), ("Content-Type", JSON)), b"{}"),
    WireCase("1mb-url", "GET", f"{API}/subscriptions?cursor=" + "c" * MB),
    WireCase("1mb-cookie-on-login", "POST", "/login",
             (("Cookie", "session=" + "s" * MB), ("Content-Type", FORM)), b"email=a&password=b"),
    WireCase("header-with-bare-newline", "POST", "/oauth/token",
             (("Content-Type", FORM + "\nX-Injected: 1"),), b"grant_type=client_credentials"),
    WireCase("header-with-nul", "POST", f"{API}/decisions",
             (("Content-Type", JSON), ("X-Request-Id", "abcdefgh\x00ijkl")), b"[]"),
    WireCase("just-over-2mb-chunked-json", "POST", f"{API}/decisions/batch",
             (("Content-Type", JSON),), b"[" * OVER_LIMIT, chunked=True),
    WireCase("just-over-2mb-chunked-form", "POST", "/oauth/token",
             (("Content-Type", FORM),), b"grant_type=" + b"y" * OVER_LIMIT, chunked=True),
    WireCase("just-over-2mb-with-length", "POST", "/oauth/introspect",
             (("Content-Type", FORM),), b"token=" + b"t" * OVER_LIMIT),
    WireCase("length-larger-than-body", "POST", f"{API}/decisions",
             (("Content-Type", JSON), ("Content-Length", "5000000")), b"{}"),
    WireCase("two-content-lengths", "POST", f"{API}/decisions",
             (("Content-Type", JSON), ("Content-Length", "2"), ("Content-Length", "30")),
             b"{}"),
]


def raw_request(base_url: str, case: WireCase, extra: dict[str, str]) -> int | None:
    """Send ``case`` over a plain socket; the status code, or None if the server hung up."""
    host, port = urlsplit(base_url).netloc.split(":")
    lines = [f"{case.method} {case.target} HTTP/1.1", f"Host: {host}:{port}",
             "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (*extra.items(), *case.headers)]
    names = {name.lower() for name, _ in case.headers}
    if case.chunked:
        lines.append("Transfer-Encoding: chunked")
        step = 65536
        body = b"".join(b"%x\r\n%s\r\n" % (len(case.body[i:i + step]), case.body[i:i + step])
                        for i in range(0, len(case.body), step)) + b"0\r\n\r\n"
    else:
        body = case.body
        if "content-length" not in names:
            lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    answer = b""
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        # The server may answer (and close) before it has read everything: keep what it said.
        with contextlib.suppress(OSError):
            sock.sendall(head + body)
            sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    if not answer.startswith(b"HTTP/"):
        return None
    return int(answer.split(b" ", 2)[1])


def test_hostile_requests_over_a_real_socket_are_refused_without_writing(
        live_vault: LiveVault) -> None:
    runtime = live_vault.runtime
    merchant = register_merchant(runtime)
    subscribe(runtime, merchant)
    with httpx.Client(base_url=live_vault.base_url, timeout=30) as http:
        token = http.post("/oauth/token", data={"grant_type": "client_credentials"},
                          auth=(merchant.client_id, merchant.client_secret)).json()
    tally = _TALLY.setdefault(_backend(runtime.database), Tally())
    failures = []
    for case in WIRE_CASES:
        before = count_rows(runtime.database)
        status = raw_request(live_vault.base_url, case, bearer(token["access_token"]))
        changed = changed_rows(before, count_rows(runtime.database))
        tally.cases += 1
        if status is not None and status >= 500:
            tally.server_errors += 1
        tally.rows_changed += sum(abs(n) for n in changed.values())
        # None: the server closed the connection without an answer, which refuses it too
        if changed or not (status is None or 400 <= status < 500):
            tally.wrong += 1
            failures.append(f"{case.id}: status {status}, rows changed {changed}")
    assert not failures, "\n".join(failures)
