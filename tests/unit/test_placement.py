"""Placement arguments and the seal geometry (pure functions; PDFs are in the integration tests)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from signer.signing.placement import (
    DEFAULT_SEAL_MM,
    MM,
    Placement,
    PlacementError,
    Resolved,
    seal_box,
)


def test_seal_box_covers_the_left_third_and_is_vertically_centred() -> None:
    signature = (360.0, 170.0, 510.0, 230.0)  # 150 x 60 pt
    x1, y1, x2, y2 = seal_box(signature)
    size = DEFAULT_SEAL_MM * MM
    assert x2 - x1 == pytest.approx(size)
    assert y2 - y1 == pytest.approx(size)
    assert x2 == pytest.approx(360.0 + 150.0 / 3)  # right edge one third into the signature
    assert x1 < 360.0  # the rest of the seal hangs out to the left
    assert (y1 + y2) / 2 == pytest.approx(200.0)


def test_seal_box_real_size_in_millimetres() -> None:
    x1, _, x2, _ = seal_box((100.0, 100.0, 400.0, 200.0), seal_size_mm=40.0)
    assert x2 - x1 == pytest.approx(40 / 25.4 * 72)
    assert x2 == pytest.approx(200.0)


@pytest.mark.parametrize("size", [0.0, -5.0, math.nan, math.inf])
def test_seal_box_rejects_bad_sizes(size: float) -> None:
    with pytest.raises(PlacementError, match="seal size"):
        seal_box((100.0, 100.0, 400.0, 200.0), seal_size_mm=size)


def test_seal_box_rejects_a_bad_signature_box() -> None:
    with pytest.raises(PlacementError, match="x1 < x2"):
        seal_box((400.0, 100.0, 100.0, 200.0))


@pytest.mark.parametrize("kwargs", [
    {"page": 1, "box": (10.0, 10.0, 100.0, 50.0)},
    {"page": 3, "box": [10, 10, 100, 50]},
    {"field_name": "ChuKy"},
    {"anchor": "Nguyễn Văn An"},
    {"anchor": "[[CHU_KY]]", "anchor_page": 2, "anchor_offset": (0.0, -10.0), "size": (120.0, 50.0)},
])
def test_valid_placements(kwargs: dict[str, Any]) -> None:
    Placement(**kwargs)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "exactly one"),
    ({"page": 1, "box": (0, 0, 1, 1), "field_name": "A"}, "exactly one"),
    ({"field_name": "A", "anchor": "B"}, "exactly one"),
    ({"page": 1}, "both page and box"),
    ({"box": (0, 0, 1, 1)}, "both page and box"),
    ({"page": 0, "box": (0, 0, 1, 1)}, "starting at 1"),
    ({"page": True, "box": (0, 0, 1, 1)}, "starting at 1"),
    ({"page": 1, "box": (0, 0, 1)}, "four finite numbers"),
    ({"page": 1, "box": (0, 0, math.nan, 1)}, "four finite numbers"),
    ({"page": 1, "box": (10, 0, 5, 1)}, "x1 < x2"),
    ({"page": 1, "box": (0, 10, 5, 10)}, "y1 < y2"),
    ({"field_name": "  "}, "must not be empty"),
    ({"anchor": " \n "}, "some text"),
    ({"anchor": "A", "anchor_page": 0}, "starting at 1"),
    ({"anchor": "A", "size": (0.0, 10.0)}, "positive"),
    ({"anchor": "A", "anchor_offset": (math.inf, 0.0)}, "finite"),
    ({"field_name": "A", "anchor_page": 2}, "only apply to an anchor"),
    ({"page": 1, "box": (0, 0, 1, 1), "size": (5.0, 5.0)}, "only apply to an anchor"),
])
def test_invalid_placements(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(PlacementError, match=message):
        Placement(**kwargs)


def test_placement_error_is_a_value_error() -> None:
    assert issubclass(PlacementError, ValueError)


def test_resolved_field_spec() -> None:
    spec = Resolved(page_index=1, box=(1.0, 2.0, 3.0, 4.0)).sig_field_spec("Sig1")
    assert (spec.sig_field_name, spec.on_page, spec.box) == ("Sig1", 1, (1.0, 2.0, 3.0, 4.0))
    assert Resolved(field_name="ChuKy").sig_field_spec("Sig1") is None


def test_placement_numbers_are_stored_as_float_tuples() -> None:
    placement = Placement(page=1, box=[10, 20, 30, 40])  # type: ignore[arg-type]  # as from JSON
    assert placement.box == (10.0, 20.0, 30.0, 40.0)
    anchored = Placement(anchor="A", anchor_offset=[1, 2], size=[3, 4])  # type: ignore[arg-type]
    assert (anchored.anchor_offset, anchored.size) == ((1.0, 2.0), (3.0, 4.0))
    assert hash(placement) != hash(anchored)


def test_anchor_options_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(PlacementError, match="only apply to an anchor"):
        Placement(field_name="A", size=5)  # type: ignore[arg-type]
    with pytest.raises(PlacementError, match="two finite numbers"):
        Placement(anchor="A", anchor_offset=(1.0,))  # type: ignore[arg-type]
