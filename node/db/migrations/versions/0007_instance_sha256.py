"""instances: SHA-256 of the stored bytes, checked when another node fetches a copy

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 02:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: rows indexed before carry no digest; their copies are checked by size and UID only.
    with op.batch_alter_table('instances') as batch:
        batch.add_column(sa.Column('sha256', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('instances') as batch:
        batch.drop_column('sha256')
