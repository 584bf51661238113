"""The exception tree of the exchange package.

Every error carries a stable ``code`` (a slug) that the service turns into its problem type.
"""

from __future__ import annotations


class ExchangeError(Exception):
    """Base class for every error raised by the exchange package."""

    code = "exchange-error"


class PacketError(ExchangeError):
    """An edXML packet that cannot be accepted: unsafe XML, too large, wrong namespace, a missing or
    invalid element. ``code`` says which (``xml-forbidden``, ``too-large``, ``not-xml``,
    ``wrong-namespace``, ``missing-element``, ``invalid-value``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class AxisError(ExchangeError):
    """Talking to the axis failed."""

    code = "axis-error"


class AxisUnavailable(AxisError):
    """Network error, timeout or 5xx after the client's retries: try again later."""

    code = "axis-unavailable"


class AxisRejected(AxisError):
    """The axis answered with a business error (``ErrorCode != "0"``) or 4xx: retrying the same call
    blindly will not help. ``error_code`` and the message are the axis's own words."""

    code = "axis-rejected"

    def __init__(self, error_code: str, message: str, *, status: int = 200) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.status = status
