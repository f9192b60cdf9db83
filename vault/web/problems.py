"""One place that turns errors into RFC 9457 problem details.

Domain errors keep their status and stable ``type``; HTTP errors from Flask
(404, 405, 413…) get the same shape; anything unexpected becomes a bare 500
problem whose body says nothing about the cause (the log has the traceback).
"""

from __future__ import annotations

import logging

from flask import Flask, Response, json, render_template, request
from flask_babel import lazy_gettext
from werkzeug.exceptions import HTTPException

from vault.errors import PROBLEM_BASE, VaultError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def problem_response(body: dict[str, object], status: int) -> Response:
    return Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)


#: the ``field`` of a problem with the request body as a whole (not JSON, not an object)
BODY_FIELD = "body"


def _first_field(messages: object, prefix: str = "") -> str | None:
    """The dotted path of the first invalid input in webargs' nested messages."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key in ("json", "query", "form", "headers", "view_args"):
                return _first_field(value, prefix) or (BODY_FIELD if key == "json" else None)
            if key == "_schema" and not prefix:
                return BODY_FIELD
            path = f"{prefix}.{key}" if prefix else str(key)
            deeper = _first_field(value, path)
            return deeper or path
    return prefix or None


def _oauth_error(error: HTTPException) -> object:
    """The OAuth ``error`` code of an exception raised by Authlib's resource protector.

    Authlib answers a missing scope with a bare 403 whose JSON body names the
    error (no ``WWW-Authenticate`` header), so the body is where to look.
    """
    raw = getattr(error, "body", None)
    if not isinstance(raw, str | bytes):
        return None
    try:
        document = json.loads(raw)
    except ValueError:
        return None
    return document.get("error") if isinstance(document, dict) else None


def _http_problem(error: HTTPException) -> Response:
    status = error.code or 500
    slug = (error.name or "error").lower().replace(" ", "-")
    body: dict[str, object] = {"type": PROBLEM_BASE + slug, "title": error.name,
                               "status": status, "detail": error.description or error.name}
    data = getattr(error, "data", None)
    if isinstance(data, dict) and "messages" in data:
        messages = data["messages"]
        body["type"] = PROBLEM_BASE + "invalid-request"
        body["detail"] = "The request failed validation."
        errors = messages.get("json", messages) if isinstance(messages, dict) else messages
        # Always an object keyed by field, as documented; body-level messages go under "body".
        body["errors"] = errors if isinstance(errors, dict) else {"body": errors}
        field = _first_field(messages)
        if field:
            body["field"] = field
            body["detail"] = f"Invalid value for {field}."
    original = error.get_response()
    if status == 401:
        body["type"] = PROBLEM_BASE + "unauthenticated"
        body["detail"] = "A valid access token is required."
    elif status == 403 and (original.headers.get("WWW-Authenticate")
                            or _oauth_error(error) == "insufficient_scope"):
        body["type"] = PROBLEM_BASE + "insufficient-scope"
        body["detail"] = "The access token lacks the scope this route needs."
    response = problem_response(body, status)
    for header in ("Allow", "Retry-After", "WWW-Authenticate"):
        if original.headers.get(header):
            response.headers[header] = original.headers[header]
    return response


_MACHINE_PATHS = ("/api/", "/oauth/token", "/oauth/revoke", "/oauth/introspect",
                  "/oauth/userinfo", "/.well-known/")


def _wants_page() -> bool:
    """A browser asking for a page gets an HTML error page; programs get problem+json."""
    if request.path.startswith(_MACHINE_PATHS):
        return False
    if request.blueprint == "ui":
        return True
    best = request.accept_mimetypes.best_match(["application/json", PROBLEM_JSON, "text/html"])
    return best == "text/html"


def _error_page(error: HTTPException) -> Response:
    status = error.code or 500
    title = _PAGE_TITLES.get(status, lazy_gettext("Something went wrong"))
    message = _PAGE_MESSAGES.get(status, lazy_gettext("Nothing was changed. Please go back."))
    response = Response(render_template("error.html", title=title, message=message),
                        status=status, mimetype="text/html")
    original = error.get_response()
    for header in ("Allow", "Retry-After"):
        if original.headers.get(header):
            response.headers[header] = original.headers[header]
    return response


_PAGE_TITLES = {
    400: lazy_gettext("This request cannot be handled"),
    404: lazy_gettext("Page not found"),
    405: lazy_gettext("This page cannot do that"),
    413: lazy_gettext("That was too much at once"),
    429: lazy_gettext("Too many attempts"),
}
_PAGE_MESSAGES = {
    400: lazy_gettext("Nothing was changed. Go back, reload the page and try again."),
    404: lazy_gettext("This page does not exist, or it is not yours to see."),
    405: lazy_gettext("Nothing was changed. Use the buttons on the page."),
    413: lazy_gettext("Nothing was changed. Please send less."),
    429: lazy_gettext(
        "For your safety this is paused for a while. Please try again in a few minutes."),
}


def register_problem_handlers(app: Flask) -> None:
    @app.errorhandler(VaultError)
    def _vault_error(error: VaultError) -> Response:
        return problem_response(error.to_problem(), error.status)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        if _wants_page():
            return _error_page(error)
        return _http_problem(error)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return problem_response(
            {"type": PROBLEM_BASE + "internal-error", "title": "Internal error", "status": 500,
             "detail": "The vault could not complete this request."},
            500,
        )
