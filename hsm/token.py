"""The HSM facade: key generation, signing, public keys and certificate objects on one token."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pkcs11.exceptions as p11e
from asn1crypto import keys
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.constants import CertificateType
from pkcs11.mechanisms import MGF
from pkcs11.util.ec import encode_ec_public_key, encode_ecdsa_signature, encode_named_curve_parameters
from pkcs11.util.rsa import encode_rsa_public_key

from hsm import session
from hsm.algorithms import KeyKind, KeySpec, Scheme, SignatureAlgorithm
from hsm.errors import InvalidRequest, KeyExists, KeyNotFound, MechanismUnsupported
from hsm.session import HsmConfig, TokenSession

_RSA_HASH_MECH = {
    "sha256": Mechanism.SHA256_RSA_PKCS,
    "sha384": Mechanism.SHA384_RSA_PKCS,
    "sha512": Mechanism.SHA512_RSA_PKCS,
}
_PSS_HASH_MECH = {
    "sha256": Mechanism.SHA256_RSA_PKCS_PSS,
    "sha384": Mechanism.SHA384_RSA_PKCS_PSS,
    "sha512": Mechanism.SHA512_RSA_PKCS_PSS,
}
_PSS_PARAMS = {
    "sha256": (Mechanism.SHA256, MGF.SHA256, 32),
    "sha384": (Mechanism.SHA384, MGF.SHA384, 48),
    "sha512": (Mechanism.SHA512, MGF.SHA512, 64),
}
# Private keys never leave the token and can only sign.
_PRIVATE_TEMPLATE = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
    Attribute.DECRYPT: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
}
_PUBLIC_TEMPLATE = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: False,
    Attribute.VERIFY: True,
    Attribute.ENCRYPT: False,
    Attribute.WRAP: False,
}
_LABEL_MAX = 64

#: DER DigestInfo up to the digest (RFC 8017 section 9.2, note 1): CKM_RSA_PKCS signs prefix + digest.
#: Constants rather than an asn1crypto encoding per signature, which cost a tenth of a C_Sign.
DIGEST_INFO_PREFIX = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}


@dataclass(frozen=True)
class KeyInfo:
    """A key pair on the token: label, CKA_ID (hex), key family and SubjectPublicKeyInfo DER."""

    label: str
    key_id: str
    kind: KeyKind
    size: int
    public_key_der: bytes


@dataclass(frozen=True)
class TokenStatus:
    """What ``signer hsm-status`` and the readiness probe report about the token."""

    module: str
    token_label: str
    serial: str
    manufacturer: str
    model: str
    key_count: int


def _check_label(label: str) -> None:
    if not label or len(label) > _LABEL_MAX or not label.isprintable():
        raise InvalidRequest(f"invalid key label {label!r}")


class Hsm:
    """Operations on one token. Cheap to create; the PKCS#11 session is shared per process.

    Every method takes the process-wide lock, so a :class:`Hsm` may be used from many threads.
    """

    def __init__(self, config: HsmConfig) -> None:
        self.config = config

    def __repr__(self) -> str:
        return f"Hsm(module={self.config.module!r}, token={self.config.token_label!r})"

    # -- token ---------------------------------------------------------------------------------

    def status(self) -> TokenStatus:
        """Open (or reuse) the session and describe the token."""

        def op(ts: TokenSession) -> TokenStatus:
            token = ts.token
            count = len(list(ts.current().get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})))
            return TokenStatus(
                module=self.config.module,
                token_label=token.label,
                serial=token.serial.decode() if isinstance(token.serial, bytes) else str(token.serial),
                manufacturer=token.manufacturer_id,
                model=token.model,
                key_count=count,
            )

        return session.run(self.config, op)

    def ping(self) -> None:
        """Cheap liveness check for heartbeats: log in if needed, prove the token is still in its
        slot (C_GetTokenInfo) and the session handle works (C_GenerateRandom). Enumerates no
        objects. Raises :class:`HsmUnavailable` (token removed, module missing), PinIncorrect or
        PinLocked (login refused).

        The login state itself is not queried (python-pkcs11 0.9 has no C_GetSessionInfo); in this
        design a session only loses its login by being closed or by its token going away, and
        both fail here, after one re-open attempt.
        """

        def op(ts: TokenSession) -> None:
            if not ts.token_present():
                raise p11e.TokenNotPresent(f"token {self.config.token_label!r} left its slot")
            ts.current().generate_random(64)

        session.run(self.config, op)

    # -- keys ----------------------------------------------------------------------------------

    def generate_key(self, label: str, spec: KeySpec) -> KeyInfo:
        """Generate a key pair inside the token: sensitive, never extractable, sign-only."""
        _check_label(label)
        key_id = os.urandom(16)

        def op(ts: TokenSession) -> KeyInfo:
            if ts.find_optional(label, ObjectClass.PRIVATE_KEY) is not None:
                raise KeyExists(f"a key labelled {label!r} already exists")
            sess = ts.current()
            common = {
                "id": key_id, "label": label, "store": True,
                "capabilities": MechanismFlag.SIGN | MechanismFlag.VERIFY,
                "public_template": dict(_PUBLIC_TEMPLATE),
                "private_template": dict(_PRIVATE_TEMPLATE),
            }
            if spec.kind is KeyKind.RSA:
                pub, _priv = sess.generate_keypair(KeyType.RSA, spec.size, **common)
            else:
                assert spec.curve is not None
                params = sess.create_domain_parameters(
                    KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(spec.curve)},
                    local=True,
                )
                pub, _priv = params.generate_keypair(**common)
            return KeyInfo(label, key_id.hex(), spec.kind, spec.size, _spki(pub, spec.kind))

        return session.run(self.config, op)

    def key_info(self, label: str) -> KeyInfo:
        """Describe an existing key pair."""

        def op(ts: TokenSession) -> KeyInfo:
            priv = ts.find(label, ObjectClass.PRIVATE_KEY)
            pub = ts.find(label, ObjectClass.PUBLIC_KEY)
            kind = KeyKind.RSA if priv.key_type == KeyType.RSA else KeyKind.EC
            return KeyInfo(label, bytes(priv.id).hex(), kind, _key_size(pub, kind), _spki(pub, kind))

        return session.run(self.config, op)

    def key_attributes(self, label: str) -> dict[str, bool]:
        """Security attributes of the private key, read back from the token."""
        names = ("TOKEN", "PRIVATE", "SENSITIVE", "EXTRACTABLE", "ALWAYS_SENSITIVE",
                 "NEVER_EXTRACTABLE", "SIGN", "DECRYPT", "UNWRAP")

        def op(ts: TokenSession) -> dict[str, bool]:
            priv = ts.find(label, ObjectClass.PRIVATE_KEY)
            return {name.lower(): bool(priv[getattr(Attribute, name)]) for name in names}

        return session.run(self.config, op)

    def list_keys(self) -> list[str]:
        """Labels of every private key on the token."""

        def op(ts: TokenSession) -> list[str]:
            objs = ts.current().get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
            return sorted(str(o.label) for o in objs)

        return session.run(self.config, op)

    def delete_key(self, label: str) -> None:
        """Destroy the key pair and its certificate object."""

        def op(ts: TokenSession) -> None:
            found = False
            for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY, ObjectClass.CERTIFICATE):
                for obj in list(ts.current().get_objects({Attribute.LABEL: label, Attribute.CLASS: cls})):
                    obj.destroy()
                    found = True
            ts.keys.clear()
            if not found:
                raise KeyNotFound(f"no key labelled {label!r}")

        session.run(self.config, op)

    # -- signing -------------------------------------------------------------------------------

    def sign(self, label: str, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        """Sign ``data`` (hashed as ``algorithm`` says). ECDSA output is DER."""
        if algorithm.scheme is Scheme.ECDSA:
            return self.sign_digest(label, algorithm.digest(data), algorithm)

        def op(ts: TokenSession) -> bytes:
            key = ts.find(label, ObjectClass.PRIVATE_KEY)
            _check_fit(ts, label, algorithm)
            if algorithm.scheme is Scheme.RSA_PSS:
                return bytes(key.sign(data, mechanism=_PSS_HASH_MECH[algorithm.hash],
                                      mechanism_param=_PSS_PARAMS[algorithm.hash]))
            return bytes(key.sign(data, mechanism=_RSA_HASH_MECH[algorithm.hash]))

        return session.run(self.config, op)

    def sign_digest(self, label: str, digest: bytes, algorithm: SignatureAlgorithm) -> bytes:
        """Sign a digest computed elsewhere (sign-hash, ECDSA, cryptography's Prehashed)."""
        if len(digest) != algorithm.digest_size:
            raise InvalidRequest(
                f"{algorithm.hash} digest must be {algorithm.digest_size} bytes, got {len(digest)}"
            )

        def op(ts: TokenSession) -> bytes:
            key = ts.find(label, ObjectClass.PRIVATE_KEY)
            _check_fit(ts, label, algorithm)
            if algorithm.scheme is Scheme.ECDSA:
                return bytes(encode_ecdsa_signature(key.sign(digest, mechanism=Mechanism.ECDSA)))
            if algorithm.scheme is Scheme.RSA_PSS:
                return bytes(key.sign(digest, mechanism=Mechanism.RSA_PKCS_PSS,
                                      mechanism_param=_PSS_PARAMS[algorithm.hash]))
            return bytes(key.sign(DIGEST_INFO_PREFIX[algorithm.hash] + digest, mechanism=Mechanism.RSA_PKCS))

        return session.run(self.config, op)

    # -- certificates --------------------------------------------------------------------------

    def store_certificate(self, label: str, certificate_der: bytes) -> None:
        """Store (or replace) the X.509 certificate object linked to the key ``label``."""
        from asn1crypto import x509

        cert = x509.Certificate.load(certificate_der)

        def op(ts: TokenSession) -> None:
            priv = ts.find(label, ObjectClass.PRIVATE_KEY)
            sess = ts.current()
            # Create the new object before destroying the old one(s): a failure in between leaves
            # a certificate (possibly two, which the next store cleans up), never none.
            old = list(sess.get_objects({Attribute.LABEL: label, Attribute.CLASS: ObjectClass.CERTIFICATE}))
            ts.keys.pop((label, str(ObjectClass.CERTIFICATE)), None)
            sess.create_object({
                Attribute.CLASS: ObjectClass.CERTIFICATE,
                Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: False,
                Attribute.LABEL: label,
                Attribute.ID: bytes(priv.id),
                Attribute.SUBJECT: cert.subject.dump(),
                Attribute.ISSUER: cert.issuer.dump(),
                Attribute.SERIAL_NUMBER: cert["tbs_certificate"]["serial_number"].dump(),
                Attribute.VALUE: certificate_der,
            })
            for obj in old:
                obj.destroy()

        session.run(self.config, op)

    def certificate(self, label: str) -> bytes | None:
        """The DER certificate stored with the key ``label``, if any."""

        def op(ts: TokenSession) -> bytes | None:
            obj = ts.find_optional(label, ObjectClass.CERTIFICATE)
            return None if obj is None else bytes(obj[Attribute.VALUE])

        return session.run(self.config, op)


def _check_fit(ts: TokenSession, label: str, algorithm: SignatureAlgorithm) -> None:
    # The key type is cached with the handle: reading it is a PKCS#11 round trip per signature.
    cache_key = (label, "kind")
    kind = ts.keys.get(cache_key)
    if kind is None:
        key_type = ts.find(label, ObjectClass.PRIVATE_KEY).key_type
        kind = ts.keys[cache_key] = KeyKind.RSA if key_type == KeyType.RSA else KeyKind.EC
    if not algorithm.fits(kind):
        raise MechanismUnsupported(f"{algorithm.scheme} cannot be used with an {kind} key")


def _spki(pub: Any, kind: KeyKind) -> bytes:
    if kind is KeyKind.EC:
        return bytes(encode_ec_public_key(pub))
    rsa_pub = keys.RSAPublicKey.load(encode_rsa_public_key(pub))
    return bytes(keys.PublicKeyInfo(
        {"algorithm": {"algorithm": "rsa", "parameters": None}, "public_key": rsa_pub}
    ).dump())


def _key_size(pub: Any, kind: KeyKind) -> int:
    if kind is KeyKind.RSA:
        return int(pub.key_length)
    info = keys.PublicKeyInfo.load(_spki(pub, kind))
    return int(info.bit_size)


__all__ = ["Hsm", "HsmConfig", "KeyInfo", "TokenStatus"]
