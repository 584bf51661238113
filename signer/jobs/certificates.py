"""Certificate jobs for the hsm worker: copy an imported certificate onto the token.

The web tier imports the Government CA's certificate into the database (see
:mod:`signer.pki.external`) but cannot touch the HSM; this job stores the certificate object next
to the key so other PKCS#11 applications see it. Signing reads the certificate from the database,
so the job is a convenience: running it twice, or late, is harmless.
"""

from __future__ import annotations

import logging

from signer.jobs import services
from signer.models import Credential, CredentialStatus

log = logging.getLogger(__name__)


def store_certificate(credential_id: str) -> str:
    """Store the credential's certificate on the token under its key label; ``stored`` or
    ``skipped`` (no such credential, no certificate, or no longer active)."""
    svc = services()
    with svc.db.session(readonly=True) as s:
        credential = s.get(Credential, credential_id)
        if credential is None or credential.certificate_der is None \
                or credential.status != CredentialStatus.ACTIVE.value:
            log.info("not storing a certificate for credential %s: nothing active to store", credential_id)
            return "skipped"
        label, der = credential.hsm_key_label, credential.certificate_der
    svc.hsm().store_certificate(label, der)
    return "stored"
