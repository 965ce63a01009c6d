"""outbox digest key and uncertain-send count; indexes for reports

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(sa.Column('digest_key', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('uncertain_sends', sa.Integer(), server_default='0', nullable=False))
    op.create_index('ix_cases_received_at', 'cases', ['received_at'])
    op.create_index('ix_case_events_kind_at', 'case_events', ['kind', 'at'])
    op.create_index('ix_sla_clocks_name_started', 'sla_clocks', ['name', 'started_at'])


def downgrade() -> None:
    op.drop_index('ix_sla_clocks_name_started', table_name='sla_clocks')
    op.drop_index('ix_case_events_kind_at', table_name='case_events')
    op.drop_index('ix_cases_received_at', table_name='cases')
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('uncertain_sends')
        batch.drop_column('digest_key')
