from __future__ import annotations

import pytest

from exchange import organ_id


def test_parent_zeroes_the_leftmost_non_zero_group() -> None:
    assert organ_id.parent("000.20.31.H53") == "000.00.31.H53"
    assert organ_id.parent("000.00.31.H53") == "000.00.00.H53"
    assert organ_id.parent("000.00.00.H53") is None
    assert organ_id.ancestors("001.20.31.G22") == ["000.20.31.G22", "000.00.31.G22", "000.00.00.G22"]


@pytest.mark.parametrize("code", ["", "000.00.00.h53", "00.00.00.H53", "000.00.00.H5", "000-00-00-H53",
                                  "000.00.00.H53 "])
def test_strict_pattern(code: str) -> None:
    with pytest.raises(organ_id.InvalidOrganId):
        organ_id.validate(code)


def test_strict_pattern_refuses_a_trailing_newline_and_non_ascii_digits() -> None:
    for code in ("000.00.00.H53\n", "٠٠٠.٠٠.٠٠.H53"):
        with pytest.raises(organ_id.InvalidOrganId):
            organ_id.validate(code)
    assert issubclass(organ_id.InvalidOrganId, ValueError)


@pytest.mark.parametrize("code", ["000.00.00.H53", "00.53.W00", "01.02.G22", "28.22.H17", "000.00.00.A80", "vpcp",
                                  "a" * 64])
def test_lenient_accepts_what_traffic_carries(code: str) -> None:
    assert organ_id.lenient(code) == code


@pytest.mark.parametrize("code", ["", " ", "00.53.W00 ", "00 53", "a..b", ".a", "a.", "a" * 65, "mã.01",
                                  "00.53.W00\n", "a-b", "a/b", "<x>"])
def test_lenient_refuses(code: str) -> None:
    with pytest.raises(organ_id.InvalidOrganId):
        organ_id.lenient(code)


@pytest.mark.parametrize(("code", "expected"), [
    ("000.00.00.H53", 1), ("000.00.01.H53", 2), ("000.00.32.H53", 2), ("000.01.01.H53", 3), ("000.20.31.H53", 3),
    ("001.20.31.H53", 4), ("000.20.00.H53", 2),
])
def test_level(code: str, expected: int) -> None:
    assert organ_id.level(code) == expected
    assert organ_id.level(code) == 1 + len(organ_id.ancestors(code))


def test_level_needs_a_strict_code() -> None:
    with pytest.raises(organ_id.InvalidOrganId):
        organ_id.level("00.53.W00")


def test_is_ancestor() -> None:
    assert organ_id.is_ancestor("000.00.00.H53", "000.20.31.H53")
    assert organ_id.is_ancestor("000.00.31.H53", "000.20.31.H53")
    assert not organ_id.is_ancestor("000.20.31.H53", "000.20.31.H53")
    assert not organ_id.is_ancestor("000.20.31.H53", "000.00.31.H53")
    assert not organ_id.is_ancestor("000.00.00.H41", "000.20.31.H53")
    assert not organ_id.is_ancestor("000.00.32.H53", "000.20.31.H53")
    with pytest.raises(organ_id.InvalidOrganId):
        organ_id.is_ancestor("28.22.H17", "000.20.31.H53")


def test_children() -> None:
    directory = ["000.00.00.H53", "000.00.01.H53", "000.01.01.H53", "000.00.32.H53", "000.20.31.H53",
                 "000.00.31.H53", "000.00.01.H41", "00.53.W00", "000.00.32.H53"]
    assert organ_id.children("000.00.00.H53", directory) == ["000.00.01.H53", "000.00.32.H53", "000.00.31.H53"]
    assert organ_id.children("000.00.01.H53", iter(directory)) == ["000.01.01.H53"]
    assert organ_id.children("000.20.31.H53", directory) == []
    with pytest.raises(organ_id.InvalidOrganId):
        organ_id.children("00.53.W00", directory)
