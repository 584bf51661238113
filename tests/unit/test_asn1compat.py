"""The asn1crypto fix: definite lengths ending in 0x80 are not mistaken for indefinite ones, so
dumping a structure that holds one never forces a deep re-encode; real BER still becomes DER."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest
from asn1crypto import cms, core

from signer import asn1compat
from tests.support import forced_reencodes


@pytest.mark.parametrize(("header", "indefinite"), [
    (b"\x30\x80", True),
    (b"\x30\x81\x80", False),                  # 128 bytes
    (b"\x30\x82\x01\x80", False),              # 384 bytes
    (b"\x30\x82\x80\x80", False),              # 32896 bytes
    (b"\x04\x7f", False),
    (b"\xa0\x82\x01\x00\x30\x80", True),       # explicit tag, definite, around an indefinite value
    (b"\xa0\x80\x30\x82\x02\x80", False),      # the innermost header is what asn1crypto looks at
    (b"\x9f\x81\x01\x80", True),               # high tag number, then the indefinite form
    (b"\x9f\x80", False),                      # truncated: not a header we can read
])
def test_is_indefinite(header: bytes, indefinite: bool) -> None:
    assert asn1compat.is_indefinite(header) is indefinite


def test_installed_when_the_package_is_imported() -> None:
    assert asn1compat.installed()
    asn1compat.install()  # idempotent
    assert asn1compat.installed()


@pytest.fixture
def forced() -> Iterator[list[str]]:
    with forced_reencodes() as calls:
        yield calls


def _attributes_with_contents_length(length: int) -> bytes:
    for pad in range(length):
        attrs = cms.CMSAttributes([
            cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            cms.CMSAttribute({"type": "message_digest", "values": [b"\x01" * 32]}),
            cms.CMSAttribute({"type": "1.2.3.4", "values": [core.OctetString(b"x" * pad)]}),
        ]).dump()
        if len(cms.CMSAttributes.load(attrs).contents) == length:
            return attrs
    raise AssertionError(f"no padding gives {length} content bytes")


@pytest.mark.parametrize("length", [0x80, 0x180, 0x280])
def test_parsed_der_inside_a_new_structure_is_never_force_encoded(length: int, forced: list[str]) -> None:
    der = _attributes_with_contents_length(length)
    header = der[:len(der) - length]
    assert header[-1] == 0x80 and not asn1compat.is_indefinite(header)  # the case asn1crypto got wrong
    parsed = cms.CMSAttributes.load(der)
    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"subject_key_identifier": b"\x02" * 20}),
        "digest_algorithm": {"algorithm": "sha256"},
        "unsigned_attrs": parsed,
        "signature_algorithm": {"algorithm": "sha256_ecdsa"},
        "signature": b"\x30" * 70,
    })
    first = signer_info.dump()
    for _ in range(5):
        assert signer_info.dump() == first
    assert der[-length:] in first
    assert forced == []


def test_indefinite_ber_is_still_re_encoded_as_der(forced: list[str]) -> None:
    class Pair(core.Sequence):  # type: ignore[misc]
        _fields: ClassVar[list[tuple[str, type]]] = [("a", core.Integer), ("b", core.Integer)]

    ber = bytes.fromhex("3080" "020105" "020106" "0000")
    value = Pair.load(ber)
    assert value.native == {"a": 5, "b": 6}
    assert value.dump() == bytes.fromhex("3006020105020106")
    assert forced == ["Pair"]
