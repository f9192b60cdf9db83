"""Hardened Authlib grants.

Where Authlib's defaults are lenient, these are strict:
- PKCE is required of every client, and only ``S256`` is accepted;
- a code is looked up under a row lock and marked used in the same step, so
  of two concurrent exchanges exactly one wins; presenting a used code
  revokes every token it led to;
- refresh tokens rotate on every use; presenting a rotated one revokes the
  whole family, and a family never outlives its absolute deadline;
- client credentials carry only the client's own API scopes, never a
  person's.
"""

from __future__ import annotations

import hmac
from datetime import datetime

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
)
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import (
    CODE_CHALLENGE_PATTERN,
    CODE_VERIFIER_PATTERN,
    create_s256_code_challenge,
)
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import OKPKey
from sqlmodel import select

from vault.extensions import runtime
from vault.models import Person, Profile, Subscription
from vault.models.oauth import AuthorizationCode
from vault.models.subscription import ACTIVE
from vault.models.types import new_id
from vault.oauth.tokens import (
    CODE_LIFETIME,
    GrantUser,
    find_by_refresh_token,
    revoke_family,
    revoke_issued_from_code,
    token_hash,
)
from vault.services.accounts import open_profile
from vault.services.scopes import AUDITOR_SCOPES, MERCHANT_SCOPES, PersonGrant
from vault.services.subscriptions import view
from vault.web.request_db import db_session

ID_TOKEN_ALG = "Ed25519"  # noqa: S105 (an algorithm name)


def _now() -> datetime:
    return runtime().clock.now()


class S256CodeChallenge(CodeChallenge):
    """PKCE for every client, S256 only (RFC 7636, RFC 9700 §2.1.1)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant, redirect_uri):  # type: ignore[no-untyped-def]
        payload = grant.request.payload
        challenge = payload.data.get("code_challenge")
        method = payload.data.get("code_challenge_method")
        if not challenge:
            raise InvalidRequestError("PKCE is required: missing 'code_challenge'")
        if method != "S256":
            raise InvalidRequestError("PKCE method must be 'S256'")
        for name in ("code_challenge", "code_challenge_method"):
            if len(payload.datalist.get(name, [])) > 1:
                raise InvalidRequestError(f"Multiple '{name}' in request.")
        if not CODE_CHALLENGE_PATTERN.match(challenge):
            raise InvalidRequestError("Invalid 'code_challenge'")

    def validate_code_verifier(self, grant, result):  # type: ignore[no-untyped-def]
        request = grant.request
        verifier = request.form.get("code_verifier")
        code = request.authorization_code
        if not verifier:
            raise InvalidRequestError("Missing 'code_verifier'")
        if not CODE_VERIFIER_PATTERN.match(verifier):
            raise InvalidRequestError("Invalid 'code_verifier'")
        if code.code_challenge_method != "S256" or not hmac.compare_digest(
            create_s256_code_challenge(verifier), code.code_challenge
        ):
            raise InvalidGrantError(description="Code challenge failed.")


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def validate_authorization_request(self):  # type: ignore[no-untyped-def]
        redirect_uri = super().validate_authorization_request()
        try:
            requested = PersonGrant.parse(self.request.payload.scope)
        except ValueError as exc:
            raise InvalidScopeError(f"'{exc}' cannot be granted by a person",
                                    redirect_uri=redirect_uri) from None
        if requested.is_empty:
            raise InvalidScopeError("ask for at least one contact: or profile: scope",
                                    redirect_uri=redirect_uri)
        return redirect_uri

    def save_authorization_code(self, code, request):  # type: ignore[no-untyped-def]
        user: GrantUser = request.user
        now = _now()
        payload = request.payload
        db_session().add(AuthorizationCode(
            id=new_id(),
            code_hash=token_hash(code),
            client_id=request.client.client_id,
            person_id=user.person_id,
            subscription_id=user.subscription_id,
            redirect_uri=payload.redirect_uri,
            scope=user.granted_scope,
            nonce=payload.data.get("nonce"),
            code_challenge=payload.data["code_challenge"],
            code_challenge_method=payload.data["code_challenge_method"],
            auth_time=int(now.timestamp()),
            created_at=now,
            expires_at=now + CODE_LIFETIME,
        ))

    def query_authorization_code(self, code, client):  # type: ignore[no-untyped-def]
        session = db_session()
        row = session.exec(
            select(AuthorizationCode)
            .where(AuthorizationCode.code_hash == token_hash(code))
            .with_for_update()
        ).first()
        if row is None or row.client_id != client.client_id:
            return None
        now = _now()
        if row.used_at is not None:
            revoke_issued_from_code(session, row.id, now)
            self.server.commit_even_on_error = True
            return None
        row.used_at = now  # single use, decided under the row lock
        session.add(row)
        self.server.commit_even_on_error = True
        if now >= row.expires_at:
            return None
        return row

    def delete_authorization_code(self, authorization_code):  # type: ignore[no-untyped-def]
        """Kept (marked used) so a replay can be recognised and punished."""

    def authenticate_user(self, authorization_code):  # type: ignore[no-untyped-def]
        session = db_session()
        sub = session.get(Subscription, authorization_code.subscription_id)
        if sub is None or sub.status != ACTIVE:
            return None
        return GrantUser(sub.person_id, sub.id, sub.subject, authorization_code.scope)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token):  # type: ignore[no-untyped-def]
        session = db_session()
        token = find_by_refresh_token(session, refresh_token, lock=True)
        if token is None:
            return None
        now = _now()
        if token.refresh_used_at is not None:
            # A rotated token came back: someone holds a copy. Kill the family.
            revoke_family(session, token.family_id, now)
            self.server.commit_even_on_error = True
            return None
        if token.revoked_at is not None or token.refresh_expires_at is None \
                or now >= token.refresh_expires_at:
            return None
        return token

    def authenticate_user(self, refresh_token):  # type: ignore[no-untyped-def]
        if refresh_token.subscription_id is None:
            return None
        sub = db_session().get(Subscription, refresh_token.subscription_id)
        if sub is None or sub.status != ACTIVE:
            return None
        return GrantUser(sub.person_id, sub.id, sub.subject, refresh_token.scope)

    def revoke_old_credential(self, refresh_token):  # type: ignore[no-untyped-def]
        refresh_token.refresh_used_at = _now()
        refresh_token.revoked_at = refresh_token.revoked_at or _now()
        db_session().add(refresh_token)


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def create_token_response(self):  # type: ignore[no-untyped-def]
        client = self.request.client
        own = MERCHANT_SCOPES if client.kind == "merchant" else AUDITOR_SCOPES
        requested = (self.request.payload.scope or "").split()
        if any(s not in own for s in requested):
            raise InvalidScopeError("client credentials carry only the client's own scopes")
        scope = " ".join(requested or own)
        token = self.generate_token(scope=scope, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class VaultOpenIDCode(OpenIDCode):
    """id_tokens signed with the vault's Ed25519 key; ``sub`` is the pairwise subject."""

    def exists_nonce(self, nonce, request):  # type: ignore[no-untyped-def]
        return db_session().exec(
            select(AuthorizationCode.id).where(
                AuthorizationCode.client_id == request.payload.client_id,
                AuthorizationCode.nonce == nonce,
            )
        ).first() is not None

    def resolve_client_private_key(self, client):  # type: ignore[no-untyped-def]
        return OKPKey.import_key(runtime().keyring.signing_key.private_jwk())

    def get_client_algorithm(self, client):  # type: ignore[no-untyped-def]
        return ID_TOKEN_ALG

    def get_encode_header(self, client):  # type: ignore[no-untyped-def]
        return {"alg": ID_TOKEN_ALG, "kid": runtime().keyring.signing_key.kid}

    def get_client_claims(self, client):  # type: ignore[no-untyped-def]
        now = int(_now().timestamp())
        return {"iss": runtime().settings.issuer, "aud": [client.get_client_id()],
                "iat": now, "exp": now + 3600}

    def generate_user_info(self, user, scope):  # type: ignore[no-untyped-def]
        return user_info(user.subscription_id, scope)


def user_info(subscription_id: str, scope: str) -> UserInfo:
    """The claims a grant shares: ``sub`` plus only the profile fields it currently shares."""
    session = db_session()
    rt = runtime()
    sub = session.get(Subscription, subscription_id)
    if sub is None:
        return UserInfo(sub="")
    info = UserInfo(sub=sub.subject)
    if sub.status != ACTIVE:
        return info
    token_fields = set(PersonGrant.parse(" ".join(
        s for s in scope.split() if s.startswith("profile:"))).profile)
    shared = set(view(session, sub, data_keys=rt.data_keys).shared_fields) & token_fields
    person = session.get(Person, sub.person_id)
    row = session.get(Profile, sub.person_id)
    if not shared or person is None or row is None:
        return info
    profile = open_profile(rt.data_keys.for_person(session, sub.person_id), row)
    claim_names = {"name": "name", "email": "email", "phone": "phone_number",
                   "address": "address", "language": "locale", "interests": "interests"}
    for field in sorted(shared):
        value = getattr(profile, field)
        if value is not None:
            info[claim_names[field]] = {"formatted": value} if field == "address" else value
    return info


__all__ = [
    "AuthorizationCodeGrant",
    "ClientCredentialsGrant",
    "RefreshTokenGrant",
    "S256CodeChallenge",
    "VaultOpenIDCode",
    "user_info",
]
