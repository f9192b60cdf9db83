"""Property-based fuzzing of the live API against its own OpenAPI document (schemathesis)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from vault.models import Merchant
from vault.services import subscriptions
from vault.services.merchants import register_client
from vault.services.scopes import PersonGrant

SPEC = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"
CHECKS = ("not_a_server_error,status_code_conformance,response_schema_conformance,"
          "negative_data_rejection")


@pytest.mark.slow
def test_the_api_survives_schemathesis(live_vault, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runtime = live_vault.runtime
    with runtime.database.write() as session:
        person = runtime.accounts.sign_up(session, email="fuzz@example.org",
                                          password="a long enough password",
                                          profile={"name": "Fuzz"})
        issued = register_client(session, clock=runtime.clock, name="Fuzz Shop",
                                 redirect_uris=["https://shop.example/cb"])
        merchant = session.exec(select(Merchant).where(
            Merchant.client_id == issued.client_id)).one()
        grant = PersonGrant.parse("contact:email:offers profile:email")
        subscriptions.grant(session, person_id=person, merchant=merchant, granted=grant,
                            requested=grant, data_keys=runtime.data_keys, clock=runtime.clock)
    token = httpx.post(f"{live_vault.base_url}/oauth/token",
                       data={"grant_type": "client_credentials"},
                       auth=(issued.client_id, issued.client_secret)).json()["access_token"]
    binary = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [str(binary), "run", str(SPEC), "--url", live_vault.base_url,
         "--header", f"Authorization: Bearer {token}", "--checks", CHECKS,
         "--max-examples", os.environ.get("VAULT_FUZZ_EXAMPLES", "30"), "--seed", "20261123",
         "--generation-deterministic", "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-6000:]
