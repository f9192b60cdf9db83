"""the history of subscriptions' terms, and since when the current ones are in force

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

Adds ``terms_history`` (see ``vault.services.terms_history``) and
``subscription.terms_since``. The vault kept no history before this
revision, so there is none to build: the current state of an existing
subscription is taken to be in force since the subscription was made (an
active one) or revoked (a revoked or erased one), and a contact made before
that is judged by it, as every contact was before. No key ring is needed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import vault.models.types

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('terms_history',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('subscription_id', sa.String(length=32), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('terms', sa.LargeBinary(), nullable=True),
    sa.Column('valid_from', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('valid_until', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('terms_history', schema=None) as batch_op:
        batch_op.create_index('ix_terms_history_subscription',
                              ['subscription_id', 'valid_until'], unique=False)
        batch_op.create_index(batch_op.f('ix_terms_history_valid_until'), ['valid_until'],
                              unique=False)
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.add_column(sa.Column('terms_since',
                                      vault.models.types.UTCDateTime(timezone=True),
                                      nullable=True))
    op.execute("UPDATE subscription SET terms_since = CASE WHEN status = 'active' "
               "THEN created_at ELSE COALESCE(revoked_at, updated_at) END")


def downgrade() -> None:
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.drop_column('terms_since')
    with op.batch_alter_table('terms_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_terms_history_valid_until'))
        batch_op.drop_index('ix_terms_history_subscription')
    op.drop_table('terms_history')
