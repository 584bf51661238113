"""The national document-exchange axis (AXIS.md section 4).

* :mod:`exchange.axis.client`: :class:`AxisClient`, the :class:`~exchange.transport.Transport` over HTTP;
* :mod:`exchange.axis.auth`: the system id + shared secret header signature, both sides;
* :mod:`exchange.axis.server`, :mod:`~exchange.axis.store`, :mod:`~exchange.axis.config`: a local axis
  implementing the same API, for development, tests and the demo (imported on demand: it needs Flask).
"""

from exchange.axis.auth import AxisAuthError
from exchange.axis.client import AxisClient

__all__ = ["AxisAuthError", "AxisClient"]
