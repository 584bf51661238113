"""Runner: ``python -m bench [hsm_sign ...] [--quick] [--check] ...`` (default: every benchmark)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import REGISTRY, RESULTS_DIR, RunOptions, load

DEFAULT_DURATION = 2.0
DEFAULT_ROUNDS = 3
QUICK_DURATION = 0.5
QUICK_ROUNDS = 1


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The runner's options plus every registered benchmark's own options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run benchmarks: " + "; ".join(f"{n}: {load(n).DESCRIPTION}" for n in REGISTRY),
    )
    parser.add_argument("benchmarks", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default all: {', '.join(REGISTRY)})")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_ROUNDS} round of {QUICK_DURATION} s (smoke test, not a measurement)")
    parser.add_argument("--duration", type=_positive_float, metavar="S",
                        help=f"seconds per timed run (default {DEFAULT_DURATION})")
    parser.add_argument("--rounds", type=_positive_int, metavar="N",
                        help=f"interleaved rounds per side (default {DEFAULT_ROUNDS})")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help=f"JSON results file (default {RESULTS_DIR}/<name>.json; one benchmark only)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a benchmark misses its acceptance threshold")
    for name in REGISTRY:
        load(name).add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the selected benchmarks in order, return the worst exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    names: list[str] = args.benchmarks or list(REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    if args.out is not None and len(names) > 1:
        parser.error("--out needs exactly one benchmark")
    duration = args.duration or (QUICK_DURATION if args.quick else DEFAULT_DURATION)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS)
    status = 0
    for name in names:
        options = RunOptions(
            duration=duration,
            rounds=rounds,
            # Long enough for caches, key look-ups and CPU clocks to settle, short next to the runs.
            warmup=min(0.5, duration / 2),
            out=args.out or RESULTS_DIR / f"{name}.json",
            check=args.check,
        )
        status = max(status, load(name).run(options, args))
    return status


if __name__ == "__main__":
    sys.exit(main())
