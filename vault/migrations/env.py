"""Alembic environment: migrates the database named in the Alembic config."""

from __future__ import annotations

from alembic import context

import vault.models
from vault.db import Database

config = context.config
target_metadata = vault.models.metadata


def run_migrations_online() -> None:
    database = Database(config.get_main_option("sqlalchemy.url") or "")
    try:
        with database.write_engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
    finally:
        database.dispose()


run_migrations_online()
