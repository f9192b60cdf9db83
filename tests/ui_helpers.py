"""A person using the web pages through the Flask test client.

Forms are read from the HTML the vault served, CSRF token included, and
posted back as a browser would; nothing bypasses the views.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from api_helpers import PASSWORD, Vault, sign_up, unique_email
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = _CSRF.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


@dataclass
class Browser:
    """One person's cookie jar on the test client."""

    client: FlaskClient
    person_id: str
    email: str

    def get(self, path: str, **options: object) -> TestResponse:
        return self.client.get(path, **options)  # type: ignore[arg-type]

    def post_form(self, page_path: str, action: str | None = None,
                  data: Mapping[str, object] | None = None,
                  **options: object) -> TestResponse:
        """Open ``page_path``, take its CSRF token and post ``data`` to ``action``."""
        page = self.client.get(page_path)
        assert page.status_code == 200, page.text
        body = {"csrf_token": csrf_token(page.text), **(data or {})}
        return self.client.post(action or page_path, data=body,  # type: ignore[arg-type]
                                **options)


def log_in(client: FlaskClient, email: str, password: str = PASSWORD) -> TestResponse:
    page = client.get("/login")
    return client.post("/login", data={"csrf_token": csrf_token(page.text), "email": email,
                                       "password": password})


def logged_in(vault: Vault, *, email: str | None = None,
              profile: Mapping[str, object] | None = None) -> Browser:
    """A new person, signed up through the service and logged in through the login form."""
    email = email or unique_email()
    person_id = sign_up(vault.runtime, email, profile=profile)
    client = vault.app.test_client()
    response = log_in(client, email)
    assert response.status_code == 302, response.text
    return Browser(client, person_id, email)
