"""The axis's HTTP client: the :class:`~exchange.transport.Transport` over the client kit's protocol.

Each call is a POST to ``<endpoint>/<operation>`` with its parameters in signed ``XroadVnpt-*``
headers (see :mod:`exchange.axis.auth`). Network errors, timeouts and 5xx answers are retried with
exponential backoff, then raise :class:`AxisUnavailable`; a 4xx or a JSON ``ErrorCode`` other than
``"0"`` raises :class:`AxisRejected` at once. Logs name the operation and the outcome, never the
secret, the headers or the packet.

``sendEdoc`` is retried like the rest: a retry after a lost answer can deliver a packet twice, which
receivers absorb by deduplicating on DocumentId (AXIS.md section 4).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import json
import logging
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from exchange.axis import auth
from exchange.errors import AxisRejected, AxisUnavailable
from exchange.transport import Agency, DeliveryStatus, Envelope, MessageType, SentStatus

log = logging.getLogger(__name__)

SERVICE_TYPE = "eDoc"
_JSON = "application/json"
_OCTETS = "application/octet-stream"
_MAX_ANSWER = 512 * 1024 * 1024  # a getEdoc answer is base64 of a packet; refuse absurd sizes


class _Retryable(Exception):
    """One attempt failed in a way worth retrying; the message is safe to show."""


def _now() -> datetime:
    return datetime.now(UTC)


class AxisClient:
    """The axis operations for one system id (implements :class:`~exchange.transport.Transport`)."""

    def __init__(
        self,
        endpoint: str,
        system_id: str,
        secret: str,
        *,
        timeout_s: float = 30.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urllib.parse.urlsplit(endpoint.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the axis endpoint must be an http(s) URL")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._parts = parts
        self.endpoint = endpoint.rstrip("/")
        self.system_id = system_id
        self._secret = secret
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._clock = clock or _now
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"AxisClient({self.endpoint!r}, {self.system_id!r})"

    # --- the Transport operations ----------------------------------------------------------------

    def send(self, packet: bytes, *, sender: str, message_type: MessageType) -> str:
        """``sendEdoc``: deliver a built edXML packet; return the axis's DocId."""
        params = [("from", sender), ("servicetype", SERVICE_TYPE), ("messagetype", str(message_type)),
                  ("hash-file", auth.hash_file(packet))]
        answer = self._call("sendEdoc", params, packet, _OCTETS)
        doc_id = answer.get("DocId") or answer.get("docId")
        if not isinstance(doc_id, str) or not doc_id:
            raise AxisUnavailable("sendEdoc: the axis answered without a DocId")
        return doc_id

    def received(self, message_type: MessageType) -> list[Envelope]:
        """``getReceivedEdocList``: packets waiting for this system."""
        answer = self._call("getReceivedEdocList", [("servicetype", SERVICE_TYPE),
                                                   ("messagetype", str(message_type))], b"", _JSON)
        return [
            Envelope(
                doc_id=_text(row, "docId"), message_type=_text(row, "messageType") or str(message_type),
                sender=_text(row, "from"), recipient=_text(row, "to"), status=_text(row, "status"),
                status_desc=_text(row, "status_desc"), created_time=_text(row, "created_time"),
                updated_time=_text(row, "updated_time"), service_type=_text(row, "serviceType") or SERVICE_TYPE,
            )
            for row in _rows(answer, "getReceivedEdocList")
        ]

    def fetch(self, doc_id: str) -> bytes:
        """``getEdoc``: the raw edXML bytes of one packet."""
        answer = self._call("getEdoc", [("docId", doc_id)], b"{}", _JSON)
        data = answer.get("data")
        if not isinstance(data, str):
            raise AxisUnavailable("getEdoc: the answer has no data")
        try:
            return base64.b64decode(data, validate=True)
        except binascii.Error:
            raise AxisUnavailable("getEdoc: the data is not base64") from None

    def update_status(self, doc_id: str, status: DeliveryStatus, description: str = "") -> None:
        """``updateStatus``: acknowledge a fetched packet (``done``) or refuse it (``fail``).
        The description travels percent-encoded (UTF-8), since header values must be ASCII."""
        params = [("docId", doc_id), ("status", str(status))]
        if description:
            params.append(("description", urllib.parse.quote(description, safe="")))
        self._call("updateStatus", params, b"{}", _JSON)

    def sent(self, doc_id: str, *, message_type: MessageType = MessageType.EDOC) -> list[SentStatus]:
        """``getSentEdocList``: per-recipient delivery state of a packet this system sent."""
        params = [("servicetype", SERVICE_TYPE), ("messagetype", str(message_type)), ("docId", doc_id)]
        answer = self._call("getSentEdocList", params, b"", _JSON)
        return [
            SentStatus(doc_id=_text(row, "docId") or doc_id, recipient=_text(row, "to"),
                       status=_text(row, "status"), status_desc=_text(row, "status_desc"),
                       updated_time=_text(row, "updated_time"))
            for row in _rows(answer, "getSentEdocList")
        ]

    def agencies(self) -> list[Agency]:
        """``getAgenciesList``: the directory of connected units."""
        return [_agency(row) for row in _rows(self._call("getAgenciesList", [], b"", _JSON), "getAgenciesList")]

    def synchronize_units(self) -> list[Agency]:
        """``getSynchronizeUnit``: the directory with deletions (``Agency.deleted``)."""
        answer = self._call("getSynchronizeUnit", [], b"", _JSON)
        return [_agency(row) for row in _rows(answer, "getSynchronizeUnit")]

    # --- HTTP ------------------------------------------------------------------------------------

    def _call(self, operation: str, params: list[tuple[str, str]], body: bytes, content_type: str) -> dict[str, Any]:
        """POST one operation with retries; the decoded JSON answer when ErrorCode is "0"."""
        problem = ""
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                self._sleep(self.backoff_s * 2 ** (attempt - 2))
            try:
                status, raw = self._post(operation, params, body, content_type)
            except _Retryable as exc:
                problem = str(exc)
                log.warning("axis %s attempt %d/%d failed: %s", operation, attempt, self.attempts, problem)
                continue
            return _decode(operation, status, raw)
        raise AxisUnavailable(f"{operation}: {problem} (after {self.attempts} attempts)")

    def _post(self, operation: str, params: list[tuple[str, str]], body: bytes, content_type: str) -> tuple[int, bytes]:
        headers = auth.sign_headers(self.system_id, self._secret, params, content_type=content_type,
                                    now=self._clock())
        headers["Accept"] = _JSON
        cls = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(self._parts.hostname or "", self._parts.port, timeout=self.timeout_s)
        try:
            # The axis may answer (413, 401) without reading the whole body: read its answer anyway.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.request("POST", f"{self._parts.path}/{operation}", body=body, headers=headers)
            if conn.sock is None:  # the connection died while sending: there is no answer to read
                raise _Retryable("network error (connection closed while sending)")
            response = conn.getresponse()
            raw = response.read(_MAX_ANSWER + 1)
        except TimeoutError:
            raise _Retryable(f"no answer within {self.timeout_s:g} s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Retryable(f"network error ({type(exc).__name__})") from None
        finally:
            conn.close()
        if len(raw) > _MAX_ANSWER:
            raise AxisUnavailable(f"{operation}: the answer is too large")
        if response.status >= 500:
            raise _Retryable(f"HTTP {response.status}")
        return response.status, raw


def _decode(operation: str, status: int, raw: bytes) -> dict[str, Any]:
    """Turn one non-5xx answer into its JSON object, or raise AxisRejected / AxisUnavailable."""
    try:
        answer = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        answer = None
    if not isinstance(answer, dict):
        if status >= 400:
            raise AxisRejected(f"http-{status}", f"{operation}: HTTP {status}", status=status)
        raise AxisUnavailable(f"{operation}: the axis answered HTTP {status} with something that is not JSON")
    error_code = str(answer.get("ErrorCode", "0" if answer.get("status") == "OK" else "")).strip()
    if status >= 400 or error_code != "0":
        desc = str(answer.get("ErrorDesc") or f"HTTP {status}")
        log.info("axis %s refused: HTTP %d, ErrorCode %s", operation, status, error_code or "-")
        raise AxisRejected(error_code or f"http-{status}", f"{operation}: {desc}", status=status)
    return answer


def _rows(answer: dict[str, Any], operation: str) -> list[dict[str, Any]]:
    data = answer.get("data", [])
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise AxisUnavailable(f"{operation}: data is not a list of objects")
    return data


def _text(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    return "" if value is None else str(value)


def _agency(row: dict[str, Any]) -> Agency:
    deleted = row.get("deleted", False)
    return Agency(id=_text(row, "id"), code=_text(row, "code"), name=_text(row, "name"),
                  mail=_text(row, "mail"), pid=_text(row, "pid"),
                  deleted=deleted is True or str(deleted).lower() in ("true", "1"))
