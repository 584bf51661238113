"""Throw-away SoftHSM2 tokens in a temporary folder, made with the repo's own ``init-token.sh``."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pkcs11

REPO = Path(__file__).resolve().parent.parent
INIT_TOKEN = REPO / "softhsm" / "init-token.sh"
DEFAULT_MODULE = os.environ.get("SIGNER_HSM_MODULE", "/usr/lib/softhsm/libsofthsm2.so")


@dataclass(frozen=True)
class Token:
    """A token on a private SoftHSM2 configuration."""

    module: str
    conf: Path
    label: str
    pin: str = field(repr=False)


@contextmanager
def throwaway_token(module: str = DEFAULT_MODULE, label: str | None = None) -> Iterator[Token]:
    """Create a token in a temp folder and point ``SOFTHSM2_CONF`` at it for the duration.

    SoftHSM2 reads ``SOFTHSM2_CONF`` only at C_Initialize, so this must run before the module is
    loaded in this process; processes spawned inside the block inherit the variable.
    """
    # python-pkcs11 keeps loaded modules here; a loaded one would silently keep its old tokens.
    if module in getattr(pkcs11, "_loaded", {}):
        raise RuntimeError(f"{module} is already loaded in this process: SOFTHSM2_CONF would be ignored")
    folder = Path(tempfile.mkdtemp(prefix="bench-softhsm-"))
    token = Token(module=module, conf=folder / "softhsm2.conf",
                  label=label or f"bench-{secrets.token_hex(4)}", pin=secrets.token_hex(8))
    env = dict(os.environ)
    env.pop("SIGNER_HSM_PIN_FILE", None)
    env.pop("SIGNER_HSM_SO_PIN_FILE", None)
    env.update(
        SOFTHSM2_CONF=str(token.conf),
        # Explicit, so an inherited SIGNER_HSM_TOKEN_DIR cannot send tokens outside the temp folder.
        SIGNER_HSM_TOKEN_DIR=str(folder / "tokens"),
        SIGNER_HSM_TOKEN=token.label,
        SIGNER_HSM_PIN=token.pin,
        SIGNER_HSM_SO_PIN=secrets.token_hex(8),
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    try:
        done = subprocess.run([str(INIT_TOKEN)], env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"init-token.sh failed ({done.returncode}): {done.stderr.strip()}")
        os.environ["SOFTHSM2_CONF"] = str(token.conf)
        yield token
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous
        shutil.rmtree(folder, ignore_errors=True)
