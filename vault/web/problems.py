"""One place that turns errors into RFC 9457 problem details.

Domain errors keep their status and stable ``type``; HTTP errors from Flask
(404, 405, 413…) get the same shape; anything unexpected becomes a bare 500
problem whose body says nothing about the cause (the log has the traceback).
"""

from __future__ import annotations

import logging

from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

from vault.errors import PROBLEM_BASE, VaultError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def problem_response(body: dict[str, object], status: int) -> Response:
    return Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)


def _http_problem(error: HTTPException) -> Response:
    status = error.code or 500
    slug = (error.name or "error").lower().replace(" ", "-")
    response = problem_response(
        {"type": PROBLEM_BASE + slug, "title": error.name, "status": status,
         "detail": error.description},
        status,
    )
    for header in ("Allow", "Retry-After", "WWW-Authenticate"):
        original = error.get_response().headers.get(header)
        if original:
            response.headers[header] = original
    return response


def register_problem_handlers(app: Flask) -> None:
    @app.errorhandler(VaultError)
    def _vault_error(error: VaultError) -> Response:
        return problem_response(error.to_problem(), error.status)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        return _http_problem(error)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return problem_response(
            {"type": PROBLEM_BASE + "internal-error", "title": "Internal error", "status": 500,
             "detail": "The vault could not complete this request."},
            500,
        )
