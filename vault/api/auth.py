"""Who is calling the API: a merchant, by its client-credentials token."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TypeVar

from authlib.integrations.flask_oauth2 import current_token
from flask import g
from sqlmodel import select

from vault.errors import Forbidden
from vault.models import Merchant
from vault.oauth.server import require_oauth
from vault.web.request_db import db_session

F = TypeVar("F", bound=Callable[..., object])


def merchant_required(scope: str) -> Callable[[F], F]:
    """Require a client-credentials token of a merchant carrying ``scope``.

    A person-grant token (it acts for a person, not for the shop) or an
    auditor's token is refused even if it somehow carried the scope.
    """

    def decorator(view: F) -> F:
        @require_oauth(scope)
        @wraps(view)
        def wrapper(*args: object, **kwargs: object) -> object:
            token = current_token
            merchant = db_session().exec(
                select(Merchant).where(Merchant.client_id == token.client_id)
            ).first()
            if merchant is None or merchant.kind != "merchant" or token.person_id is not None:
                raise Forbidden("this token cannot act for a merchant")
            g.merchant = merchant
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def current_merchant() -> Merchant:
    return g.merchant


def auditor_required(scope: str) -> Callable[[F], F]:
    """Require a client-credentials token of an auditor carrying ``scope``.

    A merchant's token, or one acting for a person, is refused with 403.
    """

    def decorator(view: F) -> F:
        @require_oauth(scope)
        @wraps(view)
        def wrapper(*args: object, **kwargs: object) -> object:
            token = current_token
            client = db_session().exec(
                select(Merchant).where(Merchant.client_id == token.client_id)
            ).first()
            if client is None or client.kind != "auditor" or token.person_id is not None:
                raise Forbidden("this token is not an auditor's")
            g.auditor = client
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator
