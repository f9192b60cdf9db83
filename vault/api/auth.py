"""Who is calling the API: a merchant or an auditor, by its client-credentials token."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import TypeVar

from authlib.integrations.flask_oauth2 import current_token
from flask import g, request
from sqlmodel import select

from vault.db import Driver
from vault.errors import Forbidden
from vault.models import Merchant
from vault.models.merchant import AUDITOR, MERCHANT
from vault.oauth.server import require_oauth
from vault.oauth.tokens import find_client_token
from vault.web.request_db import db_session

F = TypeVar("F", bound=Callable[..., object])


def _client_required(kind: str, scope: str, refusal: str) -> Callable[[F], F]:
    """Require a client-credentials token of a ``kind`` client carrying ``scope``.

    A token acting for a person, or one of another kind of client, is refused
    with 403 even if it somehow carried the scope.
    """

    def decorator(view: F) -> F:
        @require_oauth(scope)
        @wraps(view)
        def wrapper(*args: object, **kwargs: object) -> object:
            token = current_token
            client = db_session().exec(
                select(Merchant).where(Merchant.client_id == token.client_id)
            ).first()
            if client is None or client.kind != kind or token.person_id is not None:
                raise Forbidden(refusal)
            g.client = client
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def merchant_required(scope: str) -> Callable[[F], F]:
    """Require a merchant's client-credentials token carrying ``scope``."""
    return _client_required(MERCHANT, scope, "this token cannot act for a merchant")


def auditor_required(scope: str) -> Callable[[F], F]:
    """Require an auditor's client-credentials token carrying ``scope``."""
    return _client_required(AUDITOR, scope, "this token is not an auditor's")


def current_merchant() -> Merchant:
    return g.client


def quick_client_id(db: Driver, *, kind: str, scope: str, now: datetime) -> str | None:
    """The id of the ``kind`` client whose own bearer token, active and carrying ``scope``,
    came with this request; None for anything else.

    The check of the hot routes, in one driver-level query. It accepts only
    what ``require_oauth`` and ``_client_required`` accept together; on None
    the route takes its documented path, which answers 401 or 403 as always.
    """
    header = request.headers.get("Authorization")
    parts = header.split(None, 1) if header else ()
    if len(parts) != 2 or parts[0].lower() != "bearer" or len(parts[1]) > 512:
        return None
    token = find_client_token(db, parts[1])
    if (token is None or token.for_person or token.client_kind != kind
            or scope not in token.scopes or not now < token.expires_at):
        return None
    return token.client_pk
