"""Certificate profiles as data: what the built-in CA puts into each kind of certificate.

A profile fixes key usage, extended key usage, basic constraints, policy and default validity.
Certificate policy OIDs hang off a configurable arc; :data:`DEFAULT_POLICY_ARC` is a placeholder
under the UUID arc 2.25 (usable without registration) until the deployment has its own arc::

    profile = SIGNING.with_policy_arc("1.3.6.1.4.1.99999.2")
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import CertificatePoliciesOID, ExtendedKeyUsageOID

from signer.pki.errors import InvalidInput

#: Placeholder policy arc (2.25.<UUID as integer>, RFC 4122 / ITU-T X.667); override per deployment.
DEFAULT_POLICY_ARC = "2.25.51348513271615638766354367207371986410"

_OID_RE = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")

KEY_USAGE_NAMES = frozenset({
    "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
    "key_agreement", "key_cert_sign", "crl_sign",
})


def check_oid(oid: str) -> str:
    """Return ``oid`` if it is a dotted-decimal OID, else raise :class:`InvalidInput`."""
    if not _OID_RE.match(oid):
        raise InvalidInput(f"not a dotted-decimal OID: {oid!r}")
    return oid


@dataclass(frozen=True)
class Profile:
    """One kind of certificate.

    ``policy_suffix`` is appended to ``policy_arc`` to form the certificate policy OID;
    ``any_policy`` asserts anyPolicy instead (issuing CAs, so any end-entity policy chains).
    ``revocation_info`` adds AIA (OCSP, CA issuers) and the CRL distribution point.
    """

    name: str
    validity_days: int
    key_usage: frozenset[str]
    extended_key_usage: tuple[x509.ObjectIdentifier, ...] = ()
    eku_critical: bool = False
    ca: bool = False
    path_length: int | None = None
    policy_suffix: str | None = None
    any_policy: bool = False
    policy_arc: str = DEFAULT_POLICY_ARC
    ocsp_nocheck: bool = False
    revocation_info: bool = True

    def __post_init__(self) -> None:
        unknown = self.key_usage - KEY_USAGE_NAMES
        if unknown:
            raise InvalidInput(f"unknown key usage {sorted(unknown)}")
        if self.validity_days <= 0:
            raise InvalidInput("validity_days must be positive")
        check_oid(self.policy_arc)

    @property
    def policy_oid(self) -> str | None:
        """The certificate policy OID this profile asserts, if any (anyPolicy excluded)."""
        return None if self.policy_suffix is None else f"{self.policy_arc}.{self.policy_suffix}"

    def with_policy_arc(self, arc: str) -> Profile:
        """The same profile with policy OIDs under ``arc``."""
        return dataclasses.replace(self, policy_arc=check_oid(arc))

    def key_usage_extension(self) -> x509.KeyUsage:
        """The KeyUsage extension value (always marked critical by the CA)."""
        flags = {name: name in self.key_usage for name in KEY_USAGE_NAMES}
        return x509.KeyUsage(**flags, encipher_only=False, decipher_only=False)

    def policies_extension(self) -> x509.CertificatePolicies | None:
        """The CertificatePolicies extension value, or ``None`` when the profile has no policy."""
        oids: list[x509.ObjectIdentifier] = []
        if self.any_policy:
            oids.append(CertificatePoliciesOID.ANY_POLICY)
        if self.policy_oid is not None:
            oids.append(x509.ObjectIdentifier(self.policy_oid))
        if not oids:
            return None
        return x509.CertificatePolicies([x509.PolicyInformation(oid, None) for oid in oids])


ROOT_CA = Profile(
    name="root-ca", validity_days=20 * 365 + 5, key_usage=frozenset({"key_cert_sign", "crl_sign"}),
    ca=True, path_length=None, revocation_info=False,  # a trust anchor has no issuer to ask
)

ISSUING_CA = Profile(
    name="issuing-ca", validity_days=10 * 365 + 2, key_usage=frozenset({"key_cert_sign", "crl_sign"}),
    ca=True, path_length=0, any_policy=True,
)

# Leader (personal) and organisation-seal keys. No EKU on purpose: Adobe Reader reads an absent EKU
# as "any purpose", while a present one must list emailProtection, anyExtendedKeyUsage, Adobe
# Authentic Documents or Microsoft Document Signing; pyHanko does not check EKU by default. A
# deployment that wants one uses dataclasses.replace(SIGNING, extended_key_usage=(EMAIL_PROTECTION,)).
SIGNING = Profile(
    name="signing", validity_days=3 * 365 + 1,
    key_usage=frozenset({"digital_signature", "content_commitment"}), policy_suffix="1.1",
)

# RFC 3161 2.3: the TSA certificate has exactly one EKU, id-kp-timeStamping, marked critical.
TSA = Profile(
    name="tsa", validity_days=5 * 365 + 1, key_usage=frozenset({"digital_signature"}),
    extended_key_usage=(ExtendedKeyUsageOID.TIME_STAMPING,), eku_critical=True, policy_suffix="2.1",
)

# RFC 6960 4.2.2.2: delegated responders carry id-kp-OCSPSigning; id-pkix-ocsp-nocheck tells
# clients not to check the responder's own revocation status (so keep its validity short).
OCSP_RESPONDER = Profile(
    name="ocsp-responder", validity_days=90, key_usage=frozenset({"digital_signature"}),
    extended_key_usage=(ExtendedKeyUsageOID.OCSP_SIGNING,), policy_suffix="3.1", ocsp_nocheck=True,
)

#: The TSTInfo policy our TSA asserts by default: the TSA certificate's policy.
TSA_POLICY_SUFFIX = "2.1"


def tsa_policy_oid(arc: str = DEFAULT_POLICY_ARC) -> str:
    """The default time-stamping policy OID under ``arc``."""
    return f"{check_oid(arc)}.{TSA_POLICY_SUFFIX}"


PROFILES: dict[str, Profile] = {p.name: p for p in (ROOT_CA, ISSUING_CA, SIGNING, TSA, OCSP_RESPONDER)}

EMAIL_PROTECTION = ExtendedKeyUsageOID.EMAIL_PROTECTION

__all__ = [
    "DEFAULT_POLICY_ARC", "EMAIL_PROTECTION", "ISSUING_CA", "KEY_USAGE_NAMES", "OCSP_RESPONDER",
    "PROFILES", "ROOT_CA", "SIGNING", "TSA", "TSA_POLICY_SUFFIX", "Profile", "check_oid",
    "tsa_policy_oid",
]
