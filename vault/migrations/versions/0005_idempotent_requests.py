"""idempotent requests

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import vault.models.types

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('idempotent_request',
    sa.Column('merchant_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('request_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('response', sa.Text(), nullable=False),
    sa.Column('created_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('merchant_id', 'key')
    )
    with op.batch_alter_table('idempotent_request', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_idempotent_request_created_at'), ['created_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('idempotent_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idempotent_request_created_at'))

    op.drop_table('idempotent_request')
