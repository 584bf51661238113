"""Exchange over the local axis: envelopes sent per second and packets received per second.

The service is ``signer run`` in a temp folder (private SoftHSM2 token, SQLite, private Redis, the
local axis it starts itself, its one exchange worker; ``--exchange-workers N`` adds N-1 more
``signer worker exchange`` processes). A set-up step (``python -m bench.exchange_throughput setup``,
in a subprocess with the service's environment) makes the sending organisation's world (built-in
PKI, a leader's RSA-2048 credential and the organisation's seal credential, both with images and
app-key devices, an API client with the ``exchange`` scope), ``--exchange-recipients`` (3) child
organisations, and registers all of them on the local axis. One 1-page PDF is then signed through
the HTTP API: profile ``approved`` by the leader, then ``issued`` by the clerk with the seal.

- **send**: N (30; ``--quick`` 6) ``POST /v1/exchange/outgoing`` of that request to every
  recipient (one POST = one outbox row and one packet per recipient) from ``--exchange-clients``
  (2) threads; the clock runs from the first POST until every outbox row of the round is SENT
  (read from the service's SQLite file every 10 ms). Baseline: ``AxisClient.send`` of the very
  packets the service stored in its outbox (blobs), one after the other from this process to the
  same local axis: what the outbox, database and queue layer (and building the packets) cost.
- **receive**: one ``poll_organisation`` job per recipient on the rq exchange queue (the job the
  scheduler queues); the clock runs until every packet of the round is stored, verified and
  has its verdict. Baseline: ``edxml.parse`` + ``verify_pdf`` of every PDF of the same packets
  (read from the local axis's store) in a loop in this process, with the same trust roots and
  CRLs: what the service adds to the bare verification.

Rounds are interleaved (service first in even rounds); the medians are compared (``ratio``), and
so are the CPU milliseconds per packet (``cpu ratio``: every service process, from ``/proc``, against
this process plus the local axis for a baseline), which other load on the machine barely moves.
The scheduler's own polls are pushed out of the way (``SIGNER_AXIS_POLL_INTERVAL_S`` 1 day; the
benchmark waits for its one poll at start-up) so that the two phases do not overlap; packets the
send baseline put on the axis are acknowledged before the receive phase. After timing: every
outbox row SENT, every packet received once with verdict ``valid``, every baseline verification
intact and valid (two signatures per PDF), no process left.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bench import RunOptions
from bench.report import format_table, machine_info, write_json
from bench.service import (
    BIN,
    DEFAULT_MODULE,
    DEVICE_PIN,
    INIT_TOKEN,
    ORG_CODE,
    ORG_NAME,
    REPO,
    Service,
    ServiceProcesses,
    World,
    _alive,
    _process_table,
    free_port,
)
from bench.sign_throughput import BOX, PAGE, BenchError, Client, CpuMeter

DESCRIPTION = ("exchange over the local axis: envelopes/s sent (POST to outbox SENT) and packets/s received and "
               "verified, vs raw AxisClient.send / parse+verify loops")
DEFAULT_ENVELOPES, QUICK_ENVELOPES = 30, 6
DEFAULT_RECIPIENTS = 3
# Children of the sending organisation (ORG_CODE, made by `signer init`), strict organ codes.
UNITS = (("000.00.01.H53", "Văn phòng UBND tỉnh"), ("000.00.02.H53", "Sở Tài chính"),
         ("000.00.03.H53", "Sở Nội vụ"), ("000.00.04.H53", "Sở Tư pháp"), ("000.00.05.H53", "Sở Y tế"),
         ("000.00.06.H53", "Sở Giáo dục và Đào tạo"), ("000.00.07.H53", "Sở Xây dựng"),
         ("000.00.08.H53", "Sở Công Thương"))
LEADER, CLERK = "bench-leader", "bench-clerk"
LEADER_NAME = "Nguyễn Văn An"
KEY_SPEC = "rsa-2048"
NOTATION = "QĐ-UBND"
# The scheduler queues a poll per account at most once per interval: a day keeps its polls (one at
# start-up, before anything is sent) out of the timed phases; the benchmark queues the polls itself.
POLL_INTERVAL_S = 86400
WATCH_S = 0.01  # how often the service's database is read while a phase runs
PHASE_TIMEOUT_S = 600.0
AXIS_READY_TIMEOUT_S = 60.0
CLIENT = "bench client"  # CpuMeter's name for this process


_T0 = time.perf_counter()


def _progress(message: str) -> None:
    # stdout carries only the table; stderr says how far the run is, in seconds since import.
    print(f"[{time.perf_counter() - _T0:6.1f} s] {message}", file=sys.stderr, flush=True)


def _der(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


# -- the service ---------------------------------------------------------------------------------


class ExchangeService(Service):
    """``signer run`` (2 gunicorn workers, 1 hsm worker, the local axis, 1 exchange worker) set up
    for the exchange by this module's own set-up step, plus ``exchange_workers - 1`` extra
    ``signer worker exchange`` processes."""

    def __init__(self, *, leader_key: ec.EllipticCurvePrivateKey, clerk_key: ec.EllipticCurvePrivateKey,
                 recipients: int, exchange_workers: int, module: str, keep: bool) -> None:
        super().__init__(device_public_key_der=_der(leader_key), web_workers=2, hsm_workers=1, module=module,
                         keep=keep)
        self.clerk_public_der = _der(clerk_key)
        self.recipients = recipients
        self.exchange_workers = exchange_workers
        self.axis_port = self._distinct_port()
        axis_env = {"SIGNER_AXIS_BIND": f"127.0.0.1:{self.axis_port}",
                    "SIGNER_AXIS_POLL_INTERVAL_S": str(POLL_INTERVAL_S)}
        self.env.update(axis_env)
        self.run_env.update(axis_env)
        self.password = secrets.token_urlsafe(18)
        self.made: dict[str, Any] = {}
        self.extra_workers: list[subprocess.Popen[bytes]] = []

    def _distinct_port(self) -> int:
        while True:
            port = free_port()
            if port not in (self.port, self.redis_port):
                return port

    @property
    def state(self) -> Path:
        return self.folder / "state"

    def start(self) -> None:
        """Token, ``signer init``, the exchange world, ``signer run``, extra exchange workers."""
        setup_env = dict(self.env, SIGNER_HSM_SO_PIN=self._so_pin)
        self._run([str(INIT_TOKEN)], "softhsm/init-token.sh", env=setup_env)
        self._run([str(BIN / "signer"), "init", "--org-code", ORG_CODE, "--org-name", ORG_NAME], "signer init",
                  env=setup_env)
        _progress("token and signer init done; set-up step ...")
        request = {"leader_device": base64.b64encode(self.device_public_key_der).decode(),
                   "clerk_device": base64.b64encode(self.clerk_public_der).decode(),
                   "password": self.password, "recipients": [list(u) for u in UNITS[:self.recipients]]}
        out = self._run([sys.executable, "-m", "bench.exchange_throughput", "setup"], "set-up step",
                        stdin=json.dumps(request))
        self.made = json.loads(out.strip().splitlines()[-1])
        _progress("set-up step done; starting signer run ...")
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "signer"), "run", "--web-workers", str(self.web_workers),
                 "--hsm-workers", str(self.hsm_workers), "--redis-port", str(self.redis_port)],
                env=self.run_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
        self._wait_ready()
        pids = json.loads((self.state / "run" / "pids.json").read_text())
        supervisor = pids.pop("supervisor")
        self.processes = ServiceProcesses(supervisor=supervisor, children=pids)
        self.processes.refresh_members()
        # More exchange workers: what `signer worker exchange` runs, without the PINs (as the supervisor).
        worker_env = {k: v for k, v in self.run_env.items() if not k.startswith("SIGNER_HSM_PIN")}
        worker_env["REDIS_URL"] = f"redis://127.0.0.1:{self.redis_port}/0"
        with self.log_path.open("ab") as log:
            for _ in range(self.exchange_workers - 1):
                self.extra_workers.append(subprocess.Popen(
                    [str(BIN / "signer"), "worker", "exchange"], env=worker_env, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO))

    def process_groups(self) -> dict[str, int]:
        groups = super().process_groups()
        for n, proc in enumerate(self.extra_workers, 2):
            groups[f"exchange-worker-{n}"] = proc.pid
        return groups

    def stop(self) -> None:
        """The extra workers first (SIGTERM: rq's warm shutdown), then ``signer run``; anything left
        in the extra workers' process groups is killed and reported like the service's leftovers."""
        for proc in self.extra_workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.extra_workers:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        groups = {proc.pid for proc in self.extra_workers}
        left = [pid for pid, pgid in _process_table() if pgid in groups and _alive(pid)]
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        super().stop()
        self.survivors = sorted({*self.survivors, *left})


# -- set-up step (runs in a subprocess with the service's environment) ----------------------------


def _setup(request: dict[str, Any]) -> dict[str, Any]:
    import hsm
    from signer import credentials, directory
    from signer.demo import seal_png, signature_png
    from signer.devices import enrolment
    from signer.interchange import local_axis
    from signer.models import CredentialKind, Organisation, Role
    from signer.pki.service import certify_credential, init_builtin
    from signer.principal import SYSTEM
    from signer.services import Services
    from signer.settings import Settings

    settings = Settings.from_env()
    services = Services.create(settings)
    try:
        token = services.hsm()
        with services.db.session() as s:
            org = directory.find_organisation_by_code(s, ORG_CODE)
            org_id = org.id
            init_builtin(s, token, SYSTEM, base_url=settings.public_url, organisation=org.name, spec="ec-p256")
            units = {code: directory.create_organisation(s, SYSTEM, code=code, name=name, parent_id=org_id).id
                     for code, name in request["recipients"]}
            users = {username: directory.create_user(
                s, services.passwords, SYSTEM, username=username, full_name=full_name, organisation_id=org_id,
                roles={role}, password=request["password"]).id
                for username, full_name, role in ((LEADER, LEADER_NAME, Role.LEADER),
                                                  (CLERK, "Trần Thị Bình", Role.CLERK))}
        made: dict[str, Any] = {"sender_id": org_id, "recipients": units}
        for name, kind, owner, image, png in (
                ("leader_credential", CredentialKind.PERSONAL, users[LEADER], "signature", signature_png()),
                ("seal_credential", CredentialKind.ORGANISATION, None, "seal", seal_png())):
            key = token.generate_key(f"cred-{secrets.token_hex(8)}", hsm.KeySpec.parse(KEY_SPEC))
            with services.db.session() as s:
                cred = credentials.register_key(s, SYSTEM, name=f"{name} ({KEY_SPEC})", kind=kind,
                                                organisation_id=org_id, owner_user_id=owner, key=key,
                                                key_spec=KEY_SPEC)
                certify_credential(s, token, SYSTEM, cred, base_url=settings.public_url)
                credentials.set_image(s, services.blobs, SYSTEM, cred.id, image, png)
                made[name] = cred.id
        with services.db.session() as s:
            for username, field_name in ((LEADER, "leader_device"), (CLERK, "clerk_device")):
                device = enrolment.register_app_key_for(
                    s, SYSTEM, services.pin_hasher, user_id=users[username], name=f"Điện thoại ({username})",
                    public_key_der=base64.b64decode(request[field_name]), pin=DEVICE_PIN)
                made[field_name] = device.id
            client = directory.create_api_client(s, SYSTEM, name="bench DMS", organisation_id=org_id,
                                                 scopes={"sign", "read", "exchange"})
            made["api_key"] = client.key.token
        with services.db.session() as s:
            orgs = [s.get(Organisation, i) for i in (org_id, *units.values())]
            s.expunge_all()  # before the commit expires them: register() reads their code and name
        for one in orgs:
            assert one is not None
            local_axis.register(services, [one])  # one system id and secret per organisation
        return made
    finally:
        services.close()


# -- reading the service's state -----------------------------------------------------------------


class Watch:
    """Plain reads of the service's SQLite database and the local axis's store (both WAL: a reader
    never blocks their writers), and the rq exchange queue."""

    def __init__(self, service: ExchangeService) -> None:
        import redis
        from rq import Queue

        self.db = sqlite3.connect(service.state / "signer.db", timeout=30, isolation_level=None)
        self.axis_path = service.state / "axis" / "axis.db"
        self.redis = redis.Redis(host="127.0.0.1", port=service.redis_port)
        self.queue = Queue(f"{service.run_env['SIGNER_QUEUE_PREFIX']}:exchange", connection=self.redis)

    def close(self) -> None:
        self.db.close()
        self.redis.close()

    def count(self, sql: str, *args: object) -> int:
        return int(self.db.execute(sql, args).fetchone()[0])

    def outbox(self, kind: str, state: str) -> int:
        return self.count("SELECT count(*) FROM exchange_outbox WHERE kind = ? AND state = ?", kind, state)

    def incoming(self) -> int:
        return self.count("SELECT count(*) FROM exchange_incoming")

    def failed_jobs(self) -> int:
        from rq.registry import FailedJobRegistry

        return int(FailedJobRegistry(queue=self.queue).count)

    def pending_on_axis(self, sender: str) -> list[bytes]:
        """Every document packet from ``sender`` still waiting on the axis, one per recipient."""
        with sqlite3.connect(f"file:{self.axis_path}?mode=ro", uri=True, timeout=30) as axis:
            rows = axis.execute(
                "SELECT p.edxml FROM deliveries d JOIN packets p ON p.doc_id = d.doc_id"
                " WHERE d.status = 'pending' AND p.message_type = 'edoc' AND p.sender = ? ORDER BY p.created",
                (sender,)).fetchall()
        return [bytes(r[0]) for r in rows]

    def wait(self, what: str, done: Callable[[], bool], log_tail: Callable[[], str]) -> float:
        """Poll ``done`` every WATCH_S; returns the perf_counter time it first held. Fails fast on
        a dead outbox row or a failed exchange job."""
        failed = self.failed_jobs()
        deadline = time.perf_counter() + PHASE_TIMEOUT_S
        checks = 0
        while True:
            if done():
                return time.perf_counter()
            checks += 1
            if checks % 50 == 0:
                dead = self.db.execute("SELECT kind, recipient, last_error FROM exchange_outbox WHERE state = 'dead'"
                                       " LIMIT 1").fetchone()
                if dead is not None:
                    raise BenchError(f"{what}: an outbox row is dead: {dead}")
                if self.failed_jobs() > failed:
                    raise BenchError(f"{what}: an exchange job failed:\n{log_tail()}")
            if time.perf_counter() > deadline:
                raise BenchError(f"{what}: not done in {PHASE_TIMEOUT_S:.0f} s:\n{log_tail()}")
            time.sleep(WATCH_S)

    def idle(self, log_tail: Callable[[], str]) -> None:
        """Wait (untimed) until the exchange queue is empty and no job runs: phases start from rest."""
        from rq.registry import StartedJobRegistry

        started = StartedJobRegistry(queue=self.queue)
        self.wait("idle", lambda: self.queue.count == 0 and started.count == 0, log_tail)


# -- one timed run -------------------------------------------------------------------------------


@dataclass
class Run:
    envelopes: int
    packets: int
    wall_s: float
    cpu_s: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def envelopes_per_s(self) -> float:
        return self.envelopes / self.wall_s

    @property
    def packets_per_s(self) -> float:
        return self.packets / self.wall_s

    def to_json(self) -> dict[str, Any]:
        return {"envelopes": self.envelopes, "packets": self.packets, "wall_s": round(self.wall_s, 4),
                "envelopes_per_s": round(self.envelopes_per_s, 3), "packets_per_s": round(self.packets_per_s, 3),
                "cpu_s": {k: round(v, 3) for k, v in self.cpu_s.items()},
                **{k: round(v, 4) for k, v in self.extra.items()}}


@dataclass
class Phase:
    name: str
    service: list[Run] = field(default_factory=list)
    baseline: list[Run] = field(default_factory=list)

    def median(self, side: list[Run], unit: str) -> float:
        return float(statistics.median(getattr(r, unit) for r in side))

    @property
    def ratio(self) -> float:
        return self.median(self.service, "packets_per_s") / self.median(self.baseline, "packets_per_s")

    def round_ratios(self) -> list[float]:
        return [s.packets_per_s / b.packets_per_s for s, b in zip(self.service, self.baseline, strict=True)]

    def cpu_total_ms(self, side: list[Run]) -> float:
        """Median CPU ms per packet of what does the work: every service process for the service
        (the benchmark's own client and database watcher left out), this process plus the local
        axis for a baseline."""
        counted = (lambda k: k != CLIENT) if side is self.service else (lambda k: k in (CLIENT, "local-axis"))
        return 1000 * statistics.median(sum(v for k, v in r.cpu_s.items() if counted(k)) / r.packets for r in side)

    @property
    def cpu_ratio(self) -> float:
        """Packets per CPU-second, service / baseline: barely moved by other load on the machine."""
        return self.cpu_total_ms(self.baseline) / self.cpu_total_ms(self.service)

    def cpu_ms_per_packet(self, side: list[Run]) -> dict[str, float]:
        names = {k for r in side for k in r.cpu_s}
        return {k: round(1000 * statistics.median(r.cpu_s.get(k, 0.0) / r.packets for r in side), 2)
                for k in sorted(names)}

    def to_json(self) -> dict[str, Any]:
        return {
            "envelopes_per_s": {"service": round(self.median(self.service, "envelopes_per_s"), 3),
                                "baseline": round(self.median(self.baseline, "envelopes_per_s"), 3)},
            "packets_per_s": {"service": round(self.median(self.service, "packets_per_s"), 3),
                              "baseline": round(self.median(self.baseline, "packets_per_s"), 3)},
            "ratio": round(self.ratio, 3),
            "cpu_ratio": round(self.cpu_ratio, 3),
            "cpu_ms_per_packet_total": {"service": round(self.cpu_total_ms(self.service), 2),
                                        "baseline": round(self.cpu_total_ms(self.baseline), 2)},
            "round_ratios": [round(x, 3) for x in self.round_ratios()],
            "cpu_ms_per_packet": {"service": self.cpu_ms_per_packet(self.service),
                                  "baseline": self.cpu_ms_per_packet(self.baseline)},
            "service_runs": [r.to_json() for r in self.service],
            "baseline_runs": [r.to_json() for r in self.baseline],
        }


def send_body(request_id: str, recipients: list[str], number: str) -> bytes:
    """What a document system posts to send the signed decision (``/v1/exchange/outgoing``)."""
    return json.dumps({
        "sign_request_id": request_id, "recipients": recipients, "code": {"number": number, "notation": NOTATION},
        "document_type": {"type": 1, "name": "Quyết định"}, "subject": "Về việc ban hành quy chế làm việc",
        "signer": {"competence": "TM. UBND", "position": "Chủ tịch", "full_name": LEADER_NAME},
        "place": "Tây Ninh", "to_places": ["Như trên", "Lưu: VT"],
    }).encode()


class Bench:
    """The service, the document system's client, the axis accounts and both baselines."""

    def __init__(self, service: ExchangeService, leader_key: ec.EllipticCurvePrivateKey,
                 clerk_key: ec.EllipticCurvePrivateKey, clients: int) -> None:
        from exchange.axis import config as axis_config
        from exchange.axis.client import AxisClient

        self.service, self.clients = service, clients
        made = service.made
        self.sender_id: str = made["sender_id"]
        self.recipients: dict[str, str] = made["recipients"]  # code -> organisation id
        self.watch = Watch(service)
        self.meter = CpuMeter(service.process_groups())

        def world(username: str, credential: str, device: str) -> World:
            return World(base_url=service.base_url, api_key=made["api_key"], credential_id=credential,
                         key_spec=KEY_SPEC, leader_username=username, leader_password=service.password,
                         device_id=device, root_der=[], certificate_der=b"")

        self.leader = Client(world(LEADER, made["leader_credential"], made["leader_device"]), leader_key, 30)
        self.clerk = Client(world(CLERK, made["seal_credential"], made["clerk_device"]), clerk_key, 30)
        config = axis_config.load(service.state / "axis" / "systems.json")
        endpoint = f"http://127.0.0.1:{service.axis_port}"
        # One AxisClient per organisation, as the service's transport_for() makes them (same defaults).
        self.axis = {unit.code: AxisClient(endpoint, system.system_id, system.secret, timeout_s=30.0, attempts=3,
                                           backoff_s=0.5)
                     for system in config.systems for unit in system.organs}
        self.request_id = ""
        self.last_sent: list[tuple[str, bytes]] = []  # (recipient, packet) of the latest service send
        self.trust: Any = None

    def close(self) -> None:
        self.watch.close()

    def wait_until_settled(self) -> None:
        """Until the local axis answers, every exchange worker is registered and the scheduler has
        queued its one poll per account (they boot on their own, outside /readyz): after that it
        polls again only in a day."""
        from rq import Worker

        prefix = self.service.run_env["SIGNER_QUEUE_PREFIX"]
        gates = [f"{prefix}:axis-poll:{i}" for i in (self.sender_id, *self.recipients.values())]
        deadline = time.monotonic() + AXIS_READY_TIMEOUT_S
        while True:
            try:
                self.axis[ORG_CODE].agencies()
                workers = Worker.count(queue=self.watch.queue)
                if self.watch.redis.exists(*gates) == len(gates) and workers >= self.service.exchange_workers:
                    return
                problem = (f"the scheduler has not polled every account yet, or {workers} of "
                           f"{self.service.exchange_workers} exchange workers are up")
            except Exception as exc:  # refused while `signer axis serve` starts
                problem = str(exc)
            if time.monotonic() > deadline:
                raise BenchError(f"the local axis or the scheduler is not ready: {problem}")
            time.sleep(0.2)

    def sign(self, pdf: bytes) -> bytes:
        """Leader (approved, image in the signature box) then clerk (issued, seal): through the API."""
        self.leader.login()
        self.clerk.login()
        name = "Quyết định 07/QĐ-UBND.pdf"
        approved = {"name": name, "format": "pades", "profile": "approved", "level": "B-B",
                    "content": base64.b64encode(pdf).decode(), "placement": {"page": PAGE, "box": list(BOX)}}
        [signed], _ = self.leader.sign(json.dumps({"credential_id": self.leader.world.credential_id,
                                                   "documents": [approved]}).encode())
        issued = {"name": name, "format": "pades", "profile": "issued", "level": "B-B",
                  "content": base64.b64encode(signed).decode()}
        body = json.dumps({"credential_id": self.clerk.world.credential_id, "documents": [issued]}).encode()
        data, _ = self.clerk.call("POST", "/v1/sign-requests", body, self.clerk.bearer, expect=(202,))
        req = json.loads(data)
        self.clerk.approve(req)
        while req["state"] not in ("COMPLETED", "REJECTED", "EXPIRED", "CANCELLED", "FAILED"):
            data, _ = self.clerk.call("GET", f"/v1/sign-requests/{req['id']}?wait=30", None, self.clerk.bearer)
            req = json.loads(data)
        if req["state"] != "COMPLETED":
            raise BenchError(f"the issued request ended {req['state']}: {req.get('detail')}")
        self.request_id = req["id"]
        final, _ = self.clerk.call("GET", req["documents"][0]["signed_url"], None, self.clerk.bearer)
        return final

    # -- send --------------------------------------------------------------------------------------

    def service_send(self, envelopes: int, tag: str) -> Run:
        codes = list(self.recipients)
        bodies = [send_body(self.request_id, codes, f"{tag}{n + 1:03d}") for n in range(envelopes)]
        target = self.watch.outbox("edoc", "sent") + envelopes * len(codes)
        self.watch.idle(self.service.log_tail)
        outgoing: list[str] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        work = iter(bodies)

        def post() -> None:
            while not errors:
                with lock:
                    body = next(work, None)
                if body is None:
                    return
                try:
                    data, _ = self.leader.call("POST", "/v1/exchange/outgoing", body, self.leader.bearer,
                                               expect=(201,))
                except BaseException as exc:  # re-raised below
                    errors.append(exc)
                    return
                with lock:
                    outgoing.append(json.loads(data)["id"])

        threads = [threading.Thread(target=post, name=f"dms-{n}", daemon=True) for n in range(self.clients)]
        before = self.meter.snapshot()
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        posted = time.perf_counter()
        if errors:
            raise errors[0]
        end = self.watch.wait("send", lambda: self.watch.outbox("edoc", "sent") >= target, self.service.log_tail)
        run = Run(envelopes, envelopes * len(codes), end - t0, CpuMeter.delta(before, self.meter.snapshot()),
                  {"posts_done_s": posted - t0})
        marks = ",".join("?" * len(outgoing))
        rows = self.watch.db.execute(
            f"SELECT recipient, packet_blob FROM exchange_outbox WHERE outgoing_id IN ({marks})",  # only marks
            outgoing).fetchall()
        self.last_sent = [(r, (self.service.state / "blobs" / b[-2:] / b).read_bytes()) for r, b in rows]
        if len(self.last_sent) != run.packets:
            raise BenchError(f"send: {len(self.last_sent)} outbox rows for {run.packets} packets")
        return run

    def baseline_send(self) -> Run:
        """AxisClient.send of the packets of the latest service send, then (untimed) the recipients
        acknowledge them so that the receive phase finds only the service's own packets."""
        from exchange.transport import DeliveryStatus, MessageType

        packets = list(self.last_sent)
        client = self.axis[ORG_CODE]
        before = self.meter.snapshot()
        t0 = time.perf_counter()
        doc_ids = [client.send(p, sender=ORG_CODE, message_type=MessageType.EDOC) for _, p in packets]
        wall = time.perf_counter() - t0
        cpu = CpuMeter.delta(before, self.meter.snapshot())
        for (recipient, _), doc_id in zip(packets, doc_ids, strict=True):
            self.axis[recipient].update_status(doc_id, DeliveryStatus.DONE)
        return Run(len(packets) // len(self.recipients), len(packets), wall, cpu)

    # -- receive -----------------------------------------------------------------------------------

    def service_receive(self, packets: int) -> Run:
        target = self.watch.incoming() + packets
        answers = self.watch.outbox("status", "sent") + packets
        self.watch.idle(self.service.log_tail)
        before = self.meter.snapshot()
        t0 = time.perf_counter()
        for organisation_id in self.recipients.values():
            self.watch.queue.enqueue("signer.jobs.exchange.poll_organisation", organisation_id, result_ttl=60,
                                     failure_ttl=3600, job_timeout=600,
                                     description=f"poll the axis for {organisation_id}")
        end = self.watch.wait("receive", lambda: self.watch.incoming() >= target, self.service.log_tail)
        cpu = CpuMeter.delta(before, self.meter.snapshot())
        # Untimed: the automatic 01 answers go out after the documents are stored.
        answered = self.watch.wait("answers", lambda: self.watch.outbox("status", "sent") >= answers,
                                   self.service.log_tail)
        return Run(packets // len(self.recipients), packets, end - t0, cpu, {"answers_sent_s": answered - t0})

    def load_trust(self) -> None:
        """The trust the service's verify_files() uses: its roots and newest CRLs, by its own functions."""
        from sqlalchemy import create_engine
        from sqlalchemy.orm import Session

        from signer.signing.material import latest_crls, trust_roots
        from signer.signing.verify import TrustSettings

        engine = create_engine(f"sqlite:///{self.service.state / 'signer.db'}")
        try:
            with Session(engine) as s:
                self.trust = TrustSettings(roots=trust_roots(s), crls=latest_crls(s))
        finally:
            engine.dispose()

    def baseline_receive(self, packets: list[bytes]) -> tuple[Run, int, list[list[str]]]:
        """parse + verify_pdf of every PDF of ``packets``; returns the run, how many PDFs had every
        signature intact and valid, and the profile hints of each PDF's signatures."""
        from exchange import edxml
        from signer.signing.verify import verify_pdf

        good, hints = 0, []
        before = self.meter.snapshot()
        t0 = time.perf_counter()
        for data in packets:
            packet = edxml.parse(data)
            if not isinstance(packet, edxml.DocumentPacket):
                raise BenchError("a packet on the axis is not a document packet")
            for attachment in packet.attachments:
                for f in edxml.unpack(attachment):
                    report = verify_pdf(f.data, self.trust)
                    sigs = report["signatures"]
                    good += bool(sigs) and all(s["integrity"]["intact"] and s["integrity"]["valid"] for s in sigs)
                    hints.append([str(s.get("profile_hint")) for s in sigs])
        wall = time.perf_counter() - t0
        cpu = CpuMeter.delta(before, self.meter.snapshot())
        return Run(len(packets) // len(self.recipients), len(packets), wall, cpu), good, hints


# -- the benchmark -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("exchange_throughput")
    group.add_argument("--envelopes", type=int, default=None, metavar="N",
                       help=f"sends per round (default {DEFAULT_ENVELOPES}; --quick {QUICK_ENVELOPES})")
    group.add_argument("--exchange-recipients", type=int, default=DEFAULT_RECIPIENTS, metavar="N",
                       help=f"recipients per send = packets per envelope (default {DEFAULT_RECIPIENTS}, "
                            f"at most {len(UNITS)})")
    group.add_argument("--exchange-clients", type=int, default=2, metavar="N",
                       help="document-system threads posting the sends (default 2)")
    group.add_argument("--exchange-workers", type=int, default=1, metavar="N",
                       help="rq exchange worker processes (default 1, what `signer run` starts)")


def run(options: RunOptions, args: argparse.Namespace) -> int:
    from tests.pdfs import decision_pdf

    envelopes = args.envelopes or (QUICK_ENVELOPES if args.quick else DEFAULT_ENVELOPES)
    recipients = args.exchange_recipients
    if not 1 <= recipients <= len(UNITS) or envelopes < 1 or args.exchange_clients < 1 or args.exchange_workers < 1:
        print(f"--exchange-recipients must be 1..{len(UNITS)}; --envelopes, --exchange-clients and "
              "--exchange-workers at least 1", file=sys.stderr)
        return 2
    started, machine = datetime.now(UTC), machine_info()
    t_start = time.perf_counter()
    warmup = 1 if args.quick else max(2, args.exchange_clients)  # envelopes, untimed
    leader_key, clerk_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    service = ExchangeService(leader_key=leader_key, clerk_key=clerk_key, recipients=recipients,
                              exchange_workers=args.exchange_workers,
                              module=getattr(args, "module", None) or DEFAULT_MODULE,
                              keep=bool(getattr(args, "keep_service", False)))
    send, receive = Phase("send"), Phase("receive")
    checks: dict[str, Any] = {}
    with service:
        _progress(f"service up at {service.base_url} ({service.folder}), local axis on port {service.axis_port}")
        bench = Bench(service, leader_key, clerk_key, args.exchange_clients)
        try:
            bench.wait_until_settled()
            signed = bench.sign(decision_pdf())
            _progress(f"signed once (approved + issued): {len(signed):,} bytes; warm-up: {warmup} envelope(s)")
            bench.load_trust()
            # Warm-up, untimed: gunicorn workers, the exchange worker's imports (pyHanko), the directory
            # sync of the first send, this process's verifier.
            bench.service_send(warmup, "W")
            bench.baseline_send()
            warm_packets = bench.watch.pending_on_axis(ORG_CODE)
            bench.service_receive(len(warm_packets))
            _, good, hints = bench.baseline_receive(warm_packets)
            checks["warmup_baseline"] = {"pdfs": len(hints), "intact_and_valid": good, "profile_hints": hints[0]}
            _progress(f"warm-up done; {options.rounds} round(s) of {envelopes} envelopes x {recipients} recipients")
            baseline_good = baseline_pdfs = 0
            for r in range(options.rounds):
                tag = f"R{r + 1}-"
                service_first = r % 2 == 0
                if service_first:
                    send.service.append(bench.service_send(envelopes, tag))
                    send.baseline.append(bench.baseline_send())
                else:
                    send.baseline.append(bench.baseline_send())
                    send.service.append(bench.service_send(envelopes, tag))
                service_packets = bench.watch.pending_on_axis(ORG_CODE)
                if len(service_packets) != envelopes * recipients:
                    raise BenchError(f"{len(service_packets)} packets wait on the axis, expected "
                                     f"{envelopes * recipients}")
                for side in ("service", "baseline") if service_first else ("baseline", "service"):
                    if side == "service":
                        receive.service.append(bench.service_receive(len(service_packets)))
                    else:
                        run_, good_, hints_ = bench.baseline_receive(service_packets)
                        receive.baseline.append(run_)
                        baseline_good += good_
                        baseline_pdfs += len(hints_)
                s, b = send.service[-1], send.baseline[-1]
                rs, rb = receive.service[-1], receive.baseline[-1]
                _progress(f"round {r + 1}: send {s.envelopes_per_s:.2f} env/s ({s.packets_per_s:.1f} packets/s) vs "
                          f"AxisClient {b.packets_per_s:.1f} packets/s; receive {rs.packets_per_s:.2f} packets/s vs "
                          f"parse+verify {rb.packets_per_s:.2f} packets/s")
            totals = {
                "edoc_sent": bench.watch.outbox("edoc", "sent"),
                "edoc_rows": bench.watch.count("SELECT count(*) FROM exchange_outbox WHERE kind = 'edoc'"),
                "incoming": bench.watch.incoming(),
                "incoming_distinct": bench.watch.count(
                    "SELECT count(DISTINCT organisation_id || '|' || document_id) FROM exchange_incoming"),
                "status_sent": bench.watch.outbox("status", "sent"),
                "verdicts": dict(bench.watch.db.execute(
                    "SELECT verdict, count(*) FROM exchange_incoming GROUP BY verdict").fetchall()),
                "still_on_axis": len(bench.watch.pending_on_axis(ORG_CODE)),
            }
        finally:
            bench.close()
    elapsed = time.perf_counter() - t_start
    expected = (warmup + options.rounds * envelopes) * recipients
    all_arrived = (totals["edoc_sent"] == totals["edoc_rows"] == expected
                   and totals["incoming"] == totals["incoming_distinct"] == expected
                   and totals["still_on_axis"] == 0)
    all_valid = totals["verdicts"] == {"valid": expected}
    baseline_ok = (baseline_good == baseline_pdfs == options.rounds * envelopes * recipients
                   and checks["warmup_baseline"]["profile_hints"] == ["approved", "issued"])
    ok = all_arrived and all_valid and baseline_ok and not service.survivors

    rows = []
    for phase, what in ((send, "POST -> outbox SENT"), (receive, "poll -> stored + verified")):
        base = "AxisClient.send loop" if phase is send else "parse + verify_pdf loop"
        ratios = " ".join(f"{x:.2f}" for x in phase.round_ratios())
        for unit, label in (("envelopes_per_s", f"envelopes/s ({what})"), ("packets_per_s", f"packets/s ({base})")):
            rows.append([f"{phase.name}, {label}", f"{phase.median(phase.service, unit):,.2f}",
                         f"{phase.median(phase.baseline, unit):,.2f}", f"{phase.ratio:.2f}", ratios,
                         f"{phase.cpu_ratio:.2f}"])
    print(format_table(["measure", "service", "baseline", "ratio", "round ratios", "cpu ratio"], rows))
    for phase in (send, receive):
        cpu = phase.cpu_ms_per_packet(phase.service)
        parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])
                          if v >= 0.05 and k != CLIENT)
        base_cpu = phase.cpu_ms_per_packet(phase.baseline)
        base_parts = ", ".join(f"{k} {base_cpu.get(k, 0.0):.1f}" for k in (CLIENT, "local-axis"))
        print(f"{phase.name} CPU ms per packet: service {parts} (total {phase.cpu_total_ms(phase.service):.1f}; "
              f"the benchmark's client and watcher {cpu.get(CLIENT, 0.0):.1f} not counted); baseline {base_parts} "
              f"(total {phase.cpu_total_ms(phase.baseline):.1f})")
    answers_s = statistics.median(r.extra["answers_sent_s"] for r in receive.service)
    print(f"{envelopes} envelopes x {recipients} recipients per round, {options.rounds} interleaved round(s), "
          f"medians; {args.exchange_clients} posting threads, {args.exchange_workers} exchange worker(s), "
          f"2 gunicorn workers, SQLite; receive with the automatic 01 answers delivered: "
          f"{envelopes * recipients / answers_s:.2f} packets/s")
    print(f"outputs: {totals['edoc_sent']}/{expected} packets sent, {totals['incoming']}/{expected} received "
          f"(verdicts {totals['verdicts']}), {totals['status_sent']} answers sent; baseline verified "
          f"{baseline_good}/{baseline_pdfs} PDFs intact+valid; total {elapsed:.0f} s; load average at start "
          f"{machine['loadavg_at_start'][0]:.2f}")

    write_json(options.out, {
        "benchmark": "exchange_throughput",
        "started": started.isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed, 1),
        "command": " ".join([".venv/bin/python", "-m", "bench", *sys.argv[1:]]),
        "settings": {
            "envelopes_per_round": envelopes, "recipients": recipients, "packets_per_round": envelopes * recipients,
            "rounds": options.rounds, "warmup_envelopes": warmup, "posting_threads": args.exchange_clients,
            "exchange_workers": args.exchange_workers, "web_workers": 2, "database": "sqlite",
            "pdf_bytes": len(signed),
            "document": "tests/pdfs.decision_pdf(): 1 A4 page, approved (leader, RSA-2048, image) + issued "
                        "(organisation seal, RSA-2048), B-B, signed once through the HTTP API",
            "send": "POST /v1/exchange/outgoing (API key) -> every outbox row SENT (exchange worker, local axis)",
            "send_baseline": "AxisClient.send of the same stored packets, one after the other, this process",
            "receive": "one poll_organisation job per recipient on the rq exchange queue -> every packet "
                       "stored with its verdict",
            "receive_baseline": "edxml.parse + signer.signing.verify.verify_pdf of the same packets, this process",
            "rate": "items / wall seconds; ratio = service packets/s / baseline packets/s",
            "order": "interleaved; service first in even rounds, baseline first in odd rounds",
        },
        "machine": machine,
        "results": {"send": send.to_json(), "receive": receive.to_json()},
        "outputs": {**totals, "packets_expected": expected, "all_arrived": all_arrived, "all_valid": all_valid,
                    "baseline_pdfs": baseline_pdfs, "baseline_intact_and_valid": baseline_good, **checks,
                    "processes_left": service.survivors, "ok": ok},
    })
    print(f"results: {options.out}")
    if not ok:
        print("FAILED: packets missing or invalid, a baseline verification failed, or processes were left behind; "
              "the figures are void", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    if argv != ["setup"]:
        print("usage: python -m bench.exchange_throughput setup  (reads a JSON request on stdin)", file=sys.stderr)
        return 2
    print(json.dumps(_setup(json.loads(sys.stdin.read()))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
