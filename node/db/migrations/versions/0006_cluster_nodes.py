"""nodes without shared storage: which node holds an instance's or a delivery's file, and the nodes table

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 21:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: rows written before are "this node's own store, or shared storage".
    with op.batch_alter_table('instances') as batch:
        batch.add_column(sa.Column('node', sa.String(length=64), nullable=True))
    with op.batch_alter_table('deliveries') as batch:
        batch.add_column(sa.Column('node', sa.String(length=64), nullable=True))
    op.create_table(
        'nodes',
        sa.Column('name', sa.String(length=64), primary_key=True),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('nodes')
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_column('node')
    with op.batch_alter_table('instances') as batch:
        batch.drop_column('node')
