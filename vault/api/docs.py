"""Documenting the problem responses of each route in the OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Callable
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
