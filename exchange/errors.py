"""The exception tree of the exchange package."""


class ExchangeError(Exception):
    """Base class for every error raised by the exchange package."""
