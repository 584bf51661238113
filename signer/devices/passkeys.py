"""WebAuthn passkeys through py_webauthn: registration and assertion checks for one relying party.

The relying party is the phone web app's origin. WebAuthn forbids IP addresses as RP IDs, so a
loopback ``public_url`` (the development default, http://127.0.0.1:8000) is served to phones as
``localhost`` with the same scheme and port.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorAttachment,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

_LOOPBACK = {"127.0.0.1", "::1", "[::1]"}
_ALGORITHMS = [COSEAlgorithmIdentifier.ECDSA_SHA_256, COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256]


class PasskeyError(Exception):
    """A registration or assertion that does not verify (the message says why, no secrets)."""


@dataclass(frozen=True)
class RelyingParty:
    id: str
    origin: str
    name: str = "Ký số từ xa"

    @classmethod
    def from_public_url(cls, public_url: str) -> RelyingParty:
        parts = urlsplit(public_url)
        host = parts.hostname or "localhost"
        if host in _LOOPBACK:
            host = "localhost"
        port = f":{parts.port}" if parts.port else ""
        return cls(id=host, origin=f"{parts.scheme}://{host}{port}")


@dataclass(frozen=True)
class RegisteredPasskey:
    credential_id: str  # base64url
    public_key_cose: bytes
    sign_count: int


def registration_options(rp: RelyingParty, *, user_id: str, user_name: str, display_name: str,
                         challenge: bytes, exclude: list[str]) -> str:
    """JSON for ``navigator.credentials.create``: a platform passkey with user verification."""
    options = generate_registration_options(
        rp_id=rp.id, rp_name=rp.name, user_id=user_id.encode(), user_name=user_name,
        user_display_name=display_name, challenge=challenge, timeout=120_000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            authenticator_attachment=AuthenticatorAttachment.PLATFORM,
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED),
        supported_pub_key_algs=_ALGORITHMS,
        exclude_credentials=[PublicKeyCredentialDescriptor(id=_b64url_decode(c)) for c in exclude])
    return str(options_to_json(options))


def verify_registration(rp: RelyingParty, credential: dict[str, Any] | str, challenge: bytes) -> RegisteredPasskey:
    try:
        verified = verify_registration_response(credential=credential, expected_challenge=challenge,
                                                expected_origin=rp.origin, expected_rp_id=rp.id,
                                                require_user_verification=True)
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise PasskeyError(f"the passkey registration does not verify: {exc}") from None
    return RegisteredPasskey(bytes_to_base64url(verified.credential_id), verified.credential_public_key,
                             verified.sign_count)


def authentication_options(rp: RelyingParty, challenge: bytes, allow: list[str] | None = None) -> str:
    """JSON for ``navigator.credentials.get`` over ``challenge`` (an approval's, or a login's)."""
    options = generate_authentication_options(
        rp_id=rp.id, challenge=challenge, timeout=120_000,
        allow_credentials=[PublicKeyCredentialDescriptor(id=_b64url_decode(c)) for c in allow or []],
        user_verification=UserVerificationRequirement.REQUIRED)
    return str(options_to_json(options))


@dataclass(frozen=True)
class Assertion:
    """The parts of a ``navigator.credentials.get`` result that are kept with an approval."""

    credential_id: str
    authenticator_data: bytes
    client_data_json: bytes
    signature: bytes
    user_handle: bytes | None

    @classmethod
    def parse(cls, credential: dict[str, Any]) -> Assertion:
        try:
            response = credential["response"]
            handle = response.get("userHandle")
            return cls(str(credential["id"]), _b64url_decode(response["authenticatorData"]),
                       _b64url_decode(response["clientDataJSON"]), _b64url_decode(response["signature"]),
                       _b64url_decode(handle) if handle else None)
        except (KeyError, TypeError, AttributeError, ValueError):
            raise PasskeyError("the passkey response is malformed") from None

    def to_credential(self) -> dict[str, Any]:
        return {"id": self.credential_id, "rawId": self.credential_id, "type": "public-key",
                "response": {"authenticatorData": bytes_to_base64url(self.authenticator_data),
                             "clientDataJSON": bytes_to_base64url(self.client_data_json),
                             "signature": bytes_to_base64url(self.signature),
                             "userHandle": bytes_to_base64url(self.user_handle) if self.user_handle else None},
                "clientExtensionResults": {}}

    def client_challenge(self) -> bytes | None:
        """The challenge the browser put in clientDataJSON (for an early, friendly check)."""
        try:
            return _b64url_decode(json.loads(self.client_data_json)["challenge"])
        except (ValueError, KeyError, TypeError):
            return None


def verify_assertion(rp: RelyingParty, assertion: Assertion, *, challenge: bytes, public_key_cose: bytes,
                     sign_count: int) -> int:
    """Check origin, RP id, challenge, user presence and verification, signature and counter;
    returns the new signature counter."""
    try:
        verified = verify_authentication_response(
            credential=assertion.to_credential(), expected_challenge=challenge, expected_rp_id=rp.id,
            expected_origin=rp.origin, credential_public_key=public_key_cose,
            credential_current_sign_count=sign_count, require_user_verification=True)
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise PasskeyError(f"the passkey assertion does not verify: {exc}") from None
    return int(verified.new_sign_count)


def _b64url_decode(value: str) -> bytes:
    return bytes(base64url_to_bytes(value))
