"""Approval devices: enrolment links, WebAuthn passkeys, app keys with PINs, their management."""
