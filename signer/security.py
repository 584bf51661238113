"""Password hashing (Argon2id, memory-hard) and API keys (random, stored as SHA-256)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

API_KEY_PREFIX = "sk"


class Passwords:
    """Argon2id with configurable cost; verification is constant-time inside argon2."""

    def __init__(self, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib,
                                      parallelism=parallelism)
        # Verified against when the user does not exist, so both paths cost the same.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        try:
            return bool(self._hasher.verify(stored or self._dummy, password)) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return bool(self._hasher.check_needs_rehash(stored))


@dataclass(frozen=True)
class IssuedApiKey:
    """A new API key: ``token`` is shown once; only ``key_id`` and ``key_hash`` are stored."""

    key_id: str
    token: str
    key_hash: str


def _hash_secret(secret: str) -> str:
    # API keys carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def issue_api_key() -> IssuedApiKey:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return IssuedApiKey(key_id, f"{API_KEY_PREFIX}_{key_id}_{secret}", _hash_secret(secret))


def parse_api_key(token: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` from a presented key, or ``None`` when it is not shaped like one."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or len(parts[1]) != 16 or not parts[2]:
        return None
    if not parts[2].isascii():
        return None
    return parts[1], parts[2]


def api_key_matches(stored_hash: str, secret: str) -> bool:
    return hmac.compare_digest(stored_hash, _hash_secret(secret))
