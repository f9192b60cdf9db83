"""The SDK as a distribution: its public surface, its typing, and that it stands alone.

Merchants install ``preference-vault-sdk`` into their own applications, so it
must not drag in the vault's server stack (Flask, SQLAlchemy, Authlib...),
must ship ``py.typed``, and must export a stable, sorted, importable surface.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import inspect
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import prefvault_sdk
import pytest
from prefvault_sdk import _errors, audit, webhooks

SDK_DIR = Path(__file__).resolve().parent.parent / "client_sdk"
SERVER_PACKAGES = {"flask", "sqlalchemy", "authlib", "vault", "sqlmodel"}
PROBE = ("import prefvault_sdk, sys; print(sorted(m for m in sys.modules "
         f"if m.split('.')[0] in {sorted(SERVER_PACKAGES)!r}))")


def test_all_is_sorted_unique_and_every_name_importable() -> None:
    names = prefvault_sdk.__all__
    assert names == sorted(names) and len(set(names)) == len(names)
    for name in names:
        assert getattr(prefvault_sdk, name) is not None
    namespace: dict[str, object] = {}
    exec("from prefvault_sdk import *", namespace)  # noqa: S102 (a fixed statement)
    assert set(names) <= set(namespace)
    for module in (webhooks, audit):
        assert module.__all__ == sorted(module.__all__, key=lambda n: (not n.isupper(), n))
        for name in module.__all__:
            assert hasattr(module, name)


def test_the_error_hierarchy_is_the_one_drawn_in_the_errors_module() -> None:
    errors = [getattr(prefvault_sdk, n) for n in prefvault_sdk.__all__
              if isinstance(getattr(prefvault_sdk, n), type)
              and issubclass(getattr(prefvault_sdk, n), BaseException)]
    assert len(errors) == 12
    for error in errors:
        assert issubclass(error, prefvault_sdk.VaultError)
        assert error.__name__ in (_errors.__doc__ or ""), error
    assert issubclass(prefvault_sdk.ConnectDenied, prefvault_sdk.ConnectError)
    assert issubclass(prefvault_sdk.StateMismatch, prefvault_sdk.ConnectError)
    problem = {"type": "https://prefvault.example/problems/invalid-request", "field": "at",
               "detail": "at must be within a year of now"}
    error = prefvault_sdk.InvalidRequest("bad", status=400, request_id="r1", problem=problem)
    assert (error.field, error.detail, error.problem_type) == (
        "at", "at must be within a year of now", problem["type"])
    assert str(error) == "bad (HTTP 400) [request r1]"


def _public_callables() -> list[tuple[str, object]]:
    found: list[tuple[str, object]] = []
    for name in prefvault_sdk.__all__:
        value = getattr(prefvault_sdk, name)
        if isinstance(value, type) and not issubclass(value, BaseException):
            for attr, member in vars(value).items():
                if not attr.startswith("_") and callable(getattr(member, "__func__", member)):
                    found.append((f"{name}.{attr}", getattr(member, "__func__", member)))
            for base in value.__mro__[1:]:
                if base.__module__.startswith("prefvault_sdk"):
                    found += [(f"{name}.{a}", m) for a, m in vars(base).items()
                              if not a.startswith("_") and inspect.isfunction(m)]
    for module in (webhooks, audit):
        found += [(f"{module.__name__}.{n}", getattr(module, n)) for n in module.__all__
                  if inspect.isfunction(getattr(module, n))]
    return found


def test_every_public_function_is_typed_and_documented() -> None:
    callables = _public_callables()
    assert {"VaultClient.may_contact", "AsyncVaultClient.reachable",
            "prefvault_sdk.webhooks.verify", "VaultClient.handle_event", "VaultClient.receipt",
            "prefvault_sdk.audit.verify_export", "prefvault_sdk.audit.verify_receipt"} <= {
        name for name, _ in callables}
    for name, func in callables:
        signature = inspect.signature(func)  # type: ignore[arg-type]
        assert signature.return_annotation is not inspect.Signature.empty, name
        for param in signature.parameters.values():
            if param.name not in ("self", "cls"):
                assert param.annotation is not inspect.Parameter.empty, (name, param.name)
    for name in ("VaultClient", "AsyncVaultClient"):
        cls = getattr(prefvault_sdk, name)
        for attr in dir(cls):
            if not attr.startswith("_"):
                assert inspect.getdoc(getattr(cls, attr)), f"{name}.{attr} has no docstring"


def test_the_distribution_ships_py_typed_and_depends_on_httpx_and_cryptography_alone() -> None:
    assert (importlib.resources.files("prefvault_sdk") / "py.typed").is_file()
    meta = importlib.metadata.metadata("preference-vault-sdk")
    assert meta["Version"] == prefvault_sdk.__version__
    assert meta["Requires-Python"] == ">=3.11"
    requires = importlib.metadata.requires("preference-vault-sdk") or []
    # httpx to talk to the vault; cryptography to check its Ed25519 signatures offline.
    assert [r.split(";")[0].split("<")[0].split(">")[0].strip() for r in requires] == [
        "httpx", "cryptography"]


def test_importing_the_sdk_imports_no_server_code() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            check=True, cwd=SDK_DIR.parent.parent)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


@pytest.mark.slow
def test_the_sdk_installs_and_works_alone_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    """A venv with nothing in it, the SDK installed with its dependencies from the index.

    The project's pip installs into the new interpreter (``pip --python``),
    which saves bootstrapping a pip into it.
    """
    # Build from a copy: setuptools leaves build/ beside the sources it builds.
    source = shutil.copytree(SDK_DIR, tmp_path / "client_sdk", ignore=shutil.ignore_patterns(
        "build", "dist", "*.egg-info", "__pycache__", ".*cache"))
    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--quiet", "--disable-pip-version-check", "--no-compile", str(source)],
                   check=True, capture_output=True, timeout=300)
    listed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "list",
                             "--format=freeze", "--disable-pip-version-check"],
                            check=True, capture_output=True, text=True).stdout
    installed = {line.split("==")[0].lower() for line in listed.splitlines() if line}
    assert "preference-vault-sdk" in installed and "httpx" in installed
    assert not installed & {"flask", "sqlalchemy", "authlib", "sqlmodel", "preference-vault"}
    probe = (PROBE + "; import prefvault_sdk.webhooks as w; print(w.verify.__name__)"
             "; from prefvault_sdk.audit import verify_export; print(verify_export([], {}).ok)")
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                            check=True, cwd=tmp_path)
    assert result.stdout.split() == ["[]", "verify", "False"], result.stderr
