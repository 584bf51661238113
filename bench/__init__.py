"""Benchmarks for the signing service, run with ``python -m bench [name ...]``.

A benchmark is a module with ``DESCRIPTION``, ``add_arguments(parser)`` and
``run(options, args) -> exit status``; register it in :data:`REGISTRY`.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Name -> module. Modules are imported by name so a new benchmark is one line here.
REGISTRY: dict[str, str] = {
    "hsm_sign": "bench.hsm_sign",
    "sign_throughput": "bench.sign_throughput",
    "approval_latency": "bench.approval_latency",
    "exchange_throughput": "bench.exchange_throughput",
}


@dataclass(frozen=True)
class RunOptions:
    """Options every benchmark understands (timing, output, acceptance check)."""

    duration: float  # seconds per timed run
    rounds: int  # interleaved rounds per side
    warmup: float  # seconds per side before the first round
    out: Path  # JSON results file
    check: bool  # exit 1 when the benchmark's acceptance threshold is missed


class Benchmark(Protocol):
    """What the runner needs from a benchmark module."""

    DESCRIPTION: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add this benchmark's own options, in an argument group named after it."""

    def run(self, options: RunOptions, args: argparse.Namespace) -> int:
        """Run, print a table, write ``options.out``; return the exit status."""


def load(name: str) -> Benchmark:
    """The benchmark module registered as ``name``."""
    return cast(Benchmark, importlib.import_module(REGISTRY[name]))
