"""The consent log for auditors: exports, signed tree heads and Merkle proofs (``audit:read``)."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Response, stream_with_context
from flask_smorest import Blueprint
from sqlmodel import select

from vault.api.auth import auditor_required
from vault.api.docs import link, links, problems, response_value
from vault.api.schemas import (
    AuditExportQuerySchema,
    ConsistencyProofSchema,
    ConsistencyQuerySchema,
    InclusionProofSchema,
    InclusionQuerySchema,
    TreeHeadSchema,
)
from vault.audit.tree_head import TreeHead
from vault.errors import NotFound
from vault.extensions import runtime
from vault.models import Merchant
from vault.services import tree_heads
from vault.services.audit_export import export_lines
from vault.web.request_db import db_session, end_read

blp = Blueprint("audit", __name__, description="The consent log, for auditors")
SECURITY = [{"oauth2": ["audit:read"]}]
NDJSON = "application/x-ndjson"
CSV = "text/csv"
INTEGRITY = {500: "The consent log no longer extends what the vault signed: nothing is signed "
                  "(problem type log-integrity)"}


def _inclusion_link(tree_size: str) -> dict[str, object]:
    """Inclusion proofs against the head at ``tree_size``; the event is the auditor's choice."""
    return link("getInclusionProof", "Prove an event is in the log this head signs",
                parameters={"query.tree_size": response_value(tree_size)})


def _consistency_link(parameter: str, tree_size: str) -> dict[str, object]:
    """A consistency proof with this head as ``first`` (older) or ``second`` (newer).

    Only this head is linked: the other is the auditor's to name, one they
    kept from before or a newer one.
    """
    description = ("Prove this head extends an older one you kept" if parameter == "second"
                   else "Prove a newer head extends this one")
    return link("getConsistencyProof", description,
                parameters={f"query.{parameter}": response_value(tree_size)})


def _checkpoint() -> TreeHead:
    """Sign a head for the log as it is now, in a short transaction of its own."""
    end_read()
    rt = runtime()
    with rt.database.write() as session:
        return tree_heads.checkpoint(session, signing_key=rt.keyring.signing_key,
                                     clock=rt.clock)


@blp.route("/audit/events", methods=["GET"])
@auditor_required("audit:read")
@blp.arguments(AuditExportQuerySchema, location="query")
@blp.response(200, content_type=NDJSON)
@blp.doc(security=SECURITY, operationId="exportAuditEvents", responses={"200": {
    "description": ("A signed tree head over the log, then the events it covers (each with "
                    "an inclusion proof when filtered)"),
    "content": {
        NDJSON: {"schema": {"type": "string", "description": "One JSON object per line"}},
        CSV: {"schema": {"type": "string", "description": (
            "Header row, the tree head row, then one row per event: kind, index, seq, "
            "occurred_at, tag, actor, person_ref, merchant_id, subject, data, leaf_hash, "
            "proof, json")}}}}})
@problems(blp, 401, 403, 404, 422, 500, descriptions={
    403: "The token lacks the scope or is not an auditor's",
    404: "No merchant with this client_id", **INTEGRITY})
def export_events(query: dict[str, object]) -> Response:
    """Export the consent log, verifiable offline with the vault's JWKS.

    The vault first signs a tree head for the log as it stands (or reuses
    the newest one if nothing was added since); the first record is that head
    (`"kind": "tree_head"`). Without filters every event it covers follows in
    order; with `since`, `until` or `merchant` only the matching events, each
    with its Merkle inclusion proof. `format=csv` gives the same records as a
    spreadsheet. Verify with `prefvault audit verify` or
    `prefvault_sdk.verify_export`.
    """
    merchant_id: str | None = None
    if query.get("merchant") is not None:
        merchant = db_session().exec(
            select(Merchant).where(Merchant.client_id == query["merchant"],
                                   Merchant.kind == "merchant")).first()
        if merchant is None:
            raise NotFound("no merchant with this client_id", field="merchant")
        merchant_id = merchant.id
    head = _checkpoint()
    rt = runtime()
    export_format = str(query["format"])

    def generate() -> Iterator[str]:
        with rt.database.read() as session:
            yield from export_lines(
                session, head=head, export_format=export_format,
                since=query.get("since"), until=query.get("until"),  # type: ignore[arg-type]
                merchant_id=merchant_id)

    if export_format == "csv":
        response = Response(stream_with_context(generate()), mimetype=CSV)
        response.headers["Content-Disposition"] = (
            f'attachment; filename="consent-log-{head.tree_size}.csv"')
        return response
    return Response(stream_with_context(generate()), mimetype=NDJSON)


@blp.route("/audit/tree-head", methods=["GET"])
@auditor_required("audit:read")
@blp.response(200, TreeHeadSchema)
@blp.doc(security=SECURITY, operationId="getTreeHead")
@links(200, inclusion=_inclusion_link("/tree_size"),
       consistency=_consistency_link("second", "/tree_size"))
@problems(blp, 401, 403, 500, descriptions={
    403: "The token lacks the scope or is not an auditor's", **INTEGRITY})
def latest_tree_head() -> dict[str, object]:
    """The newest signed tree head.

    Heads are signed by `prefvault worker` every `VAULT_CHECKPOINT_INTERVAL_S`
    seconds, by every export and when a receipt needs one; before the first,
    asking here signs one. Check it with the key `kid` of
    `/.well-known/jwks.json`, and keep it to ask for consistency proofs later.
    """
    head = tree_heads.latest(db_session()) or _checkpoint()
    return head.to_json()


@blp.route("/audit/proofs/consistency", methods=["GET"])
@auditor_required("audit:read")
@blp.arguments(ConsistencyQuerySchema, location="query")
@blp.response(200, ConsistencyProofSchema)
@blp.doc(security=SECURITY, operationId="getConsistencyProof")
@links(200, inclusion=_inclusion_link("/second/tree_size"),
       consistency=_consistency_link("first", "/second/tree_size"))
@problems(blp, 400, 401, 403, 404, 422, descriptions={
    400: "first is larger than second",
    403: "The token lacks the scope or is not an auditor's",
    404: "The vault signed no tree head of that size"})
def consistency_proof(query: dict[str, int]) -> dict[str, object]:
    """RFC 9162 consistency proof between two stored tree heads.

    Proves that the log of the head of size `second` extends the log of the
    head of size `first` without changing it; both signed heads are included.
    """
    found = tree_heads.consistency(db_session(), query["first"], query["second"])
    return {"first": found.first.to_json(), "second": found.second.to_json(),
            "proof": [p.hex() for p in found.proof]}


@blp.route("/audit/proofs/inclusion", methods=["GET"])
@auditor_required("audit:read")
@blp.arguments(InclusionQuerySchema, location="query")
@blp.response(200, InclusionProofSchema)
@blp.doc(security=SECURITY, operationId="getInclusionProof")
@links(200, consistency=_consistency_link("first", "/tree_size"))
@problems(blp, 400, 401, 403, 404, 422, descriptions={
    400: "index is outside the tree",
    403: "The token lacks the scope or is not an auditor's",
    404: "The vault signed no tree head of that size (or none yet)"})
def inclusion_proof(query: dict[str, int | None]) -> dict[str, object]:
    """RFC 9162 inclusion proof of one event against a stored tree head.

    `index` is the event's `seq - 1`; `tree_size` names a stored head (the
    newest by default). Hash the canonical JSON of `leaf` yourself: a leaf
    that was altered in storage will not match the proof.
    """
    found = tree_heads.inclusion(db_session(), int(query["index"] or 0), query["tree_size"])
    return {"index": found.index, "tree_size": found.head.tree_size, "leaf": found.leaf,
            "leaf_hash": found.leaf_hash.hex(), "proof": [p.hex() for p in found.proof],
            "tree_head": found.head.to_json()}
