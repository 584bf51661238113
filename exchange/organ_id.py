"""Organisation identifiers (mã định danh) of QCVN 102:2016: ``LLL.KK.JJ.Xnn``.

Read right to left: ``Xnn`` is level 1 (a letter and two digits), ``JJ`` level 2, ``KK`` level 3,
``LLL`` level 4; a zero group means "no lower level". The parent of a code zeroes its left-most
non-zero group.
"""

from __future__ import annotations

import re

STRICT = re.compile(r"^\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}$")


class InvalidOrganId(ValueError):
    """Not a well-formed organisation identifier."""


def validate(code: str) -> str:
    """Return ``code`` if it matches the strict pattern (used for everything we send)."""
    if not STRICT.match(code):
        raise InvalidOrganId(f"{code!r} is not an organisation code of the form 000.00.00.H53")
    return code


def parent(code: str) -> str | None:
    """The parent code, or ``None`` for a level-1 code such as ``000.00.00.H53``."""
    groups = validate(code).split(".")
    for i in range(3):
        if int(groups[i]):
            groups[i] = "0" * len(groups[i])
            return ".".join(groups)
    return None


def ancestors(code: str) -> list[str]:
    """Every ancestor from the nearest to level 1."""
    out: list[str] = []
    current = parent(code)
    while current is not None:
        out.append(current)
        current = parent(current)
    return out
