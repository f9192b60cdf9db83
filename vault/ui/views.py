"""Log in, log out, the home redirect, the language switcher and HTML error pages.

Each page area has its own module (dashboard, merchant page, rules, profile,
activity, my data); they all register on the one ``ui`` blueprint defined here.
"""

from __future__ import annotations

import re
from importlib import import_module

from flask import Blueprint, Flask, abort, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.wrappers import Response

from vault.errors import AuthenticationFailed, ValidationFailed
from vault.extensions import runtime
from vault.ui import PAGE_MODULES
from vault.ui.session import current_person_id, log_in, log_out, safe_next
from vault.web.i18n import LANGUAGES, remember_preferences
from vault.web.request_db import commit, db_session

bp = Blueprint("ui", __name__)

#: the main navigation, in order; an entry shows once its page exists
NAV_ITEMS = (
    ("ui.subscriptions", _l("Who may reach me")),
    ("ui.rules", _l("My rules")),
    ("ui.profile", _l("My profile")),
    ("ui.activity", _l("Activity")),
    ("ui.my_data", _l("My data")),
)


_PATH_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@bp.before_request
def _sane_path_ids() -> None:
    """An id in a page's path that no id could look like is simply not found.

    Refused before any lookup, so a NUL or a megabyte in the path never
    reaches the database (PostgreSQL rejects NUL in text outright).
    """
    for value in (request.view_args or {}).values():
        if isinstance(value, str) and not _PATH_ID.fullmatch(value):
            abort(404)


@bp.get("/")
def home() -> Response:
    if current_person_id() is None:
        return redirect(url_for("ui.login"))
    return redirect(url_for("ui.subscriptions"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int]:
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("login.html", next_url=next_url, error=None, email="")
    email = request.form.get("email", "")
    rt = runtime()
    try:
        person_id = rt.accounts.authenticate(
            db_session(), email=email, password=request.form.get("password", ""))
    except AuthenticationFailed:
        return render_template("login.html", next_url=next_url, email=email[:320],
                               error=_("That e-mail address and password do not match.")), 401
    profile = rt.accounts.get_profile(db_session(), person_id)
    commit()
    log_in(person_id, language=profile.language if profile.language in LANGUAGES else None,
           time_zone=profile.time_zone)
    return redirect(next_url)


@bp.post("/logout")
def logout() -> Response:
    log_out()
    return redirect(url_for("ui.login"))


@bp.post("/language")
def set_language() -> Response:
    """Switch the language; a logged-in person's profile keeps the choice."""
    language = request.form.get("lang", "")
    target = safe_next(request.form.get("next"))
    if language not in LANGUAGES:
        return redirect(target)
    person_id = current_person_id()
    if person_id is not None:
        try:
            runtime().accounts.update_profile(db_session(), person_id, {"language": language})
        except ValidationFailed:
            return redirect(target)
        commit()
    remember_preferences(language, None)
    return redirect(target)


@bp.errorhandler(CSRFError)
def _csrf_failed(error: CSRFError) -> tuple[str, int]:
    """A form without a valid CSRF token changes nothing and says so in plain words."""
    return render_template(
        "error.html", title=_("This form has expired"),
        message=_("Nothing was changed. Go back, reload the page and try again.")), 400


def register_ui(app: Flask) -> None:
    """The blueprint with every page module's routes, and the navigation."""
    for module in PAGE_MODULES:
        import_module(module)
    app.register_blueprint(bp)

    @app.context_processor
    def _navigation() -> dict[str, object]:
        if request.blueprint != "ui":
            return {"nav_items": ()}
        return {"nav_items": [(endpoint, label) for endpoint, label in NAV_ITEMS
                              if endpoint in app.view_functions]}
