"""OAuth / OpenID Connect HTTP routes, the consent page and discovery documents."""

from __future__ import annotations

import base64
import re

from authlib.integrations.flask_oauth2 import current_token
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError
from flask import Blueprint, abort, jsonify, make_response, render_template, request
from flask_babel import gettext as _
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from vault.extensions import runtime
from vault.oauth.grants import ID_TOKEN_ALG, user_info
from vault.oauth.server import authorization_server, require_oauth
from vault.oauth.tokens import GrantUser
from vault.services import subscriptions as subscription_service
from vault.services.scopes import (
    ALL_SCOPES,
    PersonGrant,
    contact_scope,
    profile_scope,
)
from vault.ui.labels import contact_label, field_label
from vault.ui.session import current_person_id, login_required
from vault.web.headers import content_security_policy, origin_of
from vault.web.request_db import commit, db_session

bp = Blueprint("oauth", __name__)

AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

#: the parameters of RFC 6749, 7636, 7009 and 7662 (and OpenID's nonce) the vault reads;
#: any other parameter is ignored, as RFC 6749 §3.1 asks
_OAUTH_PARAMETERS = frozenset({
    "response_type", "client_id", "client_secret", "redirect_uri", "scope", "state",
    "code", "code_challenge", "code_challenge_method", "code_verifier", "grant_type",
    "refresh_token", "token", "token_type_hint", "nonce"})
#: RFC 6749 Appendix A: their values are printable ASCII (VSCHAR)
_VSCHAR = re.compile(r"[\x20-\x7e]*")
#: the longest value of the parameters the vault stores (the columns' sizes)
_LONGEST = {"nonce": 255}
_FORM = "application/x-www-form-urlencoded"


def _malformed(parameters: MultiDict[str, str]) -> OAuth2Error | None:
    """A parameter given twice (RFC 6749 §3.1, §3.2) or holding a character outside VSCHAR.

    Authlib takes the first of repeated parameters, and a control character in a
    redirect URI made it fail while building its own error message.
    """
    for name in _OAUTH_PARAMETERS.intersection(parameters):
        values = parameters.getlist(name)
        if len(values) > 1:
            return InvalidRequestError(f"Multiple '{name}' in request.")
        if not _VSCHAR.fullmatch(values[0]):
            return InvalidRequestError(f"Invalid characters in '{name}'.")
        if len(values[0]) > _LONGEST.get(name, len(values[0])):
            return InvalidRequestError(f"'{name}' is too long.")
    return None


def _malformed_client_request() -> OAuth2Error | None:
    """What makes a token, revocation or introspection request unreadable as such."""
    if request.mimetype not in ("", _FORM):
        return InvalidRequestError(f"Send the parameters as {_FORM}.")
    header = request.headers.get("Authorization", "")
    if header[:6].lower() == "basic ":
        try:
            base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except ValueError:  # not base64, or not UTF-8 once decoded
            return InvalidClientError(status_code=401)
    return _malformed(request.form)


def _consent_items(requested: PersonGrant, before: PersonGrant | None) -> list[dict[str, object]]:
    before_contact = set(before.contact) if before else set()
    before_fields = set(before.profile) if before else set()
    items: list[dict[str, object]] = [
        {"scope": contact_scope(c, p), "label": contact_label(c, p),
         "granted_before": (c, p) in before_contact}
        for c, p in requested.contact
    ]
    items += [
        {"scope": profile_scope(f), "label": field_label(f), "granted_before": f in before_fields}
        for f in requested.profile
    ]
    return items


def _invalid_request_page(error: OAuth2Error) -> Response | tuple[str, int]:
    """Redirect errors only to a redirect URI that was checked; otherwise show a page."""
    if error.redirect_uri:
        return authorization_server().handle_error_response(request, error)
    return render_template("oauth_error.html", error=error.error), 400


@bp.route("/oauth/authorize", methods=["GET", "POST"])
@login_required
def authorize() -> Response | str | tuple[str, int]:
    """The consent page: the merchant's request in plain words, nothing pre-ticked."""
    server = authorization_server()
    person_id = current_person_id() or ""
    malformed = _malformed(request.args)
    if malformed is not None:
        return _invalid_request_page(malformed)
    try:
        grant = server.get_consent_grant(end_user=person_id)
    except OAuth2Error as error:
        return _invalid_request_page(error)
    client = grant.client
    requested = PersonGrant.parse(grant.request.payload.scope)
    session = db_session()
    existing = subscription_service.find_for(session, person_id, client.id)
    before = None
    if existing is not None and existing.status == "active":
        before = subscription_service.view(session, existing,
                                           data_keys=runtime().data_keys).grant
    items = _consent_items(requested, before)

    redirect_origin = origin_of(grant.request.payload.redirect_uri)

    def consent_page(error: str | None, status: int = 200) -> Response:
        page = make_response(render_template("consent.html", merchant=client.name,
                                             items=items, error=error), status)
        page.headers["Content-Security-Policy"] = content_security_policy([redirect_origin])
        return page

    if request.method == "GET":
        return consent_page(None)

    if len(request.form.getlist("action")) > 1:
        abort(400)  # one button was pressed, never both
    if request.form.get("action") != "allow":
        return server.create_authorization_response(grant_user=None, grant=grant)
    granted = requested.narrowed_to(set(request.form.getlist("grant")))
    if granted.is_empty:
        return consent_page(_("Tick at least one thing to allow, or choose Deny."), 400)
    rt = runtime()
    sub = subscription_service.grant(
        session, person_id=person_id, merchant=client, granted=granted, requested=requested,
        data_keys=rt.data_keys, clock=rt.clock)
    user = GrantUser(person_id, sub.id, sub.subject, granted.scope)
    response = server.create_authorization_response(grant_user=user, grant=grant)
    if response.status_code == 302 and "code=" in response.headers.get("Location", ""):
        commit()
    return response


def _endpoint_response(call: str) -> Response:
    """Run a token-side endpoint and commit what it wrote (revocations included)."""
    server = authorization_server()
    server.commit_even_on_error = False
    malformed = _malformed_client_request()
    if malformed is not None:
        response = server.handle_error_response(request, malformed)
    elif call == "token":
        response = server.create_token_response()
    else:
        response = server.create_endpoint_response(call)
    if response.status_code == 200 or server.commit_even_on_error:
        commit()
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@bp.post("/oauth/token")
def issue_token() -> Response:
    return _endpoint_response("token")


@bp.post("/oauth/revoke")
def revoke_token() -> Response:
    return _endpoint_response("revocation")


@bp.post("/oauth/introspect")
def introspect_token() -> Response:
    return _endpoint_response("introspection")


@bp.route("/oauth/userinfo", methods=["GET", "POST"])
@require_oauth("openid")
def userinfo() -> Response:
    token = current_token
    if token.subscription_id is None:
        return jsonify({})
    response = jsonify(dict(user_info(token.subscription_id, token.scope)))
    response.headers["Cache-Control"] = "no-store"
    return response


def _metadata() -> dict[str, object]:
    issuer = runtime().settings.issuer
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "userinfo_endpoint": f"{issuer}/oauth/userinfo",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "scopes_supported": list(ALL_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": [ID_TOKEN_ALG],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "name",
                             "email", "phone_number", "address", "locale", "interests"],
        "service_documentation": f"{issuer}/",
    }


@bp.get("/.well-known/oauth-authorization-server")
def authorization_server_metadata() -> Response:
    return jsonify(_metadata())


@bp.get("/.well-known/openid-configuration")
def openid_configuration() -> Response:
    return jsonify(_metadata())


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    keys = [key.public_jwk() for key in runtime().keyring.signing_keys]
    response = jsonify({"keys": keys})
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
