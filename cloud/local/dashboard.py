"""The dashboard on one machine: what CloudFront does in AWS, on 127.0.0.1.

    srv = DashboardServer(web_dir, api_url, pool.page_config()).start()    # srv.url

It serves the built page (build/web: make web) and its config.json (the user pool to sign in
with), passes /api/... on to the local API unchanged (CloudFront's /api/* behaviour, to API
Gateway), and sets on every answer the security headers CloudFront sets (cloud/domain/web_headers.py).
The page is thus on the same origin as its API, locally as in AWS. Requests are not logged: an
Authorization header holds a token.
"""

from __future__ import annotations

import http.client
import json
import mimetypes
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from cloud.domain import web_headers

ROOT = Path(__file__).resolve().parents[2]
WEB_DIR = ROOT / "build" / "web"
API_PREFIX = "/api/"
PROXY_TIMEOUT_S = 30  # API Gateway's own limit is 29 s
# Headers of a request the API sees; hop-by-hop ones and Host are CloudFront's business.
FORWARDED = ("authorization", "content-type", "accept", "user-agent")


class DashboardNotBuilt(FileNotFoundError):
    pass


def check_built(web_dir: Path) -> None:
    if not (Path(web_dir) / "index.html").is_file():
        raise DashboardNotBuilt("the dashboard is not built in %s: run make web (npm ci and the bundler in web/)"
                                % web_dir)


def make_handler(web_dir: Path, api_host: str, api_port: int, config: bytes, headers: dict):
    web_dir = Path(web_dir).resolve()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None):
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _static(self):
            path = urlsplit(self.path).path
            if path == "/config.json":
                return self._send(200, config, "application/json", {"Cache-Control": "no-store"})
            name = "index.html" if path in ("", "/") else path.lstrip("/")
            target = (web_dir / name).resolve()
            if web_dir not in target.parents or not target.is_file():
                return self._send(404, b"not found\n", "text/plain; charset=utf-8")
            kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            if kind.startswith("text/") or kind in ("application/javascript", "image/svg+xml"):
                kind += "; charset=utf-8"
            # The bundle's names carry their content's hash: keep them; always revalidate the page.
            cache = "no-cache" if target.name == "index.html" else "public, max-age=31536000, immutable"
            return self._send(200, target.read_bytes(), kind, {"Cache-Control": cache})

        def _proxy(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else None
            conn = http.client.HTTPConnection(api_host, api_port, timeout=PROXY_TIMEOUT_S)
            try:
                conn.request(self.command, self.path, body=body,
                             headers={k: v for k, v in self.headers.items() if k.lower() in FORWARDED})
                r = conn.getresponse()
                data = r.read()
                kind = r.getheader("Content-Type", "application/json")
                extra = {"Cache-Control": r.getheader("Cache-Control", "no-store")}
                return self._send(r.status, data, kind, extra)
            except OSError:
                return self._send(502, json.dumps({"message": "the local API does not answer"}).encode(),
                                  "application/json")
            finally:
                conn.close()

        def _serve(self):
            if urlsplit(self.path).path.startswith(API_PREFIX):
                return self._proxy()
            if self.command not in ("GET", "HEAD"):
                return self._send(405, b"method not allowed\n", "text/plain; charset=utf-8")
            return self._static()

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

        def log_message(self, fmt, *args):  # never log: requests carry tokens
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A browser that navigates away mid-answer closes its connection: nothing to report."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class DashboardServer:
    def __init__(self, api_url: str, page_config: dict, web_dir: Path | str = WEB_DIR, port: int = 0):
        """api_url: the local API (cloud/local/apigw.py); page_config: what config.json tells the
        page (cloud/local/cognito.py LocalUserPool.page_config)."""
        check_built(Path(web_dir))
        api = urlsplit(api_url)
        sign_in = urlsplit(page_config["cognitoEndpoint"])
        origin = "%s://%s" % (sign_in.scheme, sign_in.netloc)
        handler = make_handler(Path(web_dir), api.hostname, api.port, json.dumps(page_config).encode(),
                               web_headers.headers(origin))
        self.httpd = _Server(("127.0.0.1", port), handler)
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d/" % self.port
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="dashboard", daemon=True)

    def start(self) -> "DashboardServer":
        self._thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
