"""Alembic migrations; run them with ``prefvault db upgrade``."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

HEAD = "head"


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration for this database, without an alembic.ini."""
    config = Config()
    config.set_main_option("script_location", "vault:migrations")
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = HEAD) -> None:
    """Bring the schema up to ``revision`` (the newest by default)."""
    command.upgrade(alembic_config(database_url), revision)
