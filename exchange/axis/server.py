"""The local axis: the national axis's HTTP API (AXIS.md section 4) for development, tests and the demo.

Every operation is a POST authenticated by :func:`exchange.axis.auth.verify` against the systems of
an :class:`~exchange.axis.config.AxisConfig`. Answers are JSON ``{"status": "OK"|"FAIL",
"ErrorCode": "0"|<slug>, "ErrorDesc": ..., ...}``. HTTP statuses: 401 for a call that fails
authentication, 413 for a body over the size limit, 404/405 for an unknown operation or method, 500
for a bug; business errors (unknown recipient, invalid packet, not your packet) answer 200 with
``status: FAIL`` and a non-zero ``ErrorCode``, as the axis does.

The axis appends its own ``TraceHeader`` to document packets. Its trace id defaults to
``00.00.W00``: shaped like the axis system ids seen in real traffic (``00.53.W00``) and never a
strict 4-level code, so it cannot collide with a configured unit.

Times in answers are Vietnam local time, ``yyyy/MM/dd HH:mm:ss`` (the edXML timestamp form).

Run it with ``python -m exchange.axis.server --config axis.json --db axis.sqlite --port 8090``.
"""

from __future__ import annotations

import argparse
import base64
import logging
import urllib.parse
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from exchange.axis import auth
from exchange.axis import config as axis_config
from exchange.axis.config import AxisConfig, SystemAccount
from exchange.axis.store import RECIPIENT_STATUSES, Delivery, Store
from exchange.edxml import parse, with_trace
from exchange.edxml.model import DocumentPacket, Trace
from exchange.errors import PacketError

log = logging.getLogger(__name__)

DEFAULT_ORGAN_ID = "00.00.W00"
DEFAULT_MAX_PACKET_BYTES = 64 * 1024 * 1024
SERVICE_TYPE = "eDoc"
MESSAGE_TYPES = ("edoc", "status")

# The parameters each operation must have signed (beyond timestamp, systemid, Content-Type).
REQUIRED: dict[str, tuple[str, ...]] = {
    "sendEdoc": ("from", "servicetype", "messagetype", "hash-file"),
    "getReceivedEdocList": ("messagetype",),
    "getEdoc": ("docId",),
    "updateStatus": ("docId", "status"),
    "getSentEdocList": ("docId",),
    "getAgenciesList": (),
    "getSynchronizeUnit": (),
}


class Refused(Exception):
    """A business error: answered ``status: FAIL`` with ``code`` as ErrorCode."""

    def __init__(self, code: str, message: str, *, http_status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status


def _ok(**extra: Any) -> Response:
    return jsonify({"status": "OK", "ErrorCode": "0", "ErrorDesc": "", **extra})


def _fail(code: str, desc: str, http_status: int = 200) -> tuple[Response, int]:
    return jsonify({"status": "FAIL", "ErrorCode": code, "ErrorDesc": desc}), http_status


def _local(when: datetime) -> str:
    return when.astimezone(auth.VIETNAM).strftime("%Y/%m/%d %H:%M:%S")


def _now() -> datetime:
    return datetime.now(UTC)


class _Axis:
    """The operations, with the configuration and store they share."""

    def __init__(self, config: AxisConfig, store: Store, organ_id: str, clock: Callable[[], datetime],
                 max_packet_bytes: int, max_skew_s: float) -> None:
        self.config = config
        self.store = store
        self.organ_id = organ_id
        self.clock = clock
        self.max_packet_bytes = max_packet_bytes
        self.max_skew_s = max_skew_s
        self.started = clock()
        self.operations: dict[str, Callable[[auth.VerifiedCall, SystemAccount, datetime], Response]] = {
            "sendEdoc": self.send_edoc, "getReceivedEdocList": self.received_list, "getEdoc": self.get_edoc,
            "updateStatus": self.update_status, "getSentEdocList": self.sent_list,
            "getAgenciesList": self.agencies_list, "getSynchronizeUnit": self.synchronize_unit,
        }

    def dispatch(self, operation: str) -> Response | tuple[Response, int]:
        now = self.clock()
        try:
            call = auth.verify(dict(request.headers.items()), self.config.secret_for, body=None, now=now,
                               max_skew_s=self.max_skew_s, required=REQUIRED[operation])
        except auth.AxisAuthError as exc:
            log.info("axis %s: authentication refused (%s)", operation, exc.error_code)
            return _fail(exc.error_code, str(exc), 401)
        system = self.config.system(call.system_id)
        assert system is not None  # verify() knew its secret
        try:
            return self.operations[operation](call, system, now)
        except Refused as exc:
            log.info("axis %s by %s refused: %s", operation, call.system_id, exc.code)
            return _fail(exc.code, str(exc), exc.http_status)

    # --- sending -----------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        """The body, refused before reading when it is declared (or turns out) larger than the limit."""
        if request.content_length is not None and request.content_length > self.max_packet_bytes:
            raise Refused("too-large", f"the packet exceeds {self.max_packet_bytes} bytes", http_status=413)
        request.max_content_length = self.max_packet_bytes
        try:
            return request.get_data(cache=False)
        except RequestEntityTooLarge:
            raise Refused("too-large", f"the packet exceeds {self.max_packet_bytes} bytes",
                          http_status=413) from None

    def send_edoc(self, call: auth.VerifiedCall, system: SystemAccount, now: datetime) -> Response:
        sender = call.param("from")
        message_type = _message_type(call)
        if not system.owns(sender):
            raise Refused("sender-not-owned", f"system {system.system_id} does not speak for {sender}")
        body = self._read_body()
        try:
            auth.verify_body(call, body)
        except auth.AxisAuthError as exc:
            raise Refused(exc.error_code, str(exc), http_status=401) from None
        try:
            packet = parse(body, max_bytes=self.max_packet_bytes)
        except PacketError as exc:
            raise Refused(exc.code, f"invalid edXML packet: {exc}") from None
        is_document = isinstance(packet, DocumentPacket)
        if is_document != (message_type == "edoc"):
            raise Refused("wrong-message-type", f"messagetype {message_type} does not match the packet")
        if packet.sender.organ_id != sender:
            raise Refused("sender-mismatch", "the from header differs from the packet's From/OrganId")
        if isinstance(packet, DocumentPacket):
            recipients = [o.organ_id for o in packet.recipients]
        else:
            # A status packet goes to the organisation its ResponseFor names: the document's original
            # sender, or for 13 (take back) the recipient, whom the original sender puts there.
            recipients = [packet.response_for.organ_id]
        recipients = list(dict.fromkeys(r for r in recipients if r))
        if not recipients:
            raise Refused("no-recipient", "the packet names no recipient")
        unknown = [r for r in recipients if self.config.unit(r) is None]
        if unknown:
            raise Refused("unknown-recipient", "not connected to this axis: " + ", ".join(unknown))
        if is_document:
            local = now.astimezone(auth.VIETNAM).replace(tzinfo=None, microsecond=0)
            try:
                body = with_trace(body, Trace(self.organ_id, local), max_bytes=self.max_packet_bytes)
            except PacketError as exc:  # parse() accepted it, so not expected; still a packet problem
                raise Refused(exc.code, f"invalid edXML packet: {exc}") from None
        doc_id = str(uuid.uuid4())
        self.store.add_packet(doc_id, sender=sender, message_type=message_type, edxml=body,
                              recipients=recipients, now=now)
        log.info("axis sendEdoc by %s: %s %s from %s to %d recipient(s)", system.system_id, message_type,
                 doc_id, sender, len(recipients))
        return _ok(DocId=doc_id)

    # --- receiving ---------------------------------------------------------------------------------

    def received_list(self, call: auth.VerifiedCall, system: SystemAccount,
                               now: datetime) -> Response:
        waiting = self.store.waiting([u.code for u in system.organs], _message_type(call))
        return _ok(data=[_envelope(d) for d in waiting])

    def _mine(self, call: auth.VerifiedCall, system: SystemAccount) -> tuple[str, list[str]]:
        """The docId and this system's recipients of it; not-found if it has none (existence hidden)."""
        doc_id = call.param("docId")
        mine = [d.recipient for d in self.store.deliveries(doc_id) if system.owns(d.recipient)]
        if not mine:
            raise Refused("not-found", f"no packet {doc_id} for this system")
        return doc_id, mine

    def get_edoc(self, call: auth.VerifiedCall, system: SystemAccount, now: datetime) -> Response:
        doc_id, _ = self._mine(call, system)
        packet = self.store.packet(doc_id)
        assert packet is not None  # deliveries reference packets
        return _ok(data=base64.b64encode(packet.edxml).decode("ascii"))

    def update_status(self, call: auth.VerifiedCall, system: SystemAccount, now: datetime) -> Response:
        status = call.param("status")
        if status not in RECIPIENT_STATUSES:
            raise Refused("invalid-parameter", "status must be done, fail or processing")
        doc_id, mine = self._mine(call, system)
        description = urllib.parse.unquote(call.param("description"))[:1000]
        self.store.set_status(doc_id, mine, status, description, now=now)
        log.info("axis updateStatus by %s: %s -> %s", system.system_id, doc_id, status)
        return _ok()

    def sent_list(self, call: auth.VerifiedCall, system: SystemAccount, now: datetime) -> Response:
        doc_id = call.param("docId")
        packet = self.store.packet(doc_id)
        if packet is None or not system.owns(packet.sender):
            raise Refused("not-found", f"no packet {doc_id} sent by this system")
        return _ok(data=[_envelope(d) for d in self.store.deliveries(doc_id)])

    # --- directory ---------------------------------------------------------------------------------

    def _agencies(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for unit in self.config.units():
            parent = unit.parent_code()
            pid = parent if parent and self.config.unit(parent) is not None else ""
            # The code is the id: stable across restarts and configuration edits.
            rows.append({"id": unit.code, "code": unit.code, "name": unit.name, "mail": unit.mail, "pid": pid})
        return rows

    def agencies_list(self, call: auth.VerifiedCall, system: SystemAccount, now: datetime) -> Response:
        return _ok(data=self._agencies())

    def synchronize_unit(self, call: auth.VerifiedCall, system: SystemAccount,
                              now: datetime) -> Response:
        extra = {"version": "1", "centerCode": self.organ_id, "deleted": False,
                 "modifyDate": _local(self.started), "isAgency": True}
        return _ok(data=[{**row, **extra} for row in self._agencies()])


def _message_type(call: auth.VerifiedCall) -> str:
    service_type = call.param("servicetype", SERVICE_TYPE)
    if service_type.lower() != SERVICE_TYPE.lower():
        raise Refused("invalid-parameter", "servicetype must be eDoc")
    message_type = call.param("messagetype").lower()
    if message_type not in MESSAGE_TYPES:
        raise Refused("invalid-parameter", "messagetype must be edoc or status")
    return message_type


def _envelope(d: Delivery) -> dict[str, str]:
    return {"docId": d.doc_id, "serviceType": SERVICE_TYPE, "messageType": d.message_type,
            "created_time": _local(d.created), "updated_time": _local(d.updated), "from": d.sender,
            "to": d.recipient, "status": d.status, "status_desc": d.status_desc}


def create_axis_app(
    config: AxisConfig,
    store: Store,
    *,
    organ_id: str = DEFAULT_ORGAN_ID,
    clock: Callable[[], datetime] | None = None,
    max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES,
    max_skew_s: float = 300,
) -> Flask:
    """The local axis as a Flask app over ``store``; ``organ_id`` is the id of its TraceHeader."""
    axis = _Axis(config, store, organ_id, clock or _now, max_packet_bytes, max_skew_s)
    app = Flask("exchange.axis")
    app.config["MAX_CONTENT_LENGTH"] = max_packet_bytes  # a backstop; sendEdoc checks before reading

    for operation in REQUIRED:
        def view(operation: str = operation) -> Response | tuple[Response, int]:
            return axis.dispatch(operation)

        app.add_url_rule(f"/{operation}", endpoint=operation, view_func=view, methods=["POST"])

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        code = exc.code or 500
        return _fail(f"http-{code}", exc.description or exc.name, code)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> tuple[Response, int]:
        log.exception("local axis: unexpected error")
        return _fail("internal-error", "the axis failed to handle the call", 500)

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class AxisServer(ThreadedWSGIServer):
    """The threaded WSGI server of a local axis; ``server_close()`` also closes its store."""

    def __init__(self, host: str, port: int, app: Flask, store: Store, *, log_requests: bool = True) -> None:
        self.store = store  # before binding: a failed bind calls server_close()
        super().__init__(host, port, app, handler=None if log_requests else _QuietHandler)

    @property
    def url(self) -> str:
        """The endpoint to give :class:`~exchange.axis.client.AxisClient`."""
        return f"http://{self.host}:{self.port}"

    def server_close(self) -> None:
        """Stop listening and close the store."""
        super().server_close()
        self.store.close()


def make_server(
    config: AxisConfig,
    db_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    organ_id: str = DEFAULT_ORGAN_ID,
    clock: Callable[[], datetime] | None = None,
    max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES,
    log_requests: bool = True,
) -> AxisServer:
    """A threaded local axis on ``host:port`` (0: a free port, see ``.port``) storing into ``db_path``.
    Run it with ``serve_forever()`` (in a thread for tests); stop with ``shutdown()`` then
    ``server_close()``."""
    store = Store(db_path)
    try:
        app = create_axis_app(config, store, organ_id=organ_id, clock=clock, max_packet_bytes=max_packet_bytes)
        return AxisServer(host, port, app, store, log_requests=log_requests)
    except BaseException:
        store.close()
        raise


def serve(
    config: AxisConfig | str | Path,
    db_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8090,
    *,
    organ_id: str = DEFAULT_ORGAN_ID,
) -> None:
    """Run a local axis until interrupted; ``config`` is an :class:`AxisConfig` or a JSON file path."""
    if not isinstance(config, AxisConfig):
        config = axis_config.load(config)
    server = make_server(config, db_path, host, port, organ_id=organ_id)
    log.info("local axis on %s (%d systems, %d units)", server.url, len(config.systems), len(config.units()))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m exchange.axis.server --config axis.json --db axis.sqlite [--host H] [--port P]``."""
    parser = argparse.ArgumentParser(prog="python -m exchange.axis.server", description="Run a local axis.")
    parser.add_argument("--config", required=True, help="the AxisConfig JSON file")
    parser.add_argument("--db", required=True, help="the SQLite file (created if missing)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--organ-id", default=DEFAULT_ORGAN_ID, help="the axis's own TraceHeader id")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(args.config, args.db, args.host, args.port, organ_id=args.organ_id)


if __name__ == "__main__":
    main()
