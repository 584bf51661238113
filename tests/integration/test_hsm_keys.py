"""Key generation and signing against a real SoftHSM2 token, checked with `cryptography`."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, load_der_public_key

import hsm

HASHES = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}


@pytest.mark.parametrize("spec", ["rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384"])
def test_generated_key_is_sensitive_and_never_extractable(token: hsm.Hsm, spec: str) -> None:
    label = f"gen-{spec}"
    info = token.generate_key(label, hsm.KeySpec.parse(spec))
    try:
        attrs = token.key_attributes(label)
        assert attrs["sensitive"] and attrs["always_sensitive"]
        assert not attrs["extractable"] and attrs["never_extractable"]
        assert attrs["token"] and attrs["private"] and attrs["sign"]
        assert not attrs["decrypt"] and not attrs["unwrap"]
        public = load_der_public_key(info.public_key_der)
        assert public.key_size == hsm.KeySpec.parse(spec).size  # type: ignore[union-attr]
        assert token.key_info(label) == info
        assert len(bytes.fromhex(info.key_id)) == 16
    finally:
        token.delete_key(label)
    assert label not in token.list_keys()


def _verify(public_der: bytes, signature: bytes, data: bytes, alg: hsm.SignatureAlgorithm) -> None:
    public = load_der_public_key(public_der)
    h = HASHES[alg.hash]
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, data, ec.ECDSA(h))
    elif alg.scheme is hsm.Scheme.RSA_PSS:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, data, padding.PSS(padding.MGF1(h), h.digest_size), h)
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, data, padding.PKCS1v15(), h)


RSA_ALGS = [hsm.SignatureAlgorithm(s, h) for s in (hsm.Scheme.RSA_PKCS1V15, hsm.Scheme.RSA_PSS)
            for h in ("sha256", "sha384", "sha512")]
EC_ALGS = [hsm.SignatureAlgorithm(hsm.Scheme.ECDSA, h) for h in ("sha256", "sha384", "sha512")]


@pytest.mark.parametrize("alg", RSA_ALGS, ids=str)
def test_rsa_signatures_verify(token: hsm.Hsm, rsa_key: hsm.KeyInfo, alg: hsm.SignatureAlgorithm) -> None:
    data = "Quyết định số 07/QĐ-UBND".encode()
    _verify(rsa_key.public_key_der, token.sign(rsa_key.label, data, alg), data, alg)
    # The same through a digest computed on the host (sign-hash).
    _verify(rsa_key.public_key_der, token.sign_digest(rsa_key.label, alg.digest(data), alg), data, alg)


@pytest.mark.parametrize("alg", EC_ALGS, ids=str)
def test_ecdsa_signatures_are_der_and_verify(token: hsm.Hsm, ec_key: hsm.KeyInfo,
                                             alg: hsm.SignatureAlgorithm) -> None:
    data = b"signed attributes"
    signature = token.sign(ec_key.label, data, alg)
    assert signature[0] == 0x30  # DER SEQUENCE, not raw r||s
    _verify(ec_key.public_key_der, signature, data, alg)
    with pytest.raises(InvalidSignature):
        _verify(ec_key.public_key_der, signature, data + b"!", alg)


def test_wrong_mechanism_for_key_is_refused(token: hsm.Hsm, rsa_key: hsm.KeyInfo,
                                            ec_key: hsm.KeyInfo) -> None:
    with pytest.raises(hsm.MechanismUnsupported):
        token.sign(rsa_key.label, b"x", hsm.ECDSA_SHA256)
    with pytest.raises(hsm.MechanismUnsupported):
        token.sign(ec_key.label, b"x", hsm.RSA_SHA256)


def test_bad_inputs_get_clear_errors(token: hsm.Hsm, ec_key: hsm.KeyInfo) -> None:
    with pytest.raises(hsm.InvalidRequest, match="32 bytes"):
        token.sign_digest(ec_key.label, b"short", hsm.ECDSA_SHA256)
    with pytest.raises(hsm.InvalidRequest):
        hsm.SignatureAlgorithm(hsm.Scheme.ECDSA, "md5")
    with pytest.raises(hsm.InvalidRequest):
        hsm.KeySpec.parse("rsa-1024")
    with pytest.raises(hsm.InvalidRequest):
        token.generate_key("", hsm.KeySpec.parse("ec-p256"))
    with pytest.raises(hsm.KeyExists):
        token.generate_key(ec_key.label, hsm.KeySpec.parse("ec-p256"))
    with pytest.raises(hsm.KeyNotFound):
        token.sign("no-such-key", b"x", hsm.ECDSA_SHA256)


def test_certificate_object_is_stored_and_linked_by_id(token: hsm.Hsm, ec_key: hsm.KeyInfo) -> None:
    from hsm.keys import private_key
    from tests.pki import self_signed

    cert = self_signed(private_key(token, ec_key.label), "Nguyễn Văn An")
    der = cert.public_bytes(Encoding.DER)
    assert token.certificate(ec_key.label) is None
    token.store_certificate(ec_key.label, der)
    token.store_certificate(ec_key.label, der)  # replacing keeps exactly one
    assert token.certificate(ec_key.label) == der
    assert x509.load_der_x509_certificate(der).public_key() == load_der_public_key(ec_key.public_key_der)


def test_status_describes_the_token(token: hsm.Hsm, ec_key: hsm.KeyInfo) -> None:
    status = token.status()
    assert status.token_label == "test-main"
    assert status.manufacturer == "SoftHSM project"
    assert status.key_count >= 1


def test_wrong_pin_is_reported(softhsm, hsm_config: hsm.HsmConfig) -> None:  # type: ignore[no-untyped-def]
    softhsm.create_token("test-pin")
    bad = hsm.Hsm(hsm.HsmConfig(hsm_config.module, "test-pin", "not-the-pin"))
    with pytest.raises(hsm.PinIncorrect):
        bad.status()
    assert "not-the-pin" not in repr(bad) and "not-the-pin" not in repr(bad.config)
    # A failed login leaves nothing behind: the right PIN works afterwards ...
    good = hsm.Hsm(hsm.HsmConfig(hsm_config.module, "test-pin", softhsm.pin))
    assert good.status().token_label == "test-pin"
    # ... and once logged in, a wrong PIN in the same process cannot ride on that login.
    with pytest.raises(hsm.PinIncorrect):
        bad.status()
