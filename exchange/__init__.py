"""edXML envelopes (QCVN 102:2016) and transport over the national document-exchange axis.

The package imports nothing from ``signer`` or ``hsm``. Its contents arrive with the exchange issue;
for now it holds the exception tree the rest of the service translates to HTTP.
"""

from exchange.errors import ExchangeError

__all__ = ["ExchangeError"]
