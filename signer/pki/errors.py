"""Errors of the PKI library. Messages never carry PINs or key material."""

from __future__ import annotations


class PkiError(Exception):
    """Base class: a certificate, CRL, OCSP or timestamp operation cannot be done as asked."""


class InvalidInput(PkiError):
    """An argument is malformed or inconsistent (bad URL, unusable public key, bad dates)."""


class IssuerMismatch(PkiError):
    """The issuer's HSM key does not belong to the issuer certificate, or it is not a CA."""
