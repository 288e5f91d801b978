"""The activation service (HTTP/JSON) and its client.

``POST /v1/activate`` with ``{"serial": ..., "fingerprint": ...}`` → 200 and the certificate,
or 4xx and ``{"error": ...}`` (400 malformed, 403 refused, 404 unknown serial, 409 bound to
another device, 413 too large, 429 rate-limited). ``GET /v1/revocations`` → the signed
revocation list. ``GET /v1/health`` → ``{"status": "ok"}``. Requests are rate-limited per
client address (token bucket).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Optional

from hpi_triton.errors import LicensingError
from hpi_triton.licensing.issuer import BindingStore, Issuer, activate

MAX_BODY = 16 * 1024


class RateLimiter:
    """Token bucket per client: ``rate`` requests/s sustained, ``burst`` at once."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self._buckets: Dict[str, list] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        """Take a token from ``client``'s bucket; return ``False`` when it is empty."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[client] = [tokens, now]
                return False
            self._buckets[client] = [tokens - 1, now]
            return True


def _status_for(message: str) -> int:
    if "not issued" in message:
        return 404
    if "another device" in message:
        return 409
    if "revoked" in message or "expired" in message:
        return 403
    return 400


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) resets connections when many clients arrive at once.
    request_queue_size = 256


class _ActivationHandler(BaseHTTPRequestHandler):
    """One HTTP request to the activation service; ``service`` is set per server."""

    service: ActivationServer

    def log_message(self, fmt, *args):  # quiet; the CLI prints its own line
        pass

    def _send(self, status: int, body: Dict):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _limited(self) -> bool:
        if self.service.limiter.allow(self.client_address[0]):
            return False
        self._send(429, {"error": "too many requests; retry in a second"})
        return True

    def do_GET(self):
        if self._limited():
            return
        if self.path == "/v1/health":
            self._send(200, {"status": "ok"})
        elif self.path == "/v1/revocations":
            self._send(200, self.service.issuer.revocation_list(self.service.store.revoked()))
        else:
            self._send(404, {"error": f"no endpoint {self.path}"})

    def do_POST(self):
        if self._limited():
            return
        if self.path != "/v1/activate":
            self._send(404, {"error": f"no endpoint {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._send(413, {"error": f"body must be 0..{MAX_BODY} bytes"})
            return
        try:
            request = json.loads(self.rfile.read(length) or b"null")
            self._send(200, activate(self.service.issuer, self.service.store, request))
        except ValueError as exc:
            self._send(400, {"error": f"body is not JSON: {exc}"})
        except LicensingError as exc:
            self._send(_status_for(str(exc)), {"error": str(exc)})


class ActivationServer:
    """The service bound to ``host:port`` (port 0: any free port); ``start`` / ``stop``, or
    ``serve_forever`` for the CLI."""

    def __init__(self, issuer: Issuer, store: BindingStore, host: str = "0.0.0.0",
                 port: int = 8470, rate: float = 20.0, burst: int = 100):
        self.issuer, self.store = issuer, store
        self.limiter = RateLimiter(rate, burst)
        handler = type("Handler", (_ActivationHandler,), {"service": self})
        self.httpd = _Server((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        """The service's base URL (``127.0.0.1`` when bound to all interfaces)."""
        host, port = self.httpd.server_address[:2]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"

    def start(self) -> ActivationServer:
        """Serve on a background daemon thread; return ``self``."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until ``stop`` is called from another."""
        self.httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self.httpd.shutdown()
        self.httpd.server_close()


def request_json(url: str, body: Optional[Dict] = None, timeout: float = 30) -> Dict:
    """GET (no body) or POST JSON to the service; LicensingError with its message on 4xx."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", str(exc))
        except ValueError:
            message = str(exc)
        raise LicensingError(f"activation service {url}: {message} (HTTP {exc.code})") from None
    except (urllib.error.URLError, OSError) as exc:
        raise LicensingError(f"activation service {url} is not reachable ({exc}); use offline "
                             f"activation (hpi-triton license fingerprint) instead") from None
