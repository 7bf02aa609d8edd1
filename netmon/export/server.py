"""The HTTP endpoint of `--serve`: prometheus_client's WSGI app on a server
that netmon binds itself, so that binding (which may need privilege, and
should fail before the probes are loaded) and serving (in threads, after
privileges are dropped) are two steps."""

from __future__ import annotations

import logging
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.registry import CollectorRegistry

from netmon.errors import OutputError
from netmon.export.address import ServeAddress

log = logging.getLogger(__name__)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a stuck scraper never keeps netmon from exiting


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


class MetricsServer:
    def __init__(self, address: ServeAddress, registry: CollectorRegistry) -> None:
        try:
            family = socket.getaddrinfo(
                address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0][0]
        except socket.gaierror as exc:
            raise OutputError(f"--serve {address}: {exc.strerror}") from None
        server_class = type("_BoundServer", (_Server,), {"address_family": family})
        try:
            self._httpd: WSGIServer = make_server(
                address.host, address.port, make_wsgi_app(registry), server_class, _QuietHandler
            )
        except OSError as exc:
            raise OutputError(f"cannot serve metrics on {address}: {exc.strerror or exc}") from None
        port: int = self._httpd.socket.getsockname()[1]
        self.address = ServeAddress(address.host, port)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="netmon-metrics", daemon=True
        )
        self._thread.start()
        log.info("serving metrics on %s", self.url)

    def close(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
