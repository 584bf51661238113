"""Revoking a built-in CA certificate: the credential stops at once (pending requests FAILED, new
ones refused), the re-issued CRL lists the serial with its reason (openssl), and validation with
revocation checking required fails after it and passes before."""

from __future__ import annotations

import asyncio
import base64
import subprocess
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import RevokedError

import hsm
from signer.errors import Conflict, Forbidden, NotFound
from signer.models import Credential, Role
from signer.pki.revocation import revoke_credential
from signer.principal import Principal
from signer.services import Services
from signer.signing.material import latest_crls, trust_roots
from tests.conftest import World
from tests.signing_support import SigningWorld, approve, make_signing_world


@pytest.fixture
def sw(services: Services, world: World, token: hsm.Hsm) -> SigningWorld:
    return make_signing_world(services, world, token, "ec-p256")


def _person(world: World, username: str, organisation: str, *roles: Role) -> Principal:
    return Principal(kind="user", id=world.users[username], organisation_id=organisation, roles=frozenset(roles))


def _create(client: Any, sw: SigningWorld) -> Any:
    return client.post("/v1/sign-requests", json={"credential_id": sw.leader_credential, "documents": [
        {"name": "hash", "format": "raw", "hash": "77" * 32}]}, headers={"Authorization": f"Bearer {sw.world.api_key}"})


def _validate(services: Services, cert_der: bytes, chain_pem: str) -> None:
    with services.db.session() as s:
        roots, crls = trust_roots(s), latest_crls(s)
    intermediates = [asn1_x509.Certificate.load(base64.b64decode("".join(
        line for line in block.splitlines() if not line.startswith("-----"))))
        for block in chain_pem.split("-----END CERTIFICATE-----") if "BEGIN" in block]
    context = ValidationContext(trust_roots=roots, crls=crls, allow_fetching=False, revocation_mode="hard-fail")
    validator = CertificateValidator(asn1_x509.Certificate.load(cert_der), intermediate_certs=intermediates,
                                     validation_context=context)
    asyncio.run(validator.async_validate_usage({"digital_signature"}))


def test_revocation_stops_the_credential_and_reaches_the_crl(client: Any, services: Services, sw: SigningWorld,
                                                             token: hsm.Hsm, tmp_path: Path) -> None:
    world = sw.world
    with services.db.session() as s:
        cred = s.get(Credential, sw.leader_credential)
        assert cred is not None
        cert_der, chain_pem = cred.certificate_der or b"", cred.chain_pem or ""
    _validate(services, cert_der, chain_pem)  # valid, with revocation checking required

    waiting = _create(client, sw).json
    approved = _create(client, sw).json
    assert approve(client, world, sw.leader, approved).status_code == 202  # SIGNING, not yet signed

    ra = _person(world, "office-ra", world.office, Role.RA_OFFICER)
    with services.db.session() as s:
        with pytest.raises(Forbidden):
            revoke_credential(s, token, _person(world, "office-clerk", world.office, Role.CLERK),
                              sw.leader_credential, reason="keyCompromise")
        with pytest.raises(NotFound):
            revoke_credential(s, token, _person(world, "other-admin", world.other, Role.ADMIN),
                              sw.leader_credential, reason="keyCompromise")
    with services.db.session() as s:
        revoked = revoke_credential(s, token, ra, sw.leader_credential, reason="keyCompromise")
        serial = revoked.serial
    with services.db.session() as s, pytest.raises(Conflict):
        revoke_credential(s, token, ra, sw.leader_credential, reason="keyCompromise")

    headers = {"Authorization": f"Bearer {world.api_key}"}
    for req in (waiting, approved):
        final = client.get(f"/v1/sign-requests/{req['id']}", headers=headers).json
        assert (final["state"], final["reason"]) == ("FAILED", "CREDENTIAL_UNUSABLE"), final
    refused = _create(client, sw)
    assert refused.status_code == 409 and refused.json["type"] == "urn:signer:problem:credential-unusable"

    with services.db.session() as s:
        crls = [asn1_crl.CertificateList.load(bytes(c)) for c in latest_crls(s)]
    issuing = next(c for c in crls if any(format(r["user_certificate"].native, "x") == serial
                                          for r in c["tbs_cert_list"]["revoked_certificates"]))
    path = tmp_path / "issuing.crl"
    path.write_bytes(issuing.dump())
    text = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(path), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert f"Serial Number: {serial.upper().zfill(len(serial) + len(serial) % 2)}" in text
    assert "Key Compromise" in text
    with pytest.raises(RevokedError):
        _validate(services, cert_der, chain_pem)


def test_certificates_for_expiry_dashboards(client: Any, services: Services, sw: SigningWorld,
                                            token: hsm.Hsm) -> None:
    world = sw.world
    with services.db.session() as s:
        revoke_credential(s, token, _person(world, "office-ra", world.office, Role.RA_OFFICER), sw.seal_credential,
                          reason="superseded")

    def listing(username: str, query: str = "") -> Any:
        client.post("/v1/session", json={"username": username, "password": world.password})
        try:
            return client.get(f"/v1/certificates{query}")
        finally:
            client.delete("/v1/session")

    everything = listing("office-auditor").json["items"]
    assert {c["credential_id"] for c in everything} == {sw.leader_credential, sw.seal_credential}
    assert [c["not_after"] for c in everything] == sorted(c["not_after"] for c in everything)
    revoked = listing("office-auditor", "?status=revoked").json["items"]
    assert [(c["credential_id"], c["revocation_reason"]) for c in revoked] == [(sw.seal_credential, "superseded")]
    # Signing certificates last three years: none ends within 30 days, both within 1,200.
    assert listing("office-admin", "?expiring_within=30d").json["items"] == []
    assert len(listing("office-admin", "?expiring_within=1200d").json["items"]) == 2
    assert listing("other-admin").json["items"] == []  # another organisation's certificates stay hidden
    assert listing("office-clerk").status_code == 403
    assert listing("office-admin", "?expiring_within=30").status_code == 422
