"""Errors of the signing pipeline, mapped to problem types by the HTTP layer."""

from __future__ import annotations

from signer.errors import InvalidInput, SignerError


class InvalidDocument(InvalidInput):
    """The uploaded document cannot be signed as asked (damaged, encrypted, certified, wrong type)."""

    slug = "invalid-document"
    title = "Invalid document"
    title_vi = "Tài liệu không hợp lệ"


class DocumentAltered(SignerError):
    """The prepared document no longer matches what the holder approved."""

    status, slug, title, title_vi = 409, "document-altered", "Document altered", "Tài liệu đã bị thay đổi"


class CredentialUnusable(SignerError):
    """The credential exists but cannot sign now (not active, no or expired certificate)."""

    status, slug, title, title_vi = (
        409, "credential-unusable", "Credential cannot sign", "Chứng thư số không sử dụng được"
    )


class RequestStateConflict(SignerError):
    """The request is not in a state that allows this action."""

    status, slug, title, title_vi = 409, "invalid-state", "Invalid state", "Trạng thái không phù hợp"


class DeviceUnavailable(SignerError):
    """The device is pending, disabled or locked: it approves nothing."""

    status, slug, title, title_vi = 409, "device-unavailable", "Device unavailable", "Thiết bị không sử dụng được"


class WrongPin(SignerError):
    """The app key's PIN is wrong; after five in a row the device is locked."""

    status, slug, title, title_vi = 403, "wrong-pin", "Wrong PIN", "Sai mã PIN"

    def __init__(self, device_id: str, detail: str = "wrong PIN") -> None:
        super().__init__(detail)
        self.device_id = device_id
