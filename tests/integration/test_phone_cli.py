"""`signer phone` against the real app served over HTTP: enrol, log in, list, approve, refuse, and
refuse to sign for a server whose challenge is not the one the phone computes."""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from werkzeug.serving import make_server

import hsm
from signer.cli import main
from signer.services import Services
from signer.workers import run_hsm_worker
from tests.conftest import World
from tests.signing_support import SigningWorld, make_signing_world
from tests.support import free_port

# The reference phone client (a CLI) and its own checks; the server-side outcomes it triggers are
# covered on both backends by test_sign_requests.py and test_devices.py.
pytestmark = pytest.mark.one_db

PIN = "135790"
Tamper = Callable[[dict[str, Any]], None]


@dataclass
class Served:
    url: str
    tamper: Tamper | None = None  # rewrites the holder's view of one sign request, like a lying server
    seen: list[str] = field(default_factory=list)


@pytest.fixture
def served(app: Any) -> Iterator[Served]:
    """The app on a real loopback port, with an optional tampering layer in front of it."""
    inner = app.wsgi_app
    box = Served("")

    def wsgi(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD")
        box.seen.append(f"{method} {path}")
        if box.tamper is None or method != "GET" or not path.startswith("/v1/sign-requests/") or "/mine/" in path:
            return inner(environ, start_response)  # type: ignore[no-any-return]
        captured: list[Any] = []
        body = b"".join(inner(environ, lambda status, headers, *_: captured.extend([status, headers])))
        view = json.loads(body)
        box.tamper(view)
        body = json.dumps(view).encode()
        headers = [(k, v) for k, v in captured[1] if k.lower() != "content-length"]
        start_response(captured[0], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    app.wsgi_app = wsgi
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    box.url = f"http://127.0.0.1:{server.server_port}"
    yield box
    server.shutdown()
    server.server_close()


@dataclass
class Phone:
    home: Path
    pin_file: Path
    device_id: str

    def run(self, *args: str, ok: bool = True, input: str | None = None) -> Result:
        result = CliRunner().invoke(main, ["phone", "--home", str(self.home), *args], input=input)
        assert (result.exit_code == 0) == ok, result.output
        return result


def _as(client: Any, world: World, username: str, method: str, path: str, **kw: Any) -> Any:
    client.post("/v1/session", json={"username": username, "password": world.password})
    try:
        return client.open(path, method=method, **kw)
    finally:
        client.delete("/v1/session")


@pytest.fixture
def sw(services: Services, world: World, token: hsm.Hsm) -> SigningWorld:
    return make_signing_world(services, world, token, "ec-p256")


@pytest.fixture
def phone(client: Any, sw: SigningWorld, served: Served, tmp_path: Path) -> Phone:
    """The leader's phone: enrolled with a link from the RA officer, approved by an admin, signed in."""
    world = sw.world
    link = _as(client, world, "office-ra", "POST", "/v1/admin/enrolments",
               json={"user_id": world.users["office-leader"], "kind": "app_key"})
    assert link.status_code == 201, link.json
    home, pin_file, password_file = tmp_path / "phone", tmp_path / "pin", tmp_path / "password"
    pin_file.write_text(PIN + "\n")
    password_file.write_text(world.password + "\n")
    out = CliRunner().invoke(main, ["phone", "--home", str(home), "enrol", link.json["url"], "--server", served.url,
                                    "--name", "Điện thoại thử", "--pin-file", str(pin_file)])
    assert out.exit_code == 0, out.output
    profile = json.loads((home / "profile.json").read_text())
    assert profile["server"] == served.url and profile["username"] == "office-leader"
    assert profile["device_id"] in out.output and "admin" in out.output
    approved = _as(client, world, "office-admin", "POST", f"/v1/devices/{profile['device_id']}/approve")
    assert approved.status_code == 200 and approved.json["status"] == "active", approved.json
    p = Phone(home, pin_file, profile["device_id"])
    p.run("login", "--username", "office-leader", "--password-file", str(password_file))
    return p


def _sign_request(client: Any, sw: SigningWorld, name: str = "Tờ trình") -> dict[str, Any]:
    resp = client.post("/v1/sign-requests", json={"credential_id": sw.leader_credential,
                                                  "documents": [{"name": name, "format": "raw", "hash": "ab" * 32}]},
                       headers={"Authorization": f"Bearer {sw.world.api_key}"})
    assert resp.status_code == 202, resp.json
    return dict(resp.json)


def _dms_view(client: Any, sw: SigningWorld, request_id: str) -> dict[str, Any]:
    resp = client.get(f"/v1/sign-requests/{request_id}", headers={"Authorization": f"Bearer {sw.world.api_key}"})
    return dict(resp.json)


def _wrong_code(req: dict[str, Any], pending: list[dict[str, Any]]) -> str:
    return str(next(c for c in pending[0]["code_choices"] if c != req["verification_code"]))


def test_enrol_login_approve_and_sign(phone: Phone, client: Any, services: Services, sw: SigningWorld,
                                      served: Served) -> None:
    for name in ("device-key.pem", "profile.json", "session"):
        assert stat.S_IMODE((phone.home / name).stat().st_mode) == 0o600
    assert PIN not in (phone.home / "profile.json").read_text()
    req = _sign_request(client, sw)
    items = json.loads(phone.run("pending", "--json").output)
    assert [r["id"] for r in items] == [req["id"]]
    assert req["verification_code"] in items[0]["code_choices"] and items[0]["verification_code"] is None
    listing = phone.run("pending").output
    assert req["id"] in listing and "Tờ trình" in listing
    out = phone.run("approve", req["id"], "--code", req["verification_code"], "--pin-file", str(phone.pin_file))
    assert "approved" in out.output and PIN not in out.output
    run_hsm_worker(services, burst=True)
    done = _dms_view(client, sw, req["id"])
    assert done["state"] == "COMPLETED" and done["result"] == "OK", done
    assert f"POST /v1/sign-requests/{req['id']}/approval" in served.seen


def test_wrong_pin_approves_nothing(phone: Phone, client: Any, sw: SigningWorld) -> None:
    req = _sign_request(client, sw)
    out = phone.run("approve", req["id"], "--code", req["verification_code"], input="000000\n", ok=False)
    assert "wrong PIN" in out.output and "000000" not in out.output
    assert _dms_view(client, sw, req["id"])["state"] == "AWAITING_APPROVAL"
    # The right PIN still works: a wrong one only counts towards the lock.
    phone.run("approve", req["id"], "--code", req["verification_code"], "--pin-file", str(phone.pin_file))
    assert _dms_view(client, sw, req["id"])["state"] != "AWAITING_APPROVAL"


def test_code_outside_the_choices_is_refused_locally(phone: Phone, client: Any, sw: SigningWorld,
                                                     served: Served) -> None:
    req = _sign_request(client, sw)
    choices = json.loads(phone.run("pending", "--json").output)[0]["code_choices"]
    outside = next(f"{n:04d}" for n in range(10000) if f"{n:04d}" not in choices)
    out = phone.run("approve", req["id"], "--code", outside, "--pin-file", str(phone.pin_file), ok=False)
    assert "not one of" in out.output
    assert _dms_view(client, sw, req["id"])["state"] == "AWAITING_APPROVAL"
    assert not any(s.endswith("/approval") for s in served.seen)


def test_wrong_choice_ends_the_request(phone: Phone, client: Any, sw: SigningWorld) -> None:
    req = _sign_request(client, sw)
    wrong = _wrong_code(req, json.loads(phone.run("pending", "--json").output))
    out = phone.run("approve", req["id"], "--code", wrong, "--pin-file", str(phone.pin_file), ok=False)
    assert "WRONG_VC" in out.output
    view = _dms_view(client, sw, req["id"])
    assert view["state"] == "REJECTED" and view["result"] == "WRONG_VC", view


def test_refuse(phone: Phone, client: Any, sw: SigningWorld) -> None:
    req = _sign_request(client, sw)
    out = phone.run("refuse", req["id"], "--reason", "Chưa đúng thể thức")
    assert "USER_REFUSED" in out.output
    view = _dms_view(client, sw, req["id"])
    assert view["state"] == "REJECTED" and view["result"] == "USER_REFUSED", view
    assert json.loads(phone.run("pending", "--json").output) == []


@pytest.mark.parametrize("lie", ["other-documents", "other-challenge"])
def test_a_lying_server_gets_no_signature(phone: Phone, client: Any, sw: SigningWorld, served: Served,
                                          lie: str) -> None:
    req = _sign_request(client, sw)

    def tamper(view: dict[str, Any]) -> None:
        if lie == "other-documents":  # shows the holder a document other than the one to be signed
            view["documents"][0]["dtbsr"] = "cd" * 32
        else:  # asks the phone to sign a challenge for something else
            view["challenge"] = "ef" * 32

    served.tamper = tamper
    out = phone.run("approve", req["id"], "--code", req["verification_code"], "--pin-file", str(phone.pin_file),
                    ok=False)
    assert "does not match" in out.output
    assert not any(s.endswith("/approval") for s in served.seen)
    assert _dms_view(client, sw, req["id"])["state"] == "AWAITING_APPROVAL"


def test_enrol_rejects_what_is_not_a_link(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["phone", "--home", str(tmp_path), "enrol", "https://example.test/x"])
    assert out.exit_code == 1 and "not an enrolment token" in out.output
    assert not (tmp_path / "profile.json").exists()
