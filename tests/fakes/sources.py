"""An imitation of the paper sources' web endpoints, serving recorded responses.

Each route maps a URL path prefix to a recorded file; the query string is
ignored, so a source may ask for any date or category. Every request is
recorded, and a route can be told to fail (for health checks of a failing
source)::

    server = RecordedSourceServer().start()
    server.serve("/api/daily_papers", fixtures / "hf.json", "application/json")
    settings.HF_API_URL = server.url("/api/daily_papers")
"""

import threading
from dataclasses import dataclass
from pathlib import Path

from .http import BackgroundHTTPServer, QuietHandler


@dataclass
class Route:
    prefix: str
    body: bytes
    content_type: str
    status: int = 200


class SourceHandler(QuietHandler):
    def do_GET(self):
        server = self.server.owner
        route = server.route_for(self.path)
        server.record(self.path)
        if route is None:
            return self.reply(404, b"not recorded", "text/plain")
        if route.status != 200:
            return self.reply(route.status, b"imitated failure", "text/plain")
        self.reply(200, route.body, route.content_type)


class RecordedSourceServer(BackgroundHTTPServer):
    handler_class = SourceHandler

    def __init__(self):
        super().__init__()
        self.routes: list[Route] = []
        self.requested_paths: list[str] = []
        self._lock = threading.Lock()

    def url(self, path):
        return f"{self.base_url}{path}"

    def serve(self, prefix, recorded_file, content_type):
        """Answer every GET under ``prefix`` with the bytes of ``recorded_file``."""
        body = Path(recorded_file).read_bytes()
        with self._lock:
            self.routes = [r for r in self.routes if r.prefix != prefix]
            self.routes.append(Route(prefix, body, content_type))
        return self.url(prefix)

    def fail(self, prefix, status=503):
        with self._lock:
            for route in self.routes:
                if route.prefix == prefix:
                    route.status = status

    def route_for(self, path):
        with self._lock:
            matches = [r for r in self.routes if path.startswith(r.prefix)]
        return max(matches, key=lambda r: len(r.prefix)) if matches else None

    def record(self, path):
        with self._lock:
            self.requested_paths.append(path)

    def requests_under(self, prefix):
        with self._lock:
            return [p for p in self.requested_paths if p.startswith(prefix)]
