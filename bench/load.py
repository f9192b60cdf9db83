"""Load: a fixed arrival rate of a shop's mixed traffic against gunicorn; prints its figures.

    python bench/load.py [--rate 150] [--seconds 60] [--people 5000]
                         [--backend sqlite|postgresql|both]

For each backend the script seeds a fresh vault (``--people`` people subscribed
to one shop, ``--editors`` of them able to log in), starts ``prefvault serve``
(gunicorn, ``--workers`` workers of 8 threads) and sends requests at a fixed
arrival rate for ``--seconds``, in the mix a shop's day has:

* 90 % decisions: ``POST /api/v1/decisions`` for a random subscribed person;
* 8 % contact reports: ``POST /api/v1/contacts`` (they count toward caps);
* 2 % consent changes: a logged-in person opens the shop's page in the web UI
  and saves a new weekly cap through its form (CSRF token, version check),
  two requests counted as one change.

Arrivals are scheduled up front (seeded RNG), and each request's latency is
counted from its scheduled time, so a server that falls behind shows in the
figures instead of slowing the client down (no coordinated omission).

It prints the offered and sustained rates, p50/p99/max per kind and overall,
errors (any unexpected status or failed connection; the target is 0), the
anonymous resident memory (heap) of each gunicorn worker after a warm-up that fills the
workers' bounded caches (every subject asked about ``--warm-up-passes``
times), every 10 s and at the end, and then checks what the run left: every
decision answered is stored as
evidence, every change saved is in the state, and the consent log exported
by ``prefvault audit export`` verifies offline with ``prefvault audit verify``
against the vault's JWKS, as an auditor would check it.

Not part of the test suite: machine noise moves absolute numbers; compare
medians and the worker memory trend.
"""

from __future__ import annotations

import argparse
import queue
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import select, text, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Seeded, open_loop, percentile, seeded_vault, served
from vault.crypto.passwords import Passwords
from vault.db import Database
from vault.models import Person, Subscription

PASSWORD = "load bench pass phrase"  # noqa: S105 (the bench's own people)
MIX = (("decision", 0.90), ("contact", 0.08), ("consent", 0.02))
PREFVAULT = Path(sys.executable).with_name("prefvault")
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_VERSION = re.compile(r'name="version" value="(\d+)"')


@dataclass
class Editor:
    """A person logged in to the web UI, changing their shop's weekly cap."""

    email: str
    subscription_id: str
    http: httpx.Client | None = None
    caps: list[int] = field(default_factory=list)


@dataclass
class Outcome:
    kind: str
    latency_ms: float
    ok: bool
    detail: str = ""


def make_editors(vault: Seeded, count: int) -> list[Editor]:
    """Give the first ``count`` seeded people a password, to log in to the web UI."""
    s = Subscription.__table__  # type: ignore[attr-defined]
    p = Person.__table__  # type: ignore[attr-defined]
    with vault.database.write() as session:
        rows = session.connection().execute(select(s.c.id, s.c.person_id, s.c.subject).where(
            s.c.subject.in_(vault.subjects[:count]))).all()
        session.connection().execute(update(p).where(p.c.id.in_([r.person_id for r in rows]))
                                     .values(password_hash=Passwords().hash(PASSWORD)))
    # The seeder numbers its people in order: person{n}@bench.example has subjects[n].
    order = {subject: n for n, subject in enumerate(vault.subjects[:count])}
    return [Editor(email=f"person{order[row.subject]}@bench.example", subscription_id=row.id)
            for row in rows]


def log_in(url: str, editor: Editor) -> None:
    editor.http = httpx.Client(base_url=url, timeout=30)
    page = editor.http.get("/login")
    answer = editor.http.post("/login", data={
        "csrf_token": _CSRF.search(page.text).group(1),  # type: ignore[union-attr]
        "email": editor.email, "password": PASSWORD})
    if answer.status_code != 302:
        raise SystemExit(f"login refused for {editor.email}: {answer.status_code}")


def warm_up(url: str, auth: dict[str, str], subjects: list[str], passes: int) -> float:
    """Ask about every subject ``passes`` times, as fast as 16 connections go.

    Each worker keeps bounded caches (unwrapped data keys, up to 10,000 a
    worker; tokens; rate-limit windows). Filled before the measurement, they
    cannot pass for growth in it: with fewer people than the key cache holds,
    what still grows afterwards is a leak.
    """
    asks = [s for _ in range(passes) for s in random.Random(passes).sample(subjects,
                                                                           len(subjects))]
    work = iter(asks)
    started = time.perf_counter()

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            for subject in work:
                client.post("/api/v1/decisions", headers=auth, json={
                    "subject": subject, "channel": "email", "purpose": "order_updates"})

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def change_cap(editor: Editor, cap: int) -> tuple[bool, str]:
    """Open the shop's page and save a new weekly cap for e-mail order updates."""
    assert editor.http is not None
    page = editor.http.get(f"/subscriptions/{editor.subscription_id}")
    if page.status_code != 200:
        return False, f"page {page.status_code}"
    csrf, version = _CSRF.search(page.text), _VERSION.search(page.text)
    if csrf is None or version is None:
        return False, "no form on the page"
    cell = "email:order_updates"
    saved = editor.http.post(f"/subscriptions/{editor.subscription_id}/permissions", data={
        "csrf_token": csrf.group(1), "version": version.group(1), "cell": cell, "allow": cell,
        f"max_per_week:{cell}": str(cap), f"quiet_from:{cell}": "", f"quiet_to:{cell}": "",
        f"expires_on:{cell}": ""})
    if saved.status_code != 302:
        return False, f"save {saved.status_code}"
    editor.caps.append(cap)
    return True, ""


def worker_pids(master: int) -> list[int]:
    try:
        return sorted(int(pid) for pid in
                      Path(f"/proc/{master}/task/{master}/children").read_text().split())
    except OSError:
        return []


def resident_mib(pid: int) -> float:
    """The worker's anonymous resident memory (its heap: where a leak grows), MiB.

    File-backed pages (the interpreter, libraries, SQLite's pages in the OS
    cache) come and go with what is read and are not the process's to leak.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


def drive(url: str, auth: dict[str, str], subjects: list[str], editors: list[Editor],
          rate: float, seconds: float, seed_value: int,
          on_tick) -> tuple[list[Outcome], float]:  # type: ignore[no-untyped-def]
    """Send ``rate * seconds`` requests at their scheduled moments; (outcomes, seconds taken)."""
    rng = random.Random(seed_value)
    kinds, weights = zip(*MIX, strict=True)
    plan = rng.choices(kinds, weights=weights, k=int(rate * seconds))
    targets = [rng.choice(subjects) for _ in plan]
    caps = [rng.randint(20, 500) for _ in plan]
    idle: queue.Queue[Editor] = queue.Queue()
    for editor in editors:
        idle.put(editor)

    def one(client: httpx.Client, n: int) -> tuple[bool, str]:
        kind = plan[n]
        body = {"subject": targets[n], "channel": "email", "purpose": "order_updates"}
        if kind == "decision":
            answer = client.post("/api/v1/decisions", headers=auth, json=body)
            return answer.status_code == 200, str(answer.status_code)
        if kind == "contact":
            answer = client.post("/api/v1/contacts", headers=auth, json=body)
            return answer.status_code == 201, str(answer.status_code)
        editor = idle.get()
        try:
            return change_cap(editor, caps[n])
        finally:
            idle.put(editor)

    def send(client: httpx.Client, n: int) -> tuple[str, bool, str]:
        try:
            return (plan[n], *one(client, n))
        except httpx.HTTPError as exc:
            return plan[n], False, type(exc).__name__

    ticker_stop = threading.Event()
    began = time.perf_counter()

    def ticker() -> None:
        while not ticker_stop.wait(10):
            on_tick(time.perf_counter() - began)

    threading.Thread(target=ticker, daemon=True).start()
    results, elapsed = open_loop(url, len(plan), rate, send, connections=64)
    ticker_stop.set()
    outcomes = [Outcome(kind, latency, ok, detail) for latency, (kind, ok, detail) in results]
    return outcomes, elapsed


def caps_read_back(editors: list[Editor]) -> str:
    """Each editor's last saved cap, read back from the shop's page as the person sees it."""
    changed = [e for e in editors if e.caps]
    wrong = 0
    for editor in changed:
        assert editor.http is not None
        page = editor.http.get(f"/subscriptions/{editor.subscription_id}").text
        shown = re.search(r'name="max_per_week:email:order_updates" value="(\d*)"', page)
        if shown is None or shown.group(1) != str(editor.caps[-1]):
            wrong += 1
    return f"{len(changed) - wrong} of {len(changed)} editors see their last saved cap"


def evidence_counts(database: Database) -> tuple[int, int]:
    """Rows of stored decisions and of reported contacts."""
    with database.read_engine.connect() as conn:
        return (conn.execute(text("SELECT count(*) FROM decision")).scalar_one(),
                conn.execute(text("SELECT count(*) FROM contact_event")).scalar_one())


def check_afterwards(database: Database, before: tuple[int, int], env: dict[str, str],
                     workdir: Path, outcomes: list[Outcome]) -> list[str]:
    """What the run left: evidence for every answer, a consent log that verifies."""
    decisions, contacts = (after - then for after, then in
                           zip(evidence_counts(database), before, strict=True))
    answered = sum(1 for o in outcomes if o.kind == "decision" and o.ok)
    reported = sum(1 for o in outcomes if o.kind == "contact" and o.ok)
    lines = [f"decisions answered {answered}, stored as evidence {decisions}",
             f"contacts acknowledged {reported}, stored {contacts}"]
    export, jwks = workdir / "audit.jsonl", workdir / "jwks.json"
    subprocess.run([str(PREFVAULT), "audit", "export", "-o", str(export)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    jwks.write_text(subprocess.run([str(PREFVAULT), "keys", "jwks"], env=env, check=True,
                                   capture_output=True, text=True).stdout)
    verified = subprocess.run([str(PREFVAULT), "audit", "verify", str(export), "--jwks",
                               str(jwks)], env=env, capture_output=True, text=True)
    lines.append(f"audit log export verifies: {verified.stdout.strip() or verified.stderr[-300:]}"
                 f" (exit {verified.returncode})")
    return lines


def summarise(outcomes: list[Outcome], elapsed: float, rate: float) -> list[str]:
    by_kind: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_kind[outcome.kind].append(outcome)
    errors = Counter(f"{o.kind} {o.detail}" for o in outcomes if not o.ok)
    lines = [f"offered {rate:.0f} req/s for {len(outcomes) / rate:.0f} s; "
             f"sustained {len(outcomes) / elapsed:.1f} req/s ({len(outcomes)} in {elapsed:.1f} s)"]
    for kind, _ in MIX:
        group = [o.latency_ms for o in by_kind[kind]]
        if group:
            lines.append(f"  {kind:9s} {len(group):6d}  p50 {statistics.median(group):7.2f} ms"
                         f"  p99 {percentile(group, 0.99):8.2f} ms  max {max(group):8.2f} ms")
    every = [o.latency_ms for o in outcomes]
    lines.append(f"  {'all':9s} {len(every):6d}  p50 {statistics.median(every):7.2f} ms"
                 f"  p99 {percentile(every, 0.99):8.2f} ms  max {max(every):8.2f} ms")
    lines.append(f"errors {sum(errors.values())}" + (
        ": " + ", ".join(f"{k} x{v}" for k, v in errors.most_common(8)) if errors else ""))
    return lines


def run(kind: str, args: argparse.Namespace) -> None:
    with seeded_vault(kind, args.people, shop="Load Shop") as vault:
        editors = make_editors(vault, args.editors)
        # Plain HTTP on loopback: the session cookie must not be marked Secure.
        with served(vault, workers=args.workers,
                    extra_env={"VAULT_ENV": "development"}) as server:
            auth = server.token(vault.client_id, vault.client_secret)
            for editor in editors:
                log_in(server.url, editor)
            seconds = warm_up(server.url, auth, vault.subjects, args.warm_up_passes)
            # Then 10 s of the mix itself: the first contact reports and pages load what
            # they load once (templates, translations) before memory is read.
            drive(server.url, auth, vault.subjects, editors, args.rate, 10.0, args.seed + 1,
                  lambda _: None)
            print(f"[{kind}] warm-up: every subject asked about {args.warm_up_passes} times "
                  f"in {seconds:.1f} s, then 10 s of the mix", flush=True)
            before = evidence_counts(vault.database)
            workers = worker_pids(server.process.pid)
            memory: dict[int, list[float]] = {pid: [resident_mib(pid)] for pid in workers}

            def sample(_: float) -> None:
                for pid in workers:
                    memory[pid].append(resident_mib(pid))

            outcomes, elapsed = drive(server.url, auth, vault.subjects, editors, args.rate,
                                      args.seconds, args.seed, sample)
            sample(elapsed)
            print(f"\n== {kind}: {args.people} people, {args.workers} gunicorn workers "
                  f"x 8 threads ==")
            for line in summarise(outcomes, elapsed, args.rate):
                print(line)
            for pid, figures in memory.items():
                print(f"worker {pid} anonymous RSS MiB: start {figures[0]:.1f}, "
                      f"end {figures[-1]:.1f}, max {max(figures):.1f}  (every 10 s: "
                      + " ".join(f"{m:.1f}" for m in figures) + ")")
            print(caps_read_back(editors))
            for editor in editors:
                if editor.http is not None:
                    editor.http.close()
        for line in check_afterwards(vault.database, before, server.env, vault.workdir,
                                     outcomes):
            print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=150.0, help="requests per second offered")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--people", type=int, default=5_000,
                        help="fewer than a worker's data-key cache (10,000), so the warm-up "
                             "fills it")
    parser.add_argument("--warm-up-passes", type=int, default=4)
    parser.add_argument("--editors", type=int, default=40,
                        help="people who log in to change their consent")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    for kind in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        run(kind, args)


if __name__ == "__main__":
    main()
