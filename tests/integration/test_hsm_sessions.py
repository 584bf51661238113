"""The per-process session: what a miss, a wrong PIN, a duplicate label or a failed write costs."""

from __future__ import annotations

import ctypes
import os
from typing import Any

import pkcs11.exceptions as p11e
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

import hsm
import hsm.session
from hsm.keys import private_key
from tests.pki import self_signed
from tests.support import SoftHsm


def open_sessions(module: str) -> int:
    """PKCS#11 sessions open in this process, by asking C_GetSessionInfo about every small handle.

    python-pkcs11 does not expose CK_TOKEN_INFO.ulSessionCount, and SoftHSM2 reports it as
    CK_UNAVAILABLE_INFORMATION anyway; SoftHSM2 numbers sessions 1, 2, ... and reuses free numbers.
    """
    lib = ctypes.CDLL(module)  # the module python-pkcs11 already loaded: same instance
    lib.C_GetSessionInfo.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
    lib.C_GetSessionInfo.restype = ctypes.c_ulong
    info = ctypes.create_string_buffer(64)  # CK_SESSION_INFO: four CK_ULONGs
    with hsm.session._lock:
        return sum(1 for handle in range(1, 1024) if lib.C_GetSessionInfo(handle, info) == 0)


def test_unknown_labels_do_not_restart_the_module(token: hsm.Hsm, ec_key: hsm.KeyInfo) -> None:
    # Restarting the module logs out every token in the process; an API caller naming keys that
    # do not exist must not be able to trigger that at will.
    token.sign(ec_key.label, b"warm up", hsm.ECDSA_SHA256)
    before = hsm.session.library_restarts
    for i in range(50):
        with pytest.raises(hsm.KeyNotFound):
            token.sign(f"no-such-key-{i % 3}", b"x", hsm.ECDSA_SHA256)
    with pytest.raises(hsm.KeyNotFound):
        token.key_info("no-such-key")
    assert hsm.session.library_restarts == before
    token.sign(ec_key.label, b"still fine", hsm.ECDSA_SHA256)


def test_ping_checks_the_session_without_listing_keys(token: hsm.Hsm, hsm_config: hsm.HsmConfig,
                                                      softhsm: SoftHsm) -> None:
    token.ping()
    before = hsm.session.library_restarts
    for _ in range(100):
        token.ping()
    assert hsm.session.library_restarts == before
    softhsm.create_token("test-ping")
    with pytest.raises(hsm.PinIncorrect):
        hsm.Hsm(hsm.HsmConfig(hsm_config.module, "test-ping", "wrong-pin")).ping()
    with pytest.raises(hsm.HsmUnavailable):
        hsm.Hsm(hsm.HsmConfig(hsm_config.module, "no-such-token", softhsm.pin)).ping()


def test_wrong_pin_attempts_do_not_pile_up_sessions(softhsm: SoftHsm, hsm_config: hsm.HsmConfig,
                                                    token: hsm.Hsm) -> None:
    # python-pkcs11 opens the session before C_Login and keeps it when the login fails.
    softhsm.create_token("test-pin-leak")
    token.status()
    before = open_sessions(hsm_config.module)
    bad = hsm.Hsm(hsm.HsmConfig(hsm_config.module, "test-pin-leak", "not-the-pin"))
    for _ in range(20):
        with pytest.raises(hsm.PinIncorrect):
            bad.status()
    assert open_sessions(hsm_config.module) <= before + 1
    good = hsm.Hsm(hsm.HsmConfig(hsm_config.module, "test-pin-leak", softhsm.pin))
    assert good.status().token_label == "test-pin-leak"
    assert token.status().token_label == "test-main"
    assert open_sessions(hsm_config.module) <= before + 1


def test_pins_are_compared_as_secrets(hsm_config: hsm.HsmConfig, token: hsm.Hsm) -> None:
    token.status()
    assert hsm.session.token_session(hsm_config) is hsm.session.token_session(
        hsm.HsmConfig(hsm_config.module, hsm_config.token_label, str(hsm_config.pin)))
    for other in ("", "mật khẩu", None):
        with pytest.raises(hsm.PinIncorrect):
            hsm.session.token_session(hsm.HsmConfig(hsm_config.module, hsm_config.token_label, other))


def test_duplicate_label_is_refused_as_ambiguous(token: hsm.Hsm, hsm_config: hsm.HsmConfig) -> None:
    label = "duplicate-label"
    token.generate_key(label, hsm.KeySpec.parse("ec-p256"))

    def make_twin(ts: hsm.session.TokenSession) -> None:
        # What a second process racing generate_key for the same label leaves behind.
        params = ts.current().create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
        params.generate_keypair(label=label, id=os.urandom(16), store=True)

    hsm.session.run(hsm_config, make_twin)
    try:
        with pytest.raises(hsm.AmbiguousKey, match="private key objects are labelled 'duplicate-label'"):
            token.sign(label, b"x", hsm.ECDSA_SHA256)
        with pytest.raises(hsm.AmbiguousKey):
            token.sign_digest(label, bytes(32), hsm.ECDSA_SHA256)
        with pytest.raises(hsm.AmbiguousKey):
            token.key_info(label)
        with pytest.raises(hsm.AmbiguousKey):
            token.generate_key(label, hsm.KeySpec.parse("ec-p256"))
        assert token.list_keys().count(label) == 2
    finally:
        token.delete_key(label)  # removes every object carrying the label
    with pytest.raises(hsm.KeyNotFound):
        token.key_info(label)


class _CreateFails:
    """A python-pkcs11 session whose C_CreateObject fails (device full, power cut, ...)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def create_object(self, attrs: Any) -> Any:
        raise p11e.DeviceMemory()


def test_failed_certificate_replacement_keeps_the_old_one(token: hsm.Hsm,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    label = "cert-replace"
    token.generate_key(label, hsm.KeySpec.parse("ec-p256"))
    try:
        key = private_key(token, label)
        old = self_signed(key, "Nguyễn Văn An").public_bytes(Encoding.DER)
        new = self_signed(key, "Nguyễn Văn An", days=60).public_bytes(Encoding.DER)
        token.store_certificate(label, old)
        real_current = hsm.session.TokenSession.current
        with monkeypatch.context() as patch:
            patch.setattr(hsm.session.TokenSession, "current", lambda ts: _CreateFails(real_current(ts)))
            with pytest.raises(hsm.HsmError):
                token.store_certificate(label, new)
        assert token.certificate(label) == old
        token.store_certificate(label, new)
        assert token.certificate(label) == new  # exactly one left: two would be AmbiguousKey

        def certificates(ts: hsm.session.TokenSession) -> int:
            return len(list(ts.current().get_objects(
                {Attribute.LABEL: label, Attribute.CLASS: ObjectClass.CERTIFICATE})))

        assert hsm.session.run(token.config, certificates) == 1
    finally:
        token.delete_key(label)
