"""Wiring of the authorization server, its endpoints and the resource protector.

One module-level ``authorization`` server and ``require_oauth`` protector,
attached to an app by ``config_oauth(app)`` (Authlib's Flask pattern).
"""

from __future__ import annotations

from datetime import timedelta

from authlib.common.security import generate_token
from authlib.integrations.flask_oauth2 import AuthorizationServer as _FlaskServer
from authlib.integrations.flask_oauth2 import ResourceProtector
from authlib.oauth2.rfc6750 import (
    BearerTokenGenerator,
    BearerTokenValidator,
    InsufficientScopeError,
    InvalidTokenError,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint as _Revocation
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _Introspection
from flask import Flask, current_app, g
from sqlmodel import select

from vault.extensions import runtime
from vault.models import Merchant, Subscription
from vault.models.oauth import OAuthToken
from vault.models.types import new_id
from vault.oauth.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    RefreshTokenGrant,
    S256CodeChallenge,
    VaultOpenIDCode,
)
from vault.oauth.tokens import (
    ACCESS_TOKEN_SECONDS,
    CLIENT_TOKEN_SECONDS,
    REFRESH_FAMILY_LIFETIME,
    GrantUser,
    find_any,
    find_by_access_token,
    is_active,
    revoke_family,
    token_hash,
)
from vault.services.scopes import ALL_SCOPES
from vault.web.request_db import db_session

_COMMIT_EVEN_ON_ERROR = "_vault_oauth_commit_even_on_error"


class AuthorizationServer(_FlaskServer):
    """Authlib's Flask server with the vault's client and token storage."""

    @property
    def commit_even_on_error(self) -> bool:
        """Set by grants that must persist a revocation even though they answer an error.

        Kept per request on ``flask.g``: this server object is shared by every request
        thread, so a flag on it could be reset by another request before it is read.
        """
        return bool(g.get(_COMMIT_EVEN_ON_ERROR, False))

    @commit_even_on_error.setter
    def commit_even_on_error(self, value: bool) -> None:
        setattr(g, _COMMIT_EVEN_ON_ERROR, value)

    def query_client(self, client_id):  # type: ignore[no-untyped-def]
        if not isinstance(client_id, str) or len(client_id) > 64 or "\x00" in client_id:
            return None  # PostgreSQL refuses a NUL in a query parameter outright
        return db_session().exec(
            select(Merchant).where(Merchant.client_id == client_id,
                                   Merchant.disabled_at.is_(None))
        ).first()

    def save_token(self, token, request):  # type: ignore[no-untyped-def]
        """Store hashes only; add the pairwise ``subject`` to the token response."""
        now = runtime().clock.now()
        user: GrantUser | None = request.user
        code = getattr(request, "authorization_code", None)
        previous: OAuthToken | None = getattr(request, "refresh_token", None)
        family_id = previous.family_id if previous is not None else new_id()
        refresh_deadline = (
            previous.refresh_expires_at if previous is not None
            else now + REFRESH_FAMILY_LIFETIME if token.get("refresh_token") else None
        )
        row = OAuthToken(
            id=new_id(),
            client_id=request.client.client_id,
            person_id=user.person_id if user else None,
            subscription_id=user.subscription_id if user else None,
            family_id=family_id,
            code_id=code.id if code is not None else
            (previous.code_id if previous is not None else None),
            scope=token.get("scope", ""),
            access_token_hash=token_hash(token["access_token"]),
            refresh_token_hash=token_hash(token["refresh_token"])
            if token.get("refresh_token") else None,
            issued_at=now,
            access_expires_at=now + timedelta(seconds=int(token["expires_in"])),
            refresh_expires_at=refresh_deadline,
        )
        db_session().add(row)
        if user is not None:
            token["subject"] = user.subject


def _expires_in(client, grant_type):  # type: ignore[no-untyped-def]
    return CLIENT_TOKEN_SECONDS if grant_type == "client_credentials" else ACCESS_TOKEN_SECONDS


class RevocationEndpoint(_Revocation):
    """RFC 7009. Revoking a refresh token ends its whole family."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string, token_type_hint):  # type: ignore[no-untyped-def]
        return find_any(db_session(), token_string, token_type_hint)

    def revoke_token(self, token, request):  # type: ignore[no-untyped-def]
        now = runtime().clock.now()
        presented = request.form.get("token", "")
        if token.refresh_token_hash == token_hash(presented):
            revoke_family(db_session(), token.family_id, now)
        else:
            token.revoked_at = token.revoked_at or now
            db_session().add(token)


class IntrospectionEndpoint(_Introspection):
    """RFC 7662. Unknown, expired, revoked or another client's token: ``{"active": false}``."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string, token_type_hint):  # type: ignore[no-untyped-def]
        return find_any(db_session(), token_string, token_type_hint)

    def check_permission(self, token, client, request):  # type: ignore[no-untyped-def]
        return token.client_id == client.client_id

    def create_introspection_payload(self, token):  # type: ignore[no-untyped-def]
        if token is None or not is_active(token, runtime().clock.now()):
            return {"active": False}
        if token.subscription_id is not None:
            sub = db_session().get(Subscription, token.subscription_id)
            if sub is None or sub.status != "active":
                return {"active": False}
        return self.introspect_token(token)

    def introspect_token(self, token):  # type: ignore[no-untyped-def]
        payload = {
            "active": True,
            "client_id": token.client_id,
            "token_type": "Bearer",
            "scope": token.scope,
            "iat": int(token.issued_at.timestamp()),
            "exp": int(token.access_expires_at.timestamp()),
            "iss": runtime().settings.issuer,
        }
        if token.subscription_id is not None:
            sub = db_session().get(Subscription, token.subscription_id)
            if sub is not None:
                payload["sub"] = sub.subject
        return payload


class VaultBearerTokenValidator(BearerTokenValidator):
    """Bearer tokens for the API and userinfo, checked against the vault's clock."""

    def authenticate_token(self, token_string):  # type: ignore[no-untyped-def]
        if not isinstance(token_string, str) or len(token_string) > 512:
            return None
        return find_by_access_token(db_session(), token_string)

    def validate_token(self, token, scopes, request):  # type: ignore[no-untyped-def]
        if token is None or not is_active(token, runtime().clock.now()):
            raise InvalidTokenError(realm=self.realm, extra_attributes=self.extra_attributes)
        if token.subscription_id is not None:
            sub = db_session().get(Subscription, token.subscription_id)
            if sub is None or sub.status != "active":
                raise InvalidTokenError(realm=self.realm,
                                        extra_attributes=self.extra_attributes)
        if self.scope_insufficient(token.get_scope(), scopes):
            raise InsufficientScopeError()


require_oauth = ResourceProtector()
require_oauth.register_token_validator(VaultBearerTokenValidator())

_EXTENSION = "prefvault_oauth"


def _random_token(**_kwargs: object) -> str:
    return generate_token(48)


def authorization_server() -> AuthorizationServer:
    """The current app's authorization server."""
    return current_app.extensions[_EXTENSION]


def config_oauth(app: Flask) -> AuthorizationServer:
    """Build this app's server: the grants, the endpoints and the token generator.

    One server per app (rather than Authlib's single module-level one) keeps
    apps built side by side, as the tests do, from sharing registrations.
    """
    app.config["OAUTH2_SCOPES_SUPPORTED"] = list(ALL_SCOPES)
    server = AuthorizationServer()
    server.init_app(app)
    server.register_token_generator(
        "default", BearerTokenGenerator(_random_token, _random_token, _expires_in)
    )
    server.register_grant(
        AuthorizationCodeGrant, [S256CodeChallenge(required=True), VaultOpenIDCode()]
    )
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_endpoint(RevocationEndpoint)
    server.register_endpoint(IntrospectionEndpoint)
    app.extensions[_EXTENSION] = server
    return server
