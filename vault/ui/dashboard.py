"""Dashboard "Who may reach me": one card per subscribed merchant, with revoke."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from vault.errors import NotFound
from vault.extensions import runtime
from vault.models import Merchant
from vault.services import subscriptions as subscription_service
from vault.ui.labels import contact_label, field_label
from vault.ui.session import current_person_id, login_required
from vault.ui.views import bp
from vault.web.request_db import commit, db_session


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
        flash(_("That subscription does not exist."))
        return redirect(url_for("ui.subscriptions"))
    commit()
    flash(_("Revoked. This shop can no longer reach you or see your data."))
    return redirect(url_for("ui.subscriptions"))
