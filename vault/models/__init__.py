"""Storage tables (SQLModel). Importing this package registers every table.

Every personal value is stored as ciphertext (``bytes`` columns noted as
sealed); see ``vault.crypto.envelope`` for the format. Plain columns hold only
random ids, statuses, times and the vocabulary of DESIGN.md.
"""

from sqlmodel import SQLModel

from vault.models.audit import AuditEvent, AuditHead
from vault.models.contact import ContactEvent
from vault.models.decision import Decision, DecisionBatch
from vault.models.idempotency import IdempotentRequest
from vault.models.merchant import Merchant
from vault.models.oauth import AuthorizationCode, OAuthToken
from vault.models.outbox import WebhookAttempt, WebhookOutbox
from vault.models.person import GlobalRules, Person, PersonKey, Profile
from vault.models.subscription import ContactPermission, Subscription
from vault.models.terms_history import TermsHistory
from vault.models.tree_head import AuditTreeNode, SignedTreeHead

metadata = SQLModel.metadata

__all__ = [
    "AuditEvent",
    "AuditHead",
    "AuditTreeNode",
    "AuthorizationCode",
    "ContactEvent",
    "ContactPermission",
    "Decision",
    "DecisionBatch",
    "GlobalRules",
    "IdempotentRequest",
    "Merchant",
    "OAuthToken",
    "Person",
    "PersonKey",
    "Profile",
    "SignedTreeHead",
    "Subscription",
    "TermsHistory",
    "WebhookAttempt",
    "WebhookOutbox",
    "metadata",
]
