"""Serves the dashboard (the repository's ``web/`` folder) and ``/config.json``, which
tells the page where the local endpoints are (in AWS the deployment writes this file)."""

from __future__ import annotations

import json
import logging
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devstack.config import LOOPBACK

log = logging.getLogger("devstack.dashboard")

CONFIG_PATH = "/config.json"


class _DashboardHandler(SimpleHTTPRequestHandler):
    config_document: bytes = b"{}"

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == CONFIG_PATH:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(self.config_document)))
            self.end_headers()
            self.wfile.write(self.config_document)
            return
        super().do_GET()

    def end_headers(self) -> None:
        # Edits in web/ show on the next reload.
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


class DashboardServer:
    def __init__(self, directory: Path, config: dict[str, Any], port: int) -> None:
        handler = type(
            "DashboardHandler", (_DashboardHandler,), {"config_document": json.dumps(config).encode()}
        )
        self._server = ThreadingHTTPServer((LOOPBACK, port), partial(handler, directory=str(directory)))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="dashboard", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
