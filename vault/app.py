"""The application factory."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import timedelta

from flask import Flask, Response, g, request
from flask.json.provider import DefaultJSONProvider
from flask_wtf import CSRFProtect

from vault.api import init_api
from vault.clock import Clock, SystemClock
from vault.config import Settings
from vault.crypto.keyring import KeyRing, KeyRingError
from vault.errors import ConfigurationError
from vault.extensions import Runtime, vault_ext
from vault.logging_setup import configure_logging
from vault.oauth import views as oauth_views
from vault.oauth.server import config_oauth
from vault.ui import views as ui_views
from vault.ui.session import current_person_id, expire_stale_session
from vault.web import health
from vault.web.headers import content_security_policy
from vault.web.i18n import init_i18n
from vault.web.limits import apply_limits, build_limiter
from vault.web.problems import register_problem_handlers
from vault.web.request_db import init_request_db

MAX_BODY_BYTES = 2 * 1024 * 1024

csrf = CSRFProtect()
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, where a body nested too deep to parse is malformed like any other.

    ``json.loads`` raises ``RecursionError`` past Python's recursion limit (a
    body of 100,000 ``[``), which ``request.get_json`` would let through as a
    500 instead of answering 400.
    """

    def loads(self, s: str | bytes, **kwargs: object) -> object:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("the JSON document is nested too deeply") from None


def create_app(
    config: Settings | Mapping[str, object] | None = None,
    *,
    keyring: KeyRing | None = None,
    clock: Clock | None = None,
) -> Flask:
    """Build a vault app.

    ``config`` is a ``Settings`` or a mapping of ``Settings`` fields that
    override the environment. Without a ``keyring`` the key ring file named by
    the settings is loaded, and a missing one stops the app with a clear
    ``ConfigurationError``: there are no default secrets.
    """
    if isinstance(config, Settings):
        settings = config
    else:
        settings = Settings.from_env()
        if config:
            settings = settings.replace(**dict(config))
    if keyring is None:
        try:
            keyring = KeyRing.load(settings.keyring_path)
        except KeyRingError as exc:
            raise ConfigurationError(str(exc)) from None
    configure_logging(settings.log_level)

    app = Flask(__name__)
    app.json = JSONProvider(app)
    app.config.update(
        SECRET_KEY=keyring.session_key,
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        TESTING=settings.is_test,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_max_hours),
        WTF_CSRF_TIME_LIMIT=None,
    )
    vault_ext.init_app(app, Runtime.build(settings, keyring, clock or SystemClock()))
    register_problem_handlers(app)
    init_request_db(app)
    config_oauth(app)
    csrf.init_app(app)
    init_i18n(app)
    limiter = build_limiter(app, settings)
    app.register_blueprint(health.bp)
    app.register_blueprint(oauth_views.bp)
    ui_views.register_ui(app)
    init_api(app)
    apply_limits(app, limiter, settings)
    # The API authenticates with bearer tokens, never cookies: CSRF does not apply.
    for blueprint_name in ("decisions", "contacts", "subscriptions", "audit"):
        csrf.exempt(app.blueprints[blueprint_name])
    # Client-authenticated endpoints: no cookies involved, so no CSRF token either.
    for view in (oauth_views.issue_token, oauth_views.revoke_token,
                 oauth_views.introspect_token, oauth_views.userinfo):
        csrf.exempt(view)

    @app.context_processor
    def _template_globals() -> dict[str, object]:
        return {"person_logged_in": current_person_id() is not None}

    @app.before_request
    def _request_id() -> None:
        # A caller's own id is kept when it is sane, so logs on both sides line up.
        given = request.headers.get("X-Request-Id", "")
        g.request_id = given if _REQUEST_ID.fullmatch(given) else secrets.token_hex(12)
        expire_stale_session()

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id") or secrets.token_hex(12)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Content-Security-Policy", content_security_policy())
        if request.endpoint != "static":
            # Pages and answers are about one person or one merchant: never kept by caches.
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app
