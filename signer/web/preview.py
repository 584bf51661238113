"""Page 1 of a PDF as a PNG for the phone (poppler's pdftoppm, in a temporary file, time-limited)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

WIDTH_PX = 720  # sharp on a 360 px wide screen at 2x


class PreviewUnavailable(Exception):
    """pdftoppm is missing, too slow, or could not read the PDF."""


def first_page_png(pdf: bytes, width_px: int = WIDTH_PX, timeout_s: float = 20.0) -> bytes:
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        raise PreviewUnavailable("pdftoppm (poppler-utils) is not installed")
    with tempfile.TemporaryDirectory(prefix="signer-preview-") as folder:
        source = Path(folder) / "document.pdf"
        source.write_bytes(pdf)
        try:
            done = subprocess.run([pdftoppm, "-png", "-f", "1", "-l", "1", "-singlefile",
                                   "-scale-to", str(width_px), str(source)],
                                  capture_output=True, timeout=timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PreviewUnavailable(type(exc).__name__) from None
    if done.returncode != 0 or not done.stdout.startswith(b"\x89PNG"):
        raise PreviewUnavailable(f"pdftoppm exited {done.returncode}")
    return done.stdout
