"""Alembic migrations; run them with ``prefvault db upgrade``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config

if TYPE_CHECKING:
    from vault.crypto.keyring import KeyRing

HEAD = "head"


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration for this database, without an alembic.ini."""
    config = Config()
    config.set_main_option("script_location", "vault:migrations")
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = HEAD, *, keyring: KeyRing | None = None) -> None:
    """Bring the schema up to ``revision`` (the newest by default).

    Data migrations that open sealed records use ``keyring``; without one they
    load the ring the settings name, and only when there is data to open.
    """
    config = alembic_config(database_url)
    if keyring is not None:
        config.attributes["keyring"] = keyring
    command.upgrade(config, revision)
