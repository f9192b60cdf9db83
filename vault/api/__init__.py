"""The merchants' JSON API under ``/api/v1`` (flask-smorest; OpenAPI from the schemas)."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from vault.api.schemas import ProblemSchema

API_PREFIX = "/api/v1"


class VaultApi(Api):
    """flask-smorest with RFC 9457 problem details as the documented error body.

    Errors themselves are rendered by ``vault.web.problems`` for the whole app,
    so the API and every other route answer in one shape.
    """

    ERROR_SCHEMA = ProblemSchema

    def _register_error_handlers(self) -> None:
        """Errors are handled app-wide by ``vault.web.problems``."""


api = VaultApi()


def init_api(app: Flask) -> None:
    from vault.api import contacts, decisions, subscriptions

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
    api.init_app(app)
    for blueprint in (decisions.blp, contacts.blp, subscriptions.blp):
        api.register_blueprint(blueprint, url_prefix=API_PREFIX)
