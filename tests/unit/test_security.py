from __future__ import annotations

from signer.security import Passwords, api_key_matches, issue_api_key, parse_api_key


def test_api_keys_are_random_and_verify_only_against_their_hash() -> None:
    a, b = issue_api_key(), issue_api_key()
    assert a.token != b.token and a.key_id != b.key_id
    key_id, secret = parse_api_key(a.token) or ("", "")
    assert key_id == a.key_id
    assert api_key_matches(a.key_hash, secret)
    assert not api_key_matches(b.key_hash, secret)
    assert secret not in a.key_hash


def test_malformed_keys_do_not_parse() -> None:
    for token in ["", "sk", "sk_short_x", "pk_0123456789abcdef_x", "sk_0123456789abcdef_",
                  "sk_0123456789abcdef_é"]:
        assert parse_api_key(token) is None


def test_passwords_use_argon2id_and_reject_wrong_ones() -> None:
    pw = Passwords(time_cost=1, memory_kib=64, parallelism=1)
    stored = pw.hash("mật khẩu đúng")
    assert stored.startswith("$argon2id$")
    assert pw.verify(stored, "mật khẩu đúng")
    assert not pw.verify(stored, "mật khẩu sai")
    assert not pw.verify(None, "anything")
    assert not pw.verify("garbage", "anything")
    stronger = Passwords(time_cost=2, memory_kib=128, parallelism=1)
    assert stronger.needs_rehash(stored)
