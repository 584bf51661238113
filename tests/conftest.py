"""Fixtures: everything real. A private SoftHSM2 configuration (set before the PKCS#11 module is
loaded), a private Redis, migrated SQLite and PostgreSQL databases (a fresh copy per test)."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

import hsm
from signer import migrate
from signer.app import create_app
from signer.db import make_engine
from signer.models import Role
from signer.services import Services
from signer.settings import Settings
from tests.live import Served, serve
from tests.support import RedisServer, SoftHsm, free_port, make_softhsm

_SOFTHSM: SoftHsm | None = None
_SOFTHSM_DIR: str | None = None
TOKEN = "test-main"


def pytest_configure(config: pytest.Config) -> None:
    # SoftHSM2 reads SOFTHSM2_CONF once, when the module is initialised: point it at a private
    # folder before any test can load the library, so the suite never touches a real token.
    global _SOFTHSM, _SOFTHSM_DIR
    _SOFTHSM_DIR = tempfile.mkdtemp(prefix="signer-softhsm-")
    _SOFTHSM = make_softhsm(Path(_SOFTHSM_DIR))
    os.environ["SOFTHSM2_CONF"] = str(_SOFTHSM.conf)
    _SOFTHSM.create_token(TOKEN)


@pytest.hookimpl(trylast=True)  # after pytest has grouped the items by their session fixtures
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # `one_db` (per test, class or module): the behaviour under test does not depend on the
    # database backend, so the PostgreSQL instance is deselected, never skipped, and the test runs
    # once, on SQLite. Transactions, locking, concurrency, migrations, sessions, constraints,
    # sweepers, leases and dialect-sensitive queries stay unmarked: they run on both.
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if (callspec is not None and callspec.params.get("db_template") == "postgresql"
                and item.get_closest_marker("one_db") is not None):
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    # Tests without a database first (the order among them, and among the others, is kept). Every
    # database test leaves its keys on the shared token, and the token tests' look-ups, module
    # restarts and child processes cost O(keys): run last, test_hsm_processes/test_hsm_sessions
    # took 34 s instead of 19 s on a quiet machine, and 520 s on a busy one (one hit the timeout).
    items[:] = ([item for item in keep if "db_template" not in getattr(item, "fixturenames", ())]
                + [item for item in keep if "db_template" in getattr(item, "fixturenames", ())])


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SOFTHSM_DIR:
        shutil.rmtree(_SOFTHSM_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def softhsm() -> SoftHsm:
    assert _SOFTHSM is not None
    return _SOFTHSM


@pytest.fixture(scope="session")
def hsm_config(softhsm: SoftHsm) -> hsm.HsmConfig:
    return hsm.HsmConfig(softhsm.module, TOKEN, softhsm.pin)


@pytest.fixture(scope="session")
def token(hsm_config: hsm.HsmConfig) -> hsm.Hsm:
    return hsm.Hsm(hsm_config)


@pytest.fixture(scope="session")
def rsa_key(token: hsm.Hsm) -> hsm.KeyInfo:
    return token.generate_key("fixture-rsa-2048", hsm.KeySpec.parse("rsa-2048"))


@pytest.fixture(scope="session")
def ec_key(token: hsm.Hsm) -> hsm.KeyInfo:
    return token.generate_key("fixture-ec-p256", hsm.KeySpec.parse("ec-p256"))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


# -- databases -----------------------------------------------------------------------------------


@dataclass
class DatabaseTemplate:
    dialect: str
    url: str  # the migrated template


def _postgres_admin_url() -> str:
    url = os.environ.get("SIGNER_TEST_POSTGRES_URL")
    if not url:
        pytest.fail("SIGNER_TEST_POSTGRES_URL is not set: run the suite with scripts/test.sh")
    return url


def _pg_exec(admin_url: str, sql: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_template(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseTemplate]:
    """A database migrated once per backend; each test gets a copy of it."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "template.db"
        url = f"sqlite:///{path}"
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield DatabaseTemplate("sqlite", url)
        return
    admin = _postgres_admin_url()
    name = f"signer_tmpl_{secrets.token_hex(4)}"
    _pg_exec(admin, f"CREATE DATABASE {name}")
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    migrate.upgrade(engine)
    engine.dispose()
    yield DatabaseTemplate("postgresql", url)
    _pg_exec(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database_url(db_template: DatabaseTemplate, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    if db_template.dialect == "sqlite":
        target = tmp_path / "signer.db"
        shutil.copyfile(make_url(db_template.url).database or "", target)
        yield f"sqlite:///{target}"
        return
    admin = _postgres_admin_url()
    template = make_url(db_template.url).database
    name = f"signer_t_{secrets.token_hex(6)}"
    _pg_exec(admin, f"CREATE DATABASE {name} TEMPLATE {template}")
    yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    _pg_exec(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- the service ---------------------------------------------------------------------------------


@pytest.fixture
def settings(database_url: str, redis_server: RedisServer, softhsm: SoftHsm,
             tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    # Tests marked `live` serve the app on a real port (fixture `served`): the URLs the built-in CA
    # writes into certificates (AIA, CRL DP, OCSP) must point there.
    live = {"public_url": f"http://127.0.0.1:{free_port()}"} if request.node.get_closest_marker("live") else {}
    return Settings.build(
        **live,
        state_dir=tmp_path / "state", database_url=database_url, redis_url=redis_server.url,
        secret_key=secrets.token_hex(32), hsm_module=softhsm.module, hsm_token=TOKEN,
        hsm_pin=softhsm.pin, queue_prefix=f"t{secrets.token_hex(6)}",
        # Cheap Argon2 for tests; production uses the RFC 9106 defaults.
        password_time_cost=1, password_memory_kib=64, password_parallelism=1, pin_time_cost=1, pin_memory_kib=64,
        document_time_limit_s=10,
        webhook_allow_private=True,  # the tests' document systems listen on 127.0.0.1
    )


@pytest.fixture
def served(settings: Settings, services: Services) -> Iterator[Served]:
    """The web app listening on the settings' public URL (tests marked ``live``)."""
    with serve(settings, services) as out:
        yield out


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    svc = Services.create(settings)
    yield svc
    svc.close()


@pytest.fixture
def app(settings: Settings, services: Services):  # type: ignore[no-untyped-def]
    app = create_app(settings, services)
    app.testing = True
    return app


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


# -- people and organisations --------------------------------------------------------------------


@dataclass
class World:
    """Two sibling organisations under one parent, people in each role, and API clients."""

    province: str
    office: str
    other: str
    users: dict[str, str]  # username -> id
    password: str
    api_key: str  # a document system of the office, scopes sign/verify/read
    other_api_key: str  # a document system of the other organisation, scopes sign/read
    verify_api_key: str  # a document system of the office with only the verify scope


@pytest.fixture
def world(services: Services) -> World:
    from signer import directory
    from signer.principal import SYSTEM

    password = "mật-khẩu-đủ-dài-123"
    users: dict[str, str] = {}
    with services.db.session() as s:
        province = directory.create_organisation(s, SYSTEM, code="000.00.00.H53",
                                                 name="Ủy ban nhân dân tỉnh Tây Ninh")
        office = directory.create_organisation(s, SYSTEM, code="000.00.01.H53",
                                               name="Văn phòng UBND tỉnh", parent_id=province.id)
        other = directory.create_organisation(s, SYSTEM, code="000.00.02.H53",
                                              name="Sở Tài chính", parent_id=province.id)
        people = [
            ("root-admin", province.id, {Role.ADMIN}),
            ("office-admin", office.id, {Role.ADMIN}),
            ("office-ra", office.id, {Role.RA_OFFICER}),
            ("office-clerk", office.id, {Role.CLERK}),
            ("office-leader", office.id, {Role.LEADER}),
            ("office-auditor", office.id, {Role.AUDITOR}),
            ("other-admin", other.id, {Role.ADMIN}),
        ]
        for username, org_id, roles in people:
            user = directory.create_user(s, services.passwords, SYSTEM, username=username,
                                         full_name=username.replace("-", " ").title(),
                                         organisation_id=org_id, roles=roles, password=password)
            users[username] = user.id
        key = directory.create_api_client(s, SYSTEM, name="DMS văn phòng", organisation_id=office.id,
                                          scopes={"sign", "verify", "read"})
        other_key = directory.create_api_client(s, SYSTEM, name="DMS sở", organisation_id=other.id,
                                                scopes={"sign", "read"})
        verify_key = directory.create_api_client(s, SYSTEM, name="Cổng kiểm tra chữ ký",
                                                 organisation_id=office.id, scopes={"verify"})
        return World(province.id, office.id, other.id, users, password, key.key.token,
                     other_key.key.token, verify_key.key.token)
