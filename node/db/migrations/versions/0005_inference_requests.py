"""inference requests (retrieve a study from a DICOMweb source, then the usual jobs)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 18:45:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'inference_requests',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('transaction_id', sa.String(length=128), nullable=True),
        sa.Column('study_uid', sa.String(length=64), nullable=False),
        sa.Column('series_uids', sa.JSON(), nullable=True),
        sa.Column('source', sa.String(length=64), nullable=False),
        sa.Column('destinations', sa.JSON(), nullable=True),
        sa.Column('priority', sa.Integer(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('stages', sa.JSON(), nullable=False),
        sa.Column('found_series', sa.JSON(), nullable=True),
        sa.Column('instances_expected', sa.Integer(), nullable=True),
        sa.Column('instances_retrieved', sa.Integer(), nullable=False),
        sa.Column('instances_already_stored', sa.Integer(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
        sa.Column('job_ids', sa.JSON(), nullable=True),
        sa.Column('results', sa.JSON(), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('principal', sa.String(length=128), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
    )
    op.create_index('ix_inference_requests_transaction_id', 'inference_requests', ['transaction_id'])
    op.create_index('ix_inference_requests_study_uid', 'inference_requests', ['study_uid'])
    op.create_index('ix_inference_requests_state_next', 'inference_requests', ['state', 'next_attempt_at'])


def downgrade() -> None:
    op.drop_index('ix_inference_requests_state_next', table_name='inference_requests')
    op.drop_index('ix_inference_requests_study_uid', table_name='inference_requests')
    op.drop_index('ix_inference_requests_transaction_id', table_name='inference_requests')
    op.drop_table('inference_requests')
