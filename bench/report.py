"""Shared output helpers: machine description, plain-text tables, JSON files."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _softhsm_version() -> str | None:
    try:
        done = subprocess.run(["softhsm2-util", "--version"], capture_output=True, text=True,
                              check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_info() -> dict[str, Any]:
    """What the figures depend on; load average tells whether the machine was busy."""
    try:
        pkcs11_version: str | None = importlib.metadata.version("python-pkcs11")
    except importlib.metadata.PackageNotFoundError:
        pkcs11_version = None
    return {
        "nproc": len(os.sched_getaffinity(0)),  # what `nproc` prints: CPUs this process may use
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "softhsm": _softhsm_version(),
        "python_pkcs11": pkcs11_version,
        "loadavg_at_start": list(os.getloadavg()),
    }


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A left/right aligned text table: first column left, the rest right."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` atomically, so a crashed run never leaves half a results file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
