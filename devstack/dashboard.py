"""Serves the dashboard (the repository's ``web/`` folder) and ``/config.json``, which
tells the page where the local endpoints are (in AWS the deployment writes this file)."""

from __future__ import annotations

import json
import logging
from functools import partial
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

from devstack.http_server import BackgroundHttpServer

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


class DashboardServer(BackgroundHttpServer):
    def __init__(self, directory: Path, config: dict[str, Any], port: int) -> None:
        handler = type(
            "DashboardHandler", (_DashboardHandler,), {"config_document": json.dumps(config).encode()}
        )
        super().__init__("dashboard", partial(handler, directory=str(directory)), port)
