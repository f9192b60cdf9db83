"""``GET /health``: is this process up and can it reach its database?"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from vault.extensions import runtime
from vault.web.problems import problem_response

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/health")
def health() -> Response | tuple[Response, int]:
    """200 ``{"status": "ok"}`` when the database answers; 503 otherwise (for load balancers)."""
    try:
        with runtime().database.read() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        log.warning("health check: database unreachable")
        return problem_response(
            {"type": "about:blank", "title": "Service Unavailable", "status": 503,
             "detail": "database unreachable"},
            503,
        )
    response = jsonify(status="ok")
    response.headers["Cache-Control"] = "no-store"
    return response
