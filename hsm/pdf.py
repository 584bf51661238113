"""A pyHanko :class:`~pyhanko.sign.signers.Signer` whose raw signatures come from the HSM."""

from __future__ import annotations

from typing import Any

from asn1crypto import algos, x509
from pyhanko.sign.signers import Signer
from pyhanko_certvalidator.registry import SimpleCertificateStore

from hsm.algorithms import Scheme, SignatureAlgorithm
from hsm.errors import MechanismUnsupported
from hsm.token import Hsm

_SCHEMES = {
    "rsassa_pkcs1v15": Scheme.RSA_PKCS1V15,
    "rsassa_pss": Scheme.RSA_PSS,
    "ecdsa": Scheme.ECDSA,
}


def pss_params(digest_algorithm: str) -> algos.RSASSAPSSParams:
    """The RSASSA-PSS parameters of what the HSM produces: MGF1 with the same hash, salt = hash size."""
    md = digest_algorithm.lower()
    return algos.RSASSAPSSParams({
        "hash_algorithm": algos.DigestAlgorithm({"algorithm": md}),
        "mask_gen_algorithm": algos.MaskGenAlgorithm(
            {"algorithm": "mgf1", "parameters": algos.DigestAlgorithm({"algorithm": md})}
        ),
        "salt_length": SignatureAlgorithm(Scheme.RSA_PSS, md).digest_size,
    })


def _check_pss_params(params: Any, digest_algorithm: str) -> None:
    expected = pss_params(digest_algorithm)
    if params.native != expected.native:
        raise MechanismUnsupported(
            "the HSM signs RSASSA-PSS with MGF1 over the message hash and salt length = digest "
            f"length only; declared parameters {params.native!r} do not match"
        )


class HsmSigner(Signer):  # type: ignore[misc]
    """Signs CMS signed attributes with an HSM key; the key never leaves the token.

    ``signing_cert`` must hold the key's public key; ``other_certs`` are the chain to embed.
    With ``prefer_pss`` an RSA key signs RSASSA-PSS with salt length = digest length (pyHanko's
    default would declare the maximum salt length, which is not what the token produces).
    """

    def __init__(self, hsm: Hsm, label: str, signing_cert: x509.Certificate,
                 other_certs: list[x509.Certificate] | None = None, *,
                 prefer_pss: bool = False, embed_roots: bool = True,
                 signature_mechanism: algos.SignedDigestAlgorithm | None = None) -> None:
        registry = SimpleCertificateStore.from_certs([signing_cert, *(other_certs or [])])
        super().__init__(prefer_pss=prefer_pss, embed_roots=embed_roots,
                         signing_cert=signing_cert, cert_registry=registry,
                         signature_mechanism=signature_mechanism)
        self._hsm = hsm
        self._label = label

    def get_signature_mechanism_for_digest(self, digest_algorithm: str | None) -> algos.SignedDigestAlgorithm:
        mechanism: algos.SignedDigestAlgorithm = super().get_signature_mechanism_for_digest(digest_algorithm)
        if (self.signature_mechanism is None and digest_algorithm is not None
                and mechanism.signature_algo == "rsassa_pss"):
            # Declare what the token signs with (see pss_params), not pyHanko's optimal_pss_params.
            mechanism = algos.SignedDigestAlgorithm(
                {"algorithm": "rsassa_pss", "parameters": pss_params(digest_algorithm)}
            )
        return mechanism

    def _max_signature_size(self) -> int:
        public_key = self.signing_cert.public_key
        if public_key.algorithm == "ec":
            # DER ECDSA: two INTEGERs of up to (field bytes + 1) plus headers.
            field_bytes: int = (public_key.bit_size + 7) // 8
            return 2 * (field_bytes + 3) + 3
        bits: int = public_key.bit_size
        return (bits + 7) // 8

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        mechanism: Any = self.get_signature_mechanism_for_digest(digest_algorithm)
        scheme = _SCHEMES.get(mechanism.signature_algo)
        if scheme is None:
            raise MechanismUnsupported(f"signature algorithm {mechanism.signature_algo} is not supported")
        if scheme is Scheme.RSA_PSS:
            # An explicitly configured mechanism may declare other parameters: refuse rather than
            # produce a signature that does not verify against what the CMS says.
            _check_pss_params(mechanism["parameters"], digest_algorithm)
        if dry_run:
            return bytes(self._max_signature_size())
        # The HSM call is sub-millisecond and serialised by the process lock anyway: no executor.
        return self._hsm.sign(self._label, data, SignatureAlgorithm(scheme, digest_algorithm.lower()))
