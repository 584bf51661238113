"""End-to-end signing throughput of the real service against plain single-process loops.

PAdES: N copies of a 1-page Vietnamese decision (``tests/pdfs.decision_pdf``), RSA-2048, profile
``approved``, level B-B, through the HTTP API of ``signer run`` (2 gunicorn workers, 1 hsm
worker by default, SQLite, private Redis and SoftHSM2 token), with the benchmark acting as the document
system (POST batches as JSON/base64 from a few client threads, long-poll, download every signed
PDF) and as the holder's phone (recompute the challenge, sign it with the device key, POST the
approval). Baseline: pyHanko signing the same PDF N times in one process with an in-memory
RSA-2048 key (``SimpleSigner``), by default with the same visible appearance (signature image in
the same box). Target: service docs/s >= 1.5x the loop.

Sign-hash: batches of 1,000 SHA-256 digests (``format: raw``), one request and one approval per
batch, the signatures read from the request view (inline), on a service with 2 hsm workers
(``signer run``'s default; ``--hash-hsm-workers``): the baseline below does nothing but C_Sign, so
one signing process plus any bookkeeping cannot reach 0.8x of it. Baseline: a raw
python-pkcs11 loop signing the same 1,000 digests with CKM_RSA_PKCS over a DER DigestInfo (what
``hsm.Hsm.sign_digest`` does) on an RSA-2048 key of a throw-away SoftHSM2 token, in a spawned
process. Target: >= 0.8x.

Timed runs are interleaved (service first in even rounds, baseline first in odd ones) and the
medians compared. Rates are wall clock: from the first POST to the last download. Every output
is checked (signed PDFs: a sample validated with pyHanko, intact and valid; raw signatures: all
verified against the certificate), so a broken pipeline cannot look fast. Per-process CPU time
(``/proc``) of every service process is recorded around each service run to show where time goes.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import hashlib
import http.client
import io
import json
import multiprocessing
import os
import queue
import signal
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from cryptography.x509.oid import NameOID

from bench import RunOptions
from bench.report import format_table, machine_info, write_json
from bench.service import DEFAULT_MODULE, DEVICE_PIN, Service, World, postgres_database, signature_png
from bench.tokens import throwaway_token

DESCRIPTION = "PAdES docs/s and sign-hash/s through the HTTP API vs plain pyHanko / PKCS#11 loops"
PADES_TARGET = 1.5
HASH_TARGET = 0.8
DEFAULT_DOCS, QUICK_DOCS = 200, 20
DEFAULT_HASH_BATCHES, QUICK_HASH_BATCHES = 3, 1
HASHES_PER_BATCH = 1000
API_MAX_DOCUMENTS = 100  # files per request (signer.signing.schemas.MAX_FILES)
API_MAX_HASHES = 1000  # raw hashes per request (signer.signing.schemas.MAX_HASHES)
# The signature block of decision_pdf(): between "CHỦ TỊCH" (y 250) and the name (y 160).
PAGE, BOX = 1, (365.0, 175.0, 515.0, 240.0)
FIELD_NAME = "ChuKyLanhDao1"
# Long-poll seconds per GET (the API allows up to 60). `signer run` serves with gthread workers, so a
# waiting request holds a thread, not a whole worker process, and gunicorn's 30 s worker timeout
# (which killed sync workers stuck in a long request) does not apply to it.
DEFAULT_WAIT_S = 30
SHORT_POLL_S = 0.05
HTTP_TIMEOUT_S = 120.0
STARTUP_TIMEOUT_S = 120.0
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
FINAL_STATES = {"COMPLETED", "REJECTED", "EXPIRED", "CANCELLED", "FAILED"}
PHASES = ("post", "approve", "wait", "download")

Side = Literal["service", "baseline"]


class BenchError(RuntimeError):
    """The service or a baseline did not do what it should; the figures would be meaningless."""


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)  # stdout carries only the table


# -- CPU accounting ------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _group_cpu(groups: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) so far of every live process in each named process group."""
    totals = dict.fromkeys(groups, 0.0)
    by_pgid = {pgid: name for name, pgid in groups.items()}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        name = by_pgid.get(int(fields[2]))
        if name is not None:
            totals[name] += (int(fields[11]) + int(fields[12])) / _TICK
    return totals


class CpuMeter:
    """CPU seconds spent by each service component and by this process between two points."""

    def __init__(self, groups: dict[str, int]) -> None:
        # Each service process leads its own group; gunicorn workers and rq's helpers join it.
        self.groups = dict(groups)

    def snapshot(self) -> dict[str, float]:
        snap = _group_cpu(self.groups)
        snap["bench client"] = time.process_time()
        return snap

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {k: after[k] - before.get(k, 0.0) for k in after}


# -- the HTTP client: document system + phone ----------------------------------------------------


@dataclass
class Timings:
    """Seconds per phase, summed over requests."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    requests: int = 0

    def add(self, other: Timings) -> None:
        for k in PHASES:
            self.seconds[k] += other.seconds[k]
        self.requests += other.requests

    def mean_ms(self) -> dict[str, float]:
        return {k: 1000 * v / max(1, self.requests) for k, v in self.seconds.items()}


class Client:
    """The document system (API key) and the holder's phone (session cookie + device key)."""

    def __init__(self, world: World, device_key: ec.EllipticCurvePrivateKey, wait_s: int) -> None:
        url = urlsplit(world.base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.world, self.device_key, self.wait_s = world, device_key, wait_s
        self.bearer = {"Authorization": f"Bearer {world.api_key}"}
        self.cookie: dict[str, str] = {}

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None, *, expect: tuple[int, ...] = (200,)) -> tuple[bytes, Any]:
        """One request on a fresh connection (gunicorn's sync workers close after each)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=HTTP_TIMEOUT_S)
        try:
            hdrs = dict(headers or {})
            if body is not None:
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status not in expect:
                raise BenchError(f"{method} {path}: HTTP {resp.status}: {data[:500].decode(errors='replace')}")
            return data, resp.headers
        finally:
            conn.close()

    def login(self) -> None:
        """Sign the holder in once (Argon2 at the service's settings); approvals reuse the cookie."""
        body = json.dumps({"username": self.world.leader_username,
                           "password": self.world.leader_password}).encode()
        _, headers = self.call("POST", "/v1/session", body)
        raw = headers.get("Set-Cookie", "")
        name, _, rest = raw.partition("=")
        if not name or not rest:
            raise BenchError("POST /v1/session set no session cookie")
        self.cookie = {"Cookie": f"{name}={rest.split(';', 1)[0]}"}

    def approve(self, req: dict[str, Any]) -> None:
        """What the phone does: rebuild the challenge from what it shows, sign it, send the code."""
        from signer.signing import challenge as chal

        expires = datetime.fromisoformat(req["expires_at"])
        c = chal.compute(req["id"], req["credential_id"], expires, [d["dtbsr"] for d in req["documents"]])
        if c.hex() != req["challenge"]:
            raise BenchError("the server's challenge differs from the one recomputed on the phone")
        signature = base64.b64encode(self.device_key.sign(c, ec.ECDSA(hashes.SHA256()))).decode()
        body = json.dumps({"device_id": self.world.device_id, "challenge": c.hex(), "signature": signature,
                           "pin": DEVICE_PIN, "verification_code": chal.verification_code(c)}).encode()
        self.call("POST", f"/v1/sign-requests/{req['id']}/approval", body, self.cookie, expect=(202,))

    def sign(self, body: bytes) -> tuple[list[bytes], Timings]:
        """One sign request end to end; returns every output in document order."""
        t = Timings(requests=1)
        t0 = time.perf_counter()
        data, _ = self.call("POST", "/v1/sign-requests", body, self.bearer, expect=(202,))
        req = json.loads(data)
        t1 = time.perf_counter()
        self.approve(req)
        t2 = time.perf_counter()
        while req["state"] not in FINAL_STATES:
            data, _ = self.call("GET", f"/v1/sign-requests/{req['id']}?wait={self.wait_s}", None, self.bearer)
            req = json.loads(data)
            if self.wait_s == 0 and req["state"] not in FINAL_STATES:
                time.sleep(SHORT_POLL_S)  # short polls leave the sync web workers free in between
        t3 = time.perf_counter()
        if req["state"] != "COMPLETED":
            raise BenchError(f"request {req['id']} ended {req['state']} ({req['result']}: {req['detail']})")
        # Raw signatures come inline in the view; files are downloaded one by one.
        outputs = [base64.b64decode(d["signature"]) if d.get("signature") is not None
                   else self.call("GET", d["signed_url"], None, self.bearer)[0] for d in req["documents"]]
        t4 = time.perf_counter()
        for phase, seconds in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            t.seconds[phase] = seconds
        return outputs, t


@dataclass
class ServiceRun:
    """One timed run through the service."""

    items: int
    wall_s: float
    cpu_s: dict[str, float]
    timings: Timings
    outputs: list[bytes] = field(repr=False)

    @property
    def rate(self) -> float:
        return self.items / self.wall_s


def run_through_service(client: Client, bodies: list[bytes], items: int, threads: int,
                        meter: CpuMeter) -> ServiceRun:
    """Send ``bodies`` from ``threads`` client threads; wall clock from the first POST to the last
    download. Outputs come back in body order."""
    work: queue.Queue[int] = queue.Queue()
    for i in range(len(bodies)):
        work.put(i)
    results: dict[int, list[bytes]] = {}
    timings = Timings()
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)

    def worker() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            start.wait(STARTUP_TIMEOUT_S)
        while not errors:
            try:
                i = work.get_nowait()
            except queue.Empty:
                return
            try:
                outputs, t = client.sign(bodies[i])
            except BaseException as exc:  # re-raised in the caller
                with lock:
                    errors.append(exc)
                return
            with lock:
                results[i] = outputs
                timings.add(t)

    pool = [threading.Thread(target=worker, name=f"client-{n}", daemon=True) for n in range(threads)]
    for t in pool:
        t.start()
    before = meter.snapshot()
    start.wait(STARTUP_TIMEOUT_S)
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    cpu = CpuMeter.delta(before, meter.snapshot())
    if errors:
        raise errors[0]
    outputs = [o for i in range(len(bodies)) for o in results[i]]
    if len(outputs) != items:
        raise BenchError(f"expected {items} outputs, got {len(outputs)}")
    return ServiceRun(items, wall, cpu, timings, outputs)


# -- request bodies ------------------------------------------------------------------------------


def _requests_per_batch() -> int:
    return -(-HASHES_PER_BATCH // API_MAX_HASHES)


def pades_bodies(world: World, pdf: bytes, docs: int, batch: int, tag: str) -> list[bytes]:
    """``docs`` copies of ``pdf`` as JSON/base64 sign requests of ``batch`` documents (built before
    the clock starts: encoding is the document system's work, not the service's)."""
    content = base64.b64encode(pdf).decode()
    bodies = []
    for first in range(0, docs, batch):
        documents = [{
            "name": f"Quyết định số {n + 1:03d}/QĐ-UBND ({tag})", "format": "pades", "profile": "approved",
            "level": "B-B", "content": content,
            "placement": {"page": PAGE, "box": list(BOX)},
        } for n in range(first, min(first + batch, docs))]
        bodies.append(json.dumps({"credential_id": world.credential_id, "documents": documents}).encode())
    return bodies


def hash_bodies(world: World, digests: list[bytes]) -> list[bytes]:
    """``digests`` as sign requests of at most 1,000 raw SHA-256 hashes (the API's batch limit)."""
    bodies = []
    for first in range(0, len(digests), API_MAX_HASHES):
        documents = [{"name": f"hash {n + 1}", "format": "raw", "hash": digests[n].hex(), "hash_algorithm": "sha256"}
                     for n in range(first, min(first + API_MAX_HASHES, len(digests)))]
        bodies.append(json.dumps({"credential_id": world.credential_id, "documents": documents}).encode())
    return bodies


# -- baseline 1: plain pyHanko loop --------------------------------------------------------------


def _self_signed(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Nguyễn Văn An (bench baseline)")])
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
            .sign(key, hashes.SHA256()))


def _kept_key_signer(key: rsa.RSAPrivateKey, **kwargs: Any) -> Any:
    """A ``SimpleSigner`` that signs with the already loaded ``key``. pyHanko's own ``sign_raw``
    re-parses the DER private key on every signature, and cryptography checks an RSA key's
    consistency on load (~40 ms for RSA-2048 here): twice per PDF with the dry run."""
    from pyhanko.sign import signers
    from pyhanko.sign.general import get_pyca_cryptography_hash

    class KeptKeySigner(signers.SimpleSigner):  # type: ignore[misc]
        def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
            return key.sign(data, padding.PKCS1v15(), get_pyca_cryptography_hash(digest_algorithm))

    return KeptKeySigner(**kwargs)


class PlainLoop:
    """``sign_pdf`` on the same PDF, again and again, in this process, with an in-memory key.

    ``keep_key`` swaps pyHanko's ``SimpleSigner.sign_raw`` (which reloads the key each time) for
    one that signs with the loaded key: a reference for how much of the loop is that reload."""

    def __init__(self, pdf: bytes, *, visible: bool, keep_key: bool = False) -> None:
        from asn1crypto import keys as asn1_keys
        from asn1crypto import x509 as asn1_x509
        from pyhanko.sign import fields, signers
        from pyhanko_certvalidator.registry import SimpleCertificateStore

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = _self_signed(key)
        self.certificate_der = cert.public_bytes(Encoding.DER)
        asn1_cert = asn1_x509.Certificate.load(self.certificate_der)
        make = functools.partial(_kept_key_signer, key) if keep_key else signers.SimpleSigner
        signer = make(
            signing_cert=asn1_cert,
            signing_key=asn1_keys.PrivateKeyInfo.load(key.private_bytes(Encoding.DER, PrivateFormat.PKCS8,
                                                                         NoEncryption())),
            cert_registry=SimpleCertificateStore.from_certs([asn1_cert]))
        meta = signers.PdfSignatureMetadata(field_name=FIELD_NAME, md_algorithm="sha256",
                                            subfilter=fields.SigSeedSubFilter.PADES)
        self.pdf, self.visible = pdf, visible
        if visible:
            # The service's "approved" look: the signature image (StaticStampStyle) in the same box.
            from signer.signing.appearance import stamp_style

            pdf_signer = signers.PdfSigner(
                meta, signer, stamp_style=stamp_style("approved", image_png=signature_png()).style,
                new_field_spec=fields.SigFieldSpec(FIELD_NAME, on_page=PAGE - 1, box=BOX))

            def sign(writer: Any) -> Any:
                return pdf_signer.sign_pdf(writer)
        else:

            def sign(writer: Any) -> Any:
                return signers.sign_pdf(writer, meta, signer)

        self._sign: Callable[[Any], Any] = sign
        self.description = (
            "pyHanko PdfSigner(stamp_style=<service's approved StaticStampStyle>, new field in the same box)"
            ".sign_pdf (what signers.sign_pdf calls), bytes_reserved=None (size estimated by a dry run)"
            if visible else "pyHanko signers.sign_pdf, invisible signature, bytes_reserved=None (dry run)")
        self.description += (", SimpleSigner with sign_raw using the loaded key" if keep_key
                             else ", SimpleSigner (reloads the key per signature)")

    def sign_once(self) -> bytes:
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

        out = self._sign(IncrementalPdfFileWriter(io.BytesIO(self.pdf)))
        data: bytes = out.getvalue()
        return data

    def run(self, count: int) -> tuple[float, float, bytes]:
        """(wall seconds, CPU seconds, last output) for ``count`` signatures."""
        cpu0, t0 = time.process_time(), time.perf_counter()
        out = b""
        for _ in range(count):
            out = self.sign_once()
        return time.perf_counter() - t0, time.process_time() - cpu0, out


# -- baseline 2: raw python-pkcs11 loop in a spawned process -------------------------------------


def _raw_worker(module: str, token_label: str, pin: str, conn: Any) -> None:
    """Spawned: generate an RSA-2048 key on the throw-away token, then sign what is asked."""
    try:
        import pkcs11
        from pkcs11 import Attribute, KeyType, Mechanism

        session = pkcs11.lib(module).get_token(token_label=token_label).open(user_pin=pin, rw=True)
        pub, priv = session.generate_keypair(KeyType.RSA, 2048, label="bench-raw", store=True)
        public = rsa.RSAPublicNumbers(int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big"),
                                      int.from_bytes(pub[Attribute.MODULUS], "big")).public_key()
        probe = hashlib.sha256(b"probe").digest()
        public.verify(priv.sign(SHA256_DIGEST_INFO + probe, mechanism=Mechanism.RSA_PKCS), probe,
                      padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    except Exception:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", None))
    while True:
        digests = conn.recv()
        if digests is None:
            session.close()
            return
        try:
            prefix, sign, mech = SHA256_DIGEST_INFO, priv.sign, Mechanism.RSA_PKCS
            cpu0, t0 = time.process_time(), time.perf_counter()
            signatures = [sign(prefix + d, mechanism=mech) for d in digests]
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            public.verify(signatures[-1], digests[-1], padding.PKCS1v15(), Prehashed(hashes.SHA256()))
            conn.send(("done", (wall, cpu)))
        except Exception:
            conn.send(("error", traceback.format_exc()))
            return


class RawLoop:
    """The raw PKCS#11 loop in its own spawned process (login is per process); a context manager."""

    def __init__(self, module: str, token_label: str, pin: str) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold PKCS#11 state
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_raw_worker, args=(module, token_label, pin, child),
                                name="bench-raw-pkcs11", daemon=True)
        self.proc.start()
        child.close()

    def __enter__(self) -> RawLoop:
        try:
            self._receive(STARTUP_TIMEOUT_S)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _receive(self, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise BenchError(f"the raw PKCS#11 loop did not answer within {timeout:.0f} s")
        try:
            kind, payload = self.conn.recv()
        except EOFError:
            raise BenchError(f"the raw PKCS#11 loop exited ({self.proc.exitcode})") from None
        if kind == "error":
            raise BenchError(f"the raw PKCS#11 loop failed:\n{payload}")
        return payload

    def run(self, digests: list[bytes]) -> tuple[float, float]:
        """(wall seconds, CPU seconds) to sign ``digests``."""
        self.conn.send(digests)
        wall, cpu = self._receive(STARTUP_TIMEOUT_S + len(digests))
        return float(wall), float(cpu)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join()
        self.conn.close()


# -- output checks -------------------------------------------------------------------------------


def validate_pdfs(outputs: list[bytes], roots_der: list[bytes]) -> list[dict[str, Any]]:
    """pyHanko's verdict on each PDF: its one signature must be intact and valid."""
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    roots = [asn1_x509.Certificate.load(r) for r in roots_der]
    verdicts: list[dict[str, Any]] = []
    for pdf in outputs:
        reader = PdfFileReader(io.BytesIO(pdf))
        sigs = reader.embedded_signatures
        if len(sigs) != 1:
            verdicts.append({"signatures": len(sigs), "intact": False, "valid": False, "trusted": False})
            continue
        status = validate_pdf_signature(sigs[0], ValidationContext(trust_roots=roots, allow_fetching=False))
        verdicts.append({"signatures": 1, "intact": bool(status.intact), "valid": bool(status.valid),
                         "trusted": bool(status.trusted), "coverage": str(status.coverage.name)})
    return verdicts


def verify_raw(signatures: list[bytes], digests: list[bytes], certificate_der: bytes) -> int:
    """How many raw signatures verify (RSA PKCS#1 v1.5 over each SHA-256 digest)."""
    public = x509.load_der_x509_certificate(certificate_der).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    good = 0
    for sig, digest in zip(signatures, digests, strict=True):
        try:
            public.verify(sig, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
            good += 1
        except Exception:
            continue
    return good


def _sample(items: list[bytes], count: int) -> list[bytes]:
    if count >= len(items):
        return list(items)
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


# -- results -------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Rates per round for both sides and what the service spent per item."""

    name: str
    unit: str
    items: int
    target: float
    service: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    baseline_cpu_s: list[float] = field(default_factory=list)
    runs: list[ServiceRun] = field(default_factory=list)
    checked: bool = True  # False: shown for reference, no target applies

    @property
    def service_median(self) -> float:
        return statistics.median(self.service)

    @property
    def baseline_median(self) -> float:
        return statistics.median(self.baseline)

    @property
    def ratio(self) -> float:
        return self.service_median / self.baseline_median

    @property
    def passed(self) -> bool:
        return self.ratio >= self.target

    def cpu_ms_per_item(self) -> dict[str, float]:
        """Median over runs of CPU milliseconds per item, per component."""
        keys = self.runs[0].cpu_s.keys()
        return {k: statistics.median(1000 * r.cpu_s[k] / r.items for r in self.runs) for k in keys}

    def phase_ms(self) -> dict[str, float]:
        total = Timings()
        for r in self.runs:
            total.add(r.timings)
        return total.mean_ms()

    def utilisation(self, cpus: int) -> float:
        """Median share of the machine's CPUs busy (service processes + client) during service runs."""
        return statistics.median(sum(r.cpu_s.values()) / r.wall_s / cpus for r in self.runs)

    def to_json(self, cpus: int) -> dict[str, Any]:
        return {
            "unit": self.unit, "items_per_run": self.items, "target_ratio": self.target,
            "service_per_s": round(self.service_median, 2), "baseline_per_s": round(self.baseline_median, 2),
            "ratio": round(self.ratio, 3), "passed": self.passed,
            "rounds": {"service_per_s": [round(x, 2) for x in self.service],
                       "baseline_per_s": [round(x, 2) for x in self.baseline],
                       "ratio": [round(s / b, 3) for s, b in zip(self.service, self.baseline, strict=True)],
                       "service_wall_s": [round(r.wall_s, 3) for r in self.runs]},
            "baseline_cpu_ms_per_item": round(1000 * statistics.median(self.baseline_cpu_s) / self.items, 2),
            "service_cpu_ms_per_item": {k: round(v, 2) for k, v in self.cpu_ms_per_item().items()},
            "service_cpu_utilisation": round(self.utilisation(cpus), 3),
            "client_phase_ms_per_request": {k: round(v, 1) for k, v in self.phase_ms().items()},
        }


def summarise_profiles(folder: Path, top: int = 30) -> Path:
    """Write the heaviest functions (cumulative and own time) of each profiled process to
    ``folder/summary.txt``; returns its path."""
    import pstats

    out = io.StringIO()
    for prof in sorted(folder.glob("*.prof"), key=lambda p: -p.stat().st_size):
        stats = pstats.Stats(str(prof), stream=out)
        out.write(f"=== {prof.name}: {stats.total_tt:.2f} s profiled ===\n")  # type: ignore[attr-defined]
        stats.sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(top)
    path = folder / "summary.txt"
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def _interleaved(rounds: int, *sides: Callable[[], None]) -> None:
    """Run every side once per round: in the given order in even rounds, reversed in odd ones."""
    for r in range(rounds):
        for side in sides if r % 2 == 0 else reversed(sides):
            side()


# -- runner interface ----------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of this benchmark (``--rounds`` and ``--quick`` come from the runner; ``--duration``
    does not apply: runs are a fixed number of documents)."""
    group = parser.add_argument_group("sign_throughput")
    group.add_argument("--docs", type=_positive, metavar="N",
                       help=f"PDFs per timed run (default {DEFAULT_DOCS}; --quick {QUICK_DOCS})")
    group.add_argument("--batch", type=_positive, default=20, metavar="N",
                       help="PDFs per sign request (default 20, at most 100)")
    group.add_argument("--clients", type=_positive, default=4, metavar="N",
                       help="client threads sending requests at once (default 4)")
    group.add_argument("--wait", type=int, default=DEFAULT_WAIT_S, metavar="S",
                       help=f"long-poll seconds per GET (default {DEFAULT_WAIT_S}; 0: short polls every "
                            f"{SHORT_POLL_S} s)")
    group.add_argument("--hash-batches", type=_positive, metavar="N",
                       help=f"timed sign-hash batches of {HASHES_PER_BATCH} "
                            f"(default {DEFAULT_HASH_BATCHES}; --quick {QUICK_HASH_BATCHES})")
    group.add_argument("--validate", type=_positive, default=10, metavar="K",
                       help="signed PDFs per run validated with pyHanko after timing (default 10)")
    group.add_argument("--baseline-appearance", choices=("visible", "invisible"), default="visible",
                       help="the plain loop's signature: the service's image stamp (default) or none")
    group.add_argument("--web-workers", type=_positive, default=2, metavar="N",
                       help="gunicorn workers of `signer run` (default 2, as the acceptance test)")
    group.add_argument("--hsm-workers", type=_positive, default=1, metavar="N",
                       help="hsm workers of the PAdES service (default 1, as the acceptance test)")
    group.add_argument("--hash-hsm-workers", type=_positive, default=2, metavar="N",
                       help="hsm workers of the sign-hash service (default 2, `signer run`'s default; "
                            "another number than --hsm-workers starts a second service)")
    group.add_argument("--keep-service", action="store_true",
                       help="keep the service's temp folder (logs, database) for inspection")
    group.add_argument("--postgres", metavar="ADMIN_URL",
                       help="use a fresh database on this PostgreSQL server (created and dropped) instead of "
                            "SQLite, e.g. postgresql://postgres@127.0.0.1:5432/postgres")
    group.add_argument("--profile", type=Path, metavar="DIR",
                       help="run every service process under cProfile and write .prof files and a "
                            "summary to DIR (profiling slows everything: not a measurement)")


def run(options: RunOptions, args: argparse.Namespace) -> int:
    """Start the service, measure both comparisons, print the table, write the JSON, check.

    SIGINT and SIGTERM become KeyboardInterrupt (even when a shell started us in the background
    with SIGINT ignored), so the service is always stopped; a second signal during that clean-up
    is ignored rather than leaving processes behind."""
    if threading.current_thread() is not threading.main_thread():
        return _run(options, args)

    def interrupt(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(options, args)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def measure_sign_hash(client: Client, world: World, meter: CpuMeter, module: str, hash_batches: int,
                      sign_hash: Comparison, clients: int) -> tuple[int, int]:
    """Interleaved sign-hash batches through the service and the raw PKCS#11 loop; returns
    (signatures verified, signatures made)."""
    raw_checked = raw_total = 0
    with throwaway_token(module) as tok, RawLoop(tok.module, tok.label, tok.pin) as raw:
        # A full batch, so that every hsm worker sharing it loads the credential before the clock.
        hash_warm = [hashlib.sha256(b"warm %d" % i).digest() for i in range(HASHES_PER_BATCH)]
        run_through_service(client, hash_bodies(world, hash_warm), len(hash_warm), clients, meter)
        raw.run(hash_warm)

        def service_hash() -> None:
            nonlocal raw_checked, raw_total
            digests = [os.urandom(32) for _ in range(HASHES_PER_BATCH)]
            result = run_through_service(client, hash_bodies(world, digests), len(digests), clients, meter)
            sign_hash.runs.append(result)
            sign_hash.service.append(result.rate)
            raw_checked += verify_raw(result.outputs, digests, world.certificate_der)
            raw_total += len(digests)
            result.outputs.clear()
            _progress(f"  service: {len(digests)} hashes in {result.wall_s:.2f} s = {result.rate:.0f} hashes/s")

        def baseline_hash() -> None:
            digests = [os.urandom(32) for _ in range(HASHES_PER_BATCH)]
            wall, cpu = raw.run(digests)
            sign_hash.baseline.append(len(digests) / wall)
            sign_hash.baseline_cpu_s.append(cpu)
            _progress(f"  raw PKCS#11 loop: {len(digests)} hashes in {wall:.3f} s "
                      f"= {len(digests) / wall:.0f} hashes/s")

        _progress(f"sign-hash: {hash_batches} batch(es) of {HASHES_PER_BATCH} "
                  f"({_requests_per_batch()} request(s) x {min(HASHES_PER_BATCH, API_MAX_HASHES)})")
        _interleaved(hash_batches, service_hash, baseline_hash)
    return raw_checked, raw_total


def _sign_hash_service(args: argparse.Namespace, module: str, device_key: ec.EllipticCurvePrivateKey,
                       hash_batches: int, sign_hash: Comparison) -> tuple[int, int, list[int]]:
    """The sign-hash phase on a service of its own (``--hash-hsm-workers`` hsm workers)."""
    databases = contextlib.ExitStack()
    database_url = databases.enter_context(postgres_database(args.postgres)) if args.postgres else None
    service = Service(device_public_key_der=device_key.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo), web_workers=args.web_workers,
        hsm_workers=args.hash_hsm_workers, module=module, keep=args.keep_service, profile_dir=args.profile,
        database_url=database_url)
    try:
        with service:
            assert service.world is not None
            _progress(f"sign-hash service up at {service.world.base_url} ({service.folder}), "
                      f"{args.hash_hsm_workers} hsm worker(s)")
            client = Client(service.world, device_key, args.wait)
            client.login()
            checked, total = measure_sign_hash(client, service.world, CpuMeter(service.process_groups()), module,
                                               hash_batches, sign_hash, args.clients)
    finally:
        databases.close()
    return checked, total, service.survivors


def _run(options: RunOptions, args: argparse.Namespace) -> int:
    from tests.pdfs import decision_pdf

    if args.batch > API_MAX_DOCUMENTS:
        print(f"--batch must be at most {API_MAX_DOCUMENTS} (the API's limit)", file=sys.stderr)
        return 2
    docs = args.docs or (QUICK_DOCS if args.quick else DEFAULT_DOCS)
    hash_batches = args.hash_batches or (QUICK_HASH_BATCHES if args.quick else DEFAULT_HASH_BATCHES)
    module: str = getattr(args, "module", None) or DEFAULT_MODULE
    started = datetime.now(UTC)
    t_start = time.perf_counter()
    machine = machine_info()
    cpus = int(machine["nproc"])
    pdf = decision_pdf()
    pades = Comparison("PAdES B-B approved", "docs/s", docs, PADES_TARGET)
    sign_hash = Comparison("sign-hash", "hashes/s", HASHES_PER_BATCH, HASH_TARGET)
    device_key = ec.generate_private_key(ec.SECP256R1())
    loop = PlainLoop(pdf, visible=args.baseline_appearance == "visible")
    kept = PlainLoop(pdf, visible=args.baseline_appearance == "visible", keep_key=True)
    kept_rates: list[float] = []
    kept_cpu: list[float] = []
    pdf_samples: list[bytes] = []
    raw_checked = raw_total = 0
    survivors: list[int] = []

    databases = contextlib.ExitStack()  # a PostgreSQL database outlives the service using it
    database_url = databases.enter_context(postgres_database(args.postgres)) if args.postgres else None
    service = Service(device_public_key_der=device_key.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo), web_workers=args.web_workers,
        hsm_workers=args.hsm_workers,
        module=module, keep=args.keep_service, profile_dir=args.profile,
        database_url=database_url)
    try:
        with service:
            assert service.world is not None
            assert service.processes is not None
            world = service.world
            _progress(f"service up at {world.base_url} ({service.folder}); "
                      f"web workers {service.web_worker_pids()}")
            meter = CpuMeter(service.process_groups())
            client = Client(world, device_key, args.wait)
            client.login()

            # Warm-up: every gunicorn worker prepares (fonts, images, imports), the hsm worker loads
            # the credential, the loop signs a few; none of it is timed.
            warm = pades_bodies(world, pdf, 2 * args.clients * 2, 2, "warm-up")
            run_through_service(client, warm, 2 * args.clients * 2, args.clients, meter)
            loop.run(3)
            kept.run(3)

            def service_pades() -> None:
                bodies = pades_bodies(world, pdf, docs, args.batch, f"run {len(pades.runs) + 1}")
                result = run_through_service(client, bodies, docs, args.clients, meter)
                pades.runs.append(result)
                pades.service.append(result.rate)
                pdf_samples.extend(_sample(result.outputs, args.validate))
                if not all(o.startswith(b"%PDF") and len(o) > len(pdf) for o in result.outputs):
                    raise BenchError("an output is not a signed PDF")
                _progress(f"  service: {docs} PDFs in {result.wall_s:.2f} s = {result.rate:.1f} docs/s")

            def baseline_pades() -> None:
                wall, cpu, _ = loop.run(docs)
                pades.baseline.append(docs / wall)
                pades.baseline_cpu_s.append(cpu)
                _progress(f"  plain loop: {docs} PDFs in {wall:.2f} s = {docs / wall:.1f} docs/s")

            def kept_key_pades() -> None:
                wall, cpu, _ = kept.run(docs)
                kept_rates.append(docs / wall)
                kept_cpu.append(cpu)
                _progress(f"  plain loop, key kept loaded: {docs} PDFs in {wall:.2f} s = {docs / wall:.1f} docs/s")

            _progress(f"PAdES: {options.rounds} round(s) of {docs} PDFs, batches of {args.batch}, "
                      f"{args.clients} client threads")
            baseline_first_output = loop.sign_once()
            kept_first_output = kept.sign_once()
            _interleaved(options.rounds, service_pades, baseline_pades, kept_key_pades)

            if args.hash_hsm_workers == args.hsm_workers:
                raw_checked, raw_total = measure_sign_hash(client, world, meter, module, hash_batches,
                                                           sign_hash, args.clients)
        if args.hash_hsm_workers != args.hsm_workers:
            raw_checked, raw_total, hash_survivors = _sign_hash_service(args, module, device_key, hash_batches,
                                                                        sign_hash)
            survivors += hash_survivors
    finally:
        databases.close()
        survivors += service.survivors
        if survivors:
            print(f"warning: processes left after stopping the service (killed): {survivors}", file=sys.stderr)
    assert service.world is not None
    elapsed = time.perf_counter() - t_start

    reference = Comparison("PAdES, loop keeping its key", "docs/s", docs, PADES_TARGET, service=pades.service,
                           baseline=kept_rates, baseline_cpu_s=kept_cpu, runs=pades.runs, checked=False)
    comparisons = (pades, reference, sign_hash)

    # Output checks, after timing: a broken pipeline must not look fast.
    _progress(f"validating {len(pdf_samples)} service PDFs and 2 baseline PDFs with pyHanko ...")
    verdicts = validate_pdfs(pdf_samples, service.world.root_der)
    baseline_verdicts = [validate_pdfs([baseline_first_output], [loop.certificate_der])[0],
                         validate_pdfs([kept_first_output], [kept.certificate_der])[0]]
    pdfs_ok = all(v["intact"] and v["valid"] for v in verdicts)
    trusted = sum(v["trusted"] for v in verdicts)
    raw_ok = raw_checked == raw_total
    baseline_ok = all(v["intact"] and v["valid"] for v in baseline_verdicts)

    rows = [[c.name, f"{c.service_median:,.1f} {c.unit}", f"{c.baseline_median:,.1f} {c.unit}",
             f"{c.ratio:.2f}", f">= {c.target}" if c.checked else "(none)",
             ("yes" if c.passed else "NO") if c.checked else "-",
             " ".join(f"{x / b:.2f}" for x, b in zip(c.service, c.baseline, strict=True))]
            for c in comparisons]
    print(format_table(["measure", "service", "baseline", "ratio", "target", "met", "round ratios"], rows))
    print(f"PAdES: {docs} PDFs per run in requests of {args.batch}, {args.clients} client threads, "
          f"{args.web_workers} gunicorn workers + {args.hsm_workers} hsm worker(s); baseline: {loop.description}; "
          f"reference: the same loop with pyHanko's per-signature key reload removed")
    print(f"sign-hash: {HASHES_PER_BATCH} SHA-256 digests per run = {_requests_per_batch()} "
          f"request(s), one approval each, signatures read inline from the request view, "
          f"{args.web_workers} gunicorn workers + {args.hash_hsm_workers} hsm worker(s); "
          f"baseline: python-pkcs11 CKM_RSA_PKCS over DigestInfo, RSA-2048, one process")
    for c in (pades, sign_hash):
        cpu = c.cpu_ms_per_item()
        parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v >= 0.05)
        phases = ", ".join(f"{k} {v:.0f}" for k, v in c.phase_ms().items())
        loops = f"{1000 * statistics.median(c.baseline_cpu_s) / c.items:.1f}"
        if c is pades:
            loops += f" (key kept: {1000 * statistics.median(kept_cpu) / c.items:.1f})"
        print(f"{c.name} service CPU ms per item: {parts}; total {sum(cpu.values()):.1f} vs loop {loops}; "
              f"machine busy {100 * c.utilisation(cpus):.0f}% of {cpus} CPUs; "
              f"client ms per request: {phases}")
    print(f"outputs: {sum(v['intact'] and v['valid'] for v in verdicts)}/{len(verdicts)} sampled service PDFs "
          f"intact+valid ({trusted} trusted to the built-in root), baseline PDFs "
          f"{'intact+valid' if baseline_ok else 'INVALID'}; raw signatures verified {raw_checked}/{raw_total}")
    print(f"{options.rounds} PAdES round(s), {hash_batches} sign-hash batch(es), interleaved; medians; "
          f"total {elapsed:.0f} s; load average at start {machine['loadavg_at_start'][0]:.2f}")
    if args.profile is not None:
        summary = summarise_profiles(args.profile)
        print(f"PROFILED RUN (cProfile in every service process: the rates above are not measurements); "
              f"summary: {summary}")

    outputs_ok = pdfs_ok and raw_ok and baseline_ok and not survivors
    write_json(options.out, {
        "benchmark": "sign_throughput",
        "started": started.isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed, 1),
        "command": " ".join([".venv/bin/python", "-m", "bench", *sys.argv[1:]]),
        "profiled": args.profile is not None,
        "settings": {
            "docs_per_run": docs, "batch": args.batch, "clients": args.clients, "wait_s": args.wait,
            "rounds": options.rounds, "hash_batches": hash_batches, "web_workers": args.web_workers,
            "hsm_workers": args.hsm_workers, "hash_hsm_workers": args.hash_hsm_workers,
            "database": "postgresql" if args.postgres else "sqlite", "pdf_bytes": len(pdf),
            "redis": "the supervisor's (signer run --redis-port)",
            "document": "tests/pdfs.decision_pdf(): 1 A4 page, profile approved, level B-B, "
                        f"RSA-2048, placement page {PAGE} box {list(BOX)}, signature image",
            "baseline_pades": loop.description,
            "reference_pades": kept.description,
            "baseline_hash": "python-pkcs11 key.sign(DigestInfo(sha256) || digest, CKM_RSA_PKCS), "
                             "RSA-2048 token key, throw-away SoftHSM2 token, spawned process",
            "hash_batch": f"{HASHES_PER_BATCH} digests = {_requests_per_batch()} request(s) of at most "
                          f"{API_MAX_HASHES}, one approval each, signatures inline in the request view",
            "rate": "items / wall seconds from the first POST to the last download",
            "order": "interleaved; service first in even rounds, loops first in odd rounds",
        },
        "machine": machine,
        "results": {"pades": pades.to_json(cpus), "pades_kept_key_reference": reference.to_json(cpus),
                    "sign_hash": sign_hash.to_json(cpus)},
        "outputs": {"pdf_samples": verdicts, "baseline_pdfs": baseline_verdicts,
                    "raw_signatures_verified": raw_checked, "raw_signatures": raw_total,
                    "processes_left": survivors, "ok": outputs_ok},
        "check": {"pades": {"target": PADES_TARGET, "ratio": round(pades.ratio, 3), "passed": pades.passed},
                  "sign_hash": {"target": HASH_TARGET, "ratio": round(sign_hash.ratio, 3),
                                "passed": sign_hash.passed}},
    })
    print(f"results: {options.out}")

    if not outputs_ok:
        print("FAILED: some outputs did not validate or processes were left behind; the figures are void",
              file=sys.stderr)
        return 1
    if not options.check:
        return 0
    status = 0
    for c in (pades, sign_hash):
        verdict = "passed" if c.passed else "FAILED"
        print(f"check {verdict}: {c.name} ratio {c.ratio:.2f} (needs >= {c.target})",
              file=sys.stdout if c.passed else sys.stderr)
        status = status if c.passed else 1
    return status
