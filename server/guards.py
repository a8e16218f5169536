"""What every request passes before a route sees it: where it comes from, the API key, the body size limit,
and its metrics.

Owns: ``Guard``, one pure ASGI middleware (it never buffers a body, so streamed responses pass through as they
are). A browser's cross-site request (an ``Origin`` not allowed with ``--cors-origin``, or ``Sec-Fetch-Site:
cross-site``) is refused with 403, so a web page cannot write to or read from a server on the user's machine;
without a key, a request must also name a loopback host (``Host``), which defeats DNS rebinding. With a key
set, every route but ``/healthz`` needs ``Authorization: Bearer KEY`` (compared in constant time with
``hmac.compare_digest``; a CORS preflight passes to the CORS layer when origins are allowed). A body larger
than the limit is refused with 413 from its ``Content-Length`` before it is read, or, when it comes without
one, as soon as what arrived passes the limit.
"""

from __future__ import annotations

import hmac
import json
import time

from server.errors import error_body
from server.metrics import Metrics

OPEN_ROUTES = {"/healthz"}
METHODS = {"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


class BodyTooLarge(Exception):
    pass


class Guard:
    def __init__(self, app, *, api_key: str | None, max_body_bytes: int, metrics: Metrics,
                 cors_origins: list[str] | None = None):
        self.app = app
        self.key = api_key.encode() if api_key else None
        self.origins = {o.encode() for o in cors_origins or []}
        self.limit = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            refused = self._refusal(scope)
            if refused is not None:
                await _reply(sending, *refused)
                return
            await self.app(scope, self._limited(receive), sending)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(name, method if method in METHODS else "other", str(status[0])).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - start)

    def _refusal(self, scope) -> tuple[int, str, str] | None:
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        origin = headers.get("origin")
        own = {b"http://" + headers.get("host", b""), b"https://" + headers.get("host", b"")}  # the /docs page
        allowed = origin is not None and (origin in self.origins or b"*" in self.origins or origin in own)
        if (origin is not None and not allowed) or \
                (headers.get("sec-fetch-site") == b"cross-site" and not allowed):
            return 403, "cross-origin request refused: start the server with --cors-origin ORIGIN to allow one", \
                "cross_origin"
        if self.key is None:
            host = headers.get("host", b"").decode("latin-1").lower()
            name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
            if name not in LOOPBACK_HOSTS:
                return 403, f"host {host!r} refused: a server without an API key answers loopback names only", \
                    "host_refused"
        preflight = scope.get("method") == "OPTIONS" and self.origins and allowed
        if self.key is not None and scope.get("path") not in OPEN_ROUTES and not preflight:
            given = headers.get("authorization", b"")
            scheme, _, token = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                why = "no API key given" if not given else "wrong API key"
                return 401, f"{why}: send the header 'Authorization: Bearer KEY'", "unauthorized"
        length = headers.get("content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return 400, "Content-Length is not a number", "bad_request"
            if size > self.limit:
                return 413, _too_large(self.limit), "body_too_large"
        return None

    def _limited(self, receive):
        seen = [0]

        async def limited():
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > self.limit:
                    raise BodyTooLarge(_too_large(self.limit))
            return message

        return limited


def _too_large(limit: int) -> str:
    return f"request body larger than the server's limit of {limit} bytes (--max-body-bytes); send less at a time"


async def _reply(send, status: int, message: str, code: str) -> None:
    body = json.dumps(error_body(status, message, code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
