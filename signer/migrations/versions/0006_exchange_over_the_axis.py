"""exchange over the axis

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('axis_units',
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=500), nullable=False),
    sa.Column('mail', sa.String(length=255), nullable=False),
    sa.Column('parent_code', sa.String(length=64), nullable=True),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('code')
    )
    op.create_table('axis_accounts',
    sa.Column('organisation_id', sa.String(length=36), nullable=False),
    sa.Column('system_id', sa.String(length=64), nullable=False),
    sa.Column('secret_sealed', sa.Text(), nullable=False),
    sa.Column('endpoint', sa.String(length=2048), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], ),
    sa.PrimaryKeyConstraint('organisation_id'),
    sa.UniqueConstraint('system_id')
    )
    op.create_table('exchange_incoming',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('organisation_id', sa.String(length=36), nullable=False),
    sa.Column('sender', sa.String(length=64), nullable=False),
    sa.Column('document_id', sa.String(length=255), nullable=False),
    sa.Column('axis_doc_id', sa.String(length=128), nullable=False),
    sa.Column('packet_blob', sa.String(length=80), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=500), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('verification', sa.JSON(), nullable=False),
    sa.Column('verdict', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('status_code', sa.String(length=2), nullable=True),
    sa.Column('pending_action', sa.String(length=16), nullable=True),
    sa.Column('pending', sa.JSON(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('organisation_id', 'sender', 'document_id')
    )
    with op.batch_alter_table('exchange_incoming', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_exchange_incoming_organisation_id'), ['organisation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_exchange_incoming_state'), ['state'], unique=False)

    op.create_table('exchange_outgoing',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('organisation_id', sa.String(length=36), nullable=False),
    sa.Column('sign_request_id', sa.String(length=36), nullable=True),
    sa.Column('previous_id', sa.String(length=36), nullable=True),
    sa.Column('document_id', sa.String(length=255), nullable=False),
    sa.Column('business_type', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=500), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=80), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], ),
    sa.ForeignKeyConstraint(['previous_id'], ['exchange_outgoing.id'], ),
    sa.ForeignKeyConstraint(['sign_request_id'], ['sign_requests.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('exchange_outgoing', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_exchange_outgoing_document_id'), ['document_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_exchange_outgoing_organisation_id'), ['organisation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_exchange_outgoing_previous_id'), ['previous_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_exchange_outgoing_sign_request_id'), ['sign_request_id'], unique=False)

    op.create_table('exchange_outbox',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('organisation_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('outgoing_id', sa.String(length=36), nullable=True),
    sa.Column('incoming_id', sa.String(length=36), nullable=True),
    sa.Column('status_code', sa.String(length=2), nullable=True),
    sa.Column('recipient', sa.String(length=64), nullable=False),
    sa.Column('packet_blob', sa.String(length=80), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('axis_doc_id', sa.String(length=128), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=2), nullable=True),
    sa.Column('status_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['incoming_id'], ['exchange_incoming.id'], ),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], ),
    sa.ForeignKeyConstraint(['outgoing_id'], ['exchange_outgoing.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('exchange_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_exchange_outbox_axis_doc_id'), ['axis_doc_id'], unique=False)
        batch_op.create_index('ix_exchange_outbox_due', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_exchange_outbox_incoming_id'), ['incoming_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_exchange_outbox_organisation_id'), ['organisation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_exchange_outbox_outgoing_id'), ['outgoing_id'], unique=False)

    op.create_table('exchange_status_events',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('organisation_id', sa.String(length=36), nullable=False),
    sa.Column('outbox_id', sa.String(length=36), nullable=True),
    sa.Column('axis_doc_id', sa.String(length=128), nullable=False),
    sa.Column('document_id', sa.String(length=255), nullable=False),
    sa.Column('sender', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.String(length=2), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('staff', sa.JSON(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], ),
    sa.ForeignKeyConstraint(['outbox_id'], ['exchange_outbox.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('organisation_id', 'axis_doc_id')
    )
    with op.batch_alter_table('exchange_status_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_exchange_status_events_organisation_id'), ['organisation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_exchange_status_events_outbox_id'), ['outbox_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('exchange_status_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_exchange_status_events_outbox_id'))
        batch_op.drop_index(batch_op.f('ix_exchange_status_events_organisation_id'))

    op.drop_table('exchange_status_events')
    with op.batch_alter_table('exchange_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_exchange_outbox_outgoing_id'))
        batch_op.drop_index(batch_op.f('ix_exchange_outbox_organisation_id'))
        batch_op.drop_index(batch_op.f('ix_exchange_outbox_incoming_id'))
        batch_op.drop_index('ix_exchange_outbox_due')
        batch_op.drop_index(batch_op.f('ix_exchange_outbox_axis_doc_id'))

    op.drop_table('exchange_outbox')
    with op.batch_alter_table('exchange_outgoing', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_exchange_outgoing_sign_request_id'))
        batch_op.drop_index(batch_op.f('ix_exchange_outgoing_previous_id'))
        batch_op.drop_index(batch_op.f('ix_exchange_outgoing_organisation_id'))
        batch_op.drop_index(batch_op.f('ix_exchange_outgoing_document_id'))

    op.drop_table('exchange_outgoing')
    with op.batch_alter_table('exchange_incoming', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_exchange_incoming_state'))
        batch_op.drop_index(batch_op.f('ix_exchange_incoming_organisation_id'))

    op.drop_table('exchange_incoming')
    op.drop_table('axis_accounts')
    op.drop_table('axis_units')
