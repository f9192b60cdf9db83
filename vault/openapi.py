"""The OpenAPI document: generated from the marshmallow schemas, committed in ``openapi/``.

``prefvault openapi`` writes it; a test fails when the committed file and
the code disagree, so the document can never drift from the API.
"""

from __future__ import annotations

import json
from pathlib import Path

from flask import Flask

from vault.api import API_EXTENSION
from vault.services.outbox import EVENT_TYPES

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"



def build_spec(app: Flask) -> dict[str, object]:
    """The document for ``app``, with the webhook payloads and stable ordering."""
    with app.app_context():
        spec = app.extensions[API_EXTENSION].spec.to_dict()
    signature = {
        "Vault-Signature": {
            "required": True,
            "description": 't=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>',
            "schema": {"type": "string"},
        }
    }
    spec["webhooks"] = {
        name: {
            "post": {
                "summary": f"{name} event",
                "parameters": [{"in": "header", "name": "Vault-Signature", "required": True,
                                "schema": {"type": "string"},
                                "description": signature["Vault-Signature"]["description"]}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/WebhookEvent"}}}},
                "responses": {"2XX": {"description": "Delivered; never sent again"}},
            }
        }
        for name in EVENT_TYPES
    }
    return spec


def render(spec: dict[str, object]) -> str:
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"
