"""Who is logged in: the person id kept in the signed session cookie."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TypeVar
from urllib.parse import urlsplit

from flask import redirect, request, session, url_for

F = TypeVar("F", bound=Callable[..., object])


def current_person_id() -> str | None:
    value = session.get("person_id")
    return value if isinstance(value, str) else None


def log_in(person_id: str) -> None:
    """Start a fresh session: nothing from before the login survives (no fixation)."""
    session.clear()
    session["person_id"] = person_id
    session.permanent = True


def log_out() -> None:
    session.clear()


def safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after login."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return url_for("ui.subscriptions")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return url_for("ui.subscriptions")
    return target


def login_required(view: F) -> F:
    @wraps(view)
    def wrapper(*args: object, **kwargs: object) -> object:
        if current_person_id() is None:
            return redirect(url_for("ui.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
