"""The shop's configuration, read from the environment by the web app and the nightly job.

Both processes need the same four values, and a shop that starts without one
of them would only fail later, on the first customer; so they are checked
here, once, and a missing one stops the process with a one-line message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED = ("PREFVAULT_URL", "SHOP_CLIENT_ID", "SHOP_CLIENT_SECRET", "SHOP_WEBHOOK_SECRET")
#: where the vault sends the person back; it must be one of the shop's registered redirect URIs
DEFAULT_REDIRECT_URI = "http://127.0.0.1:5001/connect/callback"
#: the customers.db lives here unless SHOP_INSTANCE_PATH says otherwise
DEFAULT_INSTANCE = Path(__file__).resolve().parent / "instance"


class MissingConfig(RuntimeError):
    """A required setting is absent; its message is the one line the operator sees."""


@dataclass(frozen=True)
class ShopConfig:
    """What the shop needs to talk to its vault; the secrets are kept out of ``repr``."""

    vault_url: str
    client_id: str
    client_secret: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    redirect_uri: str = DEFAULT_REDIRECT_URI
    instance_path: Path = DEFAULT_INSTANCE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ShopConfig:
        """Read ``PREFVAULT_URL`` and the ``SHOP_*`` variables; ``MissingConfig`` if absent."""
        env = os.environ if environ is None else environ
        missing = [name for name in REQUIRED if not env.get(name, "").strip()]
        if missing:
            raise MissingConfig(f"Fietsen & Co cannot start: set {', '.join(missing)} "
                                "(see examples/shop/README.md)")
        return cls(
            vault_url=env["PREFVAULT_URL"].strip().rstrip("/"),
            client_id=env["SHOP_CLIENT_ID"].strip(),
            client_secret=env["SHOP_CLIENT_SECRET"].strip(),
            webhook_secret=env["SHOP_WEBHOOK_SECRET"].strip(),
            redirect_uri=env.get("SHOP_REDIRECT_URI", "").strip() or DEFAULT_REDIRECT_URI,
            instance_path=Path(env.get("SHOP_INSTANCE_PATH", "").strip() or DEFAULT_INSTANCE),
        )

    @property
    def database_path(self) -> Path:
        """The shop's own SQLite file: pairwise subjects and their status, nothing else."""
        return self.instance_path / "customers.db"
