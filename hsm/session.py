"""Per-process PKCS#11 state: one library, one logged-in session per token, one lock.

Facts this module is built around (see DESIGN.md section 3):

- python-pkcs11 initialises the module without OS locking, so SoftHSM2 runs without mutexes.
  Two threads in PKCS#11 at once crash the process: every call runs under the process lock
  (:func:`run`).
- Login is per application: a second C_Login fails and closing the logged-in session logs every
  session out. So there is one long-lived logged-in session per (module, token) per process,
  shared by every :class:`~hsm.token.Hsm` handle.
- PKCS#11 state does not survive fork(): nothing is opened at import time, and an at-fork hook
  makes a forked child drop the parent's sessions and restart the module on first use.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pkcs11
import pkcs11.exceptions as p11e

from hsm.errors import (
    REOPEN_ERRORS,
    AmbiguousKey,
    HsmError,
    HsmUnavailable,
    KeyNotFound,
    PinIncorrect,
    translate,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

_lock = threading.RLock()
# Bumped whenever the library is finalised: sessions opened under an older generation are dead.
_generation = 0
_sessions: dict[tuple[str, str], TokenSession] = {}
#: How many times this process finalised and re-initialised a PKCS#11 module (tests, diagnostics).
library_restarts = 0


def _after_fork_in_child() -> None:
    # The parent's lock may have been held by another thread at fork time; the child gets a fresh
    # one. Sessions are dropped without C_CloseSession: their handles belong to the parent.
    global _lock
    _lock = threading.RLock()
    for ts in _sessions.values():
        ts.forget()
    _sessions.clear()
    _mark_library_stale()


os.register_at_fork(after_in_child=_after_fork_in_child)

_stale_libraries: set[str] = set()


def _mark_library_stale() -> None:
    _stale_libraries.update(pkcs11._loaded.keys())


@dataclass(frozen=True)
class HsmConfig:
    """Where the keys live: a PKCS#11 module, a token selected by label, and its user PIN."""

    module: str
    token_label: str
    pin: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.module:
            raise ValueError("HSM module path is empty")
        if not self.token_label:
            raise ValueError("HSM token label is empty")


def _load_library(module: str) -> Any:
    global _generation, library_restarts
    lib = pkcs11.lib(module)
    if module in _stale_libraries:
        # First use in a forked child, after a token vanished or after a failed login: start the
        # module over so it re-reads its slots and forgets every session it had (C_Finalize).
        lib.reinitialize()
        _generation += 1
        library_restarts += 1
        _stale_libraries.discard(module)
    return lib


def _same_pin(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    return hmac.compare_digest(a.encode(), b.encode())


def _class_name(object_class: Any) -> str:
    return str(getattr(object_class, "name", object_class)).lower().replace("_", " ")


class _KeyMiss(Exception):
    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.label = label


class TokenSession:
    """The process's one logged-in session on one token, re-opened on demand."""

    def __init__(self, config: HsmConfig) -> None:
        self.config = config
        self._session: Any = None
        self._token: Any = None
        self._generation = -1
        self.keys: dict[tuple[str, str], Any] = {}  # (label, object class) -> python-pkcs11 object

    def forget(self) -> None:
        """Drop every handle without talking to the module (after fork or finalisation)."""
        self._session = None
        self._token = None
        self.keys.clear()

    def _open(self) -> Any:
        lib = _load_library(self.config.module)
        token = lib.get_token(token_label=self.config.token_label)
        try:
            session = token.open(user_pin=self.config.pin, rw=True)
        except p11e.PKCS11Error as exc:
            # Token.open calls C_OpenSession, then C_Login, and does not close the session when the
            # login fails; the handle never reaches us. Restart the module on the next open
            # (C_Finalize closes it), so repeated failures leave at most one such session behind.
            _stale_libraries.add(self.config.module)
            if isinstance(exc, p11e.UserAlreadyLoggedIn):
                # Login is per application: something outside this module logged in, and a plain
                # session would ride on a PIN we never checked. Refuse rather than guess.
                raise HsmUnavailable(
                    f"token {self.config.token_label!r} is already logged in by other code in this process"
                ) from None
            raise
        self._session, self._token, self._generation = session, token, _generation
        self.keys.clear()
        log.info("hsm session opened on token %r", self.config.token_label)
        return session

    def current(self) -> Any:
        if self._session is None or self._generation != _generation:
            self.forget()
            return self._open()
        return self._session

    @property
    def logged_in(self) -> bool:
        """Whether this object holds a session opened (and logged in) under the current module."""
        return self._session is not None and self._generation == _generation

    def find(self, label: str, object_class: Any) -> Any:
        """The object with ``label`` and ``object_class``, from the per-session cache.

        Raises :class:`AmbiguousKey` when several objects of that class carry the label (two
        processes generated the same label at once): signing with either would be a guess.
        """
        cache_key = (label, str(object_class))
        obj = self.keys.get(cache_key)
        if obj is None:
            found = list(self.current().get_objects(
                {pkcs11.Attribute.LABEL: label, pkcs11.Attribute.CLASS: object_class}
            ))
            if not found:
                raise _KeyMiss(label)
            if len(found) > 1:
                raise AmbiguousKey(
                    f"several {_class_name(object_class)} objects are labelled {label!r} on token "
                    f"{self.config.token_label!r}; delete the duplicates"
                )
            obj = self.keys[cache_key] = found[0]
        return obj

    def find_optional(self, label: str, object_class: Any) -> Any | None:
        """Like :meth:`find` but ``None`` when absent (no token re-check)."""
        try:
            return self.find(label, object_class)
        except _KeyMiss:
            return None

    @property
    def token(self) -> Any:
        self.current()
        return self._token

    def token_present(self) -> bool:
        """Whether the opened token is still the one in its slot: one C_GetTokenInfo, no search.

        Measured on SoftHSM2 2.6 after ``softhsm2-util --delete-token``: searches on the old session
        answer empty, C_GenerateRandom and C_GetSessionInfo still succeed, but C_GetTokenInfo on the
        slot fails (CKR_GENERAL_ERROR). A token re-created under the same label gets a new slot, so
        the old one keeps failing. Label and serial are compared in case a module reuses the slot.
        """
        self.current()
        try:
            info = self._token.slot.get_token()
        except p11e.PKCS11Error:
            return False
        return bool(info.label == self._token.label and info.serial == self._token.serial)

    def invalidate(self, *, restart_library: bool) -> None:
        """Forget the session; optionally finalise the module so it rescans its tokens."""
        self.forget()
        if restart_library:
            _stale_libraries.add(self.config.module)


def token_session(config: HsmConfig) -> TokenSession:
    """The shared session object for ``config``'s token in this process (not yet opened)."""
    key = (config.module, config.token_label)
    with _lock:
        ts = _sessions.get(key)
        if ts is None or (ts.config != config and not ts.logged_in):
            ts = _sessions[key] = TokenSession(config)
        elif not _same_pin(ts.config.pin, config.pin):
            # The token is logged in for the whole process with another PIN; sharing that
            # session would let a wrong PIN through.
            raise PinIncorrect(f"token {config.token_label!r} is open in this process with another PIN")
        return ts


def run(config: HsmConfig, op: Callable[[TokenSession], T]) -> T:
    """Run ``op`` under the process lock with an open session, retrying once after re-opening.

    A session or token error (token removed, re-initialised, session closed) re-opens everything
    and retries once; if that fails too, the caller gets :class:`HsmUnavailable`.
    """
    with _lock:
        ts = token_session(config)
        for attempt in (1, 2):
            try:
                ts.current()
                return op(ts)
            except _KeyMiss as miss:
                # A missing key may mean the token itself went away (SoftHSM2 answers an empty
                # search on a deleted token). Check that cheaply; only a vanished token restarts
                # the module (which logs out every token in the process) and looks again. An
                # unknown label on a present token is a plain KeyNotFound, however often asked.
                if attempt == 2 or ts.token_present():
                    raise KeyNotFound(f"no key labelled {miss.label!r}") from None
                log.warning("token %r is no longer in its slot; restarting the module", config.token_label)
                ts.invalidate(restart_library=True)
            except HsmError:
                raise
            except REOPEN_ERRORS as exc:
                log.warning("hsm error %s on attempt %d; re-opening", type(exc).__name__, attempt)
                ts.invalidate(restart_library=True)
                if attempt == 2:
                    raise HsmUnavailable(f"token {config.token_label!r}: {type(exc).__name__}") from exc
            except p11e.PKCS11Error as exc:
                raise translate(exc) from exc
            except OSError as exc:  # pragma: no cover - module file vanished
                raise HsmUnavailable(str(exc)) from exc
        raise AssertionError("unreachable")  # pragma: no cover
