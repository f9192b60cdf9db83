"""Fietsen & Co: a tiny Dutch bike shop that asks Preference Vault before it reaches anyone.

Everything vault-related goes through the merchant SDK (``prefvault_sdk``):
the connect button (``connect_url`` / ``complete_connect``), the webhook
endpoint (``webhooks.verify`` / ``handle_event``) and, in
``abandoned_cart.py``, the nightly job. The shop itself keeps only pairwise
subjects (see ``shop_store.py``).

Run it with ``examples/shop/run`` (README.md), or ``python app.py`` with
``PREFVAULT_URL``, ``SHOP_CLIENT_ID``, ``SHOP_CLIENT_SECRET`` and
``SHOP_WEBHOOK_SECRET`` set.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from flask import Flask, abort, current_app, redirect, render_template_string, request, session
from prefvault_sdk import (
    ConnectError,
    SignatureVerificationError,
    VaultClient,
    VaultError,
    webhooks,
)
from shop_config import MissingConfig, ShopConfig
from shop_store import CustomerStore
from werkzeug.wrappers import Response

#: what the shop asks for: abandoned-cart reminders by phone or mail, order mails, the contact
#: details to use (the vault shares them only with the person's "yes")
SCOPES = (
    "contact:email:order_updates",
    "contact:email:abandoned_cart",
    "contact:phone:abandoned_cart",
    "profile:email",
    "profile:phone",
)
SHOP_NAME = "Fietsen & Co"
DEFAULT_PORT = 5001
log = logging.getLogger("fietsen")

PAGE = """<!doctype html>
<html lang="nl"><head><meta charset="utf-8"><title>{{ shop }}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem}
.button{display:inline-block;padding:.6rem 1rem;background:#1d4ed8;color:#fff;border-radius:.4rem;
text-decoration:none}</style></head>
<body><h1>{{ shop }}</h1>
{% if message %}<p><strong>{{ message }}</strong></p>{% endif %}
<p>Fietsen, onderdelen en reparaties in Amsterdam. We only mail or call you about your
orders and a forgotten basket, and only as far as you allow in your Preference Vault.</p>
<p><a class="button" href="{{ url_for('connect') }}">Connect with Preference Vault</a></p>
</body></html>"""


def vault_of(app: Flask) -> VaultClient:
    """The app's one ``VaultClient`` (thread-safe; keeps its token and connections)."""
    client: VaultClient = app.extensions["prefvault"]
    return client


def store_of(app: Flask) -> CustomerStore:
    """The app's customer store."""
    store: CustomerStore = app.extensions["fietsen_store"]
    return store


def create_app(environ: Mapping[str, str] | None = None, *,
               vault: VaultClient | None = None) -> Flask:
    """Build the shop from the environment (``MissingConfig`` if a setting is absent).

    ``vault`` lets a caller supply its own client (a test's, with a custom
    transport); by default one is made from the configuration, with the
    decision cache on so ``handle_event`` has something to drop.
    """
    config = ShopConfig.from_env(environ)
    app = Flask(__name__, instance_path=str(config.instance_path))
    # A fresh key per start is fine for an example: it only signs the short-lived
    # connect state in the session cookie, so a restart merely voids half-done connects.
    app.secret_key = os.urandom(32)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    app.extensions["fietsen_config"] = config
    app.extensions["fietsen_store"] = CustomerStore(config.database_path)
    app.extensions["prefvault"] = vault or VaultClient(
        config.vault_url, client_id=config.client_id, client_secret=config.client_secret,
        cache=True)

    @app.get("/")
    def index() -> str:
        return render_template_string(PAGE, shop=SHOP_NAME, message=request.args.get("msg"))

    @app.get("/connect")
    def connect() -> Response:
        """Send the person to the vault's consent page; remember how to finish the flow.

        The verifier, state and nonce stay with this browser's (signed) session
        so the callback can prove the answer belongs to the request made here.
        """
        try:
            started = vault_of(current_app).connect_url(config.redirect_uri, SCOPES)
        except VaultError as error:
            log.warning("cannot start a connect: %s", error)
            return redirect("/?msg=The+vault+cannot+be+reached+right+now.")
        session["connect"] = {"verifier": started.code_verifier, "state": started.state,
                              "nonce": started.nonce}
        return redirect(started.url)

    @app.get("/connect/callback")
    def connect_callback() -> Response:
        """Finish the flow: check state, exchange the code, remember the subject (only)."""
        pending = session.pop("connect", None)
        if not isinstance(pending, dict):
            return redirect("/?msg=That+link+has+expired;+please+connect+again.")
        try:
            subscription = vault_of(current_app).complete_connect(
                request.url, pending["verifier"], pending["state"],
                redirect_uri=config.redirect_uri, nonce=pending["nonce"])
        except ConnectError as error:
            log.info("connect not completed: %s", error)
            return redirect("/?msg=No+connection+made;+nothing+was+shared.")
        store_of(current_app).add(subscription.subject)
        log.info("connected %s with %s", subscription.subject, " ".join(subscription.scopes))
        return redirect("/?msg=Bedankt!+You+are+connected.")

    @app.post("/webhooks/vault")
    def vault_webhook() -> tuple[dict[str, object], int]:
        """Act on the vault's news, but only once its signature proves it is the vault's."""
        try:
            event = webhooks.verify(request.get_data(),
                                    request.headers.get(webhooks.SIGNATURE_HEADER),
                                    config.webhook_secret)
        except SignatureVerificationError as error:
            log.warning("webhook refused: %s", error)
            abort(400, description="bad signature")
        except VaultError:
            abort(400, description="not a vault event")
        # Drop cached answers about this person before anything else asks again.
        vault_of(current_app).handle_event(event)
        store = store_of(current_app)
        if not store.first_delivery(event.id):
            return {"received": True, "duplicate": True}, 200
        if event.type == "subscription.revoked":
            store.mark_revoked(event.subject)
        return {"received": True}, 200

    return app


def main() -> None:
    """``python app.py``: serve on 127.0.0.1:$PORT (5001), or exit with one line."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        app = create_app()
    except MissingConfig as error:
        sys.exit(str(error))
    port = int(os.environ.get("PORT", DEFAULT_PORT))
    try:
        app.run(host="127.0.0.1", port=port)
    finally:
        vault_of(app).close()


if __name__ == "__main__":
    main()
