"""Outbound URL checks for webhooks: which addresses are public, which URLs are refused."""

from __future__ import annotations

import pytest

from signer import outbound


@pytest.mark.parametrize(("address", "public"), [
    ("8.8.8.8", True), ("2001:4860:4860::8888", True), ("203.162.4.191", True),
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("::1", False), ("fe80::1%eth0", False), ("fd00::1", False), ("::ffff:127.0.0.1", False),
    ("::ffff:8.8.8.8", True), ("198.18.0.1", False),
])
def test_is_public(address: str, public: bool) -> None:
    assert outbound.is_public(address) is public


@pytest.mark.parametrize("url", [
    "ftp://example.org/x", "file:///etc/passwd", "http://user:pw@example.org/", "http:///nohost",
    "http://example.org:99999/",
])
def test_malformed_or_forbidden_urls_are_refused(url: str) -> None:
    with pytest.raises(outbound.TargetRefused):
        outbound.check_literal(url, allow_private=True)


def test_literal_private_addresses_depend_on_the_setting() -> None:
    for url in ("http://127.0.0.1:8080/hook", "https://[::1]/hook", "http://169.254.169.254/latest"):
        with pytest.raises(outbound.TargetRefused):
            outbound.check_literal(url, allow_private=False)
        outbound.check_literal(url, allow_private=True)
    outbound.check_literal("https://qlvb.example.gov.vn/hook", allow_private=False)  # names: at delivery


def test_names_resolving_to_private_addresses_are_refused_before_connecting() -> None:
    with pytest.raises(outbound.TargetRefused, match="private or reserved"):
        outbound.post("http://localhost:9/hook", b"{}", {}, timeout_s=1, allow_private=False)
    with pytest.raises(outbound.TargetUnreachable):  # allowed, but nothing listens on port 9
        outbound.post("http://localhost:9/hook", b"{}", {}, timeout_s=1, allow_private=True)
