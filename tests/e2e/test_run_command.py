"""`signer init`, `signer demo`, then `signer run`: everything starts (the local axis too), /readyz
answers ready, only the hsm worker holds the HSM PIN, `signer demo exchange` walks the exchange story
against the running service (sign, seal, send, receive, verify, answer 03, statuses back), Ctrl-C
leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support import SoftHsm, free_port, make_softhsm

BIN = Path(sys.executable).parent


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not running; only its parent's wait() is missing.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


PIN_VARS = {"SIGNER_HSM_PIN", "SIGNER_HSM_PIN_FILE", "SIGNER_HSM_SO_PIN", "SIGNER_HSM_SO_PIN_FILE"}


def _environ(pid: int) -> dict[str, str]:
    """The environment ``pid`` was started with."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.partition("=")[::2] for item in raw.split("\0") if item)


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    return [int(a) for a, b in (line.split() for line in out.splitlines()) if int(b) == pid]


def test_run_starts_everything_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    softhsm: SoftHsm = make_softhsm(tmp_path / "hsm")
    port, redis_port, axis_port = free_port(), free_port(), free_port()
    # Nothing from the developer's own deployment may leak in (database, Redis, axis, PIN files).
    env = {k: v for k, v in softhsm.env("e2e").items()
           if k not in {"REDIS_URL", "DATABASE_URL", "SIGNER_AXIS_URL"} and not k.endswith("_FILE")}
    # The PINs both ways (value and file): only the hsm worker may receive the user PIN.
    (tmp_path / "pin").write_text(softhsm.pin)
    (tmp_path / "so-pin").write_text(softhsm.so_pin)
    env.update(SIGNER_HSM_PIN_FILE=str(tmp_path / "pin"), SIGNER_HSM_SO_PIN_FILE=str(tmp_path / "so-pin"))
    env.update(SIGNER_STATE_DIR=str(tmp_path / "state"),
               SIGNER_BIND=f"127.0.0.1:{port}", SIGNER_SECRET_KEY="k" * 40,
               SIGNER_HSM_MODULE=softhsm.module, SIGNER_ADMIN_PASSWORD="e2e-admin-password",
               SIGNER_PASSWORD_TIME_COST="1", SIGNER_PASSWORD_MEMORY_KIB="64",
               # The walk-through below: the demo phones' server, the local axis, quick polls.
               SIGNER_PUBLIC_URL=f"http://127.0.0.1:{port}", SIGNER_AXIS_BIND=f"127.0.0.1:{axis_port}",
               SIGNER_AXIS_POLL_INTERVAL_S="1")
    init = subprocess.run([str(BIN / "signer"), "init"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert init.returncode == 0, init.stderr
    assert "created admin" in init.stdout
    demo = subprocess.run([str(BIN / "signer"), "demo"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # as scripts/run.sh does
    assert demo.returncode == 0, demo.stderr
    assert json.loads(demo.stdout)["partner_code"] == "000.00.02.H53"

    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen([str(BIN / "signer"), "run", "--redis-port", str(redis_port),
                             "--web-workers", "1"], env=env, stdout=log, stderr=subprocess.STDOUT)
    pids_file = tmp_path / "state" / "run" / "pids.json"
    try:
        deadline = time.monotonic() + 60
        status, body = 0, {}
        while time.monotonic() < deadline:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/readyz")
                if status == 200:
                    break
            except OSError:  # refused, reset, or a timeout while gunicorn's worker boots
                pass
            time.sleep(0.25)
        assert status == 200, (body, (tmp_path / "run.log").read_text(errors="replace")[-3000:])
        assert body["status"] == "ready"
        pids = json.loads(pids_file.read_text())
        # Two hsm workers by default: batches are shared between them.
        assert set(pids) == {"supervisor", "redis", "hsm-worker-1", "hsm-worker-2", "exchange-worker",
                             "scheduler", "web", "local-axis"}
        children = [int(line.split()[0]) for line in subprocess.run(
            ["ps", "-e", "-o", "pid=,pgid="], capture_output=True, text=True, check=True).stdout.splitlines()
            if int(line.split()[1]) in {p for n, p in pids.items() if n != "supervisor"}]
        assert len(children) >= 8  # gunicorn's worker joins its master's group

        web_workers = _children_of(pids["web"])
        assert len(web_workers) == 1
        for name in ("hsm-worker-1", "hsm-worker-2"):
            hsm_env = _environ(pids[name])
            assert hsm_env["SIGNER_HSM_PIN"] == softhsm.pin
            assert hsm_env["SIGNER_HSM_PIN_FILE"] == str(tmp_path / "pin")
            so_pin = {"SIGNER_HSM_SO_PIN", "SIGNER_HSM_SO_PIN_FILE"} & set(hsm_env)
            assert not so_pin  # set-up only
        for name, pid in [("web", pids["web"]), ("web worker", web_workers[0]),
                          ("exchange-worker", pids["exchange-worker"]), ("scheduler", pids["scheduler"]),
                          ("redis", pids["redis"]), ("local-axis", pids["local-axis"])]:
            leaked = PIN_VARS & set(_environ(pid))
            assert not leaked, f"{name} (pid {pid}) received {sorted(leaked)}"
            assert softhsm.pin not in Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")

        started = time.monotonic()
        walk = subprocess.run([str(BIN / "signer"), "demo", "exchange", "--timeout", "60"], env=env,
                              capture_output=True, text=True, timeout=240, check=False)
        took = time.monotonic() - started
        assert walk.returncode == 0, (walk.stdout, walk.stderr,
                                      (tmp_path / "run.log").read_text(errors="replace")[-3000:])
        out = walk.stdout
        assert "verdict valid" in out and "approved signature by Nguyễn Văn An: valid" in out, out
        assert "issued signature by" in out and "NOT valid" not in out, out
        assert "the clerk answers 03" in out and "latest status 03" in out, out
        assert took < 60, f"the walk-through took {took:.1f} s"

        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    survivors = [pid for pid in [*pids.values(), *children] if _alive(pid)]
    assert survivors == []
    assert not pids_file.exists()
