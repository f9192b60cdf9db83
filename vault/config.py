"""Settings of a vault process, read from ``VAULT_*`` environment variables.

Every secret lives in the key ring (see ``vault.crypto.keyring``), never in a
default value here: a vault without its key ring refuses to start and says how
to create one.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vault.errors import ConfigurationError

ENVIRONMENTS = ("production", "development", "test")


@dataclass(frozen=True, slots=True)
class Settings:
    """One vault's configuration; see README.md "Configuration" for each variable."""

    var_dir: Path = Path("var")
    database_url: str = ""
    keyring_path: Path = Path("var/keys/keyring.json")
    issuer: str = "http://127.0.0.1:8000"
    environment: str = "production"
    log_level: str = "INFO"
    sqlite_busy_timeout_ms: int = 5000
    redis_url: str | None = None
    password_hash_profile: str = "default"  # noqa: S105 (a cost profile name)
    checkpoint_interval_s: int = 300
    rate_limit_login_account: str = "5 per minute;20 per hour"
    rate_limit_login_address: str = "30 per minute;300 per hour"
    rate_limit_signup: str = "5 per minute;30 per hour"
    rate_limit_token: str = "120 per minute"  # noqa: S105 (a rate, not a secret)
    rate_limit_api: str = "120000 per minute"
    session_idle_minutes: int = 30
    session_max_hours: int = 12

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def is_test(self) -> bool:
        return self.environment == "test"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``VAULT_*`` variables, validating each one."""
        env = os.environ if environ is None else environ
        var_dir = Path(env.get("VAULT_VAR_DIR", "var"))
        environment = env.get("VAULT_ENV", "production")
        if environment not in ENVIRONMENTS:
            raise ConfigurationError(
                f"VAULT_ENV must be one of {', '.join(ENVIRONMENTS)}, not {environment!r}"
            )
        busy = env.get("VAULT_SQLITE_BUSY_TIMEOUT_MS", "5000")
        if not busy.isdigit():
            raise ConfigurationError("VAULT_SQLITE_BUSY_TIMEOUT_MS must be a whole number")
        checkpoint = env.get("VAULT_CHECKPOINT_INTERVAL_S", "300")
        if not checkpoint.isascii() or not checkpoint.isdigit():
            raise ConfigurationError(
                "VAULT_CHECKPOINT_INTERVAL_S must be a whole number of seconds (0: never)")
        settings = cls(
            **_rate_limits(env),
            **_session_limits(env),
            var_dir=var_dir,
            database_url=env.get("VAULT_DATABASE_URL", ""),
            keyring_path=Path(env.get("VAULT_KEYRING", str(var_dir / "keys" / "keyring.json"))),
            issuer=env.get("VAULT_ISSUER", "http://127.0.0.1:8000").rstrip("/"),
            environment=environment,
            log_level=env.get("VAULT_LOG_LEVEL", "INFO").upper(),
            sqlite_busy_timeout_ms=int(busy),
            redis_url=env.get("VAULT_REDIS_URL") or None,
            checkpoint_interval_s=int(checkpoint),
        )
        return settings.resolved()

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes).resolved()  # type: ignore[arg-type]

    def resolved(self) -> Settings:
        """Fill derived defaults and reject values that cannot work."""
        url = self.database_url or f"sqlite:///{(self.var_dir / 'vault.db').as_posix()}"
        if not (url.startswith("sqlite:///") or url.startswith("postgresql+psycopg://")):
            raise ConfigurationError(
                "VAULT_DATABASE_URL must start with sqlite:/// or postgresql+psycopg://"
            )
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigurationError("VAULT_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        if not self.issuer.startswith(("https://", "http://")):
            raise ConfigurationError("VAULT_ISSUER must be an http(s) URL")
        if self.is_production and self.issuer.startswith("http://") and not _is_loopback(
            self.issuer
        ):
            raise ConfigurationError("VAULT_ISSUER must use https outside local development")
        return dataclasses.replace(self, database_url=url)


_RATE_LIMIT_VARS = {
    "rate_limit_login_account": "VAULT_RATE_LIMIT_LOGIN",
    "rate_limit_login_address": "VAULT_RATE_LIMIT_LOGIN_ADDRESS",
    "rate_limit_signup": "VAULT_RATE_LIMIT_SIGNUP",
    "rate_limit_token": "VAULT_RATE_LIMIT_TOKEN",
    "rate_limit_api": "VAULT_RATE_LIMIT_API",
}


def _rate_limits(env: Mapping[str, str]) -> dict[str, str]:
    """Rate limits in the ``limits`` notation, e.g. ``5 per minute;20 per hour``."""
    from limits import parse_many

    found: dict[str, str] = {}
    for name, var in _RATE_LIMIT_VARS.items():
        if var in env:
            try:
                parse_many(env[var])
            except ValueError:
                raise ConfigurationError(
                    f"{var} must look like '5 per minute;20 per hour'") from None
            found[name] = env[var]
    return found


def _session_limits(env: Mapping[str, str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for name, var in (("session_idle_minutes", "VAULT_SESSION_IDLE_MINUTES"),
                      ("session_max_hours", "VAULT_SESSION_MAX_HOURS")):
        if var in env:
            if not env[var].isdigit() or int(env[var]) < 1:
                raise ConfigurationError(f"{var} must be a whole number of at least 1")
            found[name] = int(env[var])
    return found


def _is_loopback(url: str) -> bool:
    host = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]
    return host in ("127.0.0.1", "localhost", "[::1]")
