"""My data: download everything as JSON, or delete the account (crypto-shredding).

Deleting asks for the password again: a browser left logged in on a shared
computer must not be enough to destroy an account. The receipt is rendered
on the answer to the POST itself, because the person is logged out by then
and has no page to come back to.
"""

from __future__ import annotations

from flask import Response, abort, render_template, request
from flask_babel import format_datetime
from flask_babel import gettext as _

from vault.errors import AuthenticationFailed, NotFound
from vault.extensions import runtime
from vault.services.person_export import SCHEMA_ID, build_export, export_json
from vault.ui.session import current_person_id, log_out, login_required
from vault.ui.views import bp
from vault.web.request_db import commit, db_session

#: longer than any password the vault accepts; more is not worth hashing
_PASSWORD_LIMIT = 1024


@bp.get("/my-data")
@login_required
def my_data() -> str:
    return render_template("my_data.html", schema_url=SCHEMA_ID)


@bp.get("/my-data/export")
@login_required
def my_data_export() -> Response:
    """The whole export as a JSON attachment (``docs/person-export.md``)."""
    rt = runtime()
    try:
        document = build_export(db_session(), current_person_id() or "",
                                accounts=rt.accounts, data_keys=rt.data_keys, clock=rt.clock)
    except NotFound:
        abort(404)
    day = rt.clock.now().date().isoformat()
    response = Response(export_json(document), mimetype="application/json")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="preference-vault-{day}.json"')
    return response


def _confirm_page(error: str | None = None) -> str:
    return render_template("my_data_delete.html", error=error)


@bp.get("/my-data/delete")
@login_required
def my_data_delete() -> str:
    """The confirmation step; nothing is changed by looking at it."""
    return _confirm_page()


@bp.post("/my-data/delete")
@login_required
def my_data_delete_confirmed() -> str | tuple[str, int]:
    person_id = current_person_id() or ""
    password = request.form.get("password", "")
    if not password:
        return _confirm_page(_("Type your password to confirm.")), 400
    rt = runtime()
    session = db_session()
    try:
        # The person proves it is them the way they log in: their own address and password.
        email = rt.accounts.get_profile(session, person_id).email
        if rt.accounts.authenticate(session, email=email,
                                    password=password[:_PASSWORD_LIMIT]) != person_id:
            raise AuthenticationFailed("password does not match")
    except AuthenticationFailed:
        session.rollback()
        return _confirm_page(_("That password is not right. Nothing was deleted.")), 400
    except NotFound:
        abort(404)
    receipt = rt.accounts.erase(session, person_id)
    commit()
    # In the person's own zone, which is forgotten at log-out.
    erased_when = format_datetime(receipt.erased_at, "d MMMM y, HH:mm:ss zzzz")
    log_out()
    return render_template(
        "my_data_deleted.html",
        receipt=receipt,
        erased_when=erased_when,
        erased_iso=receipt.erased_at.isoformat().replace("+00:00", "Z"),
        leaf_index=receipt.audit_seq - 1,
    )
