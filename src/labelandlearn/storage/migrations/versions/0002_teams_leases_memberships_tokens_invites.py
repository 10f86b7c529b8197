"""teams: leases, memberships, tokens, invites

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_user_id'), ['user_id'], unique=False)

    op.create_table('invites',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('is_admin', sa.Boolean(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('memberships',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id', 'user_id', name='uq_membership')
    )
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_memberships_user_id'), ['user_id'], unique=False)

    op.create_table('leases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('slot', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('item_id', 'slot', name='uq_leases_item_slot'),
    sa.UniqueConstraint('item_id', 'user_id', name='uq_leases_item_user')
    )
    with op.batch_alter_table('leases', schema=None) as batch_op:
        batch_op.create_index('ix_leases_user', ['user_id', 'expires_at'], unique=False)

    # Plain ALTER TABLE: SQLite adds columns with constant defaults in place, and batch mode
    # cannot copy the expression index on items.
    op.add_column('items', sa.Column('n_answers', sa.Integer(), server_default='0', nullable=False))
    op.add_column('items', sa.Column('done', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('items', sa.Column('reviewed', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.drop_index('ix_items_queue', table_name='items')
    op.create_index('ix_items_queue', 'items', ['project_id', 'done', sa.text('score DESC'), 'position'])
    op.add_column('projects', sa.Column('overlap', sa.Integer(), server_default='1', nullable=False))
    op.add_column('projects', sa.Column('lease_seconds', sa.Integer(), server_default='1800', nullable=False))
    op.add_column('projects', sa.Column('train_on_single_answers', sa.Boolean(), server_default=sa.true(), nullable=False))

    # Items that already carry a label (imported or answered) are done; each labeller answer
    # counts towards the overlap.
    op.execute(
        "UPDATE items SET n_answers = (SELECT count(*) FROM answers WHERE answers.item_id = items.id"
        " AND answers.label_id IS NOT NULL AND answers.source = 'labeller')"
    )
    op.execute("UPDATE items SET done = (label_id IS NOT NULL)")


def downgrade() -> None:
    op.drop_index('ix_items_queue', table_name='items')
    op.create_index('ix_items_queue', 'items', ['project_id', 'label_id', sa.text('score DESC'), 'position'])
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_column('train_on_single_answers')
        batch_op.drop_column('lease_seconds')
        batch_op.drop_column('overlap')
    for column in ('reviewed', 'done', 'n_answers'):
        op.drop_column('items', column)

    with op.batch_alter_table('leases', schema=None) as batch_op:
        batch_op.drop_index('ix_leases_user')

    op.drop_table('leases')
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_memberships_user_id'))

    op.drop_table('memberships')
    op.drop_table('invites')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_user_id'))

    op.drop_table('api_tokens')
