"""``GET /subscriptions`` (cursor pagination), ``GET /subscriptions/{subject}`` and its receipt."""

from __future__ import annotations

import re

from flask_smorest import Blueprint

from vault.api.auth import current_merchant, merchant_required
from vault.api.docs import link, links, problems, response_value
from vault.api.schemas import (
    IDENTIFIER,
    PageQuerySchema,
    ReceiptSchema,
    SubscriptionPageSchema,
    SubscriptionSchema,
)
from vault.errors import NotFound
from vault.extensions import runtime
from vault.services import subscriptions as subscription_service
from vault.services.receipts import receipt_for_merchant
from vault.web.request_db import db_session

blp = Blueprint("subscriptions", __name__, description="The people subscribed to you")
SECURITY = [{"oauth2": ["subscriptions:read"]}]


def _subscription_links(at: str) -> dict[str, dict[str, object]]:
    """What a subscription (at JSON pointer ``at`` of a response) leads to.

    Its subject is the one to get a receipt for, ask about and report a
    contact with. Only the subject is linked: a revoked or erased
    subscription has no permissions to take a channel or purpose from.
    """
    subject = response_value(f"{at}/subject")
    return {
        "receipt": link("getReceipt", "Its signed consent receipt",
                        parameters={"path.subject": subject}),
        "decision": link("askDecision", "May this person be reached?",
                         body={"subject": subject}),
        "contact": link("reportContact", "Report a contact with this person",
                        body={"subject": subject}),
    }


@blp.route("/subscriptions", methods=["GET"])
@merchant_required("subscriptions:read")
@blp.arguments(PageQuerySchema, location="query")
@blp.response(200, SubscriptionPageSchema)
@blp.doc(security=SECURITY, operationId="listSubscriptions")
@links(200, **_subscription_links("/items/0"),
       subscription=link("getSubscription", "The first subscription of the page",
                         parameters={"path.subject": response_value("/items/0/subject")}),
       next_page=link("listSubscriptions", "The next page, while `next_cursor` is not null",
                     parameters={"query.cursor": response_value("/next_cursor")}),
       batch=link("askDecisionBatch", "A batch of decisions that asks about the first subject",
                  body={"subjects": [response_value("/items/0/subject")]}))
@problems(blp, 400, 401, 403)
def list_subscriptions(query: dict[str, object]) -> dict[str, object]:
    """Your subscriptions, oldest first; follow `next_cursor` until it is null."""
    items, next_cursor = subscription_service.page_for_merchant(
        db_session(), current_merchant().id, cursor=query.get("cursor"),  # type: ignore[arg-type]
        limit=int(query["limit"]), data_keys=runtime().data_keys)  # type: ignore[call-overload]
    return {"items": items, "next_cursor": next_cursor}


@blp.route("/subscriptions/<string:subject>", methods=["GET"])
@merchant_required("subscriptions:read")
@blp.response(200, SubscriptionSchema)
@blp.doc(security=SECURITY, operationId="getSubscription")
@links(200, **_subscription_links(""))
@problems(blp, 401, 403, 404)
def get_subscription(subject: str) -> dict[str, object]:
    """One subscription, with the permissions and shared fields the person granted."""
    _refuse_impossible(subject)
    return subscription_service.describe_for_merchant(
        db_session(), current_merchant().id, subject, data_keys=runtime().data_keys)


@blp.route("/subscriptions/<string:subject>/receipt", methods=["GET"])
@merchant_required("subscriptions:read")
@blp.response(200, ReceiptSchema)
@blp.doc(security=SECURITY, operationId="getReceipt")
@links(200, subscription=link("getSubscription", "The subscription the receipt is for",
                              parameters={"path.subject": response_value("/subject")}))
@problems(blp, 401, 403, 404, 500, descriptions={500: (
    "The consent log does not hold this state as signed: no receipt is issued "
    "(problem type log-integrity)")})
def get_receipt(subject: str) -> dict[str, object]:
    """A signed consent receipt for the subscription's latest state.

    A compact JWS (Ed25519, `typ` `consent-receipt+jwt`, key `kid` in
    `/.well-known/jwks.json`) with the Kantara Consent Receipt / ISO/IEC TS
    27560 fields that apply (controller, purposes, channels, data categories,
    collection method, validity, how to withdraw, status), plus the
    consent-log leaf that recorded this state and its inclusion proof against
    a signed tree head. Verify offline with `prefvault_sdk.verify_receipt`.
    """
    _refuse_impossible(subject)
    rt = runtime()
    receipt = receipt_for_merchant(
        db_session(), current_merchant().id, subject, database=rt.database,
        data_keys=rt.data_keys, signing_key=rt.keyring.signing_key,
        issuer=rt.settings.issuer, clock=rt.clock)
    return {"subject": subject, "receipt": receipt}


def _refuse_impossible(subject: str) -> None:
    """A subject that cannot be one of ours is not found without asking the database.

    PostgreSQL refuses a NUL in a query parameter outright (a 500 otherwise).
    """
    if len(subject) > 128 or not re.fullmatch(IDENTIFIER, subject):
        raise NotFound("no subscription with this subject", field="subject")
