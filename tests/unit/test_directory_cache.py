"""DirectoryCache: lookups, children by pid or by organisation code, JSON round trip, refresh."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exchange.directory import DirectoryCache
from exchange.errors import AxisUnavailable
from exchange.transport import Agency

PROVINCE = Agency("1", "000.00.00.H53", "UBND tỉnh Tây Ninh")
OFFICE = Agency("2", "000.00.01.H53", "Văn phòng UBND tỉnh", pid="1")
UNIT = Agency("3", "000.01.01.H53", "Phòng Hành chính")  # no pid: found by its code
TEST_UNIT = Agency("4", "28.22.H17", "Test unit", pid="1")  # lenient code: found by pid
GONE = Agency("5", "000.00.02.H53", "Sở cũ", pid="1", deleted=True)
WHEN = datetime(2024, 3, 5, 1, 2, 3, tzinfo=UTC)


class FakeTransport:
    def __init__(self, agencies: list[Agency] | None) -> None:
        self._agencies = agencies

    def agencies(self) -> list[Agency]:
        if self._agencies is None:
            raise AxisUnavailable("down")
        return self._agencies


def test_lookup_and_deleted_units() -> None:
    cache = DirectoryCache.from_agencies([PROVINCE, OFFICE, UNIT, TEST_UNIT, GONE], fetched_at=WHEN)
    assert cache.get("000.00.01.H53") == OFFICE
    assert "000.00.01.H53" in cache
    assert "000.00.02.H53" not in cache  # deleted: not reachable
    assert cache.get("000.00.09.H53") is None
    assert len(cache) == 4
    assert cache.fetched_at == WHEN


def test_children_by_pid_or_by_code() -> None:
    cache = DirectoryCache.from_agencies([PROVINCE, OFFICE, UNIT, TEST_UNIT, GONE])
    assert cache.children("000.00.00.H53") == [OFFICE, TEST_UNIT]
    assert cache.children("000.00.01.H53") == [UNIT]
    assert cache.children("000.01.01.H53") == []
    assert cache.children("unknown") == []


def test_json_round_trip() -> None:
    cache = DirectoryCache.from_agencies([PROVINCE, OFFICE, UNIT], fetched_at=WHEN)
    again = DirectoryCache.from_json(cache.to_json())
    assert list(again) == [PROVINCE, OFFICE, UNIT]
    assert again.fetched_at == WHEN
    assert DirectoryCache.from_json(DirectoryCache().to_json()).fetched_at is None


def test_refresh_replaces_and_keeps_on_error() -> None:
    cache = DirectoryCache.from_agencies([PROVINCE])
    cache.refresh(FakeTransport([OFFICE, GONE]), now=WHEN)
    assert list(cache) == [OFFICE]
    assert cache.fetched_at == WHEN
    with pytest.raises(AxisUnavailable):
        cache.refresh(FakeTransport(None))
    assert list(cache) == [OFFICE]
    assert cache.fetched_at == WHEN
