"""decision evidence

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import vault.models.types

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('decision',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('merchant_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('subscription_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('asked_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('allowed', sa.Boolean(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('decision', schema=None) as batch_op:
        batch_op.create_index('ix_decision_merchant_time', ['merchant_id', 'decided_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_decision_subscription_id'), ['subscription_id'], unique=False)

    op.create_table('decision_batch',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('merchant_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('asked_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('allowed_count', sa.Integer(), nullable=False),
    sa.Column('results_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('results', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('decision_batch', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_decision_batch_merchant_id'), ['merchant_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('decision_batch', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_decision_batch_merchant_id'))

    op.drop_table('decision_batch')
    with op.batch_alter_table('decision', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_decision_subscription_id'))
        batch_op.drop_index('ix_decision_merchant_time')

    op.drop_table('decision')
