"""One typed settings object, read from the environment and validated at start.

Secrets (HSM PIN, Flask secret key) come from ``NAME`` or from a file named by ``NAME_FILE``,
never from committed configuration. The web tier runs without the HSM PIN.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator


class SettingsError(Exception):
    """The configuration is incomplete or inconsistent; the message lists every problem."""


class Settings(BaseModel):
    """Everything the service reads from its environment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    state_dir: Path = Path("state")
    database_url: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    secret_key: SecretStr = SecretStr("")
    bind: str = "127.0.0.1:8000"
    public_url: str = "http://127.0.0.1:8000"  # what certificates' AIA and CRL URLs point at

    hsm_module: str = "/usr/lib/softhsm/libsofthsm2.so"
    hsm_token: str = "signer"  # noqa: S105 - a token label, not a secret
    hsm_pin: SecretStr | None = None

    # RFC 9106's second recommended Argon2id parameters; tests lower them.
    password_time_cost: int = Field(default=3, ge=1)
    password_memory_kib: int = Field(default=65536, ge=8)
    password_parallelism: int = Field(default=4, ge=1)
    # App-key PINs are checked on every approval: OWASP's Argon2id minimum (19 MiB, 2 passes)
    # keeps that near 25 ms; the lock after five wrong PINs is the online guard.
    pin_time_cost: int = Field(default=2, ge=1)
    pin_memory_kib: int = Field(default=19456, ge=8)

    session_lifetime_s: int = Field(default=8 * 3600, ge=60)
    secure_cookies: bool = False
    max_json_bytes: int = Field(default=1 << 20, ge=1024)
    heartbeat_ttl_s: int = Field(default=15, ge=2)
    blob_dir: Path | None = None
    max_document_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    signing_lease_s: int = Field(default=60, ge=1)
    document_time_limit_s: float = Field(default=30.0, gt=0)  # per signing attempt in the hsm worker
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # Callback URLs may point at private, loopback or reserved addresses (development, closed
    # networks). Off by default: otherwise any API client could reach the service's own network.
    webhook_allow_private: bool = False
    # Holders' notifications through a gateway (SMS, OTT) besides the phone page's live channel.
    notify_webhook_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    notify_webhook_secret: SecretStr | None = None
    tsa_url: str | None = Field(default=None, pattern=r"^https?://\S+$")  # None: the built-in TSA
    tsa_timeout_s: float = Field(default=10.0, gt=0)
    trust_roots_file: Path | None = None  # PEM bundle of extra trust anchors
    queue_prefix: str = "signer"

    # The national document-exchange axis. None: the local axis (`signer axis serve`) on axis_bind,
    # which the run command starts; production points this at the axis endpoint.
    axis_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    axis_bind: str = "127.0.0.1:8100"
    axis_timeout_s: float = Field(default=30.0, gt=0)
    axis_attempts: int = Field(default=3, ge=1)  # per call, on network errors and 5xx
    axis_backoff_s: float = Field(default=0.5, ge=0)
    axis_poll_interval_s: float = Field(default=10.0, gt=0)
    axis_max_packet_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # Delivery attempts per outbox row before it goes dead (each attempt retries network errors a
    # few times itself); the wait between attempts doubles from exchange_backoff_s.
    exchange_max_attempts: int = Field(default=8, ge=1)
    exchange_backoff_s: float = Field(default=5.0, ge=0)
    exchange_lease_s: int = Field(default=120, ge=1)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value and not value.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @property
    def effective_axis_url(self) -> str:
        """The axis endpoint: the configured one, or the local axis on ``axis_bind``."""
        return (self.axis_url or f"http://{self.axis_bind}").rstrip("/")

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the state folder."""
        url = self.database_url or f"sqlite:///{(self.state_dir / 'signer.db').resolve()}"
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return url

    def require_secret_key(self) -> str:
        key = self.secret_key.get_secret_value()
        if len(key) < 32:
            raise SettingsError("SIGNER_SECRET_KEY (or SIGNER_SECRET_KEY_FILE) must hold >= 32 characters")
        return key

    def require_hsm_pin(self) -> str:
        if self.hsm_pin is None or not self.hsm_pin.get_secret_value():
            raise SettingsError("SIGNER_HSM_PIN (or SIGNER_HSM_PIN_FILE) is required here")
        return self.hsm_pin.get_secret_value()

    @classmethod
    def build(cls, **values: Any) -> Settings:
        """Validate ``values``, raising :class:`SettingsError` with every problem at once."""
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise SettingsError(f"invalid settings: {problems}") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``SIGNER_*`` (and ``DATABASE_URL``, ``REDIS_URL``) variables."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        plain = {
            "state_dir": "SIGNER_STATE_DIR", "database_url": "DATABASE_URL",
            "redis_url": "REDIS_URL", "bind": "SIGNER_BIND", "public_url": "SIGNER_PUBLIC_URL",
            "hsm_module": "SIGNER_HSM_MODULE",
            "hsm_token": "SIGNER_HSM_TOKEN", "password_time_cost": "SIGNER_PASSWORD_TIME_COST",
            "password_memory_kib": "SIGNER_PASSWORD_MEMORY_KIB", "pin_time_cost": "SIGNER_PIN_TIME_COST",
            "pin_memory_kib": "SIGNER_PIN_MEMORY_KIB",
            "session_lifetime_s": "SIGNER_SESSION_LIFETIME_S",
            "secure_cookies": "SIGNER_SECURE_COOKIES", "queue_prefix": "SIGNER_QUEUE_PREFIX",
            "blob_dir": "SIGNER_BLOB_DIR", "max_document_bytes": "SIGNER_MAX_DOCUMENT_BYTES",
            "signing_lease_s": "SIGNER_SIGNING_LEASE_S", "tsa_url": "SIGNER_TSA_URL",
            "document_time_limit_s": "SIGNER_DOCUMENT_TIME_LIMIT_S",
            "trust_roots_file": "SIGNER_TRUST_ROOTS_FILE", "tsa_timeout_s": "SIGNER_TSA_TIMEOUT_S",
            "webhook_timeout_s": "SIGNER_WEBHOOK_TIMEOUT_S", "webhook_allow_private": "SIGNER_WEBHOOK_ALLOW_PRIVATE",
            "notify_webhook_url": "SIGNER_NOTIFY_WEBHOOK_URL",
            "axis_url": "SIGNER_AXIS_URL", "axis_bind": "SIGNER_AXIS_BIND",
            "axis_timeout_s": "SIGNER_AXIS_TIMEOUT_S", "axis_attempts": "SIGNER_AXIS_ATTEMPTS",
            "axis_backoff_s": "SIGNER_AXIS_BACKOFF_S", "axis_poll_interval_s": "SIGNER_AXIS_POLL_INTERVAL_S",
            "axis_max_packet_bytes": "SIGNER_AXIS_MAX_PACKET_BYTES",
            "exchange_max_attempts": "SIGNER_EXCHANGE_MAX_ATTEMPTS", "exchange_backoff_s": "SIGNER_EXCHANGE_BACKOFF_S",
        }
        for field, var in plain.items():
            if env.get(var):
                values[field] = env[var]
        for field, var in {"secret_key": "SIGNER_SECRET_KEY", "hsm_pin": "SIGNER_HSM_PIN",
                           "notify_webhook_secret": "SIGNER_NOTIFY_WEBHOOK_SECRET"}.items():
            secret = _read_secret(env, var)
            if secret is not None:
                values[field] = secret
        values.update(overrides)
        return cls.build(**values)


def _read_secret(env: Mapping[str, str], var: str) -> str | None:
    if env.get(var):
        return env[var]
    path = env.get(f"{var}_FILE")
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingsError(f"{var}_FILE: cannot read {path}: {exc.strerror}") from None
