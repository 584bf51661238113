"""PKCS#11 access for the signing service: the only package that talks to the HSM.

Nothing here opens the module at import time. Typical use::

    hsm = Hsm(HsmConfig(module="/usr/lib/softhsm/libsofthsm2.so", token_label="signer", pin=pin))
    info = hsm.generate_key("leader-42", KeySpec.parse("ec-p256"))
    signature = hsm.sign("leader-42", b"data", ECDSA_SHA256)
"""

from hsm.algorithms import (
    ECDSA_SHA256,
    KEY_SPECS,
    RSA_PSS_SHA256,
    RSA_SHA256,
    KeyKind,
    KeySpec,
    Scheme,
    SignatureAlgorithm,
)
from hsm.errors import (
    AmbiguousKey,
    HsmError,
    HsmUnavailable,
    InvalidRequest,
    KeyExists,
    KeyNotFound,
    MechanismUnsupported,
    PinIncorrect,
    PinLocked,
)
from hsm.session import HsmConfig
from hsm.token import Hsm, KeyInfo, TokenStatus

__all__ = [
    "ECDSA_SHA256",
    "KEY_SPECS",
    "RSA_PSS_SHA256",
    "RSA_SHA256",
    "AmbiguousKey",
    "Hsm",
    "HsmConfig",
    "HsmError",
    "HsmUnavailable",
    "InvalidRequest",
    "KeyExists",
    "KeyInfo",
    "KeyKind",
    "KeyNotFound",
    "KeySpec",
    "MechanismUnsupported",
    "PinIncorrect",
    "PinLocked",
    "Scheme",
    "SignatureAlgorithm",
    "TokenStatus",
]
