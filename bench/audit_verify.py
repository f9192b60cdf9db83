"""Benchmark of the offline consent-log verifier; prints its figures.

    python bench/audit_verify.py [--events 1000000] [--trace]

Writes a full export of N synthetic event documents (a signed tree head, then
one JSON line per event) to a temporary folder, then runs ``verify_export``
over the file in a fresh interpreter, printing the wall-clock time and that
process's peak RSS (which should stay flat whatever N is: the verifier
streams, keeping O(log N) subtree hashes). ``--trace`` adds a second run under
tracemalloc for the peak Python heap (several times slower). Not part of the
test suite.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vault.audit.merkle import TreeBuilder, leaf_hash
from vault.audit.tree_head import public_jwk, sign_tree_head
from vault.audit.verify import VerifyResult, leaf_bytes, verify_export

KID = "sig-bench"
TAGS = [
    "subscription:grant:approved",
    "subscription:grant:revoked",
    "subscription:permission:changed",
    "contact:report:allowed",
    "person:rules:updated",
]


def document(n: int, rng: random.Random) -> dict[str, object]:
    """One synthetic event shaped like ``vault.services.audit.event_document``."""
    return {
        "seq": n,
        "id": f"{rng.getrandbits(64):016x}",
        "occurred_at": f"2025-{1 + n % 12:02d}-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00Z",
        "tag": rng.choice(TAGS),
        "actor": rng.choice(["person", "merchant:m_1", "operator"]),
        "person_ref": f"p_{rng.getrandbits(48):012x}",
        "merchant_id": rng.choice([None, "m_1", "m_2", "m_3"]),
        "subject": f"sub_{rng.getrandbits(64):016x}",
        "data": {"channel": rng.choice(["email", "sms", "post"]),
                 "purpose": rng.choice(["marketing", "service"]), "n": n},
    }


def write_export(path: Path, events: int, key: Ed25519PrivateKey) -> None:
    """Stream the events to a body file while hashing, then prepend the signed head."""
    rng = random.Random(1234)
    builder = TreeBuilder()
    body = path.with_suffix(".body")
    with body.open("w", encoding="utf-8") as out:
        for index in range(events):
            doc = document(index + 1, rng)
            builder.append(leaf_hash(leaf_bytes(doc)))
            out.write(json.dumps({"kind": "event", "index": index, "leaf": doc},
                                 ensure_ascii=False))
            out.write("\n")
    head = sign_tree_head(events, builder.root(), int(time.time() * 1000), key, KID)
    with path.open("w", encoding="utf-8") as out, body.open(encoding="utf-8") as src:
        out.write(json.dumps({"kind": "tree_head", "filtered": False, **head.to_json()}) + "\n")
        shutil.copyfileobj(src, out, 1 << 20)
    body.unlink()


def run_verify(path: Path, jwks: dict[str, object]) -> tuple[VerifyResult, float]:
    start = time.perf_counter()
    with path.open(encoding="utf-8") as handle:
        result = verify_export(handle, jwks)
    return result, time.perf_counter() - start


def _rss_mib() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def verify_child(path: Path, jwks_path: Path, events: int, trace: bool) -> None:
    """Runs in a fresh interpreter so its peak RSS is the verifier's own."""
    jwks = json.loads(jwks_path.read_text(encoding="utf-8"))
    baseline = _rss_mib()
    result, seconds = run_verify(path, jwks)
    if not result.ok or result.events != events:
        sys.exit(f"verification failed: {result}")
    size_mb = path.stat().st_size / 1e6
    rate = events / seconds if seconds else float("inf")
    print(f"verify_export: {seconds:.2f} s ({rate:,.0f} events/s, {size_mb / seconds:.1f} MB/s)")
    print(f"verifier peak RSS: {_rss_mib():,.1f} MiB (after imports: {baseline:,.1f} MiB)")
    if trace:
        tracemalloc.start()
        traced, traced_seconds = run_verify(path, jwks)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert traced.ok
        print(f"verify_export peak Python heap (tracemalloc): {peak / 1024:,.0f} KiB "
              f"(traced run {traced_seconds:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--trace", action="store_true",
                        help="also run once under tracemalloc (several times slower)")
    parser.add_argument("--verify-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--jwks", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.verify_file:
        verify_child(args.verify_file, args.jwks, args.events, args.trace)
        return

    key = Ed25519PrivateKey.generate()
    with tempfile.TemporaryDirectory(prefix="prefvault-bench-") as folder:
        path = Path(folder) / "export.jsonl"
        jwks_path = Path(folder) / "jwks.json"
        jwks_path.write_text(json.dumps({"keys": [public_jwk(key, KID)]}), encoding="utf-8")
        start = time.perf_counter()
        write_export(path, args.events, key)
        built = time.perf_counter() - start
        size_mb = path.stat().st_size / 1e6
        print(f"export: {args.events:,} events, {size_mb:,.1f} MB, written in {built:.1f} s")
        command = [sys.executable, str(Path(__file__).resolve()), "--events", str(args.events),
                   "--verify-file", str(path), "--jwks", str(jwks_path)]
        if args.trace:
            command.append("--trace")
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
