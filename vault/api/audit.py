"""``GET /audit/events``: the consent log for auditors, with a signed Merkle tree head."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Response, stream_with_context
from flask_smorest import Blueprint
from sqlmodel import select

from vault.api.auth import auditor_required
from vault.api.docs import problems
from vault.api.schemas import AuditExportQuerySchema
from vault.errors import NotFound
from vault.extensions import runtime
from vault.models import Merchant
from vault.services.audit_export import export_lines
from vault.web.request_db import db_session, end_read

blp = Blueprint("audit", __name__, description="The consent log, for auditors")
SECURITY = [{"oauth2": ["audit:read"]}]
NDJSON = "application/x-ndjson"


@blp.route("/audit/events", methods=["GET"])
@auditor_required("audit:read")
@blp.arguments(AuditExportQuerySchema, location="query")
@blp.response(200, content_type=NDJSON)
@blp.doc(security=SECURITY, responses={"200": {
    "description": ("JSON Lines: a signed tree head over the whole log, then the events "
                    "(each with an inclusion proof when filtered)"),
    "content": {NDJSON: {"schema": {"type": "string",
                                    "description": "One JSON object per line"}}}}})
@problems(blp, 401, 403, 404, 422, descriptions={
    403: "The token lacks the scope or is not an auditor's",
    404: "No merchant with this client_id"})
def export_events(query: dict[str, object]) -> Response:
    """Export the consent log, verifiable offline with the vault's JWKS.

    The first line is the signed tree head for the whole log
    (`"kind": "tree_head"`). Without filters every event follows in order;
    with `since`, `until` or `merchant` only the matching events follow, each
    with its Merkle inclusion proof. Verify with `prefvault audit verify`.
    """
    merchant_id: str | None = None
    if query.get("merchant") is not None:
        merchant = db_session().exec(
            select(Merchant).where(Merchant.client_id == query["merchant"],
                                   Merchant.kind == "merchant")).first()
        if merchant is None:
            raise NotFound("no merchant with this client_id", field="merchant")
        merchant_id = merchant.id
    end_read()
    rt = runtime()

    def generate() -> Iterator[str]:
        with rt.database.read() as session:
            yield from export_lines(
                session, signing_key=rt.keyring.signing_key, clock=rt.clock,
                since=query.get("since"), until=query.get("until"),  # type: ignore[arg-type]
                merchant_id=merchant_id)

    return Response(stream_with_context(generate()), mimetype=NDJSON)
