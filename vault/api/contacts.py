"""``POST /contacts``: report a contact the merchant made."""

from __future__ import annotations

import json
from dataclasses import asdict

from flask import Response, request
from flask_smorest import Blueprint

from vault.api.auth import current_merchant, merchant_required
from vault.api.docs import json_body, link, links, problems, response_value
from vault.api.schemas import ContactRequestSchema, ContactSchema
from vault.extensions import runtime
from vault.services import contacting, idempotency
from vault.web.request_db import commit, db_session

blp = Blueprint("contacts", __name__, description="Report the contacts you made")


@blp.route("/contacts", methods=["POST"])
@merchant_required("contacts:write")
@json_body
@blp.arguments(ContactRequestSchema)
@blp.response(201, ContactSchema)
@blp.doc(security=[{"oauth2": ["contacts:write"]}], operationId="reportContact", parameters=[{
    "in": "header", "name": "Idempotency-Key", "required": False,
    "description": "Send the same key when retrying: the contact is recorded once and the "
                   "first answer is repeated (kept 24 hours). Reusing a key for another "
                   "body is refused. 1 to 255 visible ASCII characters (no spaces).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255,
               "pattern": idempotency.KEY_PATTERN.pattern}}])
@links(201, subscription=link(
    "getSubscription", "The subscription of the person contacted",
    parameters={"path.subject": response_value("/subject")}), decision=link(
    "askDecision", "May this person be reached again (the contact counts toward the limit)?",
    body={name: response_value(f"/{name}") for name in ("subject", "channel", "purpose")}))
@problems(blp, 400, 401, 403, 404, 413, 415)
def report_contact(body: dict[str, object]) -> dict[str, object]:
    """Record a contact. It counts toward `max_per_week`; one made when the person did
    not allow it is recorded as a violation that the person and auditors see."""
    rt = runtime()
    merchant_id = current_merchant().id
    session = db_session()
    key = request.headers.get("Idempotency-Key")
    fingerprint = idempotency.digest(body)
    if key is not None:
        key = idempotency.clean_key(key)
        earlier = idempotency.replay(session, merchant_id=merchant_id, key=key,
                                     request_sha256=fingerprint, clock=rt.clock)
        if earlier is not None:
            return Response(json.dumps(earlier.body), status=earlier.status,  # type: ignore[return-value]
                            mimetype="application/json")
    report = contacting.report_contact(
        session, merchant_id=merchant_id, subject=str(body["subject"]),
        channel=str(body["channel"]), purpose=str(body["purpose"]),
        decision_id=body.get("decision_id"), at=body.get("at"),  # type: ignore[arg-type]
        data_keys=rt.data_keys, clock=rt.clock)
    answer = {**asdict(report), "violation": report.violation}
    if key is not None:
        idempotency.remember(session, merchant_id=merchant_id, key=key,
                             request_sha256=fingerprint, status=201,
                             body=ContactSchema().dump(answer), clock=rt.clock)
    commit()
    return answer
