"""``signer phone``: a reference phone for key holders, speaking only the service's public API.

It holds an app key (ECDSA P-256) in a home folder, and approves a sign request the way a real
phone must: it recomputes the challenge from what it shows and never signs the server's word for
it, and it only sends a verification code that is among the three choices offered.
Used by tests, benchmarks and the demo. PINs, passwords and the private key are never printed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from signer.signing.challenge import compute as compute_challenge

COOKIE = "signer_session"
PROBLEM = "urn:signer:problem:"
_PIN = re.compile(r"^\d{6,12}$")


class PhoneError(click.ClickException):
    """A one-line failure: click prints it to stderr and exits with status 1."""


# -- the home folder -------------------------------------------------------------------------------


class Home:
    """Profile (server, device, username), private key and session cookie, all private to the user."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, name: str, data: bytes) -> None:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # O_CREAT's mode does not apply to an existing file
            f.write(data)

    def read(self, name: str) -> bytes:
        try:
            return (self.path / name).read_bytes()
        except FileNotFoundError:
            raise PhoneError(f"no {name} in {self.path}: run `signer phone enrol` (and `login`) first") from None

    def profile(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.read("profile.json"))
        return data

    def save(self, key: ec.EllipticCurvePrivateKey, *, server: str, device_id: str, username: str) -> None:
        """Keep an enrolled app key and the profile naming its device (``enrol``, ``signer demo``)."""
        self.write("device-key.pem", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
        self.write("profile.json", json.dumps({"server": server, "device_id": device_id, "username": username},
                                              indent=2).encode())

    def key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.read("device-key.pem"), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def api(self) -> Api:
        cookie = (self.path / "session").read_text().strip() if (self.path / "session").exists() else None
        return Api(self.profile()["server"], cookie, self)


# -- HTTP ------------------------------------------------------------------------------------------


class Api:
    """JSON over HTTP(S) with the session cookie; problem+json answers become PhoneError."""

    def __init__(self, server: str, cookie: str | None = None, home: Home | None = None) -> None:
        if urllib.parse.urlsplit(server).scheme not in ("http", "https"):
            raise PhoneError(f"the server must be an http(s) URL, not {server!r}")
        self.server, self.cookie, self.home = server.rstrip("/"), cookie, home

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        url = self.server + path
        req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) checked in __init__
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.cookie:
            req.add_header("Cookie", f"{COOKIE}={self.cookie}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - http(s) checked in __init__
                self._keep_cookie(resp.headers.get_all("Set-Cookie") or [])
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise PhoneError(_problem(exc)) from None
        except OSError as exc:
            raise PhoneError(f"cannot reach {self.server}: {exc}") from None
        return json.loads(raw) if raw else None

    def _keep_cookie(self, headers: list[str]) -> None:
        # Flask re-issues the session cookie on each answer; keep the newest one.
        for header in headers:
            morsel = SimpleCookie(header).get(COOKIE)
            if morsel is not None:
                self.cookie = morsel.value
                if self.home is not None:
                    self.home.write("session", self.cookie.encode())


def _problem(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read())
        slug = str(body.get("type", "")).removeprefix(PROBLEM)
        hint = "; run `signer phone login`" if exc.code == 401 else ""
        return f"{body.get('detail') or body.get('title')} ({slug}, HTTP {exc.code}){hint}"
    except ValueError:
        return f"HTTP {exc.code} {exc.reason}"


# -- secrets from files or hidden prompts ------------------------------------------------------------


def _secret(file: Path | None, prompt: str, confirm: bool = False) -> str:
    if file is not None:
        lines = file.read_text().splitlines()
        return lines[0].strip() if lines else ""
    value: str = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return value


def _pin(file: Path | None, confirm: bool = False) -> str:
    pin = _secret(file, "PIN", confirm)
    if not _PIN.match(pin):
        raise PhoneError("the PIN must be 6 to 12 digits")
    return pin


def _token(token_or_url: str) -> str:
    token = token_or_url.rstrip("/").rsplit("/", 1)[-1]
    if not token.startswith("enr_"):
        raise PhoneError("that is not an enrolment token or link (it should end in enr_...)")
    return token


# -- the commands ----------------------------------------------------------------------------------

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group()
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), envvar="SIGNER_PHONE_HOME",
              help="Folder holding this phone's key, profile and session [default: $SIGNER_PHONE_HOME or "
                   "~/.signer-phone].")
@click.pass_context
def phone(ctx: click.Context, home: Path | None) -> None:
    """A reference phone for key holders: enrol an app key, then approve or refuse sign requests."""
    ctx.obj = Home(home or Path("~/.signer-phone").expanduser())


@phone.command()
@click.argument("token_or_url")
@click.option("--server", help="The service's base URL (default: the origin of the link).")
@click.option("--name", default="signer phone", show_default=True, help="Device name shown to admins.")
@click.option("--pin-file", type=_FILE, help="Read the new PIN from this file instead of asking.")
@click.pass_obj
def enrol(home: Home, token_or_url: str, server: str | None, name: str, pin_file: Path | None) -> None:
    """Register a new app key with an enrolment link; an admin approves it next."""
    token = _token(token_or_url)
    origin = urllib.parse.urlsplit(token_or_url)
    server = server or (f"{origin.scheme}://{origin.netloc}" if origin.netloc else None)
    if server is None:
        raise PhoneError("give --server with a bare token")
    api = Api(server)
    info = api.call("GET", f"/v1/enrolments/{token}")
    click.echo(f"enrolling an app key for {info['user']} ({info['username']})")
    pin = _pin(pin_file, confirm=True)
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    device = api.call("POST", f"/v1/enrolments/{token}/app-key",
                      {"name": name, "public_key": base64.b64encode(der).decode(), "pin": pin})
    # Saved only once the service has accepted the key, so a failed enrolment leaves the old one.
    home.save(key, server=api.server, device_id=device["id"], username=info["username"])
    click.echo(f"device {device['id']} enrolled for {info['username']} ({device['status']}); "
               "an admin must approve it before it can approve requests")


@phone.command()
@click.option("--username", help="Default: the enrolled holder.")
@click.option("--password-file", type=_FILE, help="Read the password from this file instead of asking.")
@click.pass_obj
def login(home: Home, username: str | None, password_file: Path | None) -> None:
    """Sign in and keep the session cookie in the home folder."""
    username = username or home.profile()["username"]
    api = Api(home.profile()["server"], home=home)
    api.call("POST", "/v1/session", {"username": username, "password": _secret(password_file, "Password")})
    if api.cookie is None:
        raise PhoneError("the service answered without a session cookie")
    click.echo(f"signed in as {username}")


@phone.command()
@click.option("--json", "as_json", is_flag=True, help="Print the service's JSON.")
@click.pass_obj
def pending(home: Home, as_json: bool) -> None:
    """List the sign requests waiting for your decision."""
    items = home.api().call("GET", "/v1/sign-requests/mine/pending")["items"]
    if as_json:
        click.echo(json.dumps(items, indent=2, ensure_ascii=False))
        return
    if not items:
        click.echo("nothing to approve")
    for r in items:
        names = ", ".join(d["name"] for d in r["documents"][:3]) + (", ..." if len(r["documents"]) > 3 else "")
        click.echo(f"{r['id']}  expires {r['expires_at']}  {len(r['documents'])} document(s): {names}  "
                   f"codes: {' / '.join(r['code_choices'] or [])}")


def _checked_challenge(view: dict[str, Any]) -> bytes:
    """The challenge rebuilt from what the phone shows; a server asking for anything else is lying."""
    expected = compute_challenge(view["id"], view["credential_id"], datetime.fromisoformat(view["expires_at"]),
                                 [d["dtbsr"] for d in view["documents"]])
    if expected.hex() != view["challenge"]:
        raise PhoneError("the server's challenge does not match the request's documents: not signing")
    return expected


@phone.command()
@click.argument("request_id")
@click.option("--code", required=True, help="The verification code shown by the document system.")
@click.option("--pin-file", type=_FILE, help="Read the PIN from this file instead of asking.")
@click.pass_obj
def approve(home: Home, request_id: str, code: str, pin_file: Path | None) -> None:
    """Approve a sign request with this phone's key and PIN."""
    api, profile = home.api(), home.profile()
    view = api.call("GET", f"/v1/sign-requests/{request_id}")
    if view["state"] != "AWAITING_APPROVAL":
        raise PhoneError(f"the request is {view['state']}, not awaiting approval")
    challenge = _checked_challenge(view)
    choices = view["code_choices"] or []
    if code not in choices:
        raise PhoneError(f"code {code} is not one of {', '.join(choices)}: check the code the document "
                         "system shows (nothing was sent)")
    pin = _pin(pin_file)
    signature = home.key().sign(challenge, ec.ECDSA(hashes.SHA256()))
    out = api.call("POST", f"/v1/sign-requests/{request_id}/approval", {
        "device_id": profile["device_id"], "challenge": challenge.hex(), "verification_code": code,
        "signature": base64.b64encode(signature).decode(), "pin": pin})
    # A wrong pick is accepted by the service but ends the request (WRONG_VC): that is a failure here.
    if out["state"] not in ("SIGNING", "COMPLETED"):
        raise PhoneError(f"request {request_id} ended {out['state']} ({out['result']}): nothing will be signed")
    click.echo(f"approved {len(view['documents'])} document(s); request {request_id} is {out['state']}")


@phone.command()
@click.argument("request_id")
@click.option("--reason", help="Why, for the document system.")
@click.pass_obj
def refuse(home: Home, request_id: str, reason: str | None) -> None:
    """Refuse a sign request."""
    out = home.api().call("POST", f"/v1/sign-requests/{request_id}/refusal", {"reason": reason} if reason else {})
    click.echo(f"refused; request {request_id} is {out['state']} ({out['result']})")
