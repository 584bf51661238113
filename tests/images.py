"""Transparent PNG images for tests: the demo data's blue signature and red round seal."""

from __future__ import annotations

from signer.demo import seal_png, signature_png

__all__ = ["seal_png", "signature_png"]
