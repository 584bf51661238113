"""Outbound HTTP to addresses that callers choose (webhook callback URLs), without SSRF.

A document system picks its ``callback_url``; the service must not become its way into the
service's own network (Redis, PostgreSQL, the HSM host, cloud metadata at 169.254.169.254). So:

- only ``http`` and ``https``, no credentials in the URL;
- the host is resolved once, every address must be public (global unicast) unless the deployment
  allows private ones (``SIGNER_WEBHOOK_ALLOW_PRIVATE``, for development and closed networks), and
  the connection goes to the address that was checked, so DNS cannot answer differently between
  the check and the connect (rebinding); TLS still verifies the certificate for the host name;
- no redirects: a 3xx is an answer like any other non-2xx.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit


class TargetRefused(Exception):
    """The URL may never be called (scheme, credentials, or a non-public address): do not retry."""


class TargetUnreachable(Exception):
    """Resolution or connection failed, or timed out: worth retrying later."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str


def parse(url: str) -> Target:
    """Check the URL's form (not its addresses); :class:`TargetRefused` when it can never be used."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("only http and https URLs are allowed")
    if parts.username or parts.password:
        raise TargetRefused("credentials in the URL are not allowed")
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TargetRefused("the URL's port is not valid") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port, path)


def is_public(address: str) -> bool:
    """Global unicast: not loopback, private, link-local, shared, reserved, multicast or unspecified."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_literal(url: str, *, allow_private: bool) -> None:
    """Refuse early what is refused anyway: a bad form, or a literal non-public IP address."""
    target = parse(url)
    try:
        literal = ipaddress.ip_address(target.host)
    except ValueError:
        return  # a name: checked when it is resolved, at delivery
    if not allow_private and not is_public(str(literal)):
        raise TargetRefused("the URL points at a private or reserved address")


def _resolve(target: Target, *, allow_private: bool) -> str:
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetUnreachable(f"cannot resolve {target.host}: {exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise TargetUnreachable(f"{target.host} has no address")
    if not allow_private and not all(is_public(a) for a in addresses):
        raise TargetRefused(f"{target.host} resolves to a private or reserved address")
    return addresses[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, target: Target, address: str, timeout_s: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout_s)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, target: Target, address: str, timeout_s: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout_s, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def post(url: str, body: bytes, headers: dict[str, str], *, timeout_s: float, allow_private: bool) -> int:
    """POST ``body`` and return the HTTP status (redirects are not followed)."""
    target = parse(url)
    address = _resolve(target, allow_private=allow_private)
    conn_class = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    conn = conn_class(target, address, timeout_s)
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(64 * 1024)  # drain a little; the body is not used
        return response.status
    except (OSError, http.client.HTTPException) as exc:
        raise TargetUnreachable(f"{type(exc).__name__}: {exc}") from None
    finally:
        conn.close()
