"""The phone pages' words, Vietnamese first, English available (``?lang=en``, kept in a cookie)."""

from __future__ import annotations

from flask import request

LANGUAGES = ("vi", "en")
COOKIE = "signer_lang"

TEXT: dict[str, tuple[str, str]] = {
    "app": ("Ký số từ xa", "Remote signing"),
    "login": ("Đăng nhập", "Sign in"),
    "login_hint": ("Dùng khóa truy cập (passkey) trên điện thoại: vân tay, khuôn mặt hoặc mã PIN.",
                   "Use the passkey on this phone: fingerprint, face or PIN."),
    "login_button": ("Đăng nhập bằng khóa truy cập", "Sign in with a passkey"),
    "login_failed": ("Không đăng nhập được. Thử lại.", "Could not sign in. Try again."),
    "pending": ("Chờ phê duyệt", "Waiting for approval"),
    "none_pending": ("Không có yêu cầu nào đang chờ.", "Nothing is waiting for you."),
    "history": ("Lịch sử", "History"),
    "none_history": ("Chưa có quyết định nào.", "No decisions yet."),
    "logout": ("Đăng xuất", "Sign out"),
    "requester": ("Hệ thống yêu cầu", "Requested by"),
    "documents": ("văn bản", "documents"),
    "pages": ("trang", "pages"),
    "expires_in": ("Hết hạn sau", "Expires in"),
    "expired": ("Đã hết hạn", "Expired"),
    "profile": ("Loại chữ ký", "Signature"),
    "open_pdf": ("Xem toàn bộ văn bản", "Open the whole document"),
    "hash_only": ("Mã băm (không có nội dung)", "Hash only (no content)"),
    "pick_code": ("Chọn mã xác nhận đang hiển thị trên hệ thống quản lý văn bản",
                  "Pick the verification code shown by the document system"),
    "approve_with": ("Phê duyệt bằng khóa truy cập", "Approve with your passkey"),
    "refuse": ("Từ chối", "Refuse"),
    "refuse_reason": ("Lý do (không bắt buộc)", "Reason (optional)"),
    "approved": ("Đã phê duyệt. Đang ký số…", "Approved. Signing…"),
    "refused": ("Đã từ chối.", "Refused."),
    "failed": ("Không thực hiện được", "Could not complete"),
    "no_passkey": ("Thiết bị này chưa có khóa truy cập được duyệt.", "This phone has no approved passkey."),
    "challenge_mismatch": ("Dữ liệu ký không khớp. Không phê duyệt.", "The data to sign does not match. Not approved."),
    "state_AWAITING_APPROVAL": ("Chờ phê duyệt", "Awaiting approval"),
    "state_SIGNING": ("Đang ký", "Signing"),
    "state_COMPLETED": ("Đã ký", "Signed"),
    "state_REJECTED": ("Từ chối", "Refused"),
    "state_EXPIRED": ("Hết hạn", "Expired"),
    "state_CANCELLED": ("Đã hủy", "Cancelled"),
    "state_FAILED": ("Lỗi", "Failed"),
    "profile_approved": ("Chữ ký người có thẩm quyền", "Approver's signature"),
    "profile_issued": ("Chữ ký số của cơ quan", "Organisation's signature"),
    "profile_appendix": ("Ký phụ lục", "Appendix"),
    "profile_copy": ("Ký bản sao", "Copy"),
    "back": ("Quay lại", "Back"),
    "language": ("English", "Tiếng Việt"),
    "enrol": ("Đăng ký thiết bị", "Register this phone"),
    "enrol_for": ("Đăng ký khóa truy cập cho", "Register a passkey for"),
    "enrol_hint": ("Điện thoại sẽ hỏi vân tay, khuôn mặt hoặc mã PIN. Quản trị viên duyệt thiết bị trước khi dùng.",
                   "The phone asks for your fingerprint, face or PIN. "
                   "An administrator approves the device before use."),
    "device_name": ("Tên thiết bị", "Device name"),
    "my_phone": ("Điện thoại của tôi", "My phone"),
    "enrol_button": ("Tạo khóa truy cập", "Create the passkey"),
    "enrolled": ("Đã đăng ký. Chờ quản trị viên duyệt.", "Registered. Waiting for an administrator's approval."),
    "enrol_failed": ("Không đăng ký được", "Could not register"),
    "link_invalid": ("Liên kết không còn hiệu lực.", "This link is no longer valid."),
}


def language() -> str:
    wanted = request.args.get("lang") or request.cookies.get(COOKIE) or "vi"
    return wanted if wanted in LANGUAGES else "vi"


def t(key: str, lang: str | None = None) -> str:
    vi, en = TEXT.get(key, (key, key))
    return en if (lang or language()) == "en" else vi
