"""Documenting the problem responses of each route in the OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask_smorest import Blueprint

from vault.api.schemas import ProblemSchema

F = TypeVar("F", bound=Callable[..., object])

DESCRIPTIONS = {
    400: "Malformed request (bad JSON, wrong type, value out of range)",
    401: "Missing, invalid, expired or revoked access token",
    403: "The token lacks the scope or is not a merchant's",
    404: "No subscription with this subject",
    413: "Request body too large",
    422: "The request body or query failed validation",
}


def problems(blp: Blueprint, *statuses: int) -> Callable[[F], F]:
    """Declare ``application/problem+json`` answers for the given statuses."""

    def decorator(func: F) -> F:
        for status in statuses:
            func = blp.alt_response(status, schema=ProblemSchema,
                                    description=DESCRIPTIONS[status],
                                    content_type="application/problem+json")(func)
        return func

    return decorator
