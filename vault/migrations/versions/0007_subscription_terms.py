"""sealed terms record and a copy of the wrapped data key on each subscription

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

Adds ``subscription.terms`` (see ``vault.services.terms``) with
``key_kek_id`` and ``wrapped_key``, and builds them for every active
subscription from the rows they are made of. Building them opens sealed
records, so it needs the key ring: ``vault.migrations.upgrade`` hands it in;
without one, the ring named by the settings (``VAULT_KEYRING``) is loaded.
A database with no active subscription needs no key ring.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import context, op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000

_SOURCES = """
SELECT s.id, s.person_id, s.status, s.shared_fields, pk.kek_id, pk.wrapped, cp.record,
       gr.record, pr.time_zone, pr.channel_order
FROM subscription s
JOIN person_key pk ON pk.person_id = s.person_id
LEFT JOIN contact_permission cp ON cp.subscription_id = s.id
LEFT JOIN global_rules gr ON gr.person_id = s.person_id
LEFT JOIN profile pr ON pr.person_id = s.person_id
WHERE s.status = 'active'
ORDER BY s.id"""


def upgrade() -> None:
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.add_column(sa.Column('terms', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('key_kek_id', sqlmodel.sql.sqltypes.AutoString(length=64),
                                      nullable=True))
        batch_op.add_column(sa.Column('wrapped_key', sa.LargeBinary(), nullable=True))
    _build_terms()


def downgrade() -> None:
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.drop_column('wrapped_key')
        batch_op.drop_column('key_kek_id')
        batch_op.drop_column('terms')


def _keyring():  # type: ignore[no-untyped-def]
    from vault.config import Settings
    from vault.crypto.keyring import KeyRing

    ring = context.config.attributes.get("keyring")
    if ring is None:
        path = Settings.from_env().keyring_path
        if not path.exists():
            raise RuntimeError("building the sealed terms of existing subscriptions needs the "
                               f"key ring; none at {path} (set VAULT_KEYRING)")
        ring = KeyRing.load(path)
    return ring


def _build_terms() -> None:
    """The terms of every active subscription, as ``vault.services.terms.refresh`` builds them."""
    import json

    from vault.crypto.envelope import DataKey, unwrap_key
    from vault.services import terms
    from vault.services.decisions import DEFAULT_TIME_ZONE
    from vault.services.rules import RuleSet
    from vault.vocabulary import CHANNELS

    bind = op.get_bind()
    rows = bind.exec_driver_sql(_SOURCES).fetchall()
    if not rows:
        return
    ring = _keyring()
    update = sa.text("UPDATE subscription SET terms = :terms, key_kek_id = :kek_id, "
                     "wrapped_key = :wrapped WHERE id = :id")
    changes: list[dict[str, object]] = []
    for (sub_id, pid, status, shared, kek_id, wrapped, grid, rules, zone, order) in rows:
        wrapped = bytes(wrapped)
        key = DataKey(unwrap_key(ring.kek(kek_id), kek_id, pid, wrapped))

        def opened(sealed: bytes, table: str, row_id: str, field: str,
                   key: DataKey = key) -> bytes:
            return key.decrypt(bytes(sealed), table=table, row_id=row_id, field=field)

        plaintext = terms.compose(
            status=status,
            permissions=json.loads(opened(grid, "contact_permission", sub_id, "record"))[
                "permissions"] if grid is not None else [],
            rules=json.loads(opened(rules, "global_rules", pid, "record"))
            if rules is not None else RuleSet().to_json(),
            time_zone=opened(zone, "profile", pid, "time_zone").decode()
            if zone is not None else DEFAULT_TIME_ZONE,
            channel_order=json.loads(opened(order, "profile", pid, "channel_order"))
            if order is not None else list(CHANNELS),
            shared_fields=json.loads(opened(shared, "subscription", sub_id, "shared_fields"))
            if shared is not None else [])
        changes.append({"id": sub_id, "terms": terms.seal(key, sub_id, plaintext),
                        "kek_id": kek_id, "wrapped": wrapped})
        if len(changes) >= _BATCH:
            bind.execute(update, changes)
            changes = []
    if changes:
        bind.execute(update, changes)
