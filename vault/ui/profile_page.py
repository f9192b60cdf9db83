"""My profile: the sealed profile fields and which merchants see each one.

Each field shows the shops whose active subscription shares it, so the
person sees what changing (or emptying) a field means before saving. An
emptied optional field is removed from the profile. Every bad field is
marked at once and nothing is written; a change of language or time zone
goes into the session as well, so the very next page follows it.

Changing the password asks for the current one and starts a fresh session
(``log_in`` again), so a session cookie copied before the change is not the
one in use after it.
"""

from __future__ import annotations

from collections.abc import Mapping

from babel.lists import format_list
from flask import flash, redirect, render_template, request, url_for
from flask_babel import force_locale, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from vault.errors import AuthenticationFailed, Conflict, ValidationFailed
from vault.extensions import runtime
from vault.models import Merchant
from vault.models.subscription import ACTIVE
from vault.services import subscriptions as subscription_service
from vault.services.accounts import TEXT_LIMITS, PersonProfile, profile_errors
from vault.services.validation import clean_password
from vault.ui.labels import FIELD_LABELS
from vault.ui.session import current_person_id, log_in, login_required
from vault.ui.signup import (
    PASSWORD_MIN,
    field_message,
    language_choices,
    password_message,
    text_or_none,
    time_zone_choices,
)
from vault.ui.views import bp
from vault.vocabulary import PROFILE_FIELDS
from vault.web.i18n import LANGUAGES, current_language, current_time_zone, remember_preferences
from vault.web.request_db import commit, db_session

#: the form's fields, in page order
FORM_FIELDS = ("name", "email", "phone", "address", "language", "interests", "time_zone")
PASSWORD_FIELDS = ("current_password", "new_password", "new_password_confirm")
_OPTIONAL = ("name", "phone", "address", "interests")
_CHANGED_LABELS = {**FIELD_LABELS, "time_zone": _l("your time zone")}


def _values(profile: PersonProfile) -> dict[str, str]:
    return {name: getattr(profile, name) or "" for name in FORM_FIELDS}


def _seen_by(person_id: str) -> dict[str, list[str]]:
    """For each shareable field, the names of the shops that see it now."""
    db = db_session()
    seen: dict[str, list[str]] = {name: [] for name in PROFILE_FIELDS}
    for sub in subscription_service.list_for_person(db, person_id):
        if sub.status != ACTIVE:
            continue
        merchant = db.get(Merchant, sub.merchant_id)
        terms = subscription_service.view(db, sub, data_keys=runtime().data_keys)
        for name in terms.shared_fields:
            if name in seen and merchant is not None:
                seen[name].append(merchant.name)
    return {name: sorted(names, key=str.casefold) for name, names in seen.items()}


def _render(person_id: str, values: Mapping[str, str], *,
            errors: Mapping[str, str] | None = None, language_unset: bool = False,
            status: int = 200) -> tuple[str, int]:
    errors = dict(errors or {})
    languages = language_choices()
    if language_unset:
        languages.insert(0, ("", _("Not chosen")))
    return render_template(
        "profile.html", values=values, errors=errors, seen_by=_seen_by(person_id),
        error_order=[f for f in (*FORM_FIELDS, *PASSWORD_FIELDS) if f in errors],
        languages=languages, time_zones=time_zone_choices(values["time_zone"]),
        limits=TEXT_LIMITS, password_min=PASSWORD_MIN), status


@bp.route("/profile", methods=["GET", "POST"])
@login_required
def profile() -> Response | tuple[str, int]:
    person_id = current_person_id() or ""
    accounts = runtime().accounts
    db = db_session()
    before = accounts.get_profile(db, person_id)
    if request.method == "GET":
        return _render(person_id, _values(before), language_unset=before.language is None)
    values = {name: request.form.get(name, "") for name in FORM_FIELDS}
    changes: dict[str, object] = {name: text_or_none(values[name]) for name in _OPTIONAL}
    changes |= {"email": values["email"], "language": values["language"] or None,
                "time_zone": values["time_zone"]}
    errors = {name: field_message(name, values[name]) for name in profile_errors(changes)}
    if errors:
        return _render(person_id, values, errors=errors,
                       language_unset=before.language is None, status=400)
    try:
        after = accounts.update_profile(db, person_id, changes)
    except Conflict:
        db.rollback()
        return _render(person_id, values, errors={
            "email": _("Another account already uses this e-mail address.")},
            language_unset=before.language is None, status=409)
    except ValidationFailed as exc:
        db.rollback()
        name = exc.field if exc.field in FORM_FIELDS else "email"
        return _render(person_id, values, errors={name: field_message(name, values[name])},
                       language_unset=before.language is None, status=400)
    commit()
    language = after.language if after.language in LANGUAGES else None
    remember_preferences(language, after.time_zone)
    changed = [name for name in FORM_FIELDS if getattr(before, name) != getattr(after, name)]
    with force_locale(language or current_language()):
        if changed:
            flash(_("Saved. You changed %(fields)s.", fields=format_list(
                [str(_CHANGED_LABELS[name]) for name in changed], locale=get_locale())))
        else:
            flash(_("Nothing changed."))
    return redirect(url_for("ui.profile"))


@bp.post("/profile/password")
@login_required
def change_password() -> Response | tuple[str, int]:
    person_id = current_person_id() or ""
    accounts = runtime().accounts
    db = db_session()
    current = request.form.get("current_password", "")
    new = request.form.get("new_password", "")
    errors: dict[str, str] = {}
    if not current:
        errors["current_password"] = _("Enter your current password.")
    try:
        clean_password(new)
    except ValidationFailed:
        errors["new_password"] = password_message(new)
    if "new_password" not in errors and request.form.get("new_password_confirm", "") != new:
        errors["new_password_confirm"] = _("The two passwords are not the same.")
    if not errors:
        try:
            accounts.change_password(db, person_id, current=current, new=new)
        except AuthenticationFailed:
            errors["current_password"] = _("This is not your current password.")
        except ValidationFailed:
            errors["new_password"] = password_message(new)
    if errors:
        db.rollback()
        stored = accounts.get_profile(db, person_id)
        return _render(person_id, _values(stored), errors=errors,
                       language_unset=stored.language is None, status=400)
    commit()
    log_in(person_id, language=current_language(), time_zone=current_time_zone())
    flash(_("Your password is changed."))
    return redirect(url_for("ui.profile"))
