"""A fix for asn1crypto's indefinite-length test in ``dump()`` (wbond/asn1crypto#249, unfixed in 1.5.1).

asn1crypto decides that a value was BER-encoded with an indefinite length when the last byte of its
header is 0x80. That also matches every definite long-form length whose low byte is 0x80 (128,
384, 640, ... bytes), and such a value is then re-encoded with ``force=True`` on every ``dump()``,
down to its leaves. Inside a freshly built CMS, whose mutated ancestors read their contents several
times per dump, the forced re-encodes multiply: a B-T signature whose timestamp token, DSS or
attributes hit such a length took 7 s of CPU on a quiet machine and minutes under load, for about
one document in ten (RSA-2048 keys, B-T and above).

:func:`install` recompiles the five affected ``dump`` methods with the test narrowed to headers
whose (innermost) length octet really is the indefinite form. The methods are otherwise asn1crypto's
own, so the cost per call is unchanged; an asn1crypto release whose source no longer matches is
refused loudly rather than patched half-way.
"""

from __future__ import annotations

import inspect
import textwrap
from typing import Any

from asn1crypto import core

_BUGGY_TEST = "self._header is not None and self._header[-1:] == b'\\x80'"
_FIXED_TEST = f"{_BUGGY_TEST} and _signer_is_indefinite(self._header)"
_PATCHED_CLASSES = ("Asn1Value", "Choice", "Primitive", "Sequence", "SequenceOf")
_MARK = "_signer_asn1compat"
_METHOD = "dump"


def is_indefinite(header: bytes) -> bool:
    """Whether the innermost of the (possibly explicit-tagged) headers uses the indefinite form."""
    pos, length_octet = 0, -1
    while pos < len(header):
        identifier = header[pos]
        pos += 1
        if identifier & 0x1F == 0x1F:  # high tag number: base-128 octets, the last without bit 8
            while pos < len(header) and header[pos] & 0x80:
                pos += 1
            pos += 1
        if pos >= len(header):
            return False
        length_octet = header[pos]
        pos += 1
        if length_octet > 0x80:  # long form: the low bits count the length octets that follow
            pos += length_octet & 0x7F
    return length_octet == 0x80


class IncompatibleAsn1crypto(RuntimeError):
    """The installed asn1crypto's ``dump`` methods are not the ones this fix was written for."""


def _fixed_dump(cls: type) -> Any:
    source = textwrap.dedent(inspect.getsource(vars(cls)["dump"]))
    if source.count(_BUGGY_TEST) != 1:
        raise IncompatibleAsn1crypto(f"asn1crypto {cls.__name__}.dump changed; review signer/asn1compat.py")
    namespace = dict(vars(core))
    namespace["_signer_is_indefinite"] = is_indefinite
    code = compile(source.replace(_BUGGY_TEST, _FIXED_TEST), core.__file__, "exec")
    exec(code, namespace)  # noqa: S102 - asn1crypto's own method text with one condition narrowed
    fixed = namespace["dump"]
    setattr(fixed, _MARK, True)
    fixed.__qualname__ = f"{cls.__name__}.dump"
    return fixed


def install() -> None:
    """Patch asn1crypto once per process; idempotent."""
    for name in _PATCHED_CLASSES:
        cls = getattr(core, name)
        if not getattr(vars(cls)["dump"], _MARK, False):
            setattr(cls, _METHOD, _fixed_dump(cls))


def installed() -> bool:
    """Whether :func:`install` has run in this process."""
    return all(getattr(vars(getattr(core, name))["dump"], _MARK, False) for name in _PATCHED_CLASSES)
