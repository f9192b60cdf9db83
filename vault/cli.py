"""The ``prefvault`` command: what an operator runs.

Every command that prints data takes ``--json`` for scripts. Bad arguments,
bad configuration or a missing key ring print one line on stderr and exit
with status 2; a failure while working exits with 1. Never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from vault import __version__
from vault.clock import SystemClock
from vault.config import Settings
from vault.crypto.keyring import KeyRing, KeyRingError
from vault.errors import ConfigurationError, VaultError
from vault.extensions import Runtime
from vault.migrations import alembic_config, upgrade
from vault.services import merchants as merchant_service
from vault.services.demo import seed_demo
from vault.services.keys import retire_keks, rotate_keks

EXIT_USAGE = 2
EXIT_FAILURE = 1

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


class CommandFailed(Exception):
    """A command could not finish; its message is the one line the operator sees."""


def _emit(as_json: bool, data: object, lines: Sequence[str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        for line in lines:
            click.echo(line)


def _settings() -> Settings:
    return Settings.from_env()


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def _check_schema(settings: Settings, runtime: Runtime) -> None:
    head = ScriptDirectory.from_config(alembic_config(settings.database_url)).get_current_head()
    with runtime.database.read_engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current != head:
        raise ConfigurationError(
            "the database is not initialised or not up to date: run 'prefvault init' "
            "or 'prefvault db upgrade'"
        )


def _runtime(settings: Settings | None = None, *, check_schema: bool = True) -> Runtime:
    """Load the key ring and open the database, refusing clearly if either is missing."""
    settings = settings or _settings()
    keyring = KeyRing.load(settings.keyring_path)
    runtime = Runtime.build(settings, keyring, SystemClock())
    if check_schema:
        _check_schema(settings, runtime)
    return runtime


def _init(settings: Settings) -> dict[str, object]:
    created = not settings.keyring_path.exists()
    if not created:
        KeyRing.load(settings.keyring_path)  # refuse a damaged ring rather than overwrite it
    # Before saving the ring, whose parent folders would otherwise get umask modes.
    settings.var_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if created:
        try:
            KeyRing.generate().save(settings.keyring_path, create_only=True)
        except KeyRingError:
            KeyRing.load(settings.keyring_path)  # another init won the race: keep its ring
            created = False
    upgrade(settings.database_url, keyring=KeyRing.load(settings.keyring_path))
    return {"keyring": str(settings.keyring_path), "keyring_created": created,
            "database": _redact(settings.database_url)}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="prefvault")
def cli() -> None:
    """Preference Vault: people decide who may contact them, how and why."""


@cli.command()
@json_option
def init(as_json: bool) -> None:
    """Create the key ring (never overwriting one) and bring the database up to date."""
    result = _init(_settings())
    ring = "created" if result["keyring_created"] else "kept existing"
    _emit(as_json, result, [f"key ring: {result['keyring']} ({ring})",
                            f"database: {result['database']} (up to date)"])


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@json_option
def db_upgrade(as_json: bool) -> None:
    """Apply every pending migration."""
    settings = _settings()
    # Data migrations that open sealed records need the ring; a new vault has none yet.
    ring = KeyRing.load(settings.keyring_path) if settings.keyring_path.exists() else None
    upgrade(settings.database_url, keyring=ring)
    _emit(as_json, {"database": _redact(settings.database_url), "status": "up to date"},
          [f"database: {_redact(settings.database_url)} (up to date)"])


def _serve_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--threads", default=4, show_default=True,
                        type=click.IntRange(1, 64), help="Threads per worker.")(func)
    func = click.option("--workers", default=2, show_default=True,
                        type=click.IntRange(1, 64), help="Worker processes.")(func)
    func = click.option("--port", default=8000, show_default=True,
                        type=click.IntRange(1, 65535))(func)
    return click.option("--host", default="127.0.0.1", show_default=True)(func)


@cli.command()
@_serve_options
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Run the vault under gunicorn."""
    from vault.server import serve as run_server

    settings = _settings()
    _runtime(settings).database.dispose()
    click.echo(f"Preference Vault on http://{host}:{port}", err=True)
    run_server(settings, host=host, port=port, workers=workers, threads=threads)


@cli.command()
@_serve_options
@click.option("--no-serve", is_flag=True, help="Only create the demo data and print it.")
@json_option
def demo(host: str, port: int, workers: int, threads: int, no_serve: bool,
         as_json: bool) -> None:
    """Initialise if needed, create a demo person and shop, print their logins, serve."""
    env = dict(os.environ)
    env.setdefault("VAULT_ENV", "development")
    env.setdefault("VAULT_ISSUER", f"http://{host}:{port}")
    settings = Settings.from_env(env)
    _init(settings)
    runtime = _runtime(settings)
    with runtime.database.write() as session:
        creds = seed_demo(session, accounts=runtime.accounts, clock=runtime.clock,
                          webhook_key=runtime.keyring.webhook_key)
    runtime.database.dispose()
    base = settings.issuer
    _emit(as_json, {**asdict(creds), "url": base}, [
        f"Preference Vault demo on {base}",
        f"  person:   {creds.email} / {creds.password}",
        f"  merchant: client_id={creds.client_id} client_secret={creds.client_secret}",
        f"            redirect_uri={creds.redirect_uri}",
        f"            webhook_secret={creds.webhook_secret}",
        f"  health:   {base}/health",
    ])
    sys.stdout.flush()
    if not no_serve:
        from vault.server import serve as run_server

        run_server(settings, host=host, port=port, workers=workers, threads=threads)


@cli.group()
def keys() -> None:
    """Key-encryption keys."""


@keys.command("rotate")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000))
@json_option
def keys_rotate(batch_size: int, as_json: bool) -> None:
    """Add a new KEK and rewrap every data key with it (resumes an unfinished rotation)."""
    runtime = _runtime()

    def progress(done: int) -> None:
        if not as_json:
            click.echo(f"rewrapped {done} data keys", err=True)

    report = rotate_keks(runtime.database, runtime.keyring, clock=runtime.clock,
                         batch_size=batch_size, on_batch=progress)
    verb = "resumed" if report.resumed else "rotated to"
    _emit(as_json, asdict(report),
          [f"{verb} KEK {report.kek_id}: {report.rewrapped} data keys rewrapped"])


@keys.command("retire")
@json_option
def keys_retire(as_json: bool) -> None:
    """Remove KEKs that no data key uses any more (makes older backups unreadable)."""
    runtime = _runtime()
    retired = retire_keks(runtime.database, runtime.keyring)
    _emit(as_json, {"retired": retired},
          [f"retired {len(retired)} KEK(s)" + (": " + ", ".join(retired) if retired else "")])


@keys.command("jwks")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Write to this file instead of standard output.")
def keys_jwks(output: str | None) -> None:
    """Print the public JWKS (as /.well-known/jwks.json serves it), for offline auditors."""
    keyring = KeyRing.load(_settings().keyring_path)
    document = json.dumps({"keys": [key.public_jwk() for key in keyring.signing_keys]},
                          indent=2) + "\n"
    if output:
        Path(output).write_text(document, encoding="utf-8")
    else:
        click.echo(document, nl=False)


@cli.group()
def merchant() -> None:
    """Merchants (shops) that may ask the vault."""


@merchant.command("add")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True,
              help="Exact redirect URI; repeat for several.")
@click.option("--webhook-url")
@click.option("--contact-email", help="The shop's privacy contact, shown on receipts.")
@click.option("--client-id", help="Choose the client id instead of a random one.")
@json_option
def merchant_add(name: str, redirect_uris: tuple[str, ...], webhook_url: str | None,
                 contact_email: str | None, client_id: str | None, as_json: bool) -> None:
    """Register a merchant; prints its client secret this once."""
    runtime = _runtime()
    with runtime.database.write() as session:
        issued = merchant_service.register_client(
            session, clock=runtime.clock, name=name, redirect_uris=redirect_uris,
            webhook_url=webhook_url, contact_email=contact_email, client_id=client_id,
            webhook_key=runtime.keyring.webhook_key)
    _print_issued(issued, as_json)


@merchant.command("list")
@json_option
def merchant_list(as_json: bool) -> None:
    """List merchants and auditors (never their secrets)."""
    runtime = _runtime()
    with runtime.database.read() as session:
        rows = [
            {"client_id": m.client_id, "name": m.name, "kind": m.kind,
             "redirect_uris": m.redirect_uris, "webhook_url": m.webhook_url,
             "created_at": m.created_at.isoformat()}
            for m in merchant_service.list_clients(session)
        ]
    _emit(as_json, rows, [f"{r['client_id']}\t{r['kind']}\t{r['name']}" for r in rows]
          or ["no merchants yet"])


@merchant.command("rotate-secret")
@click.argument("client_id")
@json_option
def merchant_rotate_secret(client_id: str, as_json: bool) -> None:
    """Give a merchant a new client secret; the old one stops working."""
    runtime = _runtime()
    with runtime.database.write() as session:
        issued = merchant_service.rotate_client_secret(session, client_id, clock=runtime.clock)
    _print_issued(issued, as_json)


@cli.group()
def auditor() -> None:
    """Auditors who export and verify the consent log."""


@auditor.command("add")
@click.option("--name", required=True)
@json_option
def auditor_add(name: str, as_json: bool) -> None:
    """Register an auditor client (client credentials, scope audit:read only)."""
    runtime = _runtime()
    with runtime.database.write() as session:
        issued = merchant_service.register_client(session, clock=runtime.clock, name=name,
                                                  kind="auditor")
    _print_issued(issued, as_json)


@cli.group()
def audit() -> None:
    """Export the consent log and verify exports offline."""


def _aware(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO 8601 date-time: {value!r}",
                                 param_hint=name) from exc
    if moment.tzinfo is None:
        raise click.BadParameter("give a time zone, e.g. 2026-01-01T00:00:00Z",
                                 param_hint=name)
    return moment


@audit.command("export")
@click.option("--since", help="Only events at or after this ISO 8601 instant.")
@click.option("--until", help="Only events before this ISO 8601 instant.")
@click.option("--merchant", "merchant_client_id", help="Only events about this merchant.")
@click.option("--format", "export_format", type=click.Choice(["jsonl", "csv"]),
              default="jsonl", show_default=True,
              help="JSON Lines, or CSV for a spreadsheet (both verify).")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Write to this file instead of standard output.")
def audit_export(since: str | None, until: str | None, merchant_client_id: str | None,
                 export_format: str, output: str | None) -> None:
    """Export the consent log under a signed tree head (signed now if the log grew)."""
    from vault.services.audit_export import export_records, render
    from vault.services.tree_heads import checkpoint

    since_at, until_at = _aware(since, "--since"), _aware(until, "--until")
    runtime = _runtime()
    try:
        merchant_id = None
        if merchant_client_id is not None:
            with runtime.database.read() as session:
                found = merchant_service.find_client(session, merchant_client_id)
            if found.kind != "merchant":
                raise click.BadParameter(f"no merchant {merchant_client_id!r}",
                                         param_hint="--merchant")
            merchant_id = found.id
        with runtime.database.write() as session:
            head = checkpoint(session, signing_key=runtime.keyring.signing_key,
                              clock=runtime.clock)
        with runtime.database.read() as session, _export_progress(
                head.tree_size, to_terminal=output is None) as progress:
            records = export_records(session, head=head, since=since_at, until=until_at,
                                     merchant_id=merchant_id)
            lines = render(progress(records), export_format)
            if output:
                with Path(output).open("w", encoding="utf-8", newline="") as handle:
                    handle.writelines(lines)
            else:
                for line in lines:
                    click.echo(line, nl=False)
    finally:
        runtime.database.dispose()


Records = Iterator[dict[str, Any]]


@contextmanager
def _export_progress(tree_size: int, *,
                     to_terminal: bool) -> Iterator[Callable[[Records], Records]]:
    """A progress bar on stderr over the log's events, when someone is watching there.

    Shown only when stderr is a terminal and the export itself is not being
    written to that terminal; otherwise the records pass through untouched.
    """
    if not sys.stderr.isatty() or (to_terminal and sys.stdout.isatty()):
        yield lambda records: records
        return
    with click.progressbar(length=max(tree_size, 1), label="exporting",
                           file=sys.stderr) as bar:

        step = max(1, tree_size // 200)  # redraw about 200 times, not once per event

        def track(records: Records) -> Records:
            done = 0
            for record in records:
                if record.get("kind") == "event" and int(record["index"]) + 1 - done >= step:
                    bar.update(int(record["index"]) + 1 - done)
                    done = int(record["index"]) + 1
                yield record
            bar.update(tree_size - done)

        yield track


@audit.command("checkpoint")
@json_option
def audit_checkpoint(as_json: bool) -> None:
    """Sign a tree head for the log as it is now (prints the newest if nothing changed)."""
    from vault.services.tree_heads import checkpoint

    runtime = _runtime()
    try:
        with runtime.database.write() as session:
            head = checkpoint(session, signing_key=runtime.keyring.signing_key,
                              clock=runtime.clock)
    finally:
        runtime.database.dispose()
    _emit(as_json, head.to_json(),
          [f"tree head: {head.tree_size} events, root {head.root_hash.hex()}, key {head.kid}"])


@audit.command("verify")
@click.argument("export", type=click.Path(exists=True, dir_okay=False))
@click.option("--jwks", "jwks_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The vault's JWKS (prefvault keys jwks, or /.well-known/jwks.json).")
def audit_verify(export: str, jwks_path: str) -> None:
    """Check an export (JSON Lines or CSV) offline against the vault's public keys."""
    from vault.audit.verify import verify_export

    try:
        jwks = json.loads(Path(jwks_path).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise click.BadParameter("not a JSON document", param_hint="--jwks") from exc
    if not isinstance(jwks, dict):
        raise click.BadParameter("not a JWKS object", param_hint="--jwks")
    # newline="": a CSV row's cells keep their own line ends; JSON Lines do not mind.
    with Path(export).open(encoding="utf-8", errors="strict", newline="") as handle:
        try:
            result = verify_export(handle, jwks)
        except UnicodeDecodeError:
            click.echo("FAILED at the export: not UTF-8 text")
            raise click.exceptions.Exit(EXIT_FAILURE) from None
    if not result.ok:
        where = (f"leaf {result.first_bad_index}" if result.first_bad_index is not None
                 else "the export")
        click.echo(f"FAILED at {where}: {result.reason}")
        raise click.exceptions.Exit(EXIT_FAILURE)
    click.echo(f"ok: {result.events} events, tree size {result.tree_size}")


@cli.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
              help="Write to this file instead of standard output.")
def openapi(output: str | None) -> None:
    """Print (or write) the OpenAPI document generated from the API's schemas."""
    from vault.app import create_app
    from vault.openapi import build_spec, render

    settings = Settings(environment="test", database_url="sqlite:///:memory:").resolved()
    document = render(build_spec(create_app(settings, keyring=KeyRing.generate())))
    if output:
        Path(output).write_text(document, encoding="utf-8")
    else:
        click.echo(document, nl=False)


def _print_issued(issued: merchant_service.IssuedClient, as_json: bool) -> None:
    data = {"client_id": issued.client_id, "client_secret": issued.client_secret}
    lines = [f"client_id:      {issued.client_id}",
             f"client_secret:  {issued.client_secret}"]
    if issued.webhook_secret:
        data["webhook_secret"] = issued.webhook_secret
        lines.append(f"webhook_secret: {issued.webhook_secret}")
    _emit(as_json, data, [*lines, "The secret is shown only now; store it safely."])


#: seconds between two prunings of the history of terms by ``prefvault worker``
_PRUNE_INTERVAL_S = 3600.0


@cli.command()
@click.option("--once", is_flag=True, help="Deliver what is due now, then stop.")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds between polls.")
@click.option("--max-attempts", default=8, show_default=True, type=click.IntRange(1, 100))
@json_option
def worker(once: bool, interval: float, max_attempts: int, as_json: bool) -> None:
    """Deliver webhooks from the outbox, signed, retrying with backoff; checkpoint the log.

    Every VAULT_CHECKPOINT_INTERVAL_S seconds (and once at start) it also signs a
    tree head of the consent log. A refused checkpoint (the log does not extend
    what was signed) is logged as critical each time and makes the exit status 1.
    Once at start and then every hour it deletes the history of terms no contact
    report may still be about (older than the 31-day reporting window and a day).
    """
    import signal
    import time

    import httpx

    from vault.errors import LogIntegrityError
    from vault.services.terms_history import prune
    from vault.services.tree_heads import PeriodicCheckpoints
    from vault.services.webhooks import DeliveryReport, deliver_due

    runtime = _runtime()
    stop = {"now": False}

    def _stop(*_args: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    total = DeliveryReport()
    checkpoints = PeriodicCheckpoints(runtime.settings.checkpoint_interval_s)
    tree_size: int | None = None
    refused = False
    pruned, next_prune = 0, time.monotonic()
    with httpx.Client(timeout=10.0, follow_redirects=False) as http:

        def post(url: str, body: bytes, headers: dict[str, str]) -> int:
            return http.post(url, content=body, headers=headers).status_code

        while True:
            report = deliver_due(runtime.database, webhook_key=runtime.keyring.webhook_key,
                                 clock=runtime.clock, post=post, max_attempts=max_attempts)
            for name in ("delivered", "retried", "failed", "skipped"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            try:
                head = checkpoints.run(runtime.database, signing_key=runtime.keyring.signing_key,
                                       clock=runtime.clock)
            except LogIntegrityError:
                refused = True  # the service has logged why, as critical, on stderr
            else:
                tree_size = head.tree_size if head is not None else tree_size
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + _PRUNE_INTERVAL_S
                pruned += prune(runtime.database, now=runtime.clock.now())
            if once or stop["now"]:
                break
            time.sleep(interval)
    checkpointed = "" if tree_size is None else f", tree head at {tree_size} events"
    _emit(as_json, {**asdict(total), "tree_size": tree_size, "history_pruned": pruned}, [
        f"delivered {total.delivered}, retried {total.retried}, failed {total.failed}, "
        f"skipped {total.skipped}{checkpointed}, {pruned} past terms pruned"])
    if refused:
        raise click.exceptions.Exit(EXIT_FAILURE)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the command and turn every failure into one line and a status."""
    try:
        status = cli.main(args=list(argv) if argv is not None else None,
                          prog_name="prefvault", standalone_mode=False)
        # click returns the code of a deliberate ``Exit`` (a failed verification).
        if isinstance(status, int) and not isinstance(status, bool) and status:
            return status
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        return EXIT_USAGE
    except click.UsageError as exc:
        click.echo(f"prefvault: {exc.format_message()}", err=True)
        return EXIT_USAGE
    except click.Abort:
        click.echo("prefvault: aborted", err=True)
        return EXIT_FAILURE
    except click.ClickException as exc:
        click.echo(f"prefvault: {exc.format_message()}", err=True)
        return exc.exit_code
    except (KeyRingError, ConfigurationError) as exc:
        click.echo(f"prefvault: {exc}", err=True)
        return EXIT_USAGE
    except VaultError as exc:
        where = f" ({exc.field})" if exc.field else ""
        click.echo(f"prefvault: {exc.detail}{where}", err=True)
        return EXIT_USAGE if exc.status in (400, 404, 409) else EXIT_FAILURE
    except SQLAlchemyError as exc:
        click.echo(f"prefvault: database error: {type(exc.__cause__ or exc).__name__}: "
                   f"{str(getattr(exc, 'orig', exc)).splitlines()[0]}", err=True)
        return EXIT_FAILURE
    except OSError as exc:
        click.echo(f"prefvault: {exc.strerror or exc}", err=True)
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
