"""Key specifications and signature algorithms, independent of any PKCS#11 session."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from hsm.errors import InvalidRequest


class KeyKind(enum.StrEnum):
    """Key families the service generates."""

    RSA = "rsa"
    EC = "ec"


@dataclass(frozen=True)
class KeySpec:
    """What kind of key to generate: ``rsa-2048``, ``ec-p256`` and so on."""

    kind: KeyKind
    size: int  # RSA modulus bits, or EC field bits
    curve: str | None = None  # named curve for EC keys

    @property
    def name(self) -> str:
        return f"rsa-{self.size}" if self.kind is KeyKind.RSA else f"ec-p{self.size}"

    @classmethod
    def parse(cls, name: str) -> KeySpec:
        """Parse one of :data:`KEY_SPECS`' names."""
        try:
            return KEY_SPECS[name]
        except KeyError:
            raise InvalidRequest(
                f"unsupported key spec {name!r}; expected one of {', '.join(KEY_SPECS)}"
            ) from None


KEY_SPECS: dict[str, KeySpec] = {
    "rsa-2048": KeySpec(KeyKind.RSA, 2048),
    "rsa-3072": KeySpec(KeyKind.RSA, 3072),
    "rsa-4096": KeySpec(KeyKind.RSA, 4096),
    "ec-p256": KeySpec(KeyKind.EC, 256, "secp256r1"),
    "ec-p384": KeySpec(KeyKind.EC, 384, "secp384r1"),
}


class Scheme(enum.StrEnum):
    """Signature schemes."""

    RSA_PKCS1V15 = "rsa-pkcs1v15"
    RSA_PSS = "rsa-pss"
    ECDSA = "ecdsa"


HASHES = ("sha256", "sha384", "sha512")


@dataclass(frozen=True)
class SignatureAlgorithm:
    """A scheme plus its hash, e.g. ``SignatureAlgorithm(Scheme.ECDSA, "sha256")``."""

    scheme: Scheme
    hash: str = "sha256"

    def __post_init__(self) -> None:
        if self.hash not in HASHES:
            raise InvalidRequest(f"unsupported hash {self.hash!r}; expected one of {HASHES}")

    @property
    def digest_size(self) -> int:
        return hashlib.new(self.hash).digest_size

    def digest(self, data: bytes) -> bytes:
        return hashlib.new(self.hash, data).digest()

    def fits(self, kind: KeyKind) -> bool:
        """Whether this algorithm can be used with a key of ``kind``."""
        return (self.scheme is Scheme.ECDSA) == (kind is KeyKind.EC)


RSA_SHA256 = SignatureAlgorithm(Scheme.RSA_PKCS1V15, "sha256")
RSA_PSS_SHA256 = SignatureAlgorithm(Scheme.RSA_PSS, "sha256")
ECDSA_SHA256 = SignatureAlgorithm(Scheme.ECDSA, "sha256")
