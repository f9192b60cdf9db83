"""Documenting the problem responses and the links of each route in the OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import wraps
from typing import TypeVar

from flask import request
from flask_smorest import Blueprint
from webargs.flaskparser import abort
from werkzeug.exceptions import UnsupportedMediaType

from vault.api.schemas import ProblemSchema

F = TypeVar("F", bound=Callable[..., object])

DESCRIPTIONS = {
    400: "Malformed request (bad JSON, wrong type, value out of range)",
    401: "Missing, invalid, expired or revoked access token",
    403: "The token lacks the scope or is not a merchant's",
    404: "No subscription with this subject",
    413: "Request body too large",
    415: "The request body is not application/json",
    422: "The request body or query failed validation",
    429: "Too many requests from this client; retry after the Retry-After header's seconds",
}


def problems(blp: Blueprint, *statuses: int,
             descriptions: dict[int, str] | None = None) -> Callable[[F], F]:
    """Declare ``application/problem+json`` answers for the given statuses.

    Every API route is rate limited, so 429 is declared on each one.
    ``descriptions`` overrides the default wording for some statuses.
    """
    wording = {**DESCRIPTIONS, **(descriptions or {})}
    statuses = tuple(dict.fromkeys((*statuses, 429)))

    def decorator(func: F) -> F:
        for status in statuses:
            func = blp.alt_response(status, schema=ProblemSchema,
                                    description=wording[status],
                                    content_type="application/problem+json")(func)
        return func

    return decorator


def response_value(pointer: str) -> str:
    """A runtime expression naming a value of the response body (a JSON pointer)."""
    return f"$response.body#{pointer}"


def link(operation_id: str, description: str, *,
         parameters: Mapping[str, str] | None = None,
         body: Mapping[str, object] | None = None) -> dict[str, object]:
    """An OpenAPI link to ``operation_id``, fed from the response it is declared on.

    ``parameters`` are keyed ``<in>.<name>`` (``path.subject``, ``query.cursor``)
    so a reader need not look the parameter up; ``body`` holds the fields of
    the request body the response supplies (the rest are the client's choice).
    """
    found: dict[str, object] = {"operationId": operation_id, "description": description}
    if parameters:
        found["parameters"] = dict(parameters)
    if body:
        found["requestBody"] = dict(body)
    return found


def links(status: int, **named: dict[str, object]) -> Callable[[F], F]:
    """Declare where a client can go next with this response (OpenAPI ``links``).

    They tell clients, and fuzzers that follow them, which values of one answer
    are the input of another call: a subject listed is one that can be read,
    asked about and reported. ``status`` is an int so the links land in the
    response ``@blp.response`` documents rather than beside it.
    """
    decorator: Callable[[F], F] = Blueprint.doc(responses={status: {"links": named}})
    return decorator


def json_body(func: F) -> F:
    """Refuse a body that is not ``application/json`` (415) before it is parsed.

    Without this, webargs skips a body of another type and reports every
    required field as missing, which misleads a client that did send them.
    """

    @wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        if not request.is_json:
            raise UnsupportedMediaType("Send the request body as application/json.")
        _refuse_unreadable_json(request.get_data(cache=True))
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _refuse_unreadable_json(raw: bytes) -> None:
    """Refuse JSON the parser gives up on other than as a syntax error (400).

    Nesting deeper than Python's recursion limit raises ``RecursionError``
    and an integer of more than 4,300 digits a plain ``ValueError``; webargs
    only turns syntax errors into a 400, so these would otherwise be a 500.
    """
    try:
        json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return  # webargs answers these itself, in the same shape
    except (RecursionError, ValueError):
        abort(400, messages={"json": ["Invalid JSON body."]})
