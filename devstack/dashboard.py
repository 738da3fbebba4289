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
    owner: DashboardServer

    def do_GET(self) -> None:
        config = self.owner.config
        if self.path.split("?", 1)[0] == CONFIG_PATH and config is not None:
            document = json.dumps(config).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)
            return
        super().do_GET()

    def end_headers(self) -> None:
        # Edits in web/ show on the next reload.
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


class DashboardServer(BackgroundHttpServer):
    """``directory`` as static files, and ``/config.json`` from ``config`` as it is at each
    request (None: whatever the directory holds)."""

    def __init__(self, directory: Path, config: dict[str, Any] | None, port: int) -> None:
        self.config = config
        handler = type("DashboardHandler", (_DashboardHandler,), {"owner": self})
        super().__init__("dashboard", partial(handler, directory=str(directory)), port)
