"""Configuration of the local axis: the systems allowed to call it and the units each one owns.

A JSON file such as::

    {"systems": [
      {"system_id": "sys-a", "secret_file": "secrets/sys-a",
       "organs": [{"code": "000.00.00.H53", "name": "UBND tỉnh Tây Ninh", "mail": "ubnd@tayninh.gov.vn"}]},
      {"system_id": "sys-b", "secret": "change-me",
       "organs": [{"code": "000.00.01.H53", "name": "Văn phòng UBND tỉnh", "parent": "000.00.00.H53"}]}
    ]}

Several organisations, each with its own system id and secret, share one local axis. ``secret_file``
(relative to the config file) keeps the secret out of the JSON; it is re-read on every :func:`load`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exchange import organ_id


@dataclass(frozen=True)
class Unit:
    """A connected unit (organisation) of the directory. ``parent`` is its parent's code, or "" to
    derive it from the code itself (for strict 4-level codes)."""

    code: str
    name: str
    mail: str = ""
    parent: str = ""

    def parent_code(self) -> str:
        """The explicit parent, else the code's own parent (strict codes only), else ""."""
        if self.parent:
            return self.parent
        if organ_id.STRICT.match(self.code):
            return organ_id.parent(self.code) or ""
        return ""


@dataclass(frozen=True)
class SystemAccount:
    """One system allowed to call the axis (a document-management system), with the units it speaks for."""

    system_id: str
    secret: str = field(repr=False)
    organs: Sequence[Unit] = ()
    secret_file: str = ""  # where the secret came from, kept so dump() does not inline it

    def __post_init__(self) -> None:
        object.__setattr__(self, "organs", tuple(self.organs))

    def owns(self, code: str) -> bool:
        """Whether this system speaks for unit ``code``."""
        return any(u.code == code for u in self.organs)


@dataclass(frozen=True)
class AxisConfig:
    """All systems of one local axis. Unit codes are unique across systems."""

    systems: Sequence[SystemAccount] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "systems", tuple(self.systems))
        seen_systems: set[str] = set()
        seen_units: set[str] = set()
        for system in self.systems:
            if not system.system_id or not system.secret:
                raise ValueError("every system needs a system_id and a secret")
            if system.system_id in seen_systems:
                raise ValueError(f"duplicate system id {system.system_id!r}")
            seen_systems.add(system.system_id)
            for unit in system.organs:
                if not unit.code:
                    raise ValueError(f"system {system.system_id!r} has a unit without a code")
                if unit.code in seen_units:
                    raise ValueError(f"unit {unit.code!r} belongs to two systems")
                seen_units.add(unit.code)

    def system(self, system_id: str) -> SystemAccount | None:
        """The account of ``system_id``, or None."""
        return next((s for s in self.systems if s.system_id == system_id), None)

    def secret_for(self, system_id: str) -> str | None:
        """The shared secret of ``system_id`` (for :func:`exchange.axis.auth.verify`), or None."""
        system = self.system(system_id)
        return system.secret if system else None

    def units(self) -> list[Unit]:
        """Every unit of every system, in configuration order."""
        return [u for s in self.systems for u in s.organs]

    def unit(self, code: str) -> Unit | None:
        """The unit ``code``, or None if no system owns it."""
        return next((u for u in self.units() if u.code == code), None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form :func:`load` reads (secrets from files stay as ``secret_file``)."""
        systems: list[dict[str, Any]] = []
        for s in self.systems:
            entry: dict[str, Any] = {"system_id": s.system_id}
            if s.secret_file:
                entry["secret_file"] = s.secret_file
            else:
                entry["secret"] = s.secret
            entry["organs"] = [
                {k: v for k, v in (("code", u.code), ("name", u.name), ("mail", u.mail), ("parent", u.parent))
                 if v or k in ("code", "name")}
                for u in s.organs
            ]
            systems.append(entry)
        return {"systems": systems}

    def dump(self, path: str | Path) -> None:
        """Write the configuration as JSON (UTF-8); mode 0600 since it may hold secrets."""
        target = Path(path)
        target.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        target.chmod(0o600)


def from_dict(data: dict[str, Any], *, base: Path | None = None) -> AxisConfig:
    """Build a configuration from its JSON form; ``secret_file`` paths are relative to ``base``."""
    systems: list[SystemAccount] = []
    for entry in data.get("systems", []):
        secret_file = str(entry.get("secret_file", ""))
        if secret_file:
            path = Path(secret_file)
            if base is not None and not path.is_absolute():
                path = base / path
            secret = path.read_text(encoding="utf-8").strip()
        else:
            secret = str(entry.get("secret", ""))
        organs = tuple(
            Unit(code=str(o["code"]), name=str(o.get("name", "")), mail=str(o.get("mail", "")),
                 parent=str(o.get("parent", "")))
            for o in entry.get("organs", [])
        )
        systems.append(SystemAccount(str(entry.get("system_id", "")), secret, organs, secret_file))
    return AxisConfig(systems)


def load(path: str | Path) -> AxisConfig:
    """Read a configuration JSON file (see the module docstring)."""
    source = Path(path)
    return from_dict(json.loads(source.read_text(encoding="utf-8")), base=source.parent)
