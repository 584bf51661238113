"""The transport interface: how packets reach the axis and come back.

Two implementations: :class:`exchange.axis.client.AxisClient` speaks the axis's HTTP API (the real
axis, or the local axis server, which implements the same endpoints and authentication).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class MessageType(enum.StrEnum):
    EDOC = "edoc"
    STATUS = "status"


class DeliveryStatus(enum.StrEnum):
    """What a recipient says to the axis about a packet it fetched (``updateStatus``)."""

    DONE = "done"
    FAIL = "fail"
    PROCESSING = "processing"


@dataclass(frozen=True)
class Envelope:
    """One entry of ``getReceivedEdocList``: a packet waiting for this system."""

    doc_id: str
    message_type: str
    sender: str  # "from"
    recipient: str  # "to"
    status: str = ""
    status_desc: str = ""
    created_time: str = ""
    updated_time: str = ""
    service_type: str = "eDoc"


@dataclass(frozen=True)
class SentStatus:
    """One recipient's row of ``getSentEdocList``."""

    doc_id: str
    recipient: str
    status: str  # "pending", "done", "fail", "processing"
    status_desc: str = ""
    updated_time: str = ""


@dataclass(frozen=True)
class Agency:
    """A connected unit of the axis directory (``getAgenciesList`` / ``getSynchronizeUnit``)."""

    id: str
    code: str
    name: str
    mail: str = ""
    pid: str = ""  # parent id, "" at the top
    deleted: bool = False


class Transport(Protocol):
    """The axis operations the service uses, for one system id."""

    def send(self, packet: bytes, *, sender: str, message_type: MessageType) -> str:
        """``sendEdoc``: deliver a built edXML packet; return the axis's DocId."""
        ...

    def received(self, message_type: MessageType) -> list[Envelope]:
        """``getReceivedEdocList``: packets waiting for this system."""
        ...

    def fetch(self, doc_id: str) -> bytes:
        """``getEdoc``: the raw edXML bytes of one packet."""
        ...

    def update_status(self, doc_id: str, status: DeliveryStatus, description: str = "") -> None:
        """``updateStatus``: acknowledge a fetched packet (``done``) or refuse it (``fail``)."""
        ...

    def sent(self, doc_id: str) -> list[SentStatus]:
        """``getSentEdocList``: per-recipient delivery state of a packet this system sent."""
        ...

    def agencies(self) -> list[Agency]:
        """``getAgenciesList``: the directory of connected units."""
        ...
