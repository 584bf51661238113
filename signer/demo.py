"""Demo data for the run command (``signer demo``, idempotent): a leader and a clerk with signing
credentials (built-in CA), signature and seal images, app keys enrolled on reference phones, and a
document system's API key, so that a request can go from curl to approval to signed PDF.

Secrets land in ``state/secrets/`` (mode 0600): the people's passwords, the app keys' PIN and the
API key; the phones' homes (private key and profile) in ``state/demo/``. Never for production.
"""

from __future__ import annotations

import functools
import io
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image, ImageDraw
from sqlalchemy import select

import hsm
from signer import credentials, directory
from signer.devices.enrolment import register_app_key_for
from signer.models import Credential, CredentialKind, Role, User
from signer.pki.service import certify_credential, init_builtin
from signer.principal import SYSTEM
from signer.services import Services
from signer.signing.models import PkiAuthority

LEADER, CLERK, RA = "demo-leader", "demo-clerk", "demo-ra"
# The RA officer asks for certificate changes (signer cert request ... --as demo-ra); `admin` approves.
PEOPLE = {LEADER: ("Nguyễn Văn An", Role.LEADER), CLERK: ("Trần Thị Bình", Role.CLERK),
          RA: ("Lê Văn Cường", Role.RA_OFFICER)}
KEY_SPEC = "ec-p256"


@dataclass(frozen=True)
class Demo:
    api_key_file: Path
    leader_credential: str
    seal_credential: str
    phones: dict[str, Path]  # username -> phone home
    pin_file: Path
    password_files: dict[str, Path]


def _secret(folder: Path, name: str, make: str) -> Path:
    """A secret file, created once (mode 0600) and kept on later runs."""
    path = folder / name
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make)
    return path


@functools.cache
def signature_png() -> bytes:
    """A transparent PNG of a blue signature stroke (demo data and tests)."""
    img = Image.new("RGBA", (600, 240), (0, 0, 0, 0))
    ImageDraw.Draw(img).line([(40, 180), (160, 60), (230, 170), (330, 70), (420, 160), (560, 90)],
                             fill=(20, 40, 200, 255), width=9)
    return _encode(img)


@functools.cache
def seal_png() -> bytes:
    """A transparent PNG of a red round seal (demo data and tests)."""
    img = Image.new("RGBA", (400, 400), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.ellipse([10, 10, 390, 390], outline=(210, 20, 20, 255), width=14)
    draw.ellipse([70, 70, 330, 330], outline=(210, 20, 20, 255), width=6)
    draw.regular_polygon((200, 200, 60), 5, fill=(210, 20, 20, 255))
    return _encode(img)


def _encode(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _credential(services: Services, token: hsm.Hsm, *, kind: CredentialKind, name: str, organisation_id: str,
                owner: str | None, image: str) -> str:
    with services.db.session() as s:
        found = s.scalar(select(Credential.id).where(Credential.name == name,
                                                     Credential.organisation_id == organisation_id))
        if found is not None:
            return found
    key = token.generate_key(f"demo-{secrets.token_hex(6)}", hsm.KeySpec.parse(KEY_SPEC))
    with services.db.session() as s:
        cred = credentials.register_key(s, SYSTEM, name=name, kind=kind, organisation_id=organisation_id,
                                        owner_user_id=owner, key=key, key_spec=KEY_SPEC)
        certify_credential(s, token, SYSTEM, cred, base_url=services.settings.public_url)
        png = signature_png() if image == "signature" else seal_png()
        credentials.set_image(s, services.blobs, SYSTEM, cred.id, image, png)
        return cred.id


def _phone(services: Services, home: Path, user: User, pin: str, server: str) -> None:
    """An enrolled app key in a reference phone's home (see signer.phone), once."""
    if (home / "profile.json").exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with services.db.session() as s:
        device = register_app_key_for(s, SYSTEM, services.pin_hasher, user_id=user.id,
                                      name="Điện thoại (demo)", public_key_der=der, pin=pin)
        device_id = device.id
    from signer.phone import Home

    Home(home).save(key, server=server, device_id=device_id, username=user.username)


def create(services: Services, organisation_code: str, server: str) -> Demo:
    """Everything the walk-through needs; a second run changes nothing."""
    state = services.settings.state_dir
    folder = state / "secrets"
    pin_file = _secret(folder, "demo-pin", f"{secrets.randbelow(10**6):06d}")
    passwords = {u: _secret(folder, f"{u}-password", secrets.token_urlsafe(15)) for u in PEOPLE}
    token = services.hsm()
    with services.db.session() as s:
        org = directory.find_organisation_by_code(s, organisation_code)
        org_id, org_name = org.id, org.name
        if s.scalar(select(PkiAuthority.id).limit(1)) is None:
            init_builtin(s, token, SYSTEM, base_url=services.settings.public_url, organisation=org_name,
                         spec="ec-p256")
        users: dict[str, User] = {}
        for username, (full_name, role) in PEOPLE.items():
            user = s.scalar(select(User).where(User.username == username))
            if user is None:
                user = directory.create_user(s, services.passwords, SYSTEM, username=username, full_name=full_name,
                                             organisation_id=org_id, roles={role},
                                             password=passwords[username].read_text())
            users[username] = user
        api_key_file = folder / "demo-api-key"
        if not api_key_file.exists():
            client = directory.create_api_client(s, SYSTEM, name="Hệ thống quản lý văn bản (demo)",
                                                 organisation_id=org_id, scopes={"sign", "verify", "read"})
            _secret(folder, "demo-api-key", client.key.token)
    leader = _credential(services, token, kind=CredentialKind.PERSONAL, name="Chữ ký số lãnh đạo (demo)",
                         organisation_id=org_id, owner=users[LEADER].id, image="signature")
    seal = _credential(services, token, kind=CredentialKind.ORGANISATION, name=f"Con dấu số {org_name} (demo)",
                       organisation_id=org_id, owner=None, image="seal")
    pin = pin_file.read_text()
    phones = {u: state / "demo" / f"phone-{u}" for u in (LEADER, CLERK)}
    for username, home in phones.items():
        _phone(services, home, users[username], pin, server)
    return Demo(api_key_file, leader, seal, phones, pin_file, passwords)
