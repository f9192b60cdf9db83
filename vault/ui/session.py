"""Who is logged in: the person id kept in the signed session cookie.

A login starts a brand-new session (nothing from before survives, so a
planted session cannot be promoted), and a session ends after
``session_idle_minutes`` without a page view or ``session_max_hours`` after
the login, whichever comes first, counted on the vault's clock.

Sessions live in the signed cookie, so ending one on another device needs a
check against the database: each session carries a keyed mark of the
person's password hash, and a page view with a mark that no longer matches
(the password changed) or for a person who is gone (erased) ends it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from functools import wraps
from typing import TypeVar
from urllib.parse import urlsplit

from flask import redirect, request, session, url_for

from vault.extensions import runtime
from vault.models import Person
from vault.web.request_db import db_session

F = TypeVar("F", bound=Callable[..., object])

#: how often the idle timer is written back; fewer new cookies on busy pages
_TOUCH_SECONDS = 60


def _now() -> int:
    return int(runtime().clock.now().timestamp())


def current_person_id() -> str | None:
    value = session.get("person_id")
    return value if isinstance(value, str) else None


def _credential_mark(person: Person | None) -> str:
    """A keyed digest of the password hash: changes with the password, reveals nothing."""
    if person is None or person.erased_at is not None or not person.password_hash:
        return ""
    return hmac.new(runtime().keyring.session_key, person.password_hash.encode(),
                    hashlib.sha256).hexdigest()[:32]


def log_in(person_id: str, *, language: str | None = None, time_zone: str | None = None) -> None:
    """Start a fresh session: nothing from before the login survives (no fixation)."""
    session.clear()
    now = _now()
    session["person_id"] = person_id
    session["mark"] = _credential_mark(db_session().get(Person, person_id))
    session["issued"] = now
    session["seen"] = now
    if language:
        session["lang"] = language
    if time_zone:
        session["tz"] = time_zone
    session.permanent = True


def log_out() -> None:
    language = session.get("lang")
    session.clear()
    if language:
        session["lang"] = language


def expire_stale_session() -> bool:
    """End a session past its idle or absolute limit; True when one was ended."""
    if current_person_id() is None:
        return False
    settings = runtime().settings
    now = _now()
    issued = session.get("issued")
    seen = session.get("seen")
    if (not isinstance(issued, int) or not isinstance(seen, int)
            or now - issued > settings.session_max_hours * 3600
            or now - seen > settings.session_idle_minutes * 60):
        log_out()
        return True
    mark = _credential_mark(db_session().get(Person, current_person_id()))
    if not mark or not hmac.compare_digest(mark, str(session.get("mark", ""))):
        log_out()
        return True
    if now - seen >= _TOUCH_SECONDS:
        session["seen"] = now
    return False


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
