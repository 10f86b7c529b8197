"""items: index on (project_id, label_id)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

Counting a project's labelled items, in all and per label, read every row of the project
without it: about 0.1 s per count for 500,000 items, on each dashboard view and each progress
refresh of the labelling page. With it the counts read the index alone.
"""

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.create_index('ix_items_project_label', ['project_id', 'label_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_index('ix_items_project_label')
