"""indexes for reports: clock cycles by start and by stop time

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The SLA report selects the cycles started in a period (any clock name); the weekly report
    # the cycles stopped in it and those still running at its end.
    op.create_index('ix_sla_clocks_started', 'sla_clocks', ['started_at'])
    op.create_index('ix_sla_clocks_stopped', 'sla_clocks', ['stopped_at'])


def downgrade() -> None:
    op.drop_index('ix_sla_clocks_stopped', table_name='sla_clocks')
    op.drop_index('ix_sla_clocks_started', table_name='sla_clocks')
