"""Property-based fuzzing of the live API against its own OpenAPI document (schemathesis).

Every phase runs, the stateful one included: it follows the document's
links (a listed subscription's subject into its receipt, a decision and a
contact; a decision into the contact it was asked for; a signed tree head
into its proofs), so requests carry identifiers the vault really holds
instead of random ones that stop at a 404. The merchant's subscriptions are
in every state a merchant meets (limited, quiet, expiring, expired,
revoked, erased). The audit operations only refuse a merchant's token, so
they are fuzzed a second time with an auditor's.

``VAULT_FUZZ_EXAMPLES`` (default 30) bounds every phase: examples per
operation, and scenarios of the stateful phase.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import time, timedelta
from pathlib import Path

import httpx
import pytest
from api_helpers import (
    ApiMerchant,
    erase,
    register_merchant,
    revoke,
    set_global_rules,
    set_permission,
    subscribe,
)

from vault.extensions import Runtime
from vault.services import contacting, tree_heads
from vault.services import subscriptions as subscription_service
from vault.services.rules import QuietHours

SPEC = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"
CHECKS = ("not_a_server_error,status_code_conformance,response_schema_conformance,"
          "negative_data_rejection")
PHASES = "examples,coverage,fuzzing,stateful"
SEED = "20261123"
AUDIT_OPERATIONS = "^/api/v1/audit/"


def _limit(runtime: Runtime, merchant: ApiMerchant) -> None:
    """A person who allows one e-mail offer a week, and has had it."""
    sub = subscribe(runtime, merchant,
                    scope="contact:phone:surveys contact:email:offers profile:phone")
    set_permission(runtime, sub, "email", "offers", max_per_week=1)
    with runtime.database.write() as session:
        contacting.report_contact(
            session, merchant_id=merchant.id, subject=sub.subject, channel="email",
            purpose="offers", decision_id=None, at=None, data_keys=runtime.data_keys,
            clock=runtime.clock)


def _quiet_and_expiring(runtime: Runtime, merchant: ApiMerchant) -> None:
    """Permissions with quiet hours, one ending next month and one that has ended."""
    sub = subscribe(runtime, merchant, scope="contact:email:order_updates "
                    "contact:sms:abandoned_cart contact:push:service profile:name")
    now = runtime.clock.now()
    terms = (("email", "order_updates", QuietHours(time(9), time(12)), now + timedelta(days=30)),
             ("sms", "abandoned_cart", None, now - timedelta(days=1)))
    for channel, purpose, quiet, expires in terms:
        with runtime.database.write() as session:
            subscription_service.set_permission(
                session, person_id=sub.person_id, subscription_id=sub.subscription_id,
                channel=channel, purpose=purpose, allowed=True, quiet_hours=quiet,
                expires_at=expires, data_keys=runtime.data_keys, clock=runtime.clock)
    set_global_rules(runtime, sub.person_id, {
        "blocked": [{"channel": "phone", "purpose": "*"}], "channels_off": ["post"],
        "quiet_hours": {"start": "22:00", "end": "06:00"}})


def _sign_head(runtime: Runtime) -> None:
    """A signed tree head of the log as it is now, so proofs between heads can be asked."""
    with runtime.database.write() as session:
        tree_heads.checkpoint(session, signing_key=runtime.keyring.signing_key,
                              clock=runtime.clock)


def _revoked(runtime: Runtime, merchant: ApiMerchant) -> None:
    revoke(runtime, subscribe(runtime, merchant))


def _erased(runtime: Runtime, merchant: ApiMerchant) -> None:
    erase(runtime, subscribe(runtime, merchant).person_id)


def _generous(runtime: Runtime, merchant: ApiMerchant) -> None:
    subscribe(runtime, merchant, scope="contact:email:personalised_offers contact:post:offers "
              "profile:address profile:interests")


def _plain(runtime: Runtime, merchant: ApiMerchant) -> None:
    subscribe(runtime, merchant)


PEOPLE = (_plain, _generous, _limit, _quiet_and_expiring, _revoked, _erased)


def _subscribe_people(runtime: Runtime, merchant: ApiMerchant) -> None:
    """Subscriptions for the links to lead to, in every state a merchant can meet,
    with a tree head signed after each so the log has several to prove against."""
    for add in PEOPLE:
        add(runtime, merchant)
        _sign_head(runtime)


def _token(base_url: str, client: ApiMerchant) -> str:
    """An access token from the client-credentials grant, as a real client gets one."""
    response = httpx.post(f"{base_url}/oauth/token", data={"grant_type": "client_credentials"},
                          auth=(client.client_id, client.client_secret))
    response.raise_for_status()
    return str(response.json()["access_token"])


def _schemathesis(base_url: str, token: str, workdir: Path, name: str,
                  *options: str) -> dict[str, object]:
    """Run every phase against the live vault; fail with its output, else return its report."""
    report = workdir / f"{name}.json"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", str(SPEC),
         "--url", base_url, "--header", f"Authorization: Bearer {token}", "--checks", CHECKS,
         "--phases", PHASES, "--max-examples", os.environ.get("VAULT_FUZZ_EXAMPLES", "30"),
         "--seed", SEED, "--generation-deterministic", "--no-color",
         "--report", "json", "--report-json-path", str(report), *options],
        capture_output=True, text=True, timeout=600, cwd=workdir,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{name}:\n{output[-6000:]}"
    found: dict[str, object] = json.loads(report.read_text(encoding="utf-8"))
    return found


def _assert_stateful_ran(report: dict[str, object]) -> None:
    """The stateful phase followed links and passed: it was not skipped for want of them."""
    phases = report["phases"]
    assert isinstance(phases, dict)
    assert phases["stateful"] == {"status": "success", "skip_reason": None}, phases


@pytest.mark.slow
def test_the_api_survives_schemathesis(live_vault, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runtime = live_vault.runtime
    merchant = register_merchant(runtime, "Fuzz Shop")
    auditor = register_merchant(runtime, "Fuzz Auditors", kind="auditor")
    _subscribe_people(runtime, merchant)

    as_merchant = _schemathesis(live_vault.base_url, _token(live_vault.base_url, merchant),
                                tmp_path, "merchant")
    as_auditor = _schemathesis(live_vault.base_url, _token(live_vault.base_url, auditor),
                               tmp_path, "auditor", "--include-path-regex", AUDIT_OPERATIONS)

    _assert_stateful_ran(as_merchant)
    _assert_stateful_ran(as_auditor)
