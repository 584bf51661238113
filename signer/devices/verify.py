"""The device half of an approval check, run by the hsm worker before any C_Sign: does the stored
device signature prove that this device approved exactly this challenge?"""

from __future__ import annotations

from signer.devices import passkeys
from signer.signing import challenge as chal
from signer.signing.models import Approval, Device, DeviceKind


def device_signature_ok(device: Device, approval: Approval, challenge: bytes,
                        rp: passkeys.RelyingParty) -> tuple[bool, int | None]:
    """``(valid, new sign count)``; the count is only for passkeys (stored after consumption)."""
    if device.kind == DeviceKind.APP_KEY.value:
        return (device.public_key_der is not None
                and chal.verify_app_key_signature(device.public_key_der, challenge, approval.signature)), None
    if device.kind == DeviceKind.PASSKEY.value:
        if device.public_key_cose is None or device.credential_id is None or approval.authenticator_data is None \
                or approval.client_data_json is None:
            return False, None
        assertion = passkeys.Assertion(device.credential_id, approval.authenticator_data,
                                       approval.client_data_json, approval.signature, None)
        try:
            count = passkeys.verify_assertion(rp, assertion, challenge=challenge,
                                              public_key_cose=device.public_key_cose, sign_count=device.sign_count)
        except passkeys.PasskeyError:
            return False, None
        return True, count
    return False, None
