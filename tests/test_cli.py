"""The ``prefvault`` command, run for real as a separate process.

Each test works in its own folder (the command's working directory, so the
default ``var/`` lands there) with ``HOME`` pointing at an empty folder of its
own and no ``VAULT_*`` variables inherited from the caller's environment.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from vault import __version__

KEYRING = Path("var/keys/keyring.json")
DATABASE = Path("var/vault.db")
SHOP_URI = "https://shop.example/cb"
RUN_TIMEOUT = 60.0
DATABASE_PASSWORD = "hunter2-secret"
UNREACHABLE_DATABASE = f"postgresql+psycopg://vault:{DATABASE_PASSWORD}@127.0.0.1:{{port}}/vault"


def prefvault_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m vault.cli``."""
    script = Path(sys.executable).parent / "prefvault"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "vault.cli"]


PREFVAULT = prefvault_command()


def clean_environ() -> dict[str, str]:
    """The caller's environment without any VAULT_* setting that could leak into a test."""
    return {key: value for key, value in os.environ.items() if not key.startswith("VAULT_")}


@dataclass(frozen=True)
class Workspace:
    """A working directory and a private HOME for running ``prefvault``."""

    root: Path
    home: Path

    @classmethod
    def create(cls, base: Path) -> Workspace:
        root, home = base / "vault", base / "home"
        root.mkdir()
        home.mkdir()
        return cls(root, home)

    def env(self, **extra: str) -> dict[str, str]:
        env = clean_environ()
        env.pop("XDG_RUNTIME_DIR", None)
        env["HOME"] = str(self.home)
        env.update(extra)
        return env

    def start(self, *args: str, **extra_env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*PREFVAULT, *args],
            cwd=self.root,
            env=self.env(**extra_env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*PREFVAULT, *args],
            cwd=self.root,
            env=self.env(**extra_env),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )

    def run_json(self, *args: str, **extra_env: str) -> Any:
        """Run a command that must succeed and return its parsed ``--json`` output."""
        result = self.run(*args, "--json", **extra_env)
        assert result.returncode == 0, describe(result)
        assert "Traceback" not in result.stderr, describe(result)
        return json.loads(result.stdout)

    def keyring_document(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads((self.root / KEYRING).read_text(encoding="utf-8"))
        return document


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return (f"{result.args!r} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}")


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str,
                          status: int = 2) -> str:
    """The command failed with ``status`` and said why in exactly one line on stderr."""
    assert result.returncode == status, describe(result)
    assert "Traceback" not in result.stderr + result.stdout, describe(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, describe(result)
    assert lines[0].startswith("prefvault: "), describe(result)
    for fragment in fragments:
        assert fragment in lines[0], describe(result)
    assert result.stdout == "", describe(result)
    return lines[0]


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def alembic_revisions(database: Path) -> list[str]:
    """The migration revision(s) an SQLite file is at."""
    with closing(sqlite3.connect(database)) as connection:
        rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    return [row[0] for row in rows]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def initialised_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``prefvault init`` for the whole module; tests copy its ``var/``."""
    workspace = Workspace.create(tmp_path_factory.mktemp("template"))
    result = workspace.run("init")
    assert result.returncode == 0, describe(result)
    return workspace.root / "var"


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """An empty working directory: no key ring, no database."""
    return Workspace.create(tmp_path)


@pytest.fixture
def initialised(workspace: Workspace, initialised_template: Path) -> Workspace:
    """A working directory as ``prefvault init`` leaves it (key ring and migrated SQLite)."""
    shutil.copytree(initialised_template, workspace.root / "var")
    return workspace


# -- commands run in an empty folder, all at once -------------------------------------------
#
# Each of these needs nothing but an empty working directory, so they are started
# together once per module: every interpreter start costs a second or two.

EMPTY_FOLDER_CASES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "help": (("--help",), {}),
    "version": (("--version",), {}),
    # a missing key ring
    "no-keyring-merchant-list": (("merchant", "list"), {}),
    "no-keyring-serve": (("serve", "--port", "{port}"), {}),
    "no-keyring-keys-rotate": (("keys", "rotate"), {}),
    # bad arguments and settings
    "unknown-command": (("no-such-command",), {}),
    "unknown-option": (("init", "--no-such-option"), {}),
    "port-not-a-number": (("serve", "--port", "abc"), {}),
    "port-too-big": (("serve", "--port", "70000"), {}),
    "merchant-without-name": (("merchant", "add", "--redirect-uri", SHOP_URI), {}),
    "bad-vault-env": (("init",), {"VAULT_ENV": "staging"}),
    "bad-database-url": (("init",), {"VAULT_DATABASE_URL": "mysql://db.example/vault"}),
    # a failure while working: nothing listens on {port}
    "unreachable-database": (("db", "upgrade"), {"VAULT_DATABASE_URL": UNREACHABLE_DATABASE}),
}


@dataclass(frozen=True)
class Outcome:
    """A finished command and the folders it ran in."""

    workspace: Workspace
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def empty_folder_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every ``EMPTY_FOLDER_CASES`` command, run concurrently, each in its own empty folder."""
    started: dict[str, tuple[Workspace, subprocess.Popen[str]]] = {}
    outcomes: dict[str, Outcome] = {}
    try:
        for name, (args, env) in EMPTY_FOLDER_CASES.items():
            workspace = Workspace.create(tmp_path_factory.mktemp(name))
            port = str(free_port())
            started[name] = (workspace, workspace.start(
                *(arg.format(port=port) for arg in args),
                **{key: value.format(port=port) for key, value in env.items()},
            ))
        for name, (workspace, process) in started.items():
            stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)
            result = subprocess.CompletedProcess(process.args, process.returncode, stdout,
                                                 stderr)
            outcomes[name] = Outcome(workspace, result)
    finally:
        for _, process in started.values():
            if process.returncode is None:
                process.kill()
                process.communicate()
    return outcomes


def test_help_lists_the_commands(empty_folder_runs: dict[str, Outcome]) -> None:
    result = empty_folder_runs["help"].result
    assert result.returncode == 0, describe(result)
    assert result.stdout.startswith("Usage: prefvault")
    for command in ("init", "serve", "demo", "db", "keys", "merchant", "auditor"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), result.stdout
    assert result.stderr == ""


def test_version_prints_the_package_version(empty_folder_runs: dict[str, Outcome]) -> None:
    result = empty_folder_runs["version"].result
    assert result.returncode == 0, describe(result)
    assert result.stdout.strip() == f"prefvault, version {__version__}"


@pytest.mark.parametrize(
    "case", ["no-keyring-merchant-list", "no-keyring-serve", "no-keyring-keys-rotate"]
)
def test_commands_need_a_key_ring(empty_folder_runs: dict[str, Outcome], case: str) -> None:
    outcome = empty_folder_runs[case]

    line = assert_one_line_error(outcome.result, "prefvault init")
    assert "key ring" in line
    assert list(outcome.workspace.root.iterdir()) == []


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("unknown-command", "No such command"),
        ("unknown-option", "No such option"),
        ("port-not-a-number", "--port"),
        ("port-too-big", "--port"),
        ("merchant-without-name", "--name"),
        ("bad-vault-env", "VAULT_ENV"),
        ("bad-database-url", "VAULT_DATABASE_URL"),
    ],
)
def test_bad_arguments_and_settings_are_one_line_and_change_nothing(
    empty_folder_runs: dict[str, Outcome], case: str, fragment: str
) -> None:
    outcome = empty_folder_runs[case]

    assert_one_line_error(outcome.result, fragment)
    assert list(outcome.workspace.root.iterdir()) == []
    assert list(outcome.workspace.home.iterdir()) == []


def test_an_unreachable_database_fails_with_status_1_without_its_password(
    empty_folder_runs: dict[str, Outcome],
) -> None:
    result = empty_folder_runs["unreachable-database"].result

    assert_one_line_error(result, "database error", status=1)
    assert DATABASE_PASSWORD not in result.stderr


# -- init ----------------------------------------------------------------------------------


def test_init_creates_a_private_key_ring_and_never_overwrites_it(workspace: Workspace) -> None:
    result = workspace.run("init")

    assert result.returncode == 0, describe(result)
    assert result.stdout.splitlines() == [
        f"key ring: {KEYRING} (created)",
        f"database: sqlite:///{DATABASE} (up to date)",
    ]
    assert result.stderr == ""
    keyring = workspace.root / KEYRING
    assert file_mode(keyring) == 0o600
    assert file_mode(keyring.parent) == 0o700
    assert file_mode(workspace.root / "var") == 0o700
    assert workspace.keyring_document()["format"] == "prefvault-keyring/1"
    assert len(alembic_revisions(workspace.root / DATABASE)) == 1

    before = keyring.read_bytes()
    again = workspace.run_json("init")

    assert again == {"keyring": str(KEYRING), "keyring_created": False,
                     "database": f"sqlite:///{DATABASE}"}
    assert keyring.read_bytes() == before
    assert file_mode(keyring) == 0o600


def test_init_refuses_a_damaged_key_ring_and_leaves_it_alone(workspace: Workspace) -> None:
    keyring = workspace.root / KEYRING
    keyring.parent.mkdir(parents=True)
    keyring.write_text('{"format": "prefvault-keyring/1", "keks": ', encoding="utf-8")
    before = keyring.read_bytes()

    result = workspace.run("init")

    assert_one_line_error(result, str(KEYRING), "not valid JSON")
    assert keyring.read_bytes() == before
    assert not (workspace.root / DATABASE).exists()


# -- refusing clearly ----------------------------------------------------------------------


def test_merchant_with_a_plain_http_redirect_is_refused_and_not_written(
    initialised: Workspace,
) -> None:
    plain_http = initialised.run("merchant", "add", "--redirect-uri",
                                 "http://evil.example/cb", "--name", "X")

    assert_one_line_error(plain_http, "https", "redirect_uri")

    assert initialised.run_json("merchant", "list") == []


def test_a_database_without_the_schema_asks_for_init(initialised: Workspace) -> None:
    empty = {"VAULT_DATABASE_URL": "sqlite:///var/empty.db"}

    refused = initialised.run("merchant", "list", **empty)
    assert_one_line_error(refused, "prefvault init", "prefvault db upgrade")

    upgraded = initialised.run_json("db", "upgrade", **empty)
    assert upgraded == {"database": "sqlite:///var/empty.db", "status": "up to date"}
    assert alembic_revisions(initialised.root / "var/empty.db") == alembic_revisions(
        initialised.root / DATABASE
    )


# -- merchants and auditors ------------------------------------------------------------------


def test_merchant_and_auditor_lifecycle(initialised: Workspace) -> None:
    shop = initialised.run_json("merchant", "add", "--name", "Shop",
                                "--redirect-uri", SHOP_URI)
    assert set(shop) == {"client_id", "client_secret"}
    assert shop["client_id"] and len(shop["client_secret"]) >= 32
    auditor = initialised.run_json("auditor", "add", "--name", "A")
    assert set(auditor) == {"client_id", "client_secret"}

    listing = initialised.run("merchant", "list", "--json")
    assert listing.returncode == 0, describe(listing)
    rows = json.loads(listing.stdout)
    assert [(r["client_id"], r["kind"], r["name"]) for r in rows] == [
        (shop["client_id"], "merchant", "Shop"),
        (auditor["client_id"], "auditor", "A"),
    ]
    assert rows[0]["redirect_uris"] == [SHOP_URI]
    assert not any("secret" in key for row in rows for key in row)
    assert shop["client_secret"] not in listing.stdout
    assert auditor["client_secret"] not in listing.stdout

    rotated = initialised.run_json("merchant", "rotate-secret", shop["client_id"])
    assert rotated["client_id"] == shop["client_id"]
    assert rotated["client_secret"] != shop["client_secret"]

    unknown = initialised.run("merchant", "rotate-secret", "no-such-client")
    assert_one_line_error(unknown, "no-such-client")


# -- demo data and keys ----------------------------------------------------------------------


@dataclass(frozen=True)
class DemoRuns:
    """A folder where ``prefvault demo --no-serve --json`` ran twice, and what it printed."""

    workspace: Workspace
    first: dict[str, Any]
    second: dict[str, Any]


@pytest.fixture(scope="module")
def demo_twice(tmp_path_factory: pytest.TempPathFactory) -> DemoRuns:
    workspace = Workspace.create(tmp_path_factory.mktemp("demo"))
    first = workspace.run_json("demo", "--no-serve")
    second = workspace.run_json("demo", "--no-serve")
    return DemoRuns(workspace, first, second)


def test_demo_without_serving_prints_fresh_secrets_each_run(demo_twice: DemoRuns) -> None:
    first, second = demo_twice.first, demo_twice.second

    assert first["email"] == second["email"] == "demo@example.org"
    assert first["client_id"] == second["client_id"] == "demo-shop"
    assert first["password"] and first["client_secret"]
    assert second["password"] != first["password"]
    assert second["client_secret"] != first["client_secret"]
    assert (demo_twice.workspace.root / KEYRING).is_file()


def test_keys_rotate_then_retire_the_old_kek(demo_twice: DemoRuns) -> None:
    vault = demo_twice.workspace  # holds the demo person, so a data key to rewrap
    old_kek = vault.keyring_document()["active_kek"]

    report = vault.run_json("keys", "rotate")

    assert report["rewrapped"] >= 1 and report["resumed"] is False
    assert report["kek_id"] != old_kek
    ring = vault.keyring_document()
    assert ring["active_kek"] == report["kek_id"]
    assert set(ring["keks"]) == {old_kek, report["kek_id"]}
    assert file_mode(vault.root / KEYRING) == 0o600

    assert vault.run_json("keys", "retire") == {"retired": [old_kek]}
    assert set(vault.keyring_document()["keks"]) == {report["kek_id"]}


# -- the demo server ------------------------------------------------------------------------


def _pump_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _read_until(lines: queue.Queue[str | None], marker: str, timeout: float) -> list[str]:
    """Lines read so far, up to and including the first containing ``marker``."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"no {marker!r} line within {timeout} s; got {seen!r}")
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            pytest.fail(f"output ended before a {marker!r} line; got {seen!r}")
        seen.append(line.rstrip("\n"))
        if marker in line:
            return seen


def _get_json(url: str, timeout: float) -> tuple[int, Any]:
    """GET a local URL (no proxies), retrying until the server accepts connections."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with opener.open(url, timeout=5) as response:
                return response.status, json.loads(response.read())
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM the server, and kill its whole process group if it will not stop."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _gunicorn_files(home: Path) -> list[Path]:
    return [path for path in home.rglob("*") if "gunicorn" in path.name]


@pytest.mark.slow
def test_demo_serves_health_and_leaves_no_control_socket(workspace: Workspace) -> None:
    # Without XDG_RUNTIME_DIR (Workspace.env drops it) gunicorn's control socket would go
    # to $HOME/.gunicorn/gunicorn.ctl; the socket is removed at shutdown, the folder is not.
    port = free_port()
    state = workspace.root.parent / "state"  # VAULT_VAR_DIR, outside the working directory
    stderr_path = workspace.root.parent / "demo-stderr.log"
    lines: queue.Queue[str | None] = queue.Queue()
    with stderr_path.open("w", encoding="utf-8") as stderr, subprocess.Popen(
        [*PREFVAULT, "demo", "--port", str(port), "--workers", "1"],
        cwd=workspace.root,
        env=workspace.env(VAULT_VAR_DIR=str(state)),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        start_new_session=True,
    ) as process:
        assert process.stdout is not None
        reader = threading.Thread(target=_pump_lines, args=(process.stdout, lines), daemon=True)
        reader.start()
        try:
            printed = _read_until(lines, "health:", timeout=30)
            health_url = printed[-1].split("health:", 1)[1].strip()
            assert health_url == f"http://127.0.0.1:{port}/health"
            status, body = _get_json(health_url, timeout=30)
            files_while_serving = _gunicorn_files(workspace.home)
        finally:
            _stop(process)
            reader.join(timeout=10)
    output = "\n".join(printed)
    logs = stderr_path.read_text(encoding="utf-8")

    assert status == 200, logs
    assert body == {"status": "ok"}
    person = re.search(r"person:\s+(\S+) / (\S+)", output)
    assert person is not None, output
    assert person.group(1) == "demo@example.org"
    assert person.group(2)
    merchant = re.search(r"client_id=(\S+) client_secret=(\S+)", output)
    assert merchant is not None, output
    assert merchant.group(1) == "demo-shop" and merchant.group(2)
    assert process.returncode == 0, logs
    assert "Traceback" not in logs
    with pytest.raises(urllib.error.URLError):
        _get_json(health_url, timeout=0)
    assert files_while_serving == []
    assert _gunicorn_files(workspace.home) == []
    assert (state / "keys" / "keyring.json").is_file() and (state / "vault.db").is_file()
    assert list(workspace.root.iterdir()) == []
