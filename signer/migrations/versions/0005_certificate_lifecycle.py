"""certificate lifecycle

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('approval_policies',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('profile', sa.String(length=64), nullable=False),
    sa.Column('approvals_required', sa.Integer(), nullable=False),
    sa.Column('roles', sa.JSON(), nullable=False),
    sa.Column('ttl_hours', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('action', 'profile')
    )
    op.create_table('pki_profiles',
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('definition', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'name')
    )
    op.create_table('certificate_requests',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('organisation_id', sa.String(length=36), nullable=False),
    sa.Column('profile', sa.String(length=64), nullable=True),
    sa.Column('subject_profile', sa.String(length=64), nullable=True),
    sa.Column('ca', sa.String(length=16), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('requested_by', sa.String(length=80), nullable=False),
    sa.Column('requester_user_id', sa.String(length=36), nullable=True),
    sa.Column('approvals_required', sa.Integer(), nullable=False),
    sa.Column('approver_roles', sa.JSON(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], ),
    sa.ForeignKeyConstraint(['requester_user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('certificate_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_certificate_requests_organisation_id'), ['organisation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_certificate_requests_status'), ['status'], unique=False)

    op.create_table('certificate_decisions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('decision', sa.String(length=8), nullable=False),
    sa.Column('comment', sa.String(length=500), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['certificate_requests.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('request_id', 'user_id')
    )
    with op.batch_alter_table('certificate_decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_certificate_decisions_request_id'), ['request_id'], unique=False)

    op.create_table('certificate_request_items',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('credential_id', sa.String(length=36), nullable=True),
    sa.Column('certificate_id', sa.String(length=36), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('csr_der', sa.LargeBinary(), nullable=True),
    sa.Column('key_label', sa.String(length=64), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['certificate_id'], ['certificates.id'], ),
    sa.ForeignKeyConstraint(['credential_id'], ['credentials.id'], ),
    sa.ForeignKeyConstraint(['request_id'], ['certificate_requests.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('request_id', 'position')
    )
    with op.batch_alter_table('certificate_request_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_certificate_request_items_credential_id'), ['credential_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_certificate_request_items_request_id'), ['request_id'], unique=False)

    op.create_table('ocsp_responses',
    sa.Column('certificate_id', sa.String(length=36), nullable=False),
    sa.Column('der', sa.LargeBinary(), nullable=False),
    sa.Column('cert_status', sa.String(length=16), nullable=False),
    sa.Column('this_update', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_update', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['certificate_id'], ['certificates.id'], ),
    sa.PrimaryKeyConstraint('certificate_id')
    )
    with op.batch_alter_table('ocsp_responses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ocsp_responses_next_update'), ['next_update'], unique=False)

    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=16), nullable=False, server_default='builtin'))
        batch_op.add_column(sa.Column('organisation_id', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('holder', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('notified_days', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_certificates_organisation_id'), ['organisation_id'], unique=False)
        batch_op.create_foreign_key('fk_certificates_organisation_id', 'organisations', ['organisation_id'], ['id'])

    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('profile', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('suspended_from', sa.String(length=16), nullable=True))

    # Certificates issued before this revision belong to their credential's organisation.
    op.execute("UPDATE certificates SET organisation_id = (SELECT organisation_id FROM credentials "
               "WHERE credentials.id = certificates.credential_id) WHERE credential_id IS NOT NULL")



def downgrade() -> None:
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.drop_column('suspended_from')
        batch_op.drop_column('profile')

    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_constraint('fk_certificates_organisation_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_certificates_organisation_id'))
        batch_op.drop_column('notified_days')
        batch_op.drop_column('holder')
        batch_op.drop_column('organisation_id')
        batch_op.drop_column('source')

    with op.batch_alter_table('ocsp_responses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ocsp_responses_next_update'))

    op.drop_table('ocsp_responses')
    with op.batch_alter_table('certificate_request_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_certificate_request_items_request_id'))
        batch_op.drop_index(batch_op.f('ix_certificate_request_items_credential_id'))

    op.drop_table('certificate_request_items')
    with op.batch_alter_table('certificate_decisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_certificate_decisions_request_id'))

    op.drop_table('certificate_decisions')
    with op.batch_alter_table('certificate_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_certificate_requests_status'))
        batch_op.drop_index(batch_op.f('ix_certificate_requests_organisation_id'))

    op.drop_table('certificate_requests')
    op.drop_table('pki_profiles')
    op.drop_table('approval_policies')
