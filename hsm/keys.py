"""``cryptography`` private-key classes backed by HSM keys.

cryptography's X.509 builders (CSR, certificate, CRL, OCSP) call ``private_key.sign(...)`` on
whatever object they get, so these let HSM keys sign them without the key leaving the token.
"""

from __future__ import annotations

from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import load_der_public_key

from hsm.algorithms import HASHES, KeyKind, Scheme, SignatureAlgorithm
from hsm.errors import MechanismUnsupported
from hsm.token import Hsm


def _hash_name(algorithm: Any) -> tuple[str, bool]:
    """Our hash name for a cryptography hash (or Prehashed), and whether data is a digest."""
    prehashed = isinstance(algorithm, utils.Prehashed)
    inner = algorithm._algorithm if prehashed else algorithm
    # cryptography's names ("sha256", ...) are ours.
    if inner.name not in HASHES:
        raise MechanismUnsupported(f"hash {inner.name} is not supported by the HSM layer")
    return str(inner.name), prehashed


def _refuse_export() -> NoReturn:
    raise MechanismUnsupported("HSM private keys cannot be exported")


class _HsmKeyMixin:
    def __init__(self, hsm: Hsm, label: str, public_key_der: bytes) -> None:
        self._hsm = hsm
        self._label = label
        self._public = load_der_public_key(public_key_der)

    @property
    def label(self) -> str:
        return self._label

    def _sign(self, data: bytes, algorithm: Any, scheme: Scheme) -> bytes:
        name, prehashed = _hash_name(algorithm)
        sig_alg = SignatureAlgorithm(scheme, name)
        if prehashed:
            return self._hsm.sign_digest(self._label, data, sig_alg)
        return self._hsm.sign(self._label, data, sig_alg)

    def private_numbers(self) -> NoReturn:
        _refuse_export()

    def private_bytes(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse_export()

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: Any) -> Any:
        return self


class HsmRSAPrivateKey(_HsmKeyMixin, rsa.RSAPrivateKey):
    """An RSA key on the token. PKCS#1 v1.5 and PSS with salt length = digest length."""

    def sign(self, data: bytes, padding_: padding.AsymmetricPadding,
             algorithm: hashes.HashAlgorithm | utils.Prehashed | utils.NoDigestInfo) -> bytes:
        if isinstance(algorithm, utils.NoDigestInfo):
            raise MechanismUnsupported("raw RSA without DigestInfo is not offered")
        if isinstance(padding_, padding.PKCS1v15):
            return self._sign(data, algorithm, Scheme.RSA_PKCS1V15)
        if isinstance(padding_, padding.PSS):
            name, _ = _hash_name(algorithm)
            salt = padding_._salt_length
            if salt not in (padding.PSS.DIGEST_LENGTH, SignatureAlgorithm(Scheme.RSA_PSS, name).digest_size):
                raise MechanismUnsupported("PSS is supported with salt length = digest length only")
            mgf = padding_.mgf
            if not isinstance(mgf, padding.MGF1) or mgf._algorithm.name != name:
                raise MechanismUnsupported(f"PSS is supported with MGF1 over the signing hash ({name}) only")
            return self._sign(data, algorithm, Scheme.RSA_PSS)
        raise MechanismUnsupported(f"padding {padding_.name} is not supported")

    def public_key(self) -> rsa.RSAPublicKey:
        assert isinstance(self._public, rsa.RSAPublicKey)
        return self._public

    @property
    def key_size(self) -> int:
        return self.public_key().key_size

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> NoReturn:
        raise MechanismUnsupported("HSM signing keys do not decrypt")


class HsmECPrivateKey(_HsmKeyMixin, ec.EllipticCurvePrivateKey):
    """An EC key on the token; ECDSA signatures in DER, as cryptography expects."""

    def sign(self, data: bytes | bytearray | memoryview,
             signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise MechanismUnsupported("only ECDSA is supported")
        return self._sign(bytes(data), signature_algorithm.algorithm, Scheme.ECDSA)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        assert isinstance(self._public, ec.EllipticCurvePublicKey)
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self.public_key().curve

    @property
    def key_size(self) -> int:
        return self.curve.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> NoReturn:
        raise MechanismUnsupported("HSM signing keys do not do key agreement")


def private_key(hsm: Hsm, label: str) -> HsmRSAPrivateKey | HsmECPrivateKey:
    """A cryptography private-key object for the HSM key ``label``."""
    info = hsm.key_info(label)
    if info.kind is KeyKind.RSA:
        return HsmRSAPrivateKey(hsm, label, info.public_key_der)
    return HsmECPrivateKey(hsm, label, info.public_key_der)
