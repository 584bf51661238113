"""The axis's request authentication (AXIS.md section 4): a system id and a shared secret.

Each call carries its parameters as ``XroadVnpt-<key>`` headers. The ordered map ``timestamp``,
``systemid``, ``Content-Type``, then the call's own parameters is serialised as a compact JSON object
with ``XroadVnpt-`` prefixed keys (``XroadVnpt-sign-header``) and authenticated with
HMAC-SHA256(secret, that JSON) (``XroadVnpt-hash-header``).

Decisions where the kit is vague:

* ``XroadVnpt-sign-header-key`` lists the *bare* key names (``timestamp;systemid;Content-Type;...``),
  without the ``XroadVnpt-`` prefix, as the official Java kit does. :func:`verify` also accepts
  prefixed names, so either form verifies.
* The timestamp uses the kit's Java pattern ``ddMMyyyy'T'HHmmss+SSSS``: ``+`` is a literal and
  ``SSSS`` is the milliseconds field zero-padded to four digits (12:00:00.045 -> ``120000+0045``),
  in Vietnam local time (UTC+07:00, the kit's JVM zone): it is not a zone offset.
* Header values must be printable ASCII (HTTP/1.1 headers are latin-1 at best and the JSON must be
  byte-identical on both sides); callers percent-encode free text (the client does so for the
  ``updateStatus`` description).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from exchange.errors import AxisRejected

PREFIX = "XroadVnpt-"
VERSION = "3.0.201608"
VIETNAM = timezone(timedelta(hours=7), "ICT")
# The keys every call must sign, in this order, before its own parameters.
LEADING_KEYS = ("timestamp", "systemid", "Content-Type")
SIGN_HEADER = PREFIX + "sign-header"
SIGN_HEADER_KEY = PREFIX + "sign-header-key"
HASH_HEADER = PREFIX + "hash-header"
VERSION_HEADER = PREFIX + "version"


_GSON_ESCAPES = str.maketrans({c: f"\\u{ord(c):04x}" for c in "<>&='"})


class AxisAuthError(AxisRejected):
    """A call the axis refuses to authenticate (HTTP 401). ``error_code`` says why, stably:
    ``auth-missing-header``, ``auth-unknown-system``, ``auth-bad-signature``, ``auth-bad-timestamp``,
    ``auth-stale-timestamp``, ``auth-hash-mismatch``."""

    code = "axis-auth-failed"

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(error_code, message, status=401)


@dataclass(frozen=True)
class VerifiedCall:
    """An authenticated call: who made it and the signed parameters (bare key -> value)."""

    system_id: str
    timestamp: datetime
    params: dict[str, str] = field(default_factory=dict)

    def param(self, key: str, default: str = "") -> str:
        """A signed parameter's value (key matched case-insensitively), ``default`` if not signed."""
        wanted = key.lower()
        return next((v for k, v in self.params.items() if k.lower() == wanted), default)


def timestamp(now: datetime) -> str:
    """``now`` (timezone-aware) in the kit's ``ddMMyyyy'T'HHmmss+SSSS`` pattern, Vietnam time."""
    if now.tzinfo is None:
        raise ValueError("timestamp() needs a timezone-aware datetime")
    local = now.astimezone(VIETNAM)
    return f"{local:%d%m%Y}T{local:%H%M%S}+{local.microsecond // 1000:04d}"


def parse_timestamp(value: str) -> datetime:
    """The inverse of :func:`timestamp`: an aware datetime (Vietnam time). ``ValueError`` if malformed."""
    if len(value) != 20 or value[8] != "T" or value[15] != "+" or not value[16:].isdigit():
        raise ValueError(f"not a ddMMyyyy'T'HHmmss+SSSS timestamp: {value!r}")
    millis = int(value[16:])
    if millis > 999:
        raise ValueError(f"milliseconds out of range: {value!r}")
    base = datetime.strptime(value[:15], "%d%m%YT%H%M%S")  # Vietnam time by convention, no zone field
    return base.replace(microsecond=millis * 1000, tzinfo=VIETNAM)


def hash_file(data: bytes) -> str:
    """SHA-256 of ``data`` rendered byte by byte in lowercase hex *without* zero padding (0x0a -> ``a``),
    reproducing the kit's ``Integer.toHexString`` loop; the result is 32 to 64 characters long."""
    return "".join(format(b, "x") for b in hashlib.sha256(data).digest())


def sign_header_json(items: list[tuple[str, str]]) -> str:
    """The ``XroadVnpt-sign-header`` value for the ordered (bare key, value) pairs."""
    return json.dumps({PREFIX + k: v for k, v in items}, separators=(",", ":"), ensure_ascii=False)


def _mac(secret: str, sign_header: str) -> str:
    return hmac.new(secret.encode(), sign_header.encode(), hashlib.sha256).hexdigest()


def _check_value(key: str, value: str) -> None:
    # Only printable ASCII survives every HTTP stack unchanged; CR/LF would split headers.
    if not all(" " <= ch <= "~" for ch in value):
        raise ValueError(f"header parameter {key!r} must be printable ASCII (percent-encode free text)")


def sign_headers(
    system_id: str,
    secret: str,
    params: list[tuple[str, str]],
    *,
    content_type: str,
    now: datetime,
) -> dict[str, str]:
    """Every header of one authenticated call (parameters, signature, version, plain Content-Type).

    ``params`` are the call's own (bare key, value) pairs in order, e.g. ``[("from", ...),
    ("servicetype", "eDoc"), ("messagetype", "edoc"), ("hash-file", hash_file(body))]``.
    """
    items = [("timestamp", timestamp(now)), ("systemid", system_id), ("Content-Type", content_type), *params]
    keys = [k for k, _ in items]
    if len({k.lower() for k in keys}) != len(keys):
        raise ValueError("duplicate header parameter")
    for key, value in items:
        _check_value(key, value)
    sign_header = sign_header_json(items)
    headers = {PREFIX + k: v for k, v in items}
    headers["Content-Type"] = content_type
    headers[SIGN_HEADER_KEY] = ";".join(keys)
    headers[SIGN_HEADER] = sign_header
    headers[HASH_HEADER] = _mac(secret, sign_header)
    headers[VERSION_HEADER] = VERSION
    return headers


def verify(
    headers: Mapping[str, str],
    secret_for: Callable[[str], str | None],
    *,
    body: bytes | None,
    now: datetime,
    max_skew_s: float = 300,
    required: Collection[str] = (),
) -> VerifiedCall:
    """Authenticate a call from its headers (server side); raise :class:`AxisAuthError` if it fails.

    The sign-header JSON is recomputed from the received ``XroadVnpt-<key>`` headers in the order
    ``sign-header-key`` gives, and its HMAC compared in constant time with ``hash-header``.
    ``required`` lists parameters the operation needs signed (so an unsigned ``from`` cannot slip in).
    With ``body`` given, ``hash-file`` must be signed and match it (see :func:`verify_body`).
    """
    lower = {k.lower(): v for k, v in headers.items()}

    def header(name: str) -> str:
        value = lower.get(name.lower())
        if value is None:
            raise AxisAuthError("auth-missing-header", f"missing header {name}")
        return value

    raw_keys = header(SIGN_HEADER_KEY)
    mac = header(HASH_HEADER)
    keys = [k[len(PREFIX):] if k.lower().startswith(PREFIX.lower()) else k for k in raw_keys.split(";")]
    folded = [k.lower() for k in keys]
    if [k.lower() for k in LEADING_KEYS] != folded[:3] or len(set(folded)) != len(folded):
        raise AxisAuthError("auth-bad-signature", "sign-header-key must start with timestamp;systemid;Content-Type")
    for need in required:
        if need.lower() not in folded:
            raise AxisAuthError("auth-missing-header", f"parameter {need} is not signed")
    items = [(k, header(PREFIX + k)) for k in keys]
    params = dict(items)
    system_id = items[1][1]
    secret = secret_for(system_id)
    if secret is None:
        raise AxisAuthError("auth-unknown-system", "unknown system id")
    plain = sign_header_json(items)
    # The Java kit serialises with Gson, which escapes <, >, &, = and ' as \uXXXX: accept its MAC too.
    candidates = dict.fromkeys((plain, plain.translate(_GSON_ESCAPES)))
    given = mac.strip().lower().encode()
    sign_header = next((c for c in candidates if hmac.compare_digest(_mac(secret, c).encode(), given)), None)
    if sign_header is None:
        raise AxisAuthError("auth-bad-signature", "the hash-header does not match the signed headers")
    received = lower.get(SIGN_HEADER.lower())
    if received is not None and received != sign_header:
        # Harmless for the MAC, but a client that signs one thing and says another is broken.
        raise AxisAuthError("auth-bad-signature", "the sign-header does not match the signed headers")
    try:
        when = parse_timestamp(items[0][1])
    except ValueError as exc:
        raise AxisAuthError("auth-bad-timestamp", str(exc)) from None
    skew = abs((now.astimezone(UTC) - when.astimezone(UTC)).total_seconds())
    if skew > max_skew_s:
        raise AxisAuthError("auth-stale-timestamp", f"timestamp is {skew:.0f} s away from the axis clock")
    call = VerifiedCall(system_id=system_id, timestamp=when, params=params)
    if body is not None:
        verify_body(call, body)
    return call


def verify_body(call: VerifiedCall, body: bytes) -> None:
    """Check the signed ``hash-file`` against the body actually received (``sendEdoc``)."""
    claimed = call.param("hash-file", "")
    if not claimed:
        raise AxisAuthError("auth-missing-header", "parameter hash-file is not signed")
    if not hmac.compare_digest(claimed.lower().encode(), hash_file(body).encode()):
        raise AxisAuthError("auth-hash-mismatch", "hash-file does not match the body")
