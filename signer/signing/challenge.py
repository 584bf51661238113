"""The approval challenge and its verification code (DESIGN.md section 5).

challenge = SHA-256 over a canonical, versioned encoding of (request id, credential id, expiry,
ordered DTBS/R list). The device signs it; the hsm worker recomputes it from the database, so an
approval made for anything else (other hashes, another request, a later expiry) does not verify.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

VERSION = "vn-signer-approval/1"


def iso_utc(value: datetime) -> str:
    """The expiry as the challenge encodes it (also what the phone page recomputes from)."""
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode(request_id: str, credential_id: str, expires_at: datetime, dtbsr: list[str]) -> bytes:
    """The canonical bytes the challenge hashes (also what a phone may display for auditing)."""
    body = {"v": VERSION, "request": request_id, "credential": credential_id,
            "expires": iso_utc(expires_at), "dtbsr": [h.lower() for h in dtbsr]}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def compute(request_id: str, credential_id: str, expires_at: datetime, dtbsr: list[str]) -> bytes:
    return hashlib.sha256(encode(request_id, credential_id, expires_at, dtbsr)).digest()


def verification_code(challenge: bytes) -> str:
    """Smart-ID's formula: the last two bytes of SHA-256(challenge), modulo 10,000, zero-padded."""
    return f"{int.from_bytes(hashlib.sha256(challenge).digest()[-2:], 'big') % 10000:04d}"


def code_choices(challenge: bytes) -> list[str]:
    """Three codes for the phone to offer, the right one among two derived decoys, sorted."""
    right = verification_code(challenge)
    choices, counter = {right}, 0
    while len(choices) < 3:
        counter += 1
        choices.add(verification_code(challenge + counter.to_bytes(4, "big")))
    return sorted(choices)


def verify_app_key_signature(public_key_der: bytes, challenge: bytes, signature: bytes) -> bool:
    """An app key (ECDSA P-256) signs the 32-byte challenge with ECDSA-SHA256, DER encoded."""
    try:
        key = load_der_public_key(public_key_der)
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            return False
        key.verify(signature, challenge, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError):
        return False
