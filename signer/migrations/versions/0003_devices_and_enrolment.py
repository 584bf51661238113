"""devices and enrolment

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('enrolments',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('created_by', sa.String(length=80), nullable=False),
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('webauthn_challenge', sa.LargeBinary(), nullable=True),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('device_id', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_sha256')
    )
    with op.batch_alter_table('enrolments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enrolments_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('authenticator_data', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('client_data_json', sa.LargeBinary(), nullable=True))

    with op.batch_alter_table('sign_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('decided_by', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_sign_requests_decided_by'), ['decided_by'], unique=False)
        batch_op.create_foreign_key('fk_sign_requests_decided_by', 'users', ['decided_by'], ['id'])

    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credential_id', sa.String(length=1400), nullable=True))
        batch_op.add_column(sa.Column('public_key_cose', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('pin_hash', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('failed_pins', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('approved_by', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column('public_key_der',
               existing_type=sa.LargeBinary(),
               nullable=True)
        batch_op.create_unique_constraint('uq_devices_credential_id', ['credential_id'])



def downgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_constraint('uq_devices_credential_id', type_='unique')
        batch_op.alter_column('public_key_der',
               existing_type=sa.LargeBinary(),
               nullable=False)
        batch_op.drop_column('last_used_at')
        batch_op.drop_column('approved_at')
        batch_op.drop_column('approved_by')
        batch_op.drop_column('failed_pins')
        batch_op.drop_column('pin_hash')
        batch_op.drop_column('public_key_cose')
        batch_op.drop_column('credential_id')

    with op.batch_alter_table('sign_requests', schema=None) as batch_op:
        batch_op.drop_constraint('fk_sign_requests_decided_by', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_sign_requests_decided_by'))
        batch_op.drop_column('decided_at')
        batch_op.drop_column('decided_by')

    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.drop_column('client_data_json')
        batch_op.drop_column('authenticator_data')

    with op.batch_alter_table('enrolments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enrolments_user_id'))

    op.drop_table('enrolments')
