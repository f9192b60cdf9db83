"""Language and time zone of each page: Dutch or English, in the person's zone.

The person's profile decides when they are logged in (copied into the
session at login and whenever they change it, so a page never has to open
the sealed profile just to pick a language); before that, the switcher's
choice, else the browser's ``Accept-Language``. English is the source
language of every message; Dutch comes from the catalogue in
``vault/translations``.
"""

from __future__ import annotations

from flask import Flask, request, session
from flask_babel import Babel

LANGUAGES = ("en", "nl")
DEFAULT_LANGUAGE = "en"
DEFAULT_TIME_ZONE = "Europe/Amsterdam"
LANGUAGE_NAMES = {"en": "English", "nl": "Nederlands"}


def current_language() -> str:
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return str(chosen)
    return request.accept_languages.best_match(LANGUAGES) or DEFAULT_LANGUAGE


def current_time_zone() -> str:
    zone = session.get("tz")
    return zone if isinstance(zone, str) and zone else DEFAULT_TIME_ZONE


def remember_preferences(language: str | None, time_zone: str | None) -> None:
    """Keep the person's language and zone in the session (never anything else)."""
    if language in LANGUAGES:
        session["lang"] = language
    if time_zone:
        session["tz"] = time_zone


def init_i18n(app: Flask) -> Babel:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "UTC")
    babel = Babel(app, locale_selector=current_language, timezone_selector=current_time_zone)

    @app.context_processor
    def _language_globals() -> dict[str, object]:
        return {"current_language": current_language(), "language_names": LANGUAGE_NAMES}

    return babel
