"""Helpers shared by the CA and the TSA: times, key checks and signature hashes."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key

from hsm import Hsm
from hsm.keys import HsmECPrivateKey, HsmRSAPrivateKey, private_key
from signer.pki.errors import InvalidInput, IssuerMismatch

HsmPrivateKey = HsmRSAPrivateKey | HsmECPrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
SignatureHash = hashes.SHA256 | hashes.SHA384 | hashes.SHA512


def utc(value: dt.datetime, what: str) -> dt.datetime:
    """``value`` in UTC, whole seconds. Naive datetimes are refused: ambiguous across hosts."""
    if value.tzinfo is None:
        raise InvalidInput(f"{what} must be timezone-aware")
    return value.astimezone(dt.UTC).replace(microsecond=0)


def now() -> dt.datetime:
    """The current UTC time, whole seconds (X.509 time precision)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def signature_hash(key: PublicKey | HsmPrivateKey) -> SignatureHash:
    """SHA-256, except SHA-384 for P-384 and SHA-512 for P-521 keys (matching strength)."""
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if key.curve.key_size >= 521:
            return hashes.SHA512()
        if key.curve.key_size >= 384:
            return hashes.SHA384()
    return hashes.SHA256()


def spki(key: PublicKey) -> bytes:
    """DER SubjectPublicKeyInfo of ``key``."""
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def load_public_key(public_key_der: bytes) -> PublicKey:
    """Load a DER SubjectPublicKeyInfo holding an RSA or EC key, else :class:`InvalidInput`."""
    try:
        key = load_der_public_key(public_key_der)
    except (ValueError, TypeError):
        raise InvalidInput("public key is not a DER SubjectPublicKeyInfo") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise InvalidInput("only RSA and EC public keys can be certified")
    return key


def cert_public_key(cert: x509.Certificate) -> PublicKey:
    """The RSA or EC public key of ``cert``."""
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise IssuerMismatch("certificate has neither an RSA nor an EC key")
    return key


def signing_key(hsm: Hsm, label: str, cert: x509.Certificate) -> HsmPrivateKey:
    """The HSM key ``label``, after checking it is the key certified by ``cert``."""
    key = private_key(hsm, label)
    if spki(key.public_key()) != spki(cert_public_key(cert)):
        raise IssuerMismatch(f"HSM key {label!r} does not belong to certificate "
                             f"{cert.subject.rfc4514_string()!r}")
    return key


def issuer_key(hsm: Hsm, label: str, cert: x509.Certificate, usage: str) -> HsmPrivateKey:
    """Like :func:`signing_key`, and ``cert`` must be a CA with key usage ``usage``."""
    try:
        ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise IssuerMismatch("issuer certificate lacks basic constraints or key usage") from None
    if not ca or not getattr(ku, usage):
        raise IssuerMismatch(f"issuer certificate is not a CA allowed to {usage.replace('_', ' ')}")
    return signing_key(hsm, label, cert)


def has_eku(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bool:
    """Whether ``cert`` has an extended key usage extension listing ``oid``."""
    try:
        return oid in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
