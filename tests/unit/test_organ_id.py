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
