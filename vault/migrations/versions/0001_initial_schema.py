"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import vault.models.types

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_event',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('occurred_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('tag', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('person_ref', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('merchant_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('hash', sa.LargeBinary(length=32), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('id')
    )
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_event_merchant_id'), ['merchant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_event_occurred_at'), ['occurred_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_event_person_ref'), ['person_ref'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_event_tag'), ['tag'], unique=False)

    op.create_table('audit_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.LargeBinary(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('merchant',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('client_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('client_secret_hash', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('contact_email', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
    sa.Column('redirect_uris', sa.JSON(), nullable=False),
    sa.Column('allowed_scopes', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('webhook_url', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('webhook_secret', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('secret_rotated_at', vault.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('disabled_at', vault.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('merchant', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_merchant_client_id'), ['client_id'], unique=True)

    op.create_table('person',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('email_index', sa.LargeBinary(length=32), nullable=True),
    sa.Column('password_hash', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('created_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('erased_at', vault.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email_index')
    )
    op.create_table('global_rules',
    sa.Column('person_id', sa.String(length=32), nullable=False),
    sa.Column('record', sa.LargeBinary(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('person_id')
    )
    op.create_table('person_key',
    sa.Column('person_id', sa.String(length=32), nullable=False),
    sa.Column('kek_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('wrapped', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('rewrapped_at', vault.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('person_id')
    )
    with op.batch_alter_table('person_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_person_key_kek_id'), ['kek_id'], unique=False)

    op.create_table('profile',
    sa.Column('person_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.LargeBinary(), nullable=True),
    sa.Column('email', sa.LargeBinary(), nullable=True),
    sa.Column('phone', sa.LargeBinary(), nullable=True),
    sa.Column('address', sa.LargeBinary(), nullable=True),
    sa.Column('language', sa.LargeBinary(), nullable=True),
    sa.Column('interests', sa.LargeBinary(), nullable=True),
    sa.Column('time_zone', sa.LargeBinary(), nullable=True),
    sa.Column('channel_order', sa.LargeBinary(), nullable=True),
    sa.Column('updated_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('person_id')
    )
    op.create_table('subscription',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('person_id', sa.String(length=32), nullable=False),
    sa.Column('merchant_id', sa.String(length=32), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('shared_fields', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', vault.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchant.id'], ),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('person_id', 'merchant_id')
    )
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscription_merchant_id'), ['merchant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_subscription_person_id'), ['person_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_subscription_subject'), ['subject'], unique=True)

    op.create_table('webhook_outbox',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('merchant_id', sa.String(length=32), nullable=False),
    sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', vault.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchant.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('webhook_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_outbox_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_outbox_merchant_id'), ['merchant_id'], unique=False)

    op.create_table('contact_event',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('subscription_id', sa.String(length=32), nullable=False),
    sa.Column('merchant_id', sa.String(length=32), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('occurred_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decision_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('allowed', sa.Boolean(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchant.id'], ),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('contact_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_event_merchant_id'), ['merchant_id'], unique=False)
        batch_op.create_index('ix_contact_event_window', ['subscription_id', 'channel', 'purpose', 'occurred_at'], unique=False)

    op.create_table('contact_permission',
    sa.Column('subscription_id', sa.String(length=32), nullable=False),
    sa.Column('record', sa.LargeBinary(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('subscription_id')
    )

    # The consent log's head row exists from the start so appending never races to create it.
    op.bulk_insert(
        sa.table("audit_head", sa.column("id", sa.Integer), sa.column("seq", sa.BigInteger),
                 sa.column("hash", sa.LargeBinary)),
        [{"id": 1, "seq": 0, "hash": bytes(32)}],
    )


def downgrade() -> None:
    op.drop_table('contact_permission')
    with op.batch_alter_table('contact_event', schema=None) as batch_op:
        batch_op.drop_index('ix_contact_event_window')
        batch_op.drop_index(batch_op.f('ix_contact_event_merchant_id'))

    op.drop_table('contact_event')
    with op.batch_alter_table('webhook_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_outbox_merchant_id'))
        batch_op.drop_index('ix_webhook_outbox_due')

    op.drop_table('webhook_outbox')
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscription_subject'))
        batch_op.drop_index(batch_op.f('ix_subscription_person_id'))
        batch_op.drop_index(batch_op.f('ix_subscription_merchant_id'))

    op.drop_table('subscription')
    op.drop_table('profile')
    with op.batch_alter_table('person_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_person_key_kek_id'))

    op.drop_table('person_key')
    op.drop_table('global_rules')
    op.drop_table('person')
    with op.batch_alter_table('merchant', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_merchant_client_id'))

    op.drop_table('merchant')
    op.drop_table('audit_head')
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_event_tag'))
        batch_op.drop_index(batch_op.f('ix_audit_event_person_ref'))
        batch_op.drop_index(batch_op.f('ix_audit_event_occurred_at'))
        batch_op.drop_index(batch_op.f('ix_audit_event_merchant_id'))

    op.drop_table('audit_event')
