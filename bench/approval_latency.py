"""How long a holder waits after approving: from the approval POST to the document system seeing
COMPLETED, for one 1-page B-B PDF (RSA-2048, profile ``approved``), over N requests one at a time.

The service is ``signer run`` (2 gunicorn workers, ``--hsm-workers`` hsm workers, SQLite unless
``--postgres``); the benchmark is the document system (POST, long-poll ``?wait=30``) and the phone
(recompute the challenge, sign it with the app key, send the PIN and the code). Reported: median,
p95 and max of approval-to-COMPLETED, and, as the in-process baseline measured in the same run,
the time pyHanko takes to sign the same PDF with a key already in memory (what the hsm worker's
share could at best be). Every signed PDF of a sample is validated with pyHanko.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bench import RunOptions
from bench.report import format_table, machine_info, write_json
from bench.service import DEFAULT_MODULE, Service, postgres_database
from bench.sign_throughput import Client, PlainLoop, pades_bodies, validate_pdfs

DESCRIPTION = "approval POST to COMPLETED for a single 1-page B-B PDF: median and p95 over N requests"
DEFAULT_REQUESTS, QUICK_REQUESTS = 200, 20
WARMUP_REQUESTS = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("approval_latency")
    group.add_argument("--requests", type=int, default=None, metavar="N",
                       help=f"timed requests (default {DEFAULT_REQUESTS}; --quick {QUICK_REQUESTS})")
    group.add_argument("--latency-hsm-workers", type=int, default=2, metavar="N",
                       help="hsm workers of `signer run` (default 2, its own default)")
    group.add_argument("--latency-postgres", metavar="ADMIN_URL",
                       help="a fresh database on this PostgreSQL server instead of SQLite")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run(options: RunOptions, args: argparse.Namespace) -> int:
    from tests.pdfs import decision_pdf

    count = args.requests or (QUICK_REQUESTS if args.quick else DEFAULT_REQUESTS)
    started, machine = datetime.now(UTC), machine_info()
    pdf = decision_pdf()
    device_key = ec.generate_private_key(ec.SECP256R1())
    databases = contextlib.ExitStack()
    url = databases.enter_context(postgres_database(args.latency_postgres)) if args.latency_postgres else None
    service = Service(device_public_key_der=device_key.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo), web_workers=2, hsm_workers=args.latency_hsm_workers,
        module=getattr(args, "module", None) or DEFAULT_MODULE, database_url=url)
    latencies: list[float] = []
    samples: list[bytes] = []
    try:
        with service:
            assert service.world is not None
            client = Client(service.world, device_key, 30)
            client.login()
            bodies = pades_bodies(service.world, pdf, WARMUP_REQUESTS + count, 1, "latency")
            for i, body in enumerate(bodies):
                outputs, timings = client.sign(body)
                if i >= WARMUP_REQUESTS:
                    latencies.append(timings.seconds["approve"] + timings.seconds["wait"])
                    if i % 20 == 0 or i == len(bodies) - 1:  # a sample, always the last one
                        samples.extend(outputs)
    finally:
        databases.close()
    loop = PlainLoop(pdf, visible=True, keep_key=True)
    loop.run(3)
    wall, _, _ = loop.run(20)
    baseline = wall / 20
    verdicts = validate_pdfs(samples, service.world.root_der)
    valid = all(v["intact"] and v["valid"] for v in verdicts) and not service.survivors
    median, p95 = statistics.median(latencies), _percentile(latencies, 0.95)
    print(format_table(["measure", "median ms", "p95 ms", "max ms"], [
        ["approval POST -> COMPLETED", f"{1000 * median:.0f}", f"{1000 * p95:.0f}", f"{1000 * max(latencies):.0f}"],
        ["baseline: pyHanko signs the PDF in-process (key in memory)", f"{1000 * baseline:.0f}", "-", "-"]]))
    print(f"{count} requests one at a time after {WARMUP_REQUESTS} warm-up ones; "
          f"{args.latency_hsm_workers} hsm worker(s), {'PostgreSQL' if url else 'SQLite'}; median / baseline "
          f"{median / baseline:.1f}x; {sum(v['intact'] and v['valid'] for v in verdicts)}/{len(verdicts)} "
          f"sampled PDFs valid; load average at start {machine['loadavg_at_start'][0]:.2f}")
    result: dict[str, Any] = {
        "benchmark": "approval_latency", "started": started.isoformat(timespec="seconds"), "machine": machine,
        "requests": count, "hsm_workers": args.latency_hsm_workers, "database": "postgresql" if url else "sqlite",
        "latency_ms": {"median": 1000 * median, "p95": 1000 * p95, "max": 1000 * max(latencies),
                       "all": [round(1000 * x, 2) for x in latencies]},
        "baseline_ms": 1000 * baseline, "ratio_median_to_baseline": median / baseline,
        "outputs_valid": valid, "validated": len(verdicts),
    }
    write_json(options.out, result)
    print(f"results: {options.out}")
    return 0 if valid else 1
