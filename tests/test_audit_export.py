"""Exporting the consent log (API and CLI) and verifying the export offline."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from api_helpers import (
    API,
    ApiMerchant,
    Vault,
    assert_problem,
    register_merchant,
    revoke,
    rows,
    set_permission,
    subscribe,
    token_header,
)
from flask import Flask
from flask.testing import FlaskClient
from test_cli import Workspace, describe

from vault.audit.merkle import inclusion_proof, leaf_hash
from vault.audit.verify import verify_export
from vault.clock import FixedClock
from vault.extensions import Runtime
from vault.services.audit_export import inclusion_proofs

EXPORT = f"{API}/audit/events"
NDJSON = "application/x-ndjson"


@pytest.fixture
def vault(app: Flask, client: FlaskClient, runtime: Runtime, clock: FixedClock) -> Vault:
    return Vault(app, client, runtime, clock)


@pytest.fixture
def shops(vault: Vault) -> tuple[ApiMerchant, ApiMerchant]:
    """Two shops, sign-ups, grants, a permission change and a revocation, an hour apart."""
    rt = vault.runtime
    book, wine = register_merchant(rt, "Book Shop"), register_merchant(rt, "Wine Shop")
    first = subscribe(rt, book)
    vault.clock.advance(timedelta(hours=1))
    subscribe(rt, wine)
    second = subscribe(rt, book)
    set_permission(rt, second, "email", "offers", allowed=False)
    vault.clock.advance(timedelta(hours=1))
    revoke(rt, first)
    subscribe(rt, wine)
    return book, wine


def auditor_header(vault: Vault) -> dict[str, str]:
    return token_header(vault.client, register_merchant(vault.runtime, "Audit Co",
                                                        kind="auditor"))


def export(vault: Vault, headers: dict[str, str], **query: str) -> list[str]:
    response = vault.client.get(EXPORT, query_string=query, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == NDJSON
    assert response.is_streamed
    return response.get_data(as_text=True).splitlines()


def jwks(vault: Vault) -> dict[str, Any]:
    response = vault.client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.get_json()
    return document


def event_count(vault: Vault, where: str = "", **params: object) -> int:
    return int(rows(vault.runtime, f"SELECT count(*) AS n FROM audit_event {where}",
                    **params)[0]["n"])


def test_full_export_verifies_against_the_served_jwks(vault: Vault, shops: Any) -> None:
    headers = auditor_header(vault)
    lines = export(vault, headers)
    total = event_count(vault)
    assert total >= 10
    head = json.loads(lines[0])
    assert head["kind"] == "tree_head" and head["filtered"] is False
    assert head["tree_size"] == total
    assert head["kid"] == vault.runtime.keyring.signing_key.kid
    assert [json.loads(line)["index"] for line in lines[1:]] == list(range(total))
    result = verify_export(lines, jwks(vault))
    assert result.ok, result
    assert result.events == total


def test_export_of_one_merchant_verifies_on_its_own(vault: Vault,
                                                    shops: tuple[ApiMerchant, ApiMerchant]) -> None:
    book, _ = shops
    lines = export(vault, auditor_header(vault), merchant=book.client_id)
    head = json.loads(lines[0])
    assert head["filtered"] is True and head["tree_size"] == event_count(vault)
    events = [json.loads(line) for line in lines[1:]]
    expected = event_count(vault, "WHERE merchant_id = :m", m=book.id)
    assert len(events) == expected >= 4
    assert {e["leaf"]["merchant_id"] for e in events} == {book.id}
    assert all(e["proof"] for e in events)
    result = verify_export(lines, jwks(vault))
    assert result.ok, result
    assert result.events == expected


def test_export_by_time_holds_only_that_window(vault: Vault, shops: Any) -> None:
    since = (vault.clock.now() - timedelta(hours=1, minutes=30)).isoformat()
    until = (vault.clock.now() - timedelta(minutes=30)).isoformat()
    lines = export(vault, auditor_header(vault), since=since, until=until)
    events = [json.loads(line) for line in lines[1:]]
    middle = vault.clock.now() - timedelta(hours=1)
    stamp = middle.isoformat().replace("+00:00", "Z")
    assert events and {e["leaf"]["occurred_at"] for e in events} == {stamp}
    assert verify_export(lines, jwks(vault)).ok


def test_a_changed_byte_is_caught(vault: Vault, shops: Any) -> None:
    headers = auditor_header(vault)
    keys = jwks(vault)
    full = export(vault, headers)
    full[3] = full[3].replace('"actor":"', '"actor":"x', 1)
    result = verify_export(full, keys)
    assert not result.ok and "root mismatch" in (result.reason or "")

    book, _ = shops
    filtered = export(vault, headers, merchant=book.client_id)
    target = json.loads(filtered[2])
    filtered[2] = filtered[2].replace('"tag":"', '"tag":"x', 1)
    result = verify_export(filtered, keys)
    assert not result.ok and result.first_bad_index == target["index"]

    tampered_head = export(vault, headers)
    tampered_head[0] = tampered_head[0].replace('"tree_size":', '"tree_size":1', 1)
    assert not verify_export(tampered_head, keys).ok


def test_only_auditors_may_export(vault: Vault, shops: tuple[ApiMerchant, ApiMerchant]) -> None:
    book, _ = shops
    assert_problem(vault.client.get(EXPORT), 401)
    assert_problem(vault.client.get(EXPORT, headers=token_header(vault.client, book)), 403)


def test_bad_queries_are_problems(vault: Vault) -> None:
    headers = auditor_header(vault)
    assert_problem(vault.client.get(EXPORT, query_string={"merchant": "no-such-shop"},
                                    headers=headers), 404)
    assert_problem(vault.client.get(EXPORT, query_string={"since": "2026-01-01T00:00:00"},
                                    headers=headers), 422, field="since")
    assert_problem(vault.client.get(EXPORT, query_string={"format": "csv"},
                                    headers=headers), 422, field="format")


def test_an_empty_log_exports_and_verifies(vault: Vault) -> None:
    headers = auditor_header(vault)
    lines = export(vault, headers)
    assert json.loads(lines[0])["tree_size"] == event_count(vault)
    assert verify_export(lines, jwks(vault)).ok


def test_batched_proofs_match_the_reference() -> None:
    for size in range(1, 70):
        leaves = [leaf_hash(str(i).encode()) for i in range(size)]
        indices = list(range(size))
        assert inclusion_proofs(leaves, indices) == [inclusion_proof(leaves, i)
                                                     for i in indices], size


# -- the command line ------------------------------------------------------------------------


def test_cli_export_and_verify_round_trip(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    demo = workspace.run("demo", "--no-serve")
    assert demo.returncode == 0, describe(demo)
    export_path, jwks_path = workspace.root / "log.jsonl", workspace.root / "jwks.json"
    for args in (("audit", "export", "-o", str(export_path)),
                 ("keys", "jwks", "-o", str(jwks_path))):
        result = workspace.run(*args)
        assert result.returncode == 0, describe(result)
    lines = export_path.read_text(encoding="utf-8").splitlines()
    size = json.loads(lines[0])["tree_size"]
    assert size == len(lines) - 1 > 0

    ok = workspace.run("audit", "verify", str(export_path), "--jwks", str(jwks_path))
    assert ok.returncode == 0, describe(ok)
    assert ok.stdout.strip() == f"ok: {size} events, tree size {size}"

    one_shop = workspace.root / "shop.jsonl"
    result = workspace.run("audit", "export", "--merchant", "demo-shop",
                           "--since", "2000-01-01T00:00:00Z", "-o", str(one_shop))
    assert result.returncode == 0, describe(result)
    ok = workspace.run("audit", "verify", str(one_shop), "--jwks", str(jwks_path))
    assert ok.returncode == 0, describe(ok)
    assert ok.stdout.startswith("ok: ") and ok.stdout.strip().endswith(f"tree size {size}")

    shutil.copyfile(one_shop, tmp_path / "shop-tampered.jsonl")
    shop_lines = one_shop.read_text(encoding="utf-8").splitlines()
    index = json.loads(shop_lines[1])["index"]
    shop_lines[1] = shop_lines[1].replace('"actor":"', '"actor":"x', 1)
    (tmp_path / "shop-tampered.jsonl").write_text("\n".join(shop_lines) + "\n",
                                                  encoding="utf-8")
    bad = workspace.run("audit", "verify", str(tmp_path / "shop-tampered.jsonl"),
                        "--jwks", str(jwks_path))
    assert bad.returncode == 1, describe(bad)
    assert bad.stdout.strip().startswith(f"FAILED at leaf {index}: ")

    lines[1] = lines[1].replace('"actor":"', '"actor":"x', 1)
    export_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    bad = workspace.run("audit", "verify", str(export_path), "--jwks", str(jwks_path))
    assert bad.returncode == 1, describe(bad)
    assert "FAILED" in bad.stdout and "Traceback" not in bad.stderr

    missing = workspace.run("audit", "verify", str(tmp_path / "nope.jsonl"),
                            "--jwks", str(jwks_path))
    assert missing.returncode == 2, describe(missing)
    assert len(missing.stderr.strip().splitlines()) == 1
    unknown = workspace.run("audit", "export", "--merchant", "no-such-shop")
    assert unknown.returncode == 2, describe(unknown)
    assert len(unknown.stderr.strip().splitlines()) == 1
