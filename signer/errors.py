"""The signer exception tree. Each class carries its stable problem type and HTTP status;
:mod:`signer.http.problems` is the one place that turns them (and hsm/exchange errors) into
application/problem+json responses.
"""

from __future__ import annotations

from typing import Any


class SignerError(Exception):
    """Base class. ``slug`` is the stable problem type; ``title`` a short English summary."""

    status = 500
    slug = "internal-error"
    title = "Internal error"
    title_vi = "Lỗi hệ thống"

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class Unauthenticated(SignerError):
    status, slug, title, title_vi = 401, "unauthenticated", "Authentication required", "Cần xác thực"


class Forbidden(SignerError):
    status, slug, title, title_vi = 403, "forbidden", "Not allowed", "Không có quyền"


class NotFound(SignerError):
    status, slug, title, title_vi = 404, "not-found", "Not found", "Không tìm thấy"


class Conflict(SignerError):
    status, slug, title, title_vi = 409, "conflict", "Conflict", "Xung đột dữ liệu"


class InvalidInput(SignerError):
    status, slug, title, title_vi = 422, "invalid-input", "Invalid input", "Dữ liệu không hợp lệ"


class PayloadTooLarge(SignerError):
    status, slug, title, title_vi = 413, "payload-too-large", "Payload too large", "Dữ liệu quá lớn"


class UnsupportedMediaType(SignerError):
    status, slug, title, title_vi = (
        415, "unsupported-media-type", "Unsupported media type", "Kiểu dữ liệu không được hỗ trợ"
    )


class ServiceUnavailable(SignerError):
    status, slug, title, title_vi = (
        503, "service-unavailable", "Service unavailable", "Dịch vụ tạm thời không khả dụng"
    )


class SecretDocument(SignerError):
    """State-secret documents (mật) never travel over the axis (Decree 30/2020, Art. 5)."""

    status, slug, title, title_vi = (
        422, "secret-document", "Secret documents are not sent over the axis",
        "Văn bản mật không được gửi qua trục liên thông",
    )


class InvalidPacket(SignerError):
    """An edXML packet our rules refuse (the exchange package's code goes in ``code``)."""

    status, slug, title, title_vi = 422, "invalid-packet", "Invalid edXML packet", "Gói tin edXML không hợp lệ"


class AxisRefused(SignerError):
    status, slug, title, title_vi = 502, "axis-refused", "The axis refused the call", "Trục liên thông từ chối"
