"""``POST /contacts``: report a contact the merchant made."""

from __future__ import annotations

from dataclasses import asdict

from flask_smorest import Blueprint

from vault.api.auth import current_merchant, merchant_required
from vault.api.docs import json_body, problems
from vault.api.schemas import ContactRequestSchema, ContactSchema
from vault.extensions import runtime
from vault.services import contacting
from vault.web.request_db import commit, db_session

blp = Blueprint("contacts", __name__, description="Report the contacts you made")


@blp.route("/contacts", methods=["POST"])
@merchant_required("contacts:write")
@json_body
@blp.arguments(ContactRequestSchema)
@blp.response(201, ContactSchema)
@blp.doc(security=[{"oauth2": ["contacts:write"]}])
@problems(blp, 400, 401, 403, 404, 413, 415)
def report_contact(body: dict[str, object]) -> dict[str, object]:
    """Record a contact. It counts toward `max_per_week`; one made when the person did
    not allow it is recorded as a violation that the person and auditors see."""
    rt = runtime()
    report = contacting.report_contact(
        db_session(), merchant_id=current_merchant().id, subject=str(body["subject"]),
        channel=str(body["channel"]), purpose=str(body["purpose"]),
        decision_id=body.get("decision_id"), at=body.get("at"),  # type: ignore[arg-type]
        data_keys=rt.data_keys, clock=rt.clock)
    commit()
    return {**asdict(report), "violation": report.violation}
