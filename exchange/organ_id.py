"""Organisation identifiers (mã định danh) of QCVN 102:2016: ``LLL.KK.JJ.Xnn``.

Read right to left: ``Xnn`` is level 1 (a letter and two digits), ``JJ`` level 2, ``KK`` level 3,
``LLL`` level 4; a zero group means "no lower level". The parent of a code zeroes its left-most
non-zero group.

Everything we send is checked with :func:`validate` (the strict pattern). Real traffic also carries
other ids (axis system ids such as ``00.53.W00``, tenant and test codes): :func:`lenient` accepts
those on receipt.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# ``\Z`` rather than ``$`` (which also matches before a trailing newline) and ASCII digits only: these
# codes end up in XML and HTTP headers.
STRICT = re.compile(r"^\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}\Z", re.ASCII)
LENIENT = re.compile(r"[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)*\Z", re.ASCII)
LENIENT_MAX_LENGTH = 64


class InvalidOrganId(ValueError):
    """Not a well-formed organisation identifier."""


def validate(code: str) -> str:
    """Return ``code`` if it matches the strict pattern (used for everything we send)."""
    if not STRICT.match(code):
        raise InvalidOrganId(f"{code!r} is not an organisation code of the form 000.00.00.H53")
    return code


def lenient(code: str) -> str:
    """Return ``code`` if it is acceptable on receipt: a strict code or any other id real traffic
    carries (``00.53.W00``, ``01.02.G22``, ``28.22.H17``): dotted ASCII alphanumeric groups, at most
    64 characters, no spaces. Raise :class:`InvalidOrganId` otherwise."""
    if len(code) > LENIENT_MAX_LENGTH or not LENIENT.match(code):
        raise InvalidOrganId(f"{code!r} is not an organisation identifier (dotted alphanumeric groups, at most "
                             f"{LENIENT_MAX_LENGTH} characters)")
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


def level(code: str) -> int:
    """The level of a strict code, 1 (``000.00.00.H53``) to 4 (``001.20.31.H53``).

    Consistent with :func:`parent`: one plus the number of non-zero groups, so ``000.20.00.H53``
    (whose parent is ``000.00.00.H53``) is level 2.
    """
    return 1 + sum(1 for group in validate(code).split(".")[:3] if int(group))


def is_ancestor(ancestor: str, code: str) -> bool:
    """Whether ``ancestor`` is a proper ancestor of ``code`` (both strict; a code is not its own)."""
    validate(ancestor)
    return ancestor in ancestors(code)


def children(code: str, codes: Iterable[str]) -> list[str]:
    """The direct children of ``code`` among ``codes``, in their order, without duplicates.

    ``codes`` is typically the axis directory, which also lists non-strict ids: those are skipped.
    """
    validate(code)
    out: list[str] = []
    for candidate in codes:
        if STRICT.match(candidate) and candidate not in out and parent(candidate) == code:
            out.append(candidate)
    return out
