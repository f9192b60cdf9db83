"""``POST /decisions`` and ``POST /decisions/batch``."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime

from flask import Response
from flask_smorest import Blueprint

from vault.api.auth import current_merchant, merchant_required
from vault.api.docs import json_body, problems
from vault.api.schemas import (
    BatchRequestSchema,
    BatchResponseSchema,
    DecisionRequestSchema,
    DecisionSchema,
)
from vault.extensions import runtime
from vault.services import contacting
from vault.web.request_db import db_session, end_read, reads_only

blp = Blueprint("decisions", __name__, description="May I reach this person, and how?")

SECURITY = [{"oauth2": ["decisions"]}]


# The token is checked before the body is read: a caller without one learns nothing.
@blp.route("/decisions", methods=["POST"])
@reads_only
@merchant_required("decisions")
@json_body
@blp.arguments(DecisionRequestSchema)
@blp.response(200, DecisionSchema)
@blp.doc(security=SECURITY)
@problems(blp, 400, 401, 403, 413, 415)
def ask_decision(body: dict[str, object]) -> dict[str, object]:
    """Ask whether a person may be reached over a channel for a purpose.

    The answer explains itself (`reason`), gives the address only when the
    grant shares it (`reach`), lists the `alternatives` the person allows for
    the same purpose, and says how long it may be cached (`valid_until`).
    """
    rt = runtime()
    result, evidence = contacting.answer(
        db_session(), merchant_id=current_merchant().id, subject=str(body["subject"]),
        channel=str(body["channel"]), purpose=str(body["purpose"]),
        at=body.get("at"), data_keys=rt.data_keys, clock=rt.clock)  # type: ignore[arg-type]
    end_read()
    with rt.database.write() as session:
        contacting.keep(session, evidence)
    return asdict(result)


@blp.route("/decisions/batch", methods=["POST"])
@reads_only
@merchant_required("decisions")
@json_body
@blp.arguments(BatchRequestSchema)
@blp.response(200, BatchResponseSchema)
@blp.doc(security=SECURITY)
@problems(blp, 400, 401, 403, 413, 415)
def ask_batch(body: dict[str, object]) -> dict[str, object]:
    """Ask for up to 10,000 subjects at once (a campaign); results in input order."""
    rt = runtime()
    batch = contacting.answer_batch(
        db_session(), merchant_id=current_merchant().id,
        subjects=list(body["subjects"]),  # type: ignore[call-overload]
        channel=str(body["channel"]), purpose=str(body["purpose"]),
        at=body.get("at"), data_keys=rt.data_keys, clock=rt.clock)  # type: ignore[arg-type]
    end_read()
    with rt.database.write() as session:
        contacting.keep(session, batch)
    # Serialised by hand: marshmallow would spend longer on 10,000 results than the
    # decisions took. The shape is the documented BatchResponseSchema.
    body = json.dumps({"results": [
        {**item, "next_allowed_at": _iso(item["next_allowed_at"])} for item in batch.results]},
        separators=(",", ":"))
    return Response(body, status=200, mimetype="application/json")  # type: ignore[return-value]


def _iso(moment: object) -> str | None:
    return moment.isoformat() if isinstance(moment, datetime) else None
