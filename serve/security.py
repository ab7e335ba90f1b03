"""Access rules and response headers, as one ASGI middleware (so WebSockets are covered too).

- ``Host`` must be one of ``allowed_hosts`` when that is set (a server on 127.0.0.1 without a
  token accepts only its loopback names: a web page on another site that points its own DNS name
  at 127.0.0.1 is refused, DNS rebinding).
- With a token, every request except ``GET /healthz`` must carry it: ``Authorization: Bearer``
  (API clients) or the ``scopesr_token`` cookie, which a page visit with ``?token=...`` sets
  (HttpOnly, SameSite=Strict) before redirecting to the same page without it. Tokens are compared
  in constant time.
- A WebSocket, POST or DELETE whose ``Origin`` is another site is refused (cross-site requests
  and WebSocket hijacking), with or without a token.
- Every HTTP response gets a Content-Security-Policy that allows this server's own files only,
  ``X-Content-Type-Options: nosniff``, no referrer and no framing; API answers are not cached.
"""

from __future__ import annotations

import hmac
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

COOKIE = "scopesr_token"
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
OPEN_PATHS = ("/healthz",)


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def _cookies(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k:
            out[k] = v
    return out


class Guard:
    """The middleware; ``token`` None: no token needed; ``allowed_hosts`` None: any Host."""

    def __init__(self, app: Any, token: str | None = None, allowed_hosts: tuple[str, ...] | None = None) -> None:
        self.app = app
        self.token = token
        self.allowed = {h.lower() for h in allowed_hosts} if allowed_hosts else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "").lower()
        if self.allowed is not None and host not in self.allowed:
            await self._refuse(
                scope, receive, send, 421, f"unknown Host {host!r}: use http://127.0.0.1 or http://localhost"
            )
            return
        origin = headers.get("origin")
        changes = scope["type"] == "websocket" or scope.get("method") not in ("GET", "HEAD", "OPTIONS")
        if changes and origin and urlsplit(origin).netloc.lower() != host:
            # a page on another site may not post uploads or settings, nor open the feed
            await self._refuse(scope, receive, send, 403, f"request from another origin ({origin}) refused")
            return
        if self.token is not None and scope.get("path") not in OPEN_PATHS:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            auth = headers.get("authorization", "")
            bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
            cookie = _cookies(headers.get("cookie", "")).get(COOKIE)
            if _same(query.get("token"), self.token) and scope["type"] == "http" and scope["method"] == "GET":
                await self._set_cookie_and_redirect(scope, send, query)
                return
            if not (_same(bearer, self.token) or _same(cookie, self.token)):
                await self._refuse(
                    scope,
                    receive,
                    send,
                    401,
                    "missing or wrong token: open the URL sr-serve printed (.../?token=...) or send "
                    "the header 'Authorization: Bearer TOKEN'",
                )
                return
        if scope["type"] == "http":
            api = scope.get("path", "").startswith(("/v1/", "/openapi", "/healthz"))

            async def send_with_headers(message: dict) -> None:
                if message["type"] == "http.response.start":
                    hs = list(message.get("headers", []))
                    hs.extend(HEADERS)
                    if api:
                        hs.append((b"cache-control", b"no-store"))
                    message = {**message, "headers": hs}
                await send(message)

            await self.app(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send)

    async def _set_cookie_and_redirect(self, scope: dict, send: Any, query: dict[str, str]) -> None:
        rest = urlencode({k: v for k, v in query.items() if k != "token"})
        location = scope.get("path", "/") + (f"?{rest}" if rest else "")
        cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [(b"location", location.encode()), (b"set-cookie", cookie.encode()), *HEADERS],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def _refuse(self, scope: dict, receive: Any, send: Any, status: int, detail: str) -> None:
        if scope["type"] == "websocket":
            # closing before accepting: the handshake is answered with 403
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
            return
        body = json.dumps({"detail": detail}).encode()
        hs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *HEADERS]
        if status == 401:
            hs.append((b"www-authenticate", b'Bearer realm="sr-serve"'))
        await send({"type": "http.response.start", "status": status, "headers": hs})
        await send({"type": "http.response.body", "body": body})
