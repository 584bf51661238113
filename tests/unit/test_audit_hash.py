from __future__ import annotations

import pytest

from signer.audit import canonical_json, row_hash

ROW = {"seq": 7, "at": "2026-11-21T06:00:00.000000+00:00", "actor": "user:1", "action": "x",
       "target": "t", "outcome": "success", "organisation_id": "o", "detail": '{"a":1}',
       "prev_hash": "0" * 64}


def test_canonical_json_is_stable_and_keeps_vietnamese() -> None:
    assert canonical_json({"b": 1, "a": "Đồng"}) == '{"a":"Đồng","b":1}'


def test_hash_is_deterministic() -> None:
    assert row_hash(**ROW) == row_hash(**dict(ROW))  # type: ignore[arg-type]


@pytest.mark.parametrize("field", sorted(ROW))
def test_every_field_is_covered(field: str) -> None:
    changed = dict(ROW)
    changed[field] = 8 if field == "seq" else str(changed[field]) + "x"
    assert row_hash(**changed) != row_hash(**ROW)  # type: ignore[arg-type]
