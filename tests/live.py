"""The web app served on a real port, as gunicorn would serve it, for tests whose certificates must
point at a live service (AIA, CRL distribution points, OCSP). Tests marked ``live`` get settings
whose public URL is a free loopback port; the ``served`` fixture listens there."""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import make_server

from signer.app import create_app
from signer.services import Services
from signer.settings import Settings


class Served:
    def __init__(self, url: str) -> None:
        self.url = url
        self.calls: list[str] = []  # "METHOD path" of every request

    @property
    def ocsp_url(self) -> str:
        return f"{self.url}/pki/ocsp"

    def ocsp_calls(self) -> int:
        return sum(1 for c in self.calls if " /pki/ocsp" in c)


@contextmanager
def serve(settings: Settings, services: Services) -> Iterator[Served]:
    """The app on the public URL's port, recording every request, until the block ends."""
    app = create_app(settings, services)
    inner = app.wsgi_app
    out = Served(settings.public_url)

    def recording(environ: dict[str, Any], start_response: Any) -> Any:
        out.calls.append(f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}")
        return inner(environ, start_response)

    app.wsgi_app = recording  # type: ignore[method-assign]
    port = urllib.parse.urlsplit(settings.public_url).port
    if port is None:
        raise ValueError("mark the test `live` so its public URL has a port")
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        server.shutdown()
        server.server_close()
