"""``GET /subscriptions`` (cursor pagination) and ``GET /subscriptions/{subject}``."""

from __future__ import annotations

from flask_smorest import Blueprint

from vault.api.auth import current_merchant, merchant_required
from vault.api.docs import problems
from vault.api.schemas import PageQuerySchema, SubscriptionPageSchema, SubscriptionSchema
from vault.extensions import runtime
from vault.services import subscriptions as subscription_service
from vault.web.request_db import db_session

blp = Blueprint("subscriptions", __name__, description="The people subscribed to you")
SECURITY = [{"oauth2": ["subscriptions:read"]}]


@blp.route("/subscriptions", methods=["GET"])
@merchant_required("subscriptions:read")
@blp.arguments(PageQuerySchema, location="query")
@blp.response(200, SubscriptionPageSchema)
@blp.doc(security=SECURITY)
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
@blp.doc(security=SECURITY)
@problems(blp, 401, 403, 404)
def get_subscription(subject: str) -> dict[str, object]:
    """One subscription, with the permissions and shared fields the person granted."""
    return subscription_service.describe_for_merchant(
        db_session(), current_merchant().id, subject, data_keys=runtime().data_keys)
