"""Preference Vault merchant SDK: connect people, ask before you reach them, verify webhooks.

    from prefvault_sdk import VaultClient

    vault = VaultClient("https://vault.example", client_id=ID, client_secret=SECRET)
    if vault.may_contact(subject, "email", "order_updates"):
        ...

The public API is what this module exports (``__all__``); the underscored
modules behind it may change without notice. ``prefvault_sdk.webhooks`` and
``prefvault_sdk.audit`` (offline verification of consent receipts and of
consent-log exports) are public too.
"""

from . import audit, webhooks
from ._async_client import AsyncVaultClient
from ._cache import DecisionCache
from ._client import VaultClient
from ._errors import (
    AuthenticationError,
    ConnectDenied,
    ConnectError,
    ConnectionError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    SignatureVerificationError,
    StateMismatch,
    VaultError,
)
from ._models import (
    BatchResult,
    Channel,
    ConnectRequest,
    ContactReceipt,
    Decision,
    Event,
    GrantTokens,
    Permission,
    Purpose,
    QuietHours,
    Reason,
    Subscription,
)
from ._version import __version__
from .audit import Receipt, verify_export, verify_receipt

__all__ = [
    "AsyncVaultClient",
    "AuthenticationError",
    "BatchResult",
    "Channel",
    "ConnectDenied",
    "ConnectError",
    "ConnectRequest",
    "ConnectionError",
    "ContactReceipt",
    "Decision",
    "DecisionCache",
    "Event",
    "GrantTokens",
    "InvalidRequest",
    "NotFound",
    "Permission",
    "PermissionDenied",
    "Purpose",
    "QuietHours",
    "RateLimited",
    "Reason",
    "Receipt",
    "ServerError",
    "SignatureVerificationError",
    "StateMismatch",
    "Subscription",
    "VaultClient",
    "VaultError",
    "__version__",
    "audit",
    "verify_export",
    "verify_receipt",
    "webhooks",
]
