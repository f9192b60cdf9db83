"""Benchmark of the decision API on this machine; prints its figures.

    python bench/decisions.py [--people 100000] [--seconds 10] [--backend sqlite|postgresql|both]
                              [--only campaign]

(a) single decisions over HTTP against gunicorn with 8 concurrent
connections, beside a trivial JSON endpoint (``/health``) in the same run,
printed as a ratio; then a fixed arrival rate at 70 % of the measured peak
for the p99 under load. (b) a 100,000-subject campaign as 10 batch calls of
10,000, end to end, beside a bare indexed scan of the same subscription rows
in the same run, printed as a ratio. Not part of the test suite: machine noise
makes absolute numbers move; compare ratios and medians.

Beside the wall-clock figures it prints the CPU time the server side
(gunicorn's master and workers, and PostgreSQL's backends serving the bench
database) and this client spent per request. Other work on the machine moves
those far less than throughput, so on a busy machine they say more about
what a change did.

The scan reads the subscriptions of the campaign's subjects through the
subject index, as the campaign does (``CROSS JOIN`` keeps SQLite, which has
no statistics, from walking the merchant index instead); the scan by
merchant is printed too, as the earlier baseline. PostgreSQL is analysed
after seeding, as autovacuum would have done on a server that has it on.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg
from sqlalchemy import any_, bindparam, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import JSON

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import PG_ADMIN, open_loop, percentile, seeded_vault, served
from bench.seed import random_unknown_subjects
from vault.db import Database
from vault.models import Subscription

BATCH = 10_000


def closed_loop(url: str, make_request, seconds: float, concurrency: int = 8):  # type: ignore[no-untyped-def]
    """As fast as 8 connections go: (requests/s, latencies in ms, errors)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        local: list[float] = []
        with httpx.Client(base_url=url, timeout=10) as client:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = make_request(client)
                local.append((time.perf_counter() - started) * 1000)
                if response.status_code >= 400:
                    errors[0] += 1
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    begun = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.perf_counter() - begun), latencies, errors[0]


def bare_scan_seconds(database: Database, merchant_id: str, chunks: list[list[str]],
                      *, by: str = "subject") -> float:
    """The same rows a campaign reads, doing nothing with them.

    ``by="subject"``: each subject looked up by the subject index, as the
    campaign reads them; ``by="merchant"``: the merchant's rows filtered by
    the subject list (on SQLite that walks the merchant index, the earlier
    baseline).
    """
    s = Subscription.__table__  # type: ignore[attr-defined]
    started = time.perf_counter()
    with database.read_engine.connect() as conn:
        for chunk in chunks:
            if by == "subject" and conn.dialect.name == "sqlite":
                list(conn.exec_driver_sql(
                    "SELECT s.id, s.subject, s.status FROM json_each(?) AS wanted "
                    "CROSS JOIN subscription s ON s.subject = wanted.value "
                    "WHERE s.merchant_id = ?", (json.dumps(chunk), merchant_id)))
                continue
            query = select(s.c.id, s.c.subject, s.c.status).where(s.c.merchant_id == merchant_id)
            if conn.dialect.name == "postgresql":
                query = query.where(s.c.subject == any_(
                    bindparam("subjects", type_=postgresql.ARRAY(s.c.subject.type))))
            else:
                query = query.where(s.c.subject.in_(select(text("value")).select_from(
                    text("json_each(:subjects)").bindparams(bindparam("subjects", type_=JSON)))))
            list(conn.execute(query, {"subjects": chunk}))
    return time.perf_counter() - started


_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User and system CPU time of each of these processes that is still running."""
    seconds: dict[int, float] = {}
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[each] = (int(fields[11]) + int(fields[12])) / _TICK
    return seconds


def server_pids(gunicorn: int, database: str | None) -> list[int]:
    """gunicorn's master and workers and, on PostgreSQL, the backends serving the database."""
    pids = [gunicorn]
    with contextlib.suppress(OSError):
        pids += [int(child) for child in
                 Path(f"/proc/{gunicorn}/task/{gunicorn}/children").read_text().split()]
    if database is not None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            pids += [row[0] for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))]
    return pids


def with_cpu(gunicorn: int, database: str | None, measure, *args, **kwargs):  # type: ignore[no-untyped-def]
    """``measure(*args)`` and the CPU seconds the server side (``server_pids``) and this
    process spent meanwhile."""
    before, client_before = process_cpu_seconds(server_pids(gunicorn, database)), \
        time.process_time()
    result = measure(*args, **kwargs)
    after = process_cpu_seconds(sorted(set(before) | set(server_pids(gunicorn, database))))
    server = sum(spent - before.get(pid, 0.0) for pid, spent in after.items())
    return result, server, time.process_time() - client_before


def throughput(url: str, gunicorn: int, database: str | None, ask, trivial,  # type: ignore[no-untyped-def]
               seconds: float) -> dict[str, float]:
    """Single decisions beside ``/health``, closed loop, then open loop at 70 % of the peak."""
    closed_loop(url, ask, 1.0)  # warm up caches and connections
    (trivial_rps, trivial_lat, _), trivial_server, trivial_client = with_cpu(
        gunicorn, database, closed_loop, url, trivial, seconds)
    (rps, lat, errors), decision_server, decision_client = with_cpu(
        gunicorn, database, closed_loop, url, ask, seconds)
    answered, _ = open_loop(url, int(0.7 * rps * seconds), 0.7 * rps,
                            lambda client, _: ask(client).status_code)
    loaded = [latency for latency, _ in answered]
    return {
        "trivial_server_us": trivial_server / len(trivial_lat) * 1e6,
        "trivial_client_us": trivial_client / len(trivial_lat) * 1e6,
        "decision_server_us": decision_server / len(lat) * 1e6,
        "decision_client_us": decision_client / len(lat) * 1e6,
        "trivial_rps": trivial_rps, "trivial_p50": statistics.median(trivial_lat),
        "decision_rps": rps, "decision_p50": statistics.median(lat),
        "decision_p99": percentile(lat, 0.99), "errors": errors,
        "rate_70": 0.7 * rps, "p99_at_70": percentile(loaded, 0.99),
        "p50_at_70": statistics.median(loaded),
    }


def run(kind: str, people: int, seconds: float, *, http: bool = True, workers: int = 2,
        threads: int = 8) -> dict[str, float]:
    """Seed a fresh database of ``kind`` and measure; ``http=False`` measures the campaign
    and its scans only."""
    with seeded_vault(kind, people) as vault, served(vault, workers=workers,
                                                     threads=threads) as server:
        auth = server.token(vault.client_id, vault.client_secret)
        subjects = vault.subjects

        def ask(client: httpx.Client) -> httpx.Response:
            return client.post("/api/v1/decisions", headers=auth, json={
                "subject": random.choice(subjects), "channel": "email",
                "purpose": "order_updates"})

        def trivial(client: httpx.Client) -> httpx.Response:
            return client.get("/health")

        figures: dict[str, float] = {}
        if http:
            figures = throughput(server.url, server.process.pid, vault.backend.name, ask,
                                 trivial, seconds)

        pool = subjects[:10 * BATCH] + random_unknown_subjects(max(0, 10 * BATCH - len(subjects)))
        chunks = [pool[i * BATCH:(i + 1) * BATCH] for i in range(10)]
        with httpx.Client(base_url=server.url, timeout=60, headers=auth) as client:
            client.post("/api/v1/decisions/batch", json={
                "channel": "email", "purpose": "order_updates", "subjects": chunks[0][:100]})
            started = time.perf_counter()
            answered = 0
            for chunk in chunks:
                body = client.post("/api/v1/decisions/batch", json={
                    "channel": "email", "purpose": "order_updates", "subjects": chunk}).json()
                if "results" not in body:
                    raise SystemExit(f"batch failed: {str(body)[:500]}")
                answered += len(body["results"])
            campaign = time.perf_counter() - started
        scan = statistics.median(bare_scan_seconds(vault.database, vault.merchant_id, chunks)
                                 for _ in range(3))
        scan_by_merchant = statistics.median(
            bare_scan_seconds(vault.database, vault.merchant_id, chunks, by="merchant")
            for _ in range(3))
        return {**figures, "scan_by_merchant_s": scan_by_merchant,
                "campaign_s": campaign, "campaign_dps": answered / campaign, "scan_s": scan}


def print_throughput(r: dict[str, float]) -> None:
    print(f"trivial /health      {r['trivial_rps']:8.0f} req/s  p50 {r['trivial_p50']:.2f} ms")
    print(f"single decision      {r['decision_rps']:8.0f} req/s  p50 {r['decision_p50']:.2f} ms"
          f"  p99 {r['decision_p99']:.2f} ms  errors {r['errors']:.0f}")
    print(f"  ratio decision/trivial throughput: {r['decision_rps'] / r['trivial_rps']:.2f}")
    trivial_cpu = r["trivial_server_us"] + r["trivial_client_us"]
    decision_cpu = r["decision_server_us"] + r["decision_client_us"]
    print(f"  CPU per request, server + client: trivial {r['trivial_server_us']:.0f} + "
          f"{r['trivial_client_us']:.0f} us, decision {r['decision_server_us']:.0f} + "
          f"{r['decision_client_us']:.0f} us; ratio {trivial_cpu / decision_cpu:.2f}")
    print(f"at 70% of peak ({r['rate_70']:.0f} req/s): p50 {r['p50_at_70']:.2f} ms"
          f"  p99 {r['p99_at_70']:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker")
    parser.add_argument("--only", choices=("campaign",),
                        help="measure only the campaign and its scans (no HTTP throughput)")
    args = parser.parse_args()
    kinds = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    for kind in kinds:
        r = run(kind, args.people, args.seconds, http=args.only is None,
                workers=args.workers, threads=args.threads)
        print(f"\n== {kind}: {args.people} people subscribed ==")
        if args.only is None:
            print_throughput(r)
        print(f"campaign 10 x 10,000  {r['campaign_s']:.2f} s  "
              f"({r['campaign_dps']:.0f} decisions/s)")
        print(f"bare indexed scan     {r['scan_s']:.3f} s   ratio campaign/scan: "
              f"{r['campaign_s'] / r['scan_s']:.1f}")
        print(f"  (scan by merchant   {r['scan_by_merchant_s']:.3f} s   ratio campaign/scan: "
              f"{r['campaign_s'] / r['scan_by_merchant_s']:.1f})")


if __name__ == "__main__":
    main()
