"""The built-in TSA over HTTP (`POST /tsa`, answered by the hsm worker) checked with `openssl ts`,
and a signing service configured to use an external TSA URL (here: another instance's /tsa)."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import pem
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from werkzeug.serving import make_server

import hsm
from signer.app import create_app
from signer.services import Services
from signer.settings import Settings
from signer.signing.material import authority, authority_chain, trust_roots
from signer.signing.models import SignRequest
from tests.conftest import World
from tests.images import signature_png
from tests.pdfs import decision_pdf
from tests.signing_support import approve, make_signing_world
from tests.support import SoftHsm, free_port, worker_env

# RFC 3161 over HTTP and an external TSA URL: nothing here depends on the database backend.
pytestmark = pytest.mark.one_db

TSA_CALLS: list[str] = []


@pytest.fixture
def served(settings: Settings, services: Services) -> Iterator[str]:
    """The web app on a real loopback port, as gunicorn would serve it; counts calls to /tsa."""
    app = create_app(settings, services)
    inner = app.wsgi_app

    def counting(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/tsa":
            TSA_CALLS.append(environ.get("REQUEST_METHOD", ""))
        return inner(environ, start_response)

    app.wsgi_app = counting  # type: ignore[method-assign]
    TSA_CALLS.clear()
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _workers(settings: Settings, softhsm: SoftHsm, count: int, **extra: str) -> list[subprocess.Popen[bytes]]:
    env = worker_env(settings, softhsm, **extra)
    return [subprocess.Popen([sys.executable, "-m", "signer.cli", "worker", "hsm"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(count)]


def _pem_file(path: Path, ders: list[bytes]) -> None:
    path.write_bytes(b"".join(pem.armor("CERTIFICATE", d) for d in ders))


def test_http_tsa_and_external_tsa_url(served: str, settings: Settings, services: Services, world: World,
                                       token: hsm.Hsm, softhsm: SoftHsm, client: Any, tmp_path: Path) -> None:
    sw = make_signing_world(services, world, token, "ec-p256")
    workers = _workers(settings, softhsm, 2, SIGNER_TSA_URL=f"{served}/tsa")
    try:
        data = tmp_path / "data.txt"
        data.write_text("Nội dung cần gắn dấu thời gian")
        subprocess.run(["openssl", "ts", "-query", "-data", str(data), "-sha256", "-cert", "-out",
                        str(tmp_path / "req.tsq")], check=True, capture_output=True)
        req = urllib.request.Request(f"{served}/tsa", data=(tmp_path / "req.tsq").read_bytes(),
                                     headers={"Content-Type": "application/timestamp-query"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.headers["Content-Type"] == "application/timestamp-reply"
            (tmp_path / "resp.tsr").write_bytes(resp.read())
        with services.db.session() as s:
            tsa = authority(s, "tsa")
            assert tsa is not None
            chain = [c.dump() for c in authority_chain(s, tsa)]
            roots = trust_roots(s)
        _pem_file(tmp_path / "roots.pem", [r.dump() for r in roots])
        _pem_file(tmp_path / "chain.pem", chain)
        out = subprocess.run(["openssl", "ts", "-verify", "-data", str(data), "-in", str(tmp_path / "resp.tsr"),
                              "-CAfile", str(tmp_path / "roots.pem"), "-untrusted", str(tmp_path / "chain.pem")],
                             capture_output=True, text=True, check=False)
        assert "Verification: OK" in out.stdout, out.stdout + out.stderr

        assert TSA_CALLS == ["POST"]
        # The workers were started with SIGNER_TSA_URL: a B-T signature gets its token over HTTP.
        client.post("/v1/session", json={"username": "office-admin", "password": world.password})
        client.put(f"/v1/credentials/{sw.leader_credential}/images/signature", data=signature_png(),
                   content_type="image/png")
        client.delete("/v1/session")
        body = {"credential_id": sw.leader_credential, "documents": [{
            "name": "B-T", "format": "pades", "profile": "approved", "level": "B-T",
            "placement": {"anchor": "Nguyễn Văn An"}, "content": base64.b64encode(decision_pdf()).decode()}]}
        headers = {"Authorization": f"Bearer {world.api_key}"}
        created = client.post("/v1/sign-requests", json=body, headers=headers).json
        approve(client, world, sw.leader, created)
        deadline = time.monotonic() + 60
        while True:
            with services.db.session() as s:
                state = s.get(SignRequest, created["id"]).state  # type: ignore[union-attr]
            if state != "SIGNING" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        done = client.get(f"/v1/sign-requests/{created['id']}", headers=headers).json
        assert done["state"] == "COMPLETED", done
        pdf = client.get(done["documents"][0]["signed_url"], headers=headers).data
        status = validate_pdf_signature(PdfFileReader(io.BytesIO(pdf)).embedded_signatures[0],
                                        ValidationContext(trust_roots=roots, allow_fetching=False))
        assert status.bottom_line and status.timestamp_validity is not None and status.timestamp_validity.valid
        assert len(TSA_CALLS) >= 2  # the signature's token came through the configured URL
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
