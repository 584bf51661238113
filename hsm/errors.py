"""The one exception tree of the hsm package.

Callers never see python-pkcs11 exceptions: :func:`translate` maps them onto this tree so the
service can turn each into a stable HTTP problem type or a job outcome.
"""

from __future__ import annotations

import pkcs11.exceptions as p11e


class HsmError(Exception):
    """Base class for every error raised by the hsm package."""


class HsmUnavailable(HsmError):
    """The module, slot or token cannot be reached (missing, removed, re-initialised)."""


class KeyNotFound(HsmError):
    """No key with the requested label exists on the token."""


class PinIncorrect(HsmError):
    """The token refused the user PIN."""


class PinLocked(HsmError):
    """The user PIN is locked after too many wrong attempts."""


class MechanismUnsupported(HsmError):
    """The token or the key cannot perform the requested mechanism."""


class InvalidRequest(HsmError):
    """The caller passed something the HSM layer cannot act on (bad label, bad digest size)."""


class KeyExists(HsmError):
    """A key with the requested label already exists."""


class AmbiguousKey(HsmError):
    """More than one object of the requested class carries the label: refuse to pick one."""


#: python-pkcs11 exceptions that mean the session, token or library must be opened again.
REOPEN_ERRORS: tuple[type[Exception], ...] = (
    p11e.SessionHandleInvalid,
    p11e.SessionClosed,
    p11e.TokenNotPresent,
    p11e.TokenNotRecognised,
    p11e.DeviceRemoved,
    p11e.DeviceError,
    p11e.UserNotLoggedIn,
    p11e.ObjectHandleInvalid,
    p11e.KeyHandleInvalid,
    p11e.NoSuchToken,
    p11e.SlotIDInvalid,
    p11e.GeneralError,
)


def translate(exc: Exception) -> HsmError:
    """Map a python-pkcs11 exception onto this package's tree."""
    if isinstance(exc, HsmError):
        return exc
    mapping: list[tuple[tuple[type[Exception], ...], type[HsmError]]] = [
        ((p11e.PinLocked,), PinLocked),
        ((p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange, p11e.PinExpired), PinIncorrect),
        ((p11e.MechanismInvalid, p11e.MechanismParamInvalid, p11e.KeyTypeInconsistent,
          p11e.FunctionNotSupported, p11e.KeySizeRange, p11e.DomainParamsInvalid), MechanismUnsupported),
        ((p11e.NoSuchKey,), KeyNotFound),
        ((p11e.DataLenRange, p11e.DataInvalid, p11e.ArgumentsBad), InvalidRequest),
    ]
    for kinds, target in mapping:
        if isinstance(exc, kinds):
            return target(f"{type(exc).__name__}: {exc}".rstrip(": "))
    return HsmUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": "))
