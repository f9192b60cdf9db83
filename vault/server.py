"""Running the app under gunicorn from ``prefvault serve``."""

from __future__ import annotations

import gc
from collections.abc import Mapping
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from vault.app import create_app
from vault.config import Settings
from vault.extensions import EXTENSION


class VaultServer(BaseApplication):  # type: ignore[misc]
    """gunicorn with the vault's app factory; each worker builds its own app.

    Building the app in each worker (no preload) keeps database connections
    out of the fork. The control socket is off so nothing is left in the home
    folder. Each worker checkpoints SQLite's log in the background, off the
    requests' path (``Database.checkpoint_in_background``). Once built, the
    app's objects are moved out of the garbage
    collector's sight (``gc.freeze``): they live as long as the worker, and a
    full collection walking them all stalls every thread of the worker for
    tens of milliseconds, which lands in the slowest answers.
    """

    def __init__(self, settings: Settings, options: Mapping[str, Any]) -> None:
        self.settings = settings
        self.options = dict(options)
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        app = create_app(self.settings)
        app.extensions[EXTENSION].database.checkpoint_in_background()
        gc.collect()
        gc.freeze()
        return app


def serve(settings: Settings, *, host: str, port: int, workers: int, threads: int = 4) -> None:
    VaultServer(
        settings,
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "threads": threads,
            "worker_class": "gthread",
            "control_socket_disable": True,
            "accesslog": "-",
            "errorlog": "-",
            "graceful_timeout": 10,
            "timeout": 60,
        },
    ).run()
