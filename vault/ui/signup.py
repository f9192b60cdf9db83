"""Sign up: a new account with a password, then straight into the vault.

An address that already has an account is told so, at the e-mail field
(409): "An account with this e-mail address already exists. Log in
instead." Sign-up cannot hide that without failing the person who mistyped
or forgot they had an account, and the usual way around it (mail a link to
the address either way) needs outgoing mail the vault does not send. What
keeps the answer from becoming a cheap address-lookup is the rate limit on
sign-up posts per client address. Login stays non-revealing: one message
for an unknown address and for a wrong password.

The form helpers here (time zones, field messages) are shared with the
profile page, which edits the same fields.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from vault.errors import Conflict, ValidationFailed
from vault.extensions import runtime
from vault.services.accounts import TEXT_LIMITS, profile_errors
from vault.services.validation import clean_password
from vault.ui.session import current_person_id, log_in
from vault.ui.views import bp
from vault.web.i18n import DEFAULT_TIME_ZONE, LANGUAGE_NAMES, LANGUAGES, current_language
from vault.web.request_db import commit, db_session

#: the zones offered in the time-zone list: the Netherlands and Belgium and where
#: their people live or travel most; any other IANA zone is still accepted
COMMON_TIME_ZONES = (
    "Europe/Amsterdam", "Europe/Brussels", "Europe/Luxembourg", "Europe/Berlin", "Europe/Paris",
    "Europe/London", "Europe/Dublin", "Europe/Lisbon", "Europe/Madrid", "Europe/Rome",
    "Europe/Zurich", "Europe/Vienna", "Europe/Copenhagen", "Europe/Stockholm", "Europe/Oslo",
    "Europe/Helsinki", "Europe/Warsaw", "Europe/Prague", "Europe/Budapest", "Europe/Athens",
    "Europe/Istanbul", "Atlantic/Canary", "America/Curacao", "America/Aruba",
    "America/Kralendijk", "America/Paramaribo", "America/New_York", "America/Chicago",
    "America/Denver", "America/Los_Angeles", "America/Toronto", "America/Sao_Paulo",
    "Africa/Casablanca", "Africa/Johannesburg", "Asia/Dubai", "Asia/Kolkata", "Asia/Bangkok",
    "Asia/Jakarta", "Asia/Singapore", "Asia/Shanghai", "Asia/Tokyo", "Australia/Sydney",
    "Pacific/Auckland", "UTC",
)
PASSWORD_MIN = 12
SIGNUP_FIELDS = ("email", "password", "password_confirm", "name", "language", "time_zone")


def time_zone_choices(selected: str) -> list[tuple[str, str]]:
    """(value, label) for the time-zone list; a zone chosen before stays in it."""
    zones = list(COMMON_TIME_ZONES)
    if selected and selected not in zones and not profile_errors({"time_zone": selected}):
        zones.insert(0, selected)
    return [(zone, zone.replace("_", " ").replace("/", " / ")) for zone in zones]


def language_choices() -> list[tuple[str, str]]:
    return [(code, LANGUAGE_NAMES[code]) for code in LANGUAGES]


def text_or_none(value: str) -> str | None:
    """An emptied optional field means "remove it"."""
    return value if value.strip() else None


def field_message(field: str, value: object) -> str:
    """What to tell the person about a bad value of a profile field, in plain words."""
    limit = TEXT_LIMITS.get(field)
    if limit is not None:
        if isinstance(value, str) and len(value.strip()) > limit:
            return _("Use at most %(limit)d characters.", limit=limit)
        return _("This contains a character that cannot be used here, such as a tab or an "
                 "invisible character.")
    match field:
        case "email":
            if not isinstance(value, str) or not value.strip():
                return _("Enter your e-mail address.")
            return _("Enter a valid e-mail address, like name@example.com.")
        case "phone":
            return _("Enter a phone number with at least 6 digits, like +31 6 12345678.")
        case "language":
            return _("Choose English or Nederlands.")
        case "time_zone":
            return _("Choose a time zone from the list.")
    return _("This value cannot be used.")


def password_message(value: str) -> str:
    if len(value) > 1024:
        return _("Use a password of at most 1024 characters.")
    return _("Choose a password of at least %(count)d characters.", count=PASSWORD_MIN)


def _render(values: Mapping[str, str], errors: Mapping[str, str], status: int = 200,
            taken: bool = False) -> tuple[str, int]:
    return render_template(
        "signup.html", values=values, errors=errors, taken=taken,
        error_order=[f for f in SIGNUP_FIELDS if f in errors],
        time_zones=time_zone_choices(values["time_zone"]), languages=language_choices(),
        password_min=PASSWORD_MIN, name_max=TEXT_LIMITS["name"]), status


@bp.route("/signup", methods=["GET", "POST"])
def signup() -> Response | tuple[str, int]:
    if current_person_id() is not None:
        return redirect(url_for("ui.subscriptions"))
    if request.method == "GET":
        return _render({"email": "", "name": "", "language": current_language(),
                        "time_zone": DEFAULT_TIME_ZONE}, {})
    form = request.form
    values = {"email": form.get("email", ""), "name": form.get("name", ""),
              "language": form.get("language", ""), "time_zone": form.get("time_zone", "")}
    password = form.get("password", "")
    profile: dict[str, object] = {"language": values["language"],
                                  "time_zone": values["time_zone"]}
    if text_or_none(values["name"]) is not None:
        profile["name"] = values["name"]
    errors = {field: field_message(field, values.get(field))
              for field in profile_errors({"email": values["email"], **profile})}
    try:
        clean_password(password)
    except ValidationFailed:
        errors["password"] = password_message(password)
    if "password" not in errors and form.get("password_confirm", "") != password:
        errors["password_confirm"] = _("The two passwords are not the same.")
    if errors:
        return _render(values, errors, 400)
    session = db_session()
    try:
        person_id = runtime().accounts.sign_up(session, email=values["email"],
                                               password=password, profile=profile)
    except Conflict:
        session.rollback()
        return _render(values, {"email": _("An account with this e-mail address already "
                                           "exists.")}, 409, taken=True)
    except ValidationFailed as exc:
        session.rollback()
        field = exc.field if exc.field in SIGNUP_FIELDS else "email"
        return _render(values, {field: field_message(field, values.get(field))}, 400)
    commit()
    log_in(person_id, language=values["language"], time_zone=values["time_zone"])
    return redirect(url_for("ui.subscriptions"))
