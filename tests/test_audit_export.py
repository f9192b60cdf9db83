"""Exporting the consent log (API and CLI) as JSON Lines or CSV, and verifying it offline."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import shutil
import subprocess
import threading
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
from prefvault_sdk.audit.export_csv import CSV_COLUMNS
from test_cli import PREFVAULT, RUN_TIMEOUT, Workspace, describe

from vault.audit.verify import verify_export
from vault.clock import FixedClock
from vault.extensions import Runtime
from vault.services.audit import AuditTag, record_event

EXPORT = f"{API}/audit/events"
NDJSON = "application/x-ndjson"
BOM = "\ufeff"


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
    assert_problem(vault.client.get(EXPORT, query_string={"format": "xml"},
                                    headers=headers), 422, field="format")


def test_an_empty_log_exports_and_verifies(vault: Vault) -> None:
    headers = auditor_header(vault)
    lines = export(vault, headers)
    assert json.loads(lines[0])["tree_size"] == event_count(vault)
    assert verify_export(lines, jwks(vault)).ok


# -- CSV ----------------------------------------------------------------------------------------


def export_csv(vault: Vault, headers: dict[str, str], **query: str) -> list[str]:
    response = vault.client.get(EXPORT, query_string={**query, "format": "csv"},
                                headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/csv" and response.is_streamed
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    text = response.get_data(as_text=True)
    assert text.startswith(BOM) and "\r\n" in text
    return text.splitlines(keepends=True)


def sheet(lines: list[str]) -> list[dict[str, str]]:
    """The rows as a spreadsheet shows them, by column name."""
    reader = csv.reader([lines[0].removeprefix(BOM), *lines[1:]])
    header = next(reader)
    assert tuple(header) == CSV_COLUMNS
    return [dict(zip(header, row, strict=True)) for row in reader]


def edit_cell(lines: list[str], row: int, column: str, value: str) -> list[str]:
    """``lines`` with one cell of line ``row`` set (0 is the header, 1 the tree head)."""
    cells = next(csv.reader([lines[row]]))
    cells[CSV_COLUMNS.index(column)] = value
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return [*lines[:row], buffer.getvalue(), *lines[row + 1:]]


def test_csv_export_reads_as_a_sheet_and_verifies_like_json_lines(vault: Vault,
                                                                 shops: Any) -> None:
    headers = auditor_header(vault)
    lines = export_csv(vault, headers)
    table = sheet(lines)
    total = event_count(vault)
    assert [row["kind"] for row in table] == ["tree_head"] + ["event"] * total
    head = json.loads(table[0]["json"])
    jsonl = export(vault, headers)
    assert head == {**json.loads(jsonl[0])}  # one stored head behind both forms
    for row, line in zip(table[1:], jsonl[1:], strict=True):
        leaf = json.loads(line)["leaf"]
        assert json.loads(row["json"]) == leaf
        assert (row["index"], row["seq"], row["tag"], row["subject"]) == (
            str(leaf["seq"] - 1), str(leaf["seq"]), leaf["tag"], leaf["subject"] or "")
        assert json.loads(row["data"]) == leaf["data"] and row["proof"] == ""
    result = verify_export(lines, jwks(vault))
    assert result.ok and result.events == total and result.tree_size == total


def test_filtered_csv_carries_proofs_and_names_a_tampered_row(
        vault: Vault, shops: tuple[ApiMerchant, ApiMerchant]) -> None:
    book, _ = shops
    headers = auditor_header(vault)
    lines = export_csv(vault, headers, merchant=book.client_id)
    table = sheet(lines)
    assert all(row["proof"] for row in table[1:])
    assert verify_export(lines, jwks(vault)).ok

    third = int(table[3]["index"])
    relabelled = edit_cell(lines, 4, "tag", "subscription:grant:approved"
                           if table[3]["tag"] != "subscription:grant:approved" else "x")
    result = verify_export(relabelled, jwks(vault))
    assert not result.ok and result.first_bad_index == third
    assert "column 'tag' does not match the leaf" in (result.reason or "")

    leaf = json.loads(table[3]["json"])
    forged = edit_cell(edit_cell(lines, 4, "json", json.dumps({**leaf, "actor": "operator"})),
                       4, "actor", "operator")
    result = verify_export(forged, jwks(vault))
    assert not result.ok and result.first_bad_index == third


def test_malformed_csv_is_refused_without_crashing(vault: Vault, shops: Any) -> None:
    lines = export_csv(vault, auditor_header(vault))
    keys = jwks(vault)

    def refused(changed: list[str], index: int | None, reason: str) -> None:
        result = verify_export(changed, keys)
        assert not result.ok and result.first_bad_index == index, result
        assert reason in (result.reason or ""), result

    refused([lines[0].replace("kind,index", "kind,position"), *lines[1:]], None,
            "the CSV header is not")
    refused([lines[0], *lines[2:]], None, "first row is not a tree_head")
    refused([*lines[:3], lines[3].rstrip("\r\n") + ",extra\r\n", *lines[4:]], 1,
            "14 columns, expected 13")
    refused(edit_cell(lines, 3, "index", "1e0"), 1, "index must be a non-negative integer")
    refused(edit_cell(lines, 3, "proof", "00" * 32), 1, "unexpected fields ['proof']")
    refused(edit_cell(lines, 3, "leaf_hash", "00" * 32), 1, "column 'leaf_hash'")
    refused(edit_cell(lines, 3, "json", "{not json"), 1, "not valid JSON")
    refused([*lines[:3], '"event,"1\r\n', *lines[4:]], 1, "")
    refused(edit_cell(lines, 1, "json", "{}"), None, "tree head malformed")


def test_csv_cells_never_run_as_formulas_and_still_verify(vault: Vault) -> None:
    rt = vault.runtime
    with rt.database.write() as session:
        for actor in ("=HYPERLINK(\"http://evil.example\")", "+1", "-1", "@SUM(A1)", "'quoted"):
            record_event(session, clock=rt.clock, tag=AuditTag.KEK_ROTATED, actor=actor,
                         data={"note": "=2+2"})
    lines = export_csv(vault, auditor_header(vault))
    cells = [cell for row in csv.reader(lines[1:]) for cell in row]
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells)
    assert "'=HYPERLINK(\"http://evil.example\")" in cells and "''quoted" in cells
    assert verify_export(lines, jwks(vault)).ok


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


def read_sheet(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return handle.readlines()


def run_on_a_terminal(workspace: Workspace, *args: str) -> tuple[int, str]:
    """Run ``prefvault`` with stderr on a pseudo-terminal; its status and what it showed there."""
    controller, terminal = pty.openpty()
    shown: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        result = subprocess.run([*PREFVAULT, *args], cwd=workspace.root, env=workspace.env(),
                                stdout=subprocess.PIPE, stderr=terminal,
                                timeout=RUN_TIMEOUT, check=False)
    finally:
        os.close(terminal)
    reader.join(timeout=10)
    os.close(controller)
    return result.returncode, b"".join(shown).decode("utf-8", "replace")


def test_cli_csv_export_verifies_and_shows_progress_only_on_a_terminal(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    assert workspace.run("demo", "--no-serve").returncode == 0
    sheet_path, jwks_path = workspace.root / "log.csv", workspace.root / "jwks.json"
    assert workspace.run("keys", "jwks", "-o", str(jwks_path)).returncode == 0

    quiet = workspace.run("audit", "export", "--format", "csv", "-o", str(sheet_path))
    assert quiet.returncode == 0, describe(quiet)
    assert quiet.stderr == "" and quiet.stdout == ""  # no terminal, no progress bar
    lines = read_sheet(sheet_path)
    size = json.loads(sheet(lines)[0]["json"])["tree_size"]
    ok = workspace.run("audit", "verify", str(sheet_path), "--jwks", str(jwks_path))
    assert ok.returncode == 0, describe(ok)
    assert ok.stdout.strip() == f"ok: {size} events, tree size {size}"

    sheet_path.write_text("".join(edit_cell(lines, 4, "tag", "forged")), encoding="utf-8",
                          newline="")
    bad = workspace.run("audit", "verify", str(sheet_path), "--jwks", str(jwks_path))
    assert bad.returncode == 1, describe(bad)
    assert bad.stdout.startswith("FAILED at leaf 2: ") and "Traceback" not in bad.stderr

    status, shown = run_on_a_terminal(workspace, "audit", "export", "--format", "csv",
                                      "-o", str(sheet_path))
    assert status == 0, shown
    assert "exporting" in shown and "100%" in shown
    assert verify_export(read_sheet(sheet_path),
                         json.loads(jwks_path.read_text(encoding="utf-8"))).ok
