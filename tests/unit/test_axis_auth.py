"""The axis's header signature (AXIS.md section 4), checked against the algorithm written out by hand."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from exchange.axis import auth
from exchange.axis.auth import AxisAuthError
from exchange.errors import AxisRejected

NOW = datetime(2024, 3, 5, 1, 2, 3, 45_000, tzinfo=UTC)  # 08:02:03.045 in Vietnam
SYSTEM = "sys-a"
SECRET = "s3cret-of-a"
BODY = b"<edXML>packet</edXML>"
SECRETS = {SYSTEM: SECRET, "sys-b": "other-secret"}


def send_headers(body: bytes = BODY, *, now: datetime = NOW, secret: str = SECRET) -> dict[str, str]:
    params = [("from", "000.00.00.H53"), ("servicetype", "eDoc"), ("messagetype", "edoc"),
              ("hash-file", auth.hash_file(body))]
    return auth.sign_headers(SYSTEM, secret, params, content_type="application/octet-stream", now=now)


def check(headers: dict[str, str], body: bytes | None = BODY, now: datetime = NOW) -> auth.VerifiedCall:
    return auth.verify(headers, SECRETS.get, body=body, now=now, required=("from", "hash-file"))


def test_timestamp_is_the_kits_java_pattern_in_vietnam_time() -> None:
    assert auth.timestamp(NOW) == "05032024T080203+0045"
    assert auth.timestamp(datetime(2023, 12, 31, 17, 0, 0, 999_999, tzinfo=UTC)) == "01012024T000000+0999"
    assert auth.parse_timestamp("05032024T080203+0045") == NOW
    with pytest.raises(ValueError, match="aware"):
        auth.timestamp(datetime(2024, 1, 1))  # naive: refused


def test_hash_file_drops_leading_zeros_of_each_byte() -> None:
    # SHA-256("abc") = ba7816bf 8f01cfea 414140de 5dae2223 b00361a3 96177a9c b410ff61 f20015ad (FIPS 180-2):
    # 01, 03 and 00 lose their leading zero.
    assert auth.hash_file(b"abc") == "ba7816bf8f1cfea414140de5dae2223b0361a396177a9cb410ff61f2015ad"
    digest = hashlib.sha256(BODY).digest()
    assert auth.hash_file(BODY) == "".join(hex(b)[2:] for b in digest)


def test_headers_match_the_algorithm_written_out() -> None:
    headers = send_headers()
    file_hash = auth.hash_file(BODY)
    sign_header = (
        '{"XroadVnpt-timestamp":"05032024T080203+0045","XroadVnpt-systemid":"sys-a",'
        '"XroadVnpt-Content-Type":"application/octet-stream","XroadVnpt-from":"000.00.00.H53",'
        '"XroadVnpt-servicetype":"eDoc","XroadVnpt-messagetype":"edoc","XroadVnpt-hash-file":"' + file_hash + '"}'
    )
    expected = {
        "XroadVnpt-timestamp": "05032024T080203+0045",
        "XroadVnpt-systemid": "sys-a",
        "XroadVnpt-Content-Type": "application/octet-stream",
        "XroadVnpt-from": "000.00.00.H53",
        "XroadVnpt-servicetype": "eDoc",
        "XroadVnpt-messagetype": "edoc",
        "XroadVnpt-hash-file": file_hash,
        "Content-Type": "application/octet-stream",
        "XroadVnpt-sign-header-key": "timestamp;systemid;Content-Type;from;servicetype;messagetype;hash-file",
        "XroadVnpt-sign-header": sign_header,
        "XroadVnpt-hash-header": hmac.new(b"s3cret-of-a", sign_header.encode(), hashlib.sha256).hexdigest(),
        "XroadVnpt-version": "3.0.201608",
    }
    assert headers == expected
    assert list(headers)[:7] == list(expected)[:7]


def test_non_ascii_and_line_breaks_are_refused() -> None:
    with pytest.raises(ValueError, match="ASCII"):
        auth.sign_headers(SYSTEM, SECRET, [("description", "Đã nhận")], content_type="application/json", now=NOW)
    with pytest.raises(ValueError, match="ASCII"):
        auth.sign_headers(SYSTEM, SECRET, [("docId", "x\r\nEvil: 1")], content_type="application/json", now=NOW)


def test_verify_accepts_the_clients_headers_in_any_case() -> None:
    call = check(send_headers())
    assert call.system_id == SYSTEM
    assert call.param("from") == "000.00.00.H53"
    assert call.param("FROM") == "000.00.00.H53"
    assert call.timestamp == NOW
    # Headers arrive title-cased or lower-cased through WSGI stacks.
    assert check({k.lower(): v for k, v in send_headers().items()}).system_id == SYSTEM
    # A few minutes of clock skew either way is fine.
    assert check(send_headers(), now=NOW + timedelta(minutes=4)).system_id == SYSTEM


def test_verify_accepts_prefixed_key_names() -> None:
    headers = send_headers()
    headers["XroadVnpt-sign-header-key"] = ";".join(
        "XroadVnpt-" + k for k in headers["XroadVnpt-sign-header-key"].split(";"))
    assert check(headers).system_id == SYSTEM


def reason(headers: dict[str, str], body: bytes | None = BODY, now: datetime = NOW) -> str:
    with pytest.raises(AxisAuthError) as caught:
        check(headers, body, now)
    assert isinstance(caught.value, AxisRejected)
    assert caught.value.status == 401
    return caught.value.error_code


def test_verify_refuses_tampering() -> None:
    bad_mac = send_headers()
    bad_mac["XroadVnpt-hash-header"] = "0" * 64
    assert reason(bad_mac) == "auth-bad-signature"

    assert reason(send_headers(secret="not-the-secret")) == "auth-bad-signature"

    changed_param = send_headers()
    changed_param["XroadVnpt-from"] = "000.00.01.H53"
    assert reason(changed_param) == "auth-bad-signature"

    unknown = auth.sign_headers("sys-x", SECRET, [("from", "a"), ("hash-file", auth.hash_file(BODY))],
                                content_type="application/octet-stream", now=NOW)
    assert reason(unknown) == "auth-unknown-system"

    assert reason(send_headers(), now=NOW + timedelta(minutes=6)) == "auth-stale-timestamp"
    assert reason(send_headers(), now=NOW - timedelta(minutes=6)) == "auth-stale-timestamp"  # from the future

    assert reason(send_headers(), body=BODY + b" ") == "auth-hash-mismatch"


def test_verify_refuses_reordered_missing_or_unsigned_headers() -> None:
    reordered = send_headers()
    keys = reordered["XroadVnpt-sign-header-key"].split(";")
    keys[3], keys[4] = keys[4], keys[3]
    reordered["XroadVnpt-sign-header-key"] = ";".join(keys)
    assert reason(reordered) == "auth-bad-signature"

    leading_swapped = send_headers()
    keys = leading_swapped["XroadVnpt-sign-header-key"].split(";")
    keys[0], keys[1] = keys[1], keys[0]
    leading_swapped["XroadVnpt-sign-header-key"] = ";".join(keys)
    assert reason(leading_swapped) == "auth-bad-signature"

    for name in ("XroadVnpt-from", "XroadVnpt-hash-header", "XroadVnpt-sign-header-key", "XroadVnpt-timestamp"):
        missing = send_headers()
        del missing[name]
        assert reason(missing) == "auth-missing-header", name

    # A client that signs without ``from`` cannot have an unsigned ``from`` believed.
    unsigned = auth.sign_headers(SYSTEM, SECRET, [("hash-file", auth.hash_file(BODY))],
                                 content_type="application/octet-stream", now=NOW)
    unsigned["XroadVnpt-from"] = "000.00.00.H53"
    assert reason(unsigned) == "auth-missing-header"

    lying_sign_header = send_headers()
    lying_sign_header["XroadVnpt-sign-header"] = lying_sign_header["XroadVnpt-sign-header"].replace("sys-a", "sys-b")
    assert reason(lying_sign_header) == "auth-bad-signature"


def test_verify_body_needs_a_signed_hash_file() -> None:
    headers = auth.sign_headers(SYSTEM, SECRET, [("from", "000.00.00.H53")], content_type="application/json", now=NOW)
    call = auth.verify(headers, SECRETS.get, body=None, now=NOW)
    with pytest.raises(AxisAuthError) as caught:
        auth.verify_body(call, BODY)
    assert caught.value.error_code == "auth-missing-header"


def test_verify_accepts_the_java_kits_gson_escaping() -> None:
    # Gson writes "=" as \u003d; the kit's MAC is over that text.
    ts = auth.timestamp(NOW)
    sign_header = ('{"XroadVnpt-timestamp":"' + ts + '","XroadVnpt-systemid":"sys-a",'
                   '"XroadVnpt-Content-Type":"application/json","XroadVnpt-docId":"YWJj\\u003d"}')
    headers = {
        "XroadVnpt-timestamp": ts, "XroadVnpt-systemid": "sys-a", "XroadVnpt-Content-Type": "application/json",
        "XroadVnpt-docId": "YWJj=", "XroadVnpt-sign-header-key": "timestamp;systemid;Content-Type;docId",
        "XroadVnpt-sign-header": sign_header,
        "XroadVnpt-hash-header": hmac.new(SECRET.encode(), sign_header.encode(), hashlib.sha256).hexdigest(),
    }
    assert auth.verify(headers, SECRETS.get, body=None, now=NOW).param("docId") == "YWJj="
