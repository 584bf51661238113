"""The real service for benchmarks: ``signer init`` + ``signer run`` in a temporary folder.

Everything is private to the run: a SoftHSM2 token made by ``softhsm/init-token.sh`` under the
temp folder, a SQLite database and blob store in its state folder, a Redis started by the
supervisor on a free port, gunicorn on another. Nothing touches ``state/`` or the system token
store. The signing world (built-in PKI, a leader with a certified credential, a signature image,
an app-key device, an API client) is made by a set-up step run in a *subprocess* with the
service's environment (``python -m bench.service setup``), so the benchmark's own process never
loads PKCS#11. :class:`Service` is a context manager; leaving it (normally or on an error) stops
the supervisor with SIGINT, as Ctrl-C would, then checks that no process it started is left.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
INIT_TOKEN = REPO / "softhsm" / "init-token.sh"
DEFAULT_MODULE = os.environ.get("SIGNER_HSM_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
ORG_CODE = "000.00.00.H53"
ORG_NAME = "Ủy ban nhân dân tỉnh Tây Ninh"
LEADER = "bench-leader"
LEADER_NAME = "Nguyễn Văn An"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
# Variables of the developer's own deployment that must not leak into the benchmark's service.
_FOREIGN = ("DATABASE_URL", "REDIS_URL", "SOFTHSM2_CONF")
# Opt-in profiling of the service's processes without touching signer/: a sitecustomize module on
# PYTHONPATH starts cProfile in each process (and in each thread it starts) and dumps the merged
# profile at a normal exit (rq's warm shutdown and gunicorn's worker exit both end in sys.exit).
# cProfile's clock is wall time: time blocked in a lock or a socket shows as time in that call.
PROFILE_HOOK = """\
import os

if os.environ.get("BENCH_PROFILE_DIR"):
    import atexit
    import cProfile
    import sys
    import threading

    _profiles = [cProfile.Profile()]

    def _thread_start(*_args):
        # gunicorn's gthread workers serve requests in pool threads: give each thread a profiler.
        profile = cProfile.Profile()
        _profiles.append(profile)
        profile.enable()

    def _dump():
        import pstats

        stats = pstats.Stats(_profiles[0])
        for profile in _profiles[1:]:
            stats.add(profile)
        argv = [os.path.basename(sys.argv[0])] + [a for a in sys.argv[1:3] if a.isidentifier()]
        # Forked gunicorn workers inherit the profilers and this handler: name files by the live pid.
        stats.dump_stats(os.path.join(os.environ["BENCH_PROFILE_DIR"], "-".join(argv) + f"-{os.getpid()}.prof"))

    threading.setprofile(_thread_start)
    atexit.register(_dump)
    _profiles[0].enable()
"""


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class World:
    """What the set-up step made: who signs, who approves, who asks, and what to trust."""

    base_url: str
    api_key: str = field(repr=False)
    credential_id: str
    key_spec: str
    leader_username: str
    leader_password: str = field(repr=False)
    device_id: str
    root_der: list[bytes] = field(repr=False)  # the built-in root(s): trust anchors for outputs
    certificate_der: bytes = field(repr=False)  # the credential's signing certificate


@dataclass
class ServiceProcesses:
    """Process ids the supervisor reported (``state/run/pids.json``) and their groups' members."""

    supervisor: int
    children: dict[str, int]  # name -> pid; each child leads its own process group
    members: set[int] = field(default_factory=set)  # every pid seen in those groups

    def refresh_members(self) -> None:
        groups = set(self.children.values())
        self.members |= {pid for pid, pgid in _process_table() if pgid in groups}

    def all_pids(self) -> set[int]:
        return {self.supervisor, *self.children.values(), *self.members}


def _process_table() -> list[tuple[int, int]]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,pgid="], capture_output=True, text=True, check=True).stdout
    return [(int(a), int(b)) for a, b in (line.split() for line in out.splitlines())]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pid reused by someone else's process: not ours
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def signature_png() -> bytes:
    """A blue handwritten-looking stroke on a transparent background (as tests/images.py)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (600, 240), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.line([(40, 180), (160, 60), (230, 170), (330, 70), (420, 160), (560, 90)], fill=(20, 40, 200, 255),
              width=9)
    buf = BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database on the server of ``admin_url`` (dropped afterwards); yields its URL."""
    import psycopg
    from sqlalchemy import make_url

    name = f"bench_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # a generated identifier
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


DEVICE_PIN = "135790"  # the bench phone's app-key PIN


class Service:
    """``signer run`` with ``web_workers`` gunicorn workers, set up for signing; a context manager."""

    def __init__(self, *, device_public_key_der: bytes, web_workers: int = 2, hsm_workers: int = 2,
                 key_spec: str = "rsa-2048",
                 module: str = DEFAULT_MODULE, keep: bool = False, profile_dir: Path | None = None,
                 database_url: str | None = None) -> None:
        self.device_public_key_der = device_public_key_der
        self.web_workers = web_workers
        self.hsm_workers = hsm_workers
        self.key_spec = key_spec
        self.module = module
        self.keep = keep
        self.folder = Path(tempfile.mkdtemp(prefix="bench-service-"))
        self.port, self.redis_port = free_port(), free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.folder / "run.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.processes: ServiceProcesses | None = None
        self.world: World | None = None
        self.survivors: list[int] = []
        pin, so_pin = secrets.token_hex(8), secrets.token_hex(8)
        base = {k: v for k, v in os.environ.items() if not k.startswith("SIGNER_") and k not in _FOREIGN}
        hsm_dir = self.folder / "softhsm"
        self.env: dict[str, str] = dict(
            base,
            SOFTHSM2_CONF=str(hsm_dir / "softhsm2.conf"),
            SIGNER_HSM_TOKEN_DIR=str(hsm_dir / "tokens"),
            SIGNER_HSM_MODULE=module,
            SIGNER_HSM_TOKEN=f"bench-{secrets.token_hex(4)}",
            SIGNER_HSM_PIN=pin,
            SIGNER_STATE_DIR=str(self.folder / "state"),
            SIGNER_SECRET_KEY=secrets.token_hex(32),
            SIGNER_ADMIN_PASSWORD=secrets.token_urlsafe(18),
            SIGNER_BIND=f"127.0.0.1:{self.port}",
            SIGNER_AXIS_BIND=f"127.0.0.1:{free_port()}",  # the local axis `signer run` starts beside
            SIGNER_PUBLIC_URL=self.base_url,
            SIGNER_QUEUE_PREFIX=f"bench{secrets.token_hex(4)}",
            PYTHONPATH=str(REPO),  # the set-up step imports bench.service
        )
        self._so_pin = so_pin  # set-up only (init-token.sh); no service process receives it
        if database_url:
            self.env["DATABASE_URL"] = database_url
        self.run_env = dict(self.env)
        self.profile_dir = profile_dir
        if profile_dir is not None:
            # Every Python process of `signer run` (supervisor, gunicorn master and workers, hsm and
            # exchange workers, scheduler) imports this sitecustomize and writes a cProfile file at exit.
            hook = self.folder / "profile-hook"
            hook.mkdir()
            (hook / "sitecustomize.py").write_text(PROFILE_HOOK, encoding="utf-8")
            profile_dir.mkdir(parents=True, exist_ok=True)
            self.run_env.update(PYTHONPATH=f"{hook}{os.pathsep}{REPO}", BENCH_PROFILE_DIR=str(profile_dir.resolve()))

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Service:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None and self.proc is not None:
            # The log goes with the temp folder: show its end when something failed.
            print(f"--- end of the service's log ({self.log_path}) ---\n{self.log_tail()}\n---",
                  file=sys.stderr)
        self.stop()

    def _run(self, argv: list[str], what: str, *, env: dict[str, str] | None = None,
             stdin: str | None = None, timeout: float = 300) -> str:
        done = subprocess.run(argv, env=env or self.env, input=stdin, capture_output=True, text=True,
                              timeout=timeout, check=False, cwd=REPO)
        if done.returncode != 0:
            raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stderr.strip()[-3000:]}")
        return done.stdout

    def start(self) -> None:
        """Token, ``signer init``, the signing world, ``signer run``; returns once /readyz is 200."""
        # The SO PIN goes to the set-up commands only (signer init re-runs init-token.sh, which
        # is idempotent but reads both PINs); `signer run` never receives it.
        setup_env = dict(self.env, SIGNER_HSM_SO_PIN=self._so_pin)
        self._run([str(INIT_TOKEN)], "softhsm/init-token.sh", env=setup_env)
        self._run([str(BIN / "signer"), "init", "--org-code", ORG_CODE, "--org-name", ORG_NAME], "signer init",
                  env=setup_env)
        request = {"device_public_key_der": base64.b64encode(self.device_public_key_der).decode(),
                   "key_spec": self.key_spec, "leader_password": secrets.token_urlsafe(18)}
        out = self._run([sys.executable, "-m", "bench.service", "setup"], "set-up step", stdin=json.dumps(request))
        made = json.loads(out.strip().splitlines()[-1])
        self.world = World(
            base_url=self.base_url, api_key=made["api_key"], credential_id=made["credential_id"],
            key_spec=self.key_spec, leader_username=LEADER, leader_password=request["leader_password"],
            device_id=made["device_id"], root_der=[base64.b64decode(r) for r in made["roots"]],
            certificate_der=base64.b64decode(made["certificate"]))
        with self.log_path.open("wb") as log:
            # Its own session: the benchmark decides when to stop it (SIGINT, like Ctrl-C).
            self.proc = subprocess.Popen(
                [str(BIN / "signer"), "run", "--web-workers", str(self.web_workers),
                 "--hsm-workers", str(self.hsm_workers),
                 "--redis-port", str(self.redis_port)],
                env=self.run_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
        self._wait_ready()
        pids = json.loads((self.folder / "state" / "run" / "pids.json").read_text())
        supervisor = pids.pop("supervisor")
        self.processes = ServiceProcesses(supervisor=supervisor, children=pids)
        self.processes.refresh_members()

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"signer run exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/readyz", timeout=2) as resp:
                    if resp.status == 200 and (self.folder / "state" / "run" / "pids.json").exists():
                        return
            except urllib.error.HTTPError as exc:
                with exc:
                    last = exc.read().decode(errors="replace")
            except OSError as exc:  # refused, reset, timeout while gunicorn boots
                last = str(exc)
            time.sleep(0.25)
        raise RuntimeError(f"the service was not ready in {READY_TIMEOUT_S:.0f} s ({last}):\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def process_groups(self) -> dict[str, int]:
        """Name -> process group id of every service process (each leads its own group)."""
        assert self.processes is not None
        return dict(self.processes.children)

    def web_worker_pids(self) -> list[int]:
        """The gunicorn workers (children of the gunicorn master)."""
        assert self.processes is not None
        master = self.processes.children["web"]
        out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
        return sorted(int(a) for a, b in (line.split() for line in out.splitlines()) if int(b) == master)

    def stop(self) -> None:
        """SIGINT to the supervisor, then make sure nothing it started survives; remove the folder."""
        try:
            if self.processes is not None:
                self.processes.refresh_members()
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            if self.processes is not None:
                # Anything left in the children's groups (gunicorn workers, redis) is ours: kill it by
                # group id and report it, so a leak shows up as an error rather than going unnoticed.
                left = [pid for pid in sorted(self.processes.all_pids()) if _alive(pid)]
                for pgid in self.processes.children.values():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pgid, signal.SIGKILL)
                self.survivors = left
        finally:
            if not self.keep:
                shutil.rmtree(self.folder, ignore_errors=True)


# -- set-up step (runs in a subprocess with the service's environment) ----------------------------


def _setup(request: dict[str, Any]) -> dict[str, Any]:
    import hsm
    from signer import credentials, directory
    from signer.devices import enrolment
    from signer.models import CredentialKind, Role
    from signer.pki.service import certify_credential, init_builtin
    from signer.principal import SYSTEM
    from signer.services import Services
    from signer.settings import Settings
    from signer.signing.material import trust_roots

    settings = Settings.from_env()
    services = Services.create(settings)
    try:
        token = services.hsm()
        with services.db.session() as s:
            org = directory.find_organisation_by_code(s, ORG_CODE)
            org_id = org.id
            init_builtin(s, token, SYSTEM, base_url=settings.public_url, organisation=org.name, spec="ec-p256")
            leader = directory.create_user(s, services.passwords, SYSTEM, username=LEADER, full_name=LEADER_NAME,
                                           organisation_id=org_id, roles={Role.LEADER},
                                           password=request["leader_password"])
            leader_id = leader.id
        spec = str(request["key_spec"])
        key = token.generate_key(f"cred-{secrets.token_hex(8)}", hsm.KeySpec.parse(spec))
        with services.db.session() as s:
            cred = credentials.register_key(s, SYSTEM, name=f"Chữ ký Chủ tịch ({spec})",
                                            kind=CredentialKind.PERSONAL, organisation_id=org_id,
                                            owner_user_id=leader_id, key=key, key_spec=spec)
            cert = certify_credential(s, token, SYSTEM, cred, base_url=settings.public_url)
            credentials.set_image(s, services.blobs, SYSTEM, cred.id, "signature", signature_png())
            device = enrolment.register_app_key_for(
                s, SYSTEM, services.pin_hasher, user_id=leader_id, name="Điện thoại (bench)",
                public_key_der=base64.b64decode(request["device_public_key_der"]), pin=DEVICE_PIN)
            client = directory.create_api_client(s, SYSTEM, name="bench DMS", organisation_id=org_id,
                                                 scopes={"sign", "verify", "read"})
            from cryptography.hazmat.primitives.serialization import Encoding

            return {
                "credential_id": cred.id, "device_id": device.id, "api_key": client.key.token,
                "certificate": base64.b64encode(cert.public_bytes(Encoding.DER)).decode(),
                "roots": [base64.b64encode(r.dump()).decode() for r in trust_roots(s)],
            }
    finally:
        services.close()


def main(argv: list[str]) -> int:
    if argv != ["setup"]:
        print("usage: python -m bench.service setup  (reads a JSON request on stdin)", file=sys.stderr)
        return 2
    print(json.dumps(_setup(json.loads(sys.stdin.read()))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
