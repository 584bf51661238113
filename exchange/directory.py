"""The directory of units connected to the axis (``getAgenciesList``), cached by the service.

Recipients are checked against it before sending (AXIS.md section 1). Units the axis marks deleted
are dropped: they are not reachable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Protocol

from exchange import organ_id
from exchange.transport import Agency


class AgencySource(Protocol):
    """What :meth:`DirectoryCache.refresh` needs: any :class:`~exchange.transport.Transport` will do."""

    def agencies(self) -> list[Agency]: ...


class DirectoryCache:
    """Connected units by code, with when the list was fetched (None: never)."""

    def __init__(self, agencies: Iterable[Agency] = (), *, fetched_at: datetime | None = None) -> None:
        self._by_code = {a.code: a for a in agencies if not a.deleted and a.code}
        self.fetched_at = fetched_at

    @classmethod
    def from_agencies(cls, agencies: Iterable[Agency], *, fetched_at: datetime | None = None) -> DirectoryCache:
        """A cache of ``agencies`` (e.g. the answer of ``Transport.agencies()``)."""
        return cls(agencies, fetched_at=fetched_at)

    def refresh(self, transport: AgencySource, *, now: datetime | None = None) -> None:
        """Replace the content with the axis's current list; on error the old content stays."""
        agencies = transport.agencies()
        self._by_code = {a.code: a for a in agencies if not a.deleted and a.code}
        self.fetched_at = now or datetime.now(UTC)

    def get(self, code: str) -> Agency | None:
        """The unit ``code``, or None if it is not connected."""
        return self._by_code.get(code)

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def __iter__(self) -> Iterator[Agency]:
        return iter(list(self._by_code.values()))

    def __len__(self) -> int:
        return len(self._by_code)

    def children(self, code: str) -> list[Agency]:
        """Units directly under ``code``: by the axis's ``pid``, or by the organisation code's parent."""
        parent = self._by_code.get(code)
        out: list[Agency] = []
        for agency in self._by_code.values():
            if agency.code == code:
                continue
            by_pid = parent is not None and bool(agency.pid) and agency.pid == parent.id
            by_code = organ_id.STRICT.match(agency.code) is not None and organ_id.parent(agency.code) == code
            if by_pid or by_code:
                out.append(agency)
        return out

    def to_json(self) -> str:
        """The cache as JSON, for :meth:`from_json`."""
        return json.dumps(
            {"fetched_at": self.fetched_at.isoformat() if self.fetched_at else None,
             "agencies": [asdict(a) for a in self._by_code.values()]},
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> DirectoryCache:
        """Rebuild a cache saved by :meth:`to_json`."""
        data = json.loads(text)
        fetched = data.get("fetched_at")
        agencies = [
            Agency(id=str(a["id"]), code=str(a["code"]), name=str(a.get("name", "")), mail=str(a.get("mail", "")),
                   pid=str(a.get("pid", "")), deleted=bool(a.get("deleted", False)))
            for a in data.get("agencies", [])
        ]
        return cls(agencies, fetched_at=datetime.fromisoformat(fetched) if fetched else None)
