"""Exchange tests' helpers: a local axis in a thread, organisations registered on it, documents
signed by the leader and the organisation, one exchange "cycle" through the real Redis queues."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select

from exchange.axis.server import AxisServer
from signer.interchange import directory, local_axis
from signer.interchange.accounts import accounts
from signer.models import Organisation
from signer.queues import EXCHANGE, queue
from signer.services import Services
from signer.workers import run_exchange_worker, run_hsm_worker
from tests.pdfs import decision_pdf
from tests.signing_support import SigningWorld, approve


@contextmanager
def running_axis(services: Services, port: int = 0) -> Iterator[AxisServer]:
    server = local_axis.make_server(services.settings, "127.0.0.1", port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def register_all(services: Services, endpoint: str) -> dict[str, str]:
    """Every organisation of the test world on the local axis; returns code -> organisation id."""
    with services.db.session() as db:
        orgs = list(db.scalars(select(Organisation).order_by(Organisation.code)))
        db.expunge_all()
    for org in orgs:
        local_axis.register(services, [org], endpoint=endpoint)
    directory.sync(services)
    return {o.code: o.id for o in orgs}


def sign_for_sending(client: Any, services: Services, sw: SigningWorld, pdf: bytes | None = None) -> str:
    """A leader-approved then organisation-issued PDF; returns the completed (issued) request id."""
    headers = {"Authorization": f"Bearer {sw.world.api_key}"}
    doc = {"name": "Quyết định 07/QĐ-UBND.pdf", "format": "pades", "profile": "approved", "level": "B-B",
           "content": base64.b64encode(pdf or decision_pdf()).decode(), "placement": {"anchor": "Nguyễn Văn An"}}
    first = client.post("/v1/sign-requests", json={"credential_id": sw.leader_credential, "documents": [doc]},
                        headers=headers)
    assert first.status_code == 202, first.json
    assert approve(client, sw.world, sw.leader, first.json).status_code == 202
    run_hsm_worker(services, burst=True)
    done = client.get(f"/v1/sign-requests/{first.json['id']}", headers=headers).json
    assert done["state"] == "COMPLETED", done
    signed = client.get(done["documents"][0]["signed_url"], headers=headers).data
    issued = {"name": "Quyết định 07/QĐ-UBND.pdf", "format": "pades", "profile": "issued", "level": "B-B",
              "content": base64.b64encode(signed).decode()}
    second = client.post("/v1/sign-requests", json={"credential_id": sw.seal_credential, "documents": [issued]},
                         headers=headers)
    assert second.status_code == 202, second.json
    assert approve(client, sw.world, sw.clerk, second.json).status_code == 202
    run_hsm_worker(services, burst=True)
    final = client.get(f"/v1/sign-requests/{second.json['id']}", headers=headers).json
    assert final["state"] == "COMPLETED", final
    return str(second.json["id"])


def cycle(services: Services) -> None:
    """Poll the axis for every account and drain the exchange queue with a real rq worker: packets
    go out, arrive, are verified, and the automatic statuses go out too."""
    from signer.jobs.exchange import poll_organisation

    with services.db.session(readonly=True) as db:
        ids = [a.organisation_id for a in accounts(db)]
    run_exchange_worker(services, burst=True)
    for organisation_id in ids:
        queue(services, EXCHANGE).enqueue(poll_organisation, organisation_id)
    run_exchange_worker(services, burst=True)


def send_body(request_id: str, recipients: list[str], number: str = "07", **extra: Any) -> dict[str, Any]:
    return {"sign_request_id": request_id, "recipients": recipients, "code": {"number": number, "notation": "QĐ-UBND"},
            "document_type": {"type": 1, "name": "Quyết định"}, "subject": "Về việc ban hành quy chế làm việc",
            "signer": {"competence": "TM. UBND", "position": "Chủ tịch", "full_name": "Nguyễn Văn An"},
            "place": "Tây Ninh", "to_places": ["Như trên", "Lưu: VT"], **extra}


def sign_in(client: Any, username: str, password: str) -> None:
    resp = client.post("/v1/session", json={"username": username, "password": password})
    assert resp.status_code == 200, resp.json
