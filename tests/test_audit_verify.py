"""Offline verification of consent-log exports: signed heads, tampering, filtered exports."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from vault.audit.merkle import consistency_proof, inclusion_proof, leaf_hash, root
from vault.audit.tree_head import (
    TreeHead,
    TreeHeadError,
    public_jwk,
    sign_tree_head,
    verify_tree_head,
)
from vault.audit.verify import (
    canonical_json,
    leaf_bytes,
    verify_consistency_between,
    verify_export,
)
from vault.services.audit import AuditTag
from vault.services.audit import canonical_json as service_canonical_json

KID = "sig-20250101-deadbeef"
TIMESTAMP = 1_735_689_600_000
_KEY = Ed25519PrivateKey.generate()
_OTHER_KEY = Ed25519PrivateKey.generate()
JWKS: dict[str, Any] = {"keys": [public_jwk(_OTHER_KEY, "sig-other"), public_jwk(_KEY, KID)]}

# -- building exports, the way the vault will ------------------------------------------------


def make_documents(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """Event documents shaped like ``event_document``, with some non-ASCII text."""
    rng = random.Random(seed)
    tags = [str(tag) for tag in AuditTag]
    return [
        {
            "seq": i + 1,
            "id": f"{rng.getrandbits(64):016x}",
            "occurred_at": f"2025-01-{1 + i % 28:02d}T10:{i % 60:02d}:00Z",
            "tag": rng.choice(tags),
            "actor": rng.choice(["person", "merchant:m_1", "operator", "système"]),
            "person_ref": f"p_{rng.getrandbits(32):08x}",
            "merchant_id": rng.choice([None, "m_1", "m_2"]),
            "subject": f"sub_{rng.getrandbits(40):010x}",
            "data": {"channel": rng.choice(["email", "sms", "post"]), "n": i,
                     "note": rng.choice(["", "naïve café ✓", "a\"b\\c"])},
        }
        for i in range(n)
    ]


def leaf_hashes(docs: Sequence[dict[str, Any]]) -> list[bytes]:
    return [leaf_hash(leaf_bytes(d)) for d in docs]


def head_for(docs: Sequence[dict[str, Any]], key: Ed25519PrivateKey = _KEY,
             kid: str = KID) -> TreeHead:
    return sign_tree_head(len(docs), root(leaf_hashes(docs)), TIMESTAMP, key, kid)


def head_line(head: TreeHead, *, filtered: bool) -> str:
    return json.dumps({"kind": "tree_head", "filtered": filtered, **head.to_json()})


def event_line(index: int, doc: dict[str, Any], proof: Sequence[bytes] | None = None) -> str:
    record: dict[str, Any] = {"kind": "event", "index": index, "leaf": doc}
    if proof is not None:
        record["proof"] = [p.hex() for p in proof]
    return json.dumps(record, ensure_ascii=False)


def full_export(docs: Sequence[dict[str, Any]], head: TreeHead | None = None) -> list[str]:
    head = head or head_for(docs)
    return [head_line(head, filtered=False)] + [event_line(i, d) for i, d in enumerate(docs)]


def filtered_export(docs: Sequence[dict[str, Any]], indices: Sequence[int]) -> list[str]:
    hashes = leaf_hashes(docs)
    lines = [head_line(head_for(docs), filtered=True)]
    lines += [event_line(i, docs[i], inclusion_proof(hashes, i)) for i in indices]
    return lines


DOCS = make_documents(37)


# -- the happy path ------------------------------------------------------------------------


def test_canonical_form_is_the_vaults() -> None:
    for doc in DOCS:
        assert canonical_json(doc) == service_canonical_json(doc)
        assert leaf_bytes(doc) == service_canonical_json(doc).encode("utf-8")


def test_full_export_verifies() -> None:
    result = verify_export(full_export(DOCS), JWKS)
    assert result.ok, result
    assert (result.events, result.first_bad_index, result.reason) == (37, None, None)


def test_full_export_verifies_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join(full_export(DOCS)) + "\n", encoding="utf-8")
    with path.open(encoding="utf-8") as handle:
        result = verify_export(handle, JWKS)
    assert result.ok and result.events == 37


def test_empty_log_verifies() -> None:
    assert verify_export(full_export([]), JWKS).ok


def test_tree_head_round_trips_through_json() -> None:
    head = head_for(DOCS)
    assert TreeHead.from_json(head.to_json()) == head
    assert TreeHead.from_json(json.dumps(head.to_json())) == head
    assert verify_tree_head(head, JWKS)
    with pytest.raises(TreeHeadError):
        TreeHead.from_json({**head.to_json(), "root_hash": "zz" * 32})
    with pytest.raises(TreeHeadError):
        TreeHead.from_json({**head.to_json(), "tree_size": -1})
    with pytest.raises(TreeHeadError):
        TreeHead.from_json({k: v for k, v in head.to_json().items() if k != "kid"})


def test_tree_head_needs_a_matching_ed25519_key() -> None:
    head = head_for(DOCS)
    jwk = public_jwk(_KEY, KID)
    assert verify_tree_head(head, {"keys": [{**jwk, "alg": "EdDSA"}]})
    assert not verify_tree_head(head, {"keys": [{**jwk, "kid": "another"}]})
    assert not verify_tree_head(head, {"keys": [{**jwk, "alg": "ES256"}]})
    assert not verify_tree_head(head, {"keys": [{**jwk, "crv": "X25519"}]})
    assert not verify_tree_head(head, {"keys": [{**jwk, "x": "not base64!"}]})
    assert not verify_tree_head(head, {"keys": "nope"})
    assert not verify_tree_head(head, {})


# -- tampering with a full export ------------------------------------------------------------


def _check(result: Any, index: int | None, reason_part: str) -> None:
    assert not result.ok
    assert result.first_bad_index == index, result
    assert reason_part in (result.reason or ""), result


def test_flipped_byte_in_leaf_text_breaks_the_root() -> None:
    lines = full_export(DOCS)
    line = lines[1 + 20]
    at = line.index('"subject": "sub_') + len('"subject": "sub_')
    lines[1 + 20] = line[:at] + chr(ord(line[at]) ^ 1) + line[at + 1 :]
    # Still valid JSON with the right seq: only the root can tell, not which leaf.
    _check(verify_export(lines, JWKS), None, "root mismatch")


def test_flipped_byte_in_seq_names_the_leaf() -> None:
    lines = full_export(DOCS)
    lines[1 + 20] = lines[1 + 20].replace('"seq": 21', '"seq": 31')
    _check(verify_export(lines, JWKS), 20, "seq 31 does not match index 20")


def test_flipped_byte_breaking_json_names_the_leaf() -> None:
    lines = full_export(DOCS)
    lines[1 + 5] = lines[1 + 5].replace('"leaf": {', '"leaf": [', 1)
    _check(verify_export(lines, JWKS), 5, "not valid JSON")


def test_deleted_leaf_is_named() -> None:
    lines = full_export(DOCS)
    del lines[1 + 12]
    _check(verify_export(lines, JWKS), 12, "index out of order: expected 12, found 13")


def test_deleted_and_renumbered_leaf_is_caught_by_seq() -> None:
    docs = DOCS[:12] + DOCS[13:]
    lines = full_export(DOCS)[:1] + [event_line(i, d) for i, d in enumerate(docs)]
    _check(verify_export(lines, JWKS), 12, "seq 14 does not match index 12")


def test_swapped_lines_are_named() -> None:
    lines = full_export(DOCS)
    lines[1 + 3], lines[1 + 30] = lines[1 + 30], lines[1 + 3]
    _check(verify_export(lines, JWKS), 3, "index out of order: expected 3, found 30")


def test_swapped_leaves_with_renumbered_indices_are_named() -> None:
    docs = list(DOCS)
    docs[3], docs[30] = docs[30], docs[3]
    lines = full_export(DOCS)[:1] + [event_line(i, d) for i, d in enumerate(docs)]
    _check(verify_export(lines, JWKS), 3, "seq 31 does not match index 3")


def test_swapped_leaves_with_rewritten_seq_break_the_root() -> None:
    docs = [dict(d) for d in DOCS]
    docs[3], docs[30] = {**docs[30], "seq": 4}, {**docs[3], "seq": 31}
    lines = full_export(DOCS)[:1] + [event_line(i, d) for i, d in enumerate(docs)]
    _check(verify_export(lines, JWKS), None, "root mismatch")


def test_inserted_forged_leaf_is_caught() -> None:
    forged = {**DOCS[9], "tag": "subscription:grant:approved", "id": "f" * 16}
    lines = full_export(DOCS)
    lines.insert(1 + 9, event_line(9, forged))
    # The forgery and the genuine leaf both claim index 9; the second is the first that
    # cannot be in the signed tree.
    _check(verify_export(lines, JWKS), 10, "index out of order: expected 10, found 9")


def test_inserted_forged_leaf_with_everything_renumbered_is_caught() -> None:
    forged = {**DOCS[9], "id": "f" * 16}
    docs = [*DOCS[:9], forged, *({**d, "seq": d["seq"] + 1} for d in DOCS[9:])]
    lines = full_export(DOCS)[:1] + [event_line(i, d) for i, d in enumerate(docs)]
    _check(verify_export(lines, JWKS), 37, "extra leaves: tree has 37")


def test_truncated_tail_is_caught() -> None:
    lines = full_export(DOCS)[:-4]
    _check(verify_export(lines, JWKS), 33, "missing leaves: tree has 37, export has 33")


def test_line_cut_in_half_is_named() -> None:
    lines = full_export(DOCS)
    lines[-1] = lines[-1][: len(lines[-1]) // 2]
    _check(verify_export(lines, JWKS), 36, "not valid JSON")


def test_head_resigned_by_another_key_is_rejected() -> None:
    stranger = Ed25519PrivateKey.generate()
    lines = full_export(DOCS, head_for(DOCS, key=stranger))
    _check(verify_export(lines, JWKS), None, "tree head signature invalid")


def test_head_with_changed_root_is_rejected() -> None:
    head = head_for(DOCS)
    forged = TreeHead(head.tree_size, root(leaf_hashes(DOCS[:-1])), head.timestamp,
                      head.signature, head.kid)
    _check(verify_export(full_export(DOCS, forged), JWKS), None, "tree head signature invalid")


def test_head_with_changed_size_is_rejected() -> None:
    head = head_for(DOCS)
    forged = TreeHead(36, head.root_hash, head.timestamp, head.signature, head.kid)
    _check(verify_export(full_export(DOCS[:36], forged), JWKS), None,
           "tree head signature invalid")


def test_head_from_a_consistent_shorter_log_does_not_cover_more_leaves() -> None:
    lines = full_export(DOCS, head_for(DOCS[:30]))
    _check(verify_export(lines, JWKS), 30, "extra leaves: tree has 30")


def test_malformed_exports_are_rejected_without_crashing() -> None:
    good = full_export(DOCS[:3])
    _check(verify_export([], JWKS), None, "export is empty")
    _check(verify_export(good[1:], JWKS), None, "first line is not a tree_head")
    no_flag = json.dumps({"kind": "tree_head", **head_for(DOCS[:3]).to_json()})
    _check(verify_export([no_flag, *good[1:]], JWKS), None, "boolean 'filtered'")
    dup = good[2].replace('"leaf": {', '"leaf": {"seq": 2, ', 1)
    _check(verify_export([*good[:2], dup, good[3]], JWKS), 1, "duplicate key 'seq'")
    nan = good[2].replace('"n": 1', '"n": NaN', 1)
    _check(verify_export([*good[:2], nan, good[3]], JWKS), 1, "NaN")
    extra = good[2].replace('"kind": "event"', '"kind": "event", "proof": []', 1)
    _check(verify_export([*good[:2], extra, good[3]], JWKS), 1, "unexpected fields")
    bool_index = good[2].replace('"index": 1', '"index": true', 1)
    _check(verify_export([*good[:2], bool_index, good[3]], JWKS), 1, "index must be")


@settings(max_examples=25, derandomize=True, deadline=None)
@given(n=st.integers(1, 40), data=st.data())
def test_any_deleted_leaf_is_named(n: int, data: st.DataObject) -> None:
    lines = full_export(DOCS[:n])
    k = data.draw(st.integers(0, n - 1), label="deleted")
    del lines[1 + k]
    result = verify_export(lines, JWKS)
    assert not result.ok and result.first_bad_index == k


# -- filtered exports ------------------------------------------------------------------------

SUBSET = [0, 4, 5, 17, 31, 36]


def test_filtered_export_verifies_on_its_own() -> None:
    result = verify_export(filtered_export(DOCS, SUBSET), JWKS)
    assert result.ok and result.events == len(SUBSET)


def test_filtered_export_with_an_altered_leaf_names_it() -> None:
    lines = filtered_export(DOCS, SUBSET)
    lines[4] = lines[4].replace('"channel": "', '"channel": "x', 1)
    _check(verify_export(lines, JWKS), 17, "leaf hash does not match inclusion proof")


def test_filtered_export_with_a_moved_leaf_fails() -> None:
    hashes = leaf_hashes(DOCS)
    lines = filtered_export(DOCS, SUBSET)
    # Claim leaf 17 is at index 18, with 18's proof.
    moved = {**DOCS[17], "seq": 19}
    lines[4] = event_line(18, moved, inclusion_proof(hashes, 18))
    _check(verify_export(lines, JWKS), 18, "leaf hash does not match inclusion proof")


def test_filtered_export_checks_order_and_range() -> None:
    lines = filtered_export(DOCS, SUBSET)
    lines[2], lines[3] = lines[3], lines[2]
    _check(verify_export(lines, JWKS), 4, "index out of order: 4 after 5")
    hashes = leaf_hashes(DOCS)
    beyond = event_line(37, {**DOCS[0], "seq": 38}, inclusion_proof(hashes, 36))
    _check(verify_export([*filtered_export(DOCS, SUBSET), beyond], JWKS), 37, "outside a tree")
    no_proof = [*filtered_export(DOCS, SUBSET)[:2], event_line(4, DOCS[4])]
    _check(verify_export(no_proof, JWKS), 4, "proof must be a list")


def test_filtered_export_with_forged_head_fails() -> None:
    lines = filtered_export(DOCS, SUBSET)
    lines[0] = head_line(head_for(DOCS, key=Ed25519PrivateKey.generate()), filtered=True)
    _check(verify_export(lines, JWKS), None, "tree head signature invalid")


# -- consistency between two exports ---------------------------------------------------------


def test_consistency_between_heads_verifies() -> None:
    hashes = leaf_hashes(DOCS)
    for m in (1, 8, 20, 36, 37):
        proof = consistency_proof(hashes, m)
        result = verify_consistency_between(head_for(DOCS[:m]), head_for(DOCS), proof, JWKS)
        assert result.ok, (m, result)
        hex_proof = [p.hex() for p in proof]
        assert verify_consistency_between(head_for(DOCS[:m]), head_for(DOCS), hex_proof,
                                          JWKS).ok


def test_consistency_fails_when_history_was_rewritten() -> None:
    old_head = head_for(DOCS[:20])
    rewritten = [dict(d) for d in DOCS]
    rewritten[11] = {**rewritten[11], "tag": str(AuditTag.SUBSCRIPTION_REVOKED), "actor": "x"}
    new_head = head_for(rewritten)  # honestly signed, but over a different past
    proof = consistency_proof(leaf_hashes(rewritten), 20)
    result = verify_consistency_between(old_head, new_head, proof, JWKS)
    assert not result.ok and "history rewritten" in (result.reason or "")


def test_consistency_needs_signed_heads_in_order() -> None:
    hashes = leaf_hashes(DOCS)
    proof = consistency_proof(hashes, 20)
    stranger = Ed25519PrivateKey.generate()
    bad_old = verify_consistency_between(head_for(DOCS[:20], key=stranger), head_for(DOCS),
                                         proof, JWKS)
    assert not bad_old.ok and bad_old.reason == "old tree head signature invalid"
    bad_new = verify_consistency_between(head_for(DOCS[:20]), head_for(DOCS, key=stranger),
                                         proof, JWKS)
    assert not bad_new.ok and bad_new.reason == "new tree head signature invalid"
    backwards = verify_consistency_between(head_for(DOCS), head_for(DOCS[:20]), proof, JWKS)
    assert not backwards.ok
    garbage = verify_consistency_between(head_for(DOCS[:20]), head_for(DOCS), ["zz"], JWKS)
    assert not garbage.ok
