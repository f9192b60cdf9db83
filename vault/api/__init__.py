"""The merchants' JSON API under ``/api/v1`` (flask-smorest; OpenAPI from the schemas)."""

from __future__ import annotations

import http

from flask import Flask
from flask_smorest import Api
from flask_smorest.utils import prepare_response

from vault.api.schemas import ProblemSchema, WebhookEventSchema
from vault.web.problems import PROBLEM_JSON

API_PREFIX = "/api/v1"


class VaultApi(Api):
    """flask-smorest with RFC 9457 problem details as the documented error body.

    Errors themselves are rendered by ``vault.web.problems`` for the whole app,
    so the API and every other route answer in one shape.
    """

    ERROR_SCHEMA = ProblemSchema

    def _register_error_handlers(self) -> None:
        """Errors are handled app-wide by ``vault.web.problems``."""

    def _register_responses(self) -> None:
        """flask-smorest's shared error responses (422, default) as the problem+json served."""
        for status in http.HTTPStatus:
            response: dict[str, object] = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        default: dict[str, object] = {"description": "Default error response",
                                      "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, PROBLEM_JSON)
        self.spec.components.response("DEFAULT_ERROR", default, lazy=True)


API_EXTENSION = "prefvault_api"


def init_api(app: Flask) -> VaultApi:
    """Attach a fresh API (one per app, so apps built side by side share nothing)."""
    from vault.api import audit, contacts, decisions, subscriptions

    app.config.update(
        API_TITLE="Preference Vault API",
        API_VERSION="1.0.0",
        OPENAPI_VERSION="3.1.0",
        API_SPEC_OPTIONS={
            "info": {
                "description": (
                    "Ask before you reach: merchants ask the vault whether and how they may "
                    "contact a person, report the contacts they made, and read their "
                    "subscriptions. Authenticate with an OAuth 2 client-credentials token."
                ),
            },
            "servers": [{"url": "/"}],
            "components": {
                "securitySchemes": {
                    "oauth2": {
                        "type": "oauth2",
                        "flows": {
                            "clientCredentials": {
                                "tokenUrl": "/oauth/token",
                                "scopes": {
                                    "decisions": "Ask decisions",
                                    "contacts:write": "Report contacts made",
                                    "subscriptions:read": "Read subscriptions",
                                    "audit:read": "Export the consent log (auditors)",
                                },
                            }
                        },
                    }
                }
            },
        },
    )
    api = VaultApi(app)
    for blueprint in (decisions.blp, contacts.blp, subscriptions.blp, audit.blp):
        api.register_blueprint(blueprint, url_prefix=API_PREFIX)
    if "WebhookEvent" not in api.spec.components.schemas:
        api.spec.components.schema("WebhookEvent", schema=WebhookEventSchema)
    app.extensions[API_EXTENSION] = api
    return api
