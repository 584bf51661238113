"""Smoke test for ``python -m bench``: it runs end to end and writes sane JSON (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_hsm_sign_quick(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "hsm_sign", "--quick", "--processes", "1",
         "--cases", "ec-p256", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text())
    [result] = data["results"]
    assert (result["case"], result["processes"]) == ("ec-p256", 1)
    assert result["baseline_sig_per_s"] > 0
    assert result["candidate_sig_per_s"] > 0


def test_approval_latency_runs_end_to_end(tmp_path: Path) -> None:
    """A real `signer run`, a few approvals through the phone protocol, valid PDFs (no timing asserted)."""
    out = tmp_path / "latency.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "approval_latency", "--requests", "3", "--latency-hsm-workers", "1",
         "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=280, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("SIGNER_")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text())
    assert data["requests"] == 3 and len(data["latency_ms"]["all"]) == 3
    assert data["outputs_valid"] is True and data["baseline_ms"] > 0 and data["validated"] >= 1


def test_exchange_throughput_quick(tmp_path: Path) -> None:
    """`signer run` with its local axis and exchange worker: --quick sends 6 envelopes x 3 recipients, receives
    and verifies every packet, and times both baselines (no timing asserted)."""
    out = tmp_path / "exchange.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "exchange_throughput", "--quick", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("SIGNER_")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text())
    assert data["settings"]["envelopes_per_round"] == 6 and data["settings"]["recipients"] == 3
    for phase in ("send", "receive"):
        result = data["results"][phase]
        for unit in ("envelopes_per_s", "packets_per_s"):
            assert result[unit]["service"] > 0 and result[unit]["baseline"] > 0, (phase, result)
        assert result["ratio"] > 0
    outputs = data["outputs"]
    assert outputs["all_arrived"] is True and outputs["all_valid"] is True and outputs["ok"] is True
    assert outputs["incoming"] == outputs["edoc_sent"] == outputs["packets_expected"] >= 18
    assert outputs["baseline_intact_and_valid"] == outputs["baseline_pdfs"] == 18
