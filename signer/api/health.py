"""``/healthz`` (the process answers) and ``/readyz`` (database, Redis, a live hsm worker)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from signer import heartbeat
from signer.http.auth import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    svc = services()
    checks: dict[str, Any] = {}
    try:
        with svc.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = {"ok": True}
    except Exception as exc:
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    try:
        svc.redis.ping()
        checks["redis"] = {"ok": True}
        workers = heartbeat.alive(svc, "hsm")
        checks["hsm_worker"] = {"ok": bool(workers), "alive": len(workers)}
    except Exception as exc:
        checks["redis"] = {"ok": False, "error": type(exc).__name__}
        checks["hsm_worker"] = {"ok": False, "error": "redis unavailable"}
    ready = all(c["ok"] for c in checks.values())
    return jsonify(status="ready" if ready else "not-ready", checks=checks), 200 if ready else 503
