"""The vault's shared runtime, created unbound and attached with ``init_app``.

Flask's pattern: the object lives at module level so blueprints can import it,
and ``init_app`` gives it one app's settings, key ring, database and clock.
Views reach the services through ``runtime()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from vault.clock import Clock
from vault.config import Settings
from vault.crypto.keyring import KeyRing
from vault.crypto.passwords import Passwords
from vault.db import Database
from vault.services.accounts import AccountService
from vault.services.keys import DataKeys

EXTENSION = "prefvault"


@dataclass
class Runtime:
    """Everything a request needs besides its input."""

    settings: Settings
    keyring: KeyRing
    database: Database
    clock: Clock
    data_keys: DataKeys
    passwords: Passwords
    accounts: AccountService

    @classmethod
    def build(cls, settings: Settings, keyring: KeyRing, clock: Clock) -> Runtime:
        data_keys = DataKeys(keyring)
        passwords = Passwords(settings.password_hash_profile)
        return cls(
            settings=settings,
            keyring=keyring,
            database=Database(settings.database_url,
                              busy_timeout_ms=settings.sqlite_busy_timeout_ms),
            clock=clock,
            data_keys=data_keys,
            passwords=passwords,
            accounts=AccountService(data_keys=data_keys,
                                    blind_index_key=keyring.blind_index_key,
                                    passwords=passwords, clock=clock),
        )


class VaultExtension:
    """Binds a ``Runtime`` to a Flask app."""

    def init_app(self, app: Flask, runtime: Runtime) -> None:
        app.extensions[EXTENSION] = runtime


vault_ext = VaultExtension()


def runtime() -> Runtime:
    """The runtime of the current app."""
    return current_app.extensions[EXTENSION]
