"""Log in, log out and the (minimal, for now) list of subscriptions with revoke."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from vault.errors import AuthenticationFailed, NotFound
from vault.extensions import runtime
from vault.models import Merchant
from vault.services import subscriptions as subscription_service
from vault.ui.labels import contact_label, field_label
from vault.ui.session import current_person_id, log_in, log_out, login_required, safe_next
from vault.web.request_db import commit, db_session

bp = Blueprint("ui", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int]:
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("login.html", next_url=next_url, error=None, email="")
    email = request.form.get("email", "")
    try:
        person_id = runtime().accounts.authenticate(
            db_session(), email=email, password=request.form.get("password", ""))
    except AuthenticationFailed as exc:
        return render_template("login.html", next_url=next_url, error=exc.detail,
                               email=email[:320]), 401
    commit()
    log_in(person_id)
    return redirect(next_url)


@bp.post("/logout")
def logout() -> Response:
    log_out()
    return redirect(url_for("ui.login"))


@bp.get("/subscriptions")
@login_required
def subscriptions() -> str:
    person_id = current_person_id() or ""
    session = db_session()
    cards = []
    for sub in subscription_service.list_for_person(session, person_id):
        merchant = session.get(Merchant, sub.merchant_id)
        terms = subscription_service.view(session, sub, data_keys=runtime().data_keys)
        cards.append({
            "id": sub.id,
            "merchant": merchant.name if merchant else "?",
            "status": sub.status,
            "permissions": [contact_label(c, p) for (c, p), perm in terms.permissions.items()
                            if perm.allowed],
            "fields": [field_label(f) for f in terms.shared_fields],
        })
    return render_template("subscriptions.html", cards=cards)


@bp.post("/subscriptions/<subscription_id>/revoke")
@login_required
def revoke(subscription_id: str) -> Response:
    rt = runtime()
    try:
        subscription_service.revoke(db_session(), person_id=current_person_id() or "",
                                    subscription_id=subscription_id, clock=rt.clock)
    except NotFound:
        flash("That subscription does not exist.")
        return redirect(url_for("ui.subscriptions"))
    commit()
    flash("Revoked. This shop can no longer reach you or see your data.")
    return redirect(url_for("ui.subscriptions"))
