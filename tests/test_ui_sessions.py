"""A session ends everywhere when the account is erased or its password changes.

Sessions live in signed cookies, so these are the cases a cookie alone
cannot know about: another browser of the same person must be logged out.
"""

from __future__ import annotations

import pytest
from api_helpers import PASSWORD, Vault
from ui_helpers import log_in, logged_in


@pytest.fixture
def vault(app, client, runtime, clock) -> Vault:  # type: ignore[no-untyped-def]
    return Vault(app, client, runtime, clock)


def test_erasing_the_account_logs_out_every_other_browser(vault: Vault) -> None:
    first = logged_in(vault)
    second = vault.app.test_client()
    assert log_in(second, first.email).status_code == 302
    assert second.get("/activity").status_code == 200
    erased = first.post_form("/my-data/delete", data={"password": PASSWORD})
    assert erased.status_code == 200
    for path in ("/subscriptions", "/activity", "/my-data", "/profile", "/rules"):
        response = second.get(path)
        assert response.status_code == 302, path
        assert "/login" in response.headers["Location"]


def test_a_new_password_ends_other_sessions_but_keeps_this_one(vault: Vault) -> None:
    here = logged_in(vault)
    elsewhere = vault.app.test_client()
    assert log_in(elsewhere, here.email).status_code == 302
    new = "a brand new long passphrase"
    changed = here.post_form("/profile", "/profile/password", {
        "current_password": PASSWORD, "new_password": new, "new_password_confirm": new})
    assert changed.status_code == 302
    assert here.get("/profile").status_code == 200
    stale = elsewhere.get("/profile")
    assert stale.status_code == 302 and "/login" in stale.headers["Location"]
    assert log_in(vault.app.test_client(), here.email, new).status_code == 302


def test_a_forged_mark_does_not_keep_a_session(vault: Vault) -> None:
    browser = logged_in(vault)
    with browser.client.session_transaction() as cookie:
        cookie["mark"] = "0" * 32
    response = browser.get("/subscriptions")
    assert response.status_code == 302 and "/login" in response.headers["Location"]

