"""oauth codes and tokens

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import vault.models.types

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('oauth_code',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('code_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('client_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('person_id', sa.String(length=32), nullable=False),
    sa.Column('subscription_id', sa.String(length=32), nullable=False),
    sa.Column('redirect_uri', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
    sa.Column('nonce', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('code_challenge', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('code_challenge_method', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('auth_time', sa.Integer(), nullable=False),
    sa.Column('created_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', vault.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code_hash')
    )
    with op.batch_alter_table('oauth_code', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_code_client_id'), ['client_id'], unique=False)

    op.create_table('oauth_token',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('client_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('person_id', sa.String(length=32), nullable=True),
    sa.Column('subscription_id', sa.String(length=32), nullable=True),
    sa.Column('family_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('code_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
    sa.Column('access_token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('refresh_token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('issued_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('access_expires_at', vault.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('refresh_expires_at', vault.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('refresh_used_at', vault.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', vault.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('access_token_hash'),
    sa.UniqueConstraint('refresh_token_hash')
    )
    with op.batch_alter_table('oauth_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_token_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_token_code_id'), ['code_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_token_family_id'), ['family_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_token_subscription_id'), ['subscription_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('oauth_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_token_subscription_id'))
        batch_op.drop_index(batch_op.f('ix_oauth_token_family_id'))
        batch_op.drop_index(batch_op.f('ix_oauth_token_code_id'))
        batch_op.drop_index(batch_op.f('ix_oauth_token_client_id'))

    op.drop_table('oauth_token')
    with op.batch_alter_table('oauth_code', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_code_client_id'))

    op.drop_table('oauth_code')
