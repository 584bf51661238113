from __future__ import annotations

import pytest

import hsm


@pytest.mark.parametrize("name", sorted(hsm.KEY_SPECS))
def test_key_spec_names_round_trip(name: str) -> None:
    assert hsm.KeySpec.parse(name).name == name


def test_algorithm_fits_key_family() -> None:
    assert hsm.ECDSA_SHA256.fits(hsm.KeyKind.EC) and not hsm.ECDSA_SHA256.fits(hsm.KeyKind.RSA)
    assert hsm.RSA_PSS_SHA256.fits(hsm.KeyKind.RSA) and not hsm.RSA_SHA256.fits(hsm.KeyKind.EC)
    assert hsm.SignatureAlgorithm(hsm.Scheme.ECDSA, "sha384").digest_size == 48


@pytest.mark.parametrize("name", ["sha256", "sha384", "sha512"])
def test_digest_info_prefixes_are_the_der_encoding(name: str) -> None:
    from asn1crypto import algos

    from hsm.token import DIGEST_INFO_PREFIX

    digest = bytes(range(hsm.SignatureAlgorithm(hsm.Scheme.RSA_PKCS1V15, name).digest_size))
    der = algos.DigestInfo({"digest_algorithm": {"algorithm": name}, "digest": digest}).dump()
    assert DIGEST_INFO_PREFIX[name] + digest == der
