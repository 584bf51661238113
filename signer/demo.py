"""Demo data for the run command (``signer demo``, idempotent): a leader and a clerk with signing
credentials (built-in CA), signature and seal images, app keys enrolled on reference phones, and a
document system's API key, so that a request can go from curl to approval to signed PDF.

For the exchange (``signer demo exchange``, :mod:`signer.demo_exchange`): a second organisation
(``PARTNER_CODE``, below the first when its code allows) with its own clerk, the API key's
``exchange`` scope, and both organisations on the local axis (``state/axis/systems.json`` and their
axis accounts), unless ``SIGNER_AXIS_URL`` points at a real axis.

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
from sqlalchemy.orm import Session

import hsm
from exchange import organ_id
from exchange.axis import config as axis_config
from signer import audit, credentials, directory
from signer.devices.enrolment import register_app_key_for
from signer.errors import InvalidInput
from signer.interchange.models import AxisAccount
from signer.models import ApiClient, Credential, CredentialKind, Organisation, Role, User
from signer.pki.service import certify_credential, init_builtin
from signer.principal import SYSTEM
from signer.security import parse_api_key
from signer.services import Services
from signer.signing.models import PkiAuthority

LEADER, CLERK, RA = "demo-leader", "demo-clerk", "demo-ra"
# The RA officer asks for certificate changes (signer cert request ... --as demo-ra); `admin` approves.
PEOPLE = {LEADER: ("Nguyễn Văn An", Role.LEADER), CLERK: ("Trần Thị Bình", Role.CLERK),
          RA: ("Lê Văn Cường", Role.RA_OFFICER)}
KEY_SPEC = "ec-p256"
LEADER_CREDENTIAL = "Chữ ký số lãnh đạo (demo)"
API_CLIENT = "Hệ thống quản lý văn bản (demo)"
API_SCOPES = frozenset({"sign", "verify", "read", "exchange"})
# The organisation the demo sends to over the axis: a child of `signer init`'s 000.00.00.H53.
PARTNER_CODE, PARTNER_NAME = "000.00.02.H53", "Sở Tài chính (mẫu)"
PARTNER_CLERK, PARTNER_CLERK_NAME = "demo-partner-clerk", "Phạm Thị Dung"


@dataclass(frozen=True)
class Demo:
    api_key_file: Path
    leader_credential: str
    seal_credential: str
    phones: dict[str, Path]  # username -> phone home
    pin_file: Path
    password_files: dict[str, Path]
    partner_code: str
    axis_config: Path | None  # None when SIGNER_AXIS_URL names a real axis (nothing registered)


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


def _partner(s: Session, code: str, name: str) -> Organisation:
    """The second organisation, once: below the nearest existing ancestor of its code, if any."""
    org = s.scalar(select(Organisation).where(Organisation.code == code))
    if org is not None:
        return org
    try:
        organ_id.validate(code)
    except organ_id.InvalidOrganId as exc:
        raise InvalidInput(str(exc), field="partner_code") from None
    parent = next((p for p in (s.scalar(select(Organisation).where(Organisation.code == a))
                               for a in organ_id.ancestors(code)) if p is not None), None)
    return directory.create_organisation(s, SYSTEM, code=code, name=name, parent_id=parent.id if parent else None)


def _api_key(s: Session, folder: Path, org_id: str) -> Path:
    """The document system's key, once; an older demo key (without ``exchange``) gains the scope."""
    path = folder / "demo-api-key"
    if not path.exists():
        client = directory.create_api_client(s, SYSTEM, name=API_CLIENT, organisation_id=org_id,
                                             scopes=set(API_SCOPES))
        return _secret(folder, "demo-api-key", client.key.token)
    parsed = parse_api_key(path.read_text().strip())
    found = s.scalar(select(ApiClient).where(ApiClient.key_id == parsed[0])) if parsed else None
    if found is not None and not found.scope_set >= API_SCOPES:
        scopes = sorted(found.scope_set | API_SCOPES)
        found.scopes = " ".join(scopes)
        audit.record(s, actor=SYSTEM.ref, action="api_client.scopes", target=f"api_client:{found.id}",
                     organisation_id=found.organisation_id, detail={"scopes": scopes, "by": "signer demo"})
    return path


def _on_local_axis(services: Services, organisation_ids: list[str]) -> Path | None:
    """Both organisations on the local axis (one system id each), unless they already are or have an
    account elsewhere; registering rewrites systems.json, which the running local axis reloads."""
    from signer.interchange import local_axis  # Flask: only when registering

    if services.settings.axis_url is not None:
        return None  # a real axis: the demo never registers anything there
    path = local_axis.config_path(services.settings)
    config = axis_config.load(path) if path.exists() else axis_config.AxisConfig()
    for org_id in organisation_ids:
        with services.db.session() as s:
            org = s.get(Organisation, org_id)
            account = s.get(AxisAccount, org_id)
            assert org is not None
            listed = account is not None and any(entry.system_id == account.system_id and entry.owns(org.code)
                                                 for entry in config.systems)
            elsewhere = account is not None and account.endpoint is not None
            s.expunge(org)
        if not listed and not elsewhere:
            local_axis.register(services, [org])
    return path


def create(services: Services, organisation_code: str, server: str, partner_code: str = PARTNER_CODE) -> Demo:
    """Everything the walk-throughs need; a second run changes nothing."""
    state = services.settings.state_dir
    folder = state / "secrets"
    pin_file = _secret(folder, "demo-pin", f"{secrets.randbelow(10**6):06d}")
    people = {**PEOPLE, PARTNER_CLERK: (PARTNER_CLERK_NAME, Role.CLERK)}
    passwords = {u: _secret(folder, f"{u}-password", secrets.token_urlsafe(15)) for u in people}
    token = services.hsm()
    with services.db.session() as s:
        org = directory.find_organisation_by_code(s, organisation_code)
        org_id, org_name = org.id, org.name
        if partner_code == organisation_code:
            raise InvalidInput("the partner organisation must differ from the demo organisation",
                               field="partner_code")
        partner_id = _partner(s, partner_code, PARTNER_NAME).id
        if s.scalar(select(PkiAuthority.id).limit(1)) is None:
            init_builtin(s, token, SYSTEM, base_url=services.settings.public_url, organisation=org_name,
                         spec="ec-p256")
        users: dict[str, User] = {}
        for username, (full_name, role) in people.items():
            user = s.scalar(select(User).where(User.username == username))
            if user is None:
                user = directory.create_user(s, services.passwords, SYSTEM, username=username, full_name=full_name,
                                             organisation_id=partner_id if username == PARTNER_CLERK else org_id,
                                             roles={role}, password=passwords[username].read_text())
            users[username] = user
        api_key_file = _api_key(s, folder, org_id)
    leader = _credential(services, token, kind=CredentialKind.PERSONAL, name=LEADER_CREDENTIAL,
                         organisation_id=org_id, owner=users[LEADER].id, image="signature")
    seal = _credential(services, token, kind=CredentialKind.ORGANISATION, name=f"Con dấu số {org_name} (demo)",
                       organisation_id=org_id, owner=None, image="seal")
    pin = pin_file.read_text()
    phones = {u: state / "demo" / f"phone-{u}" for u in (LEADER, CLERK)}
    for username, home in phones.items():
        _phone(services, home, users[username], pin, server)
    axis = _on_local_axis(services, [org_id, partner_id])
    return Demo(api_key_file, leader, seal, phones, pin_file, passwords, partner_code, axis)
