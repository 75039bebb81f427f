"""Who may open the board: a Host-header allowlist always, and a token when one is set.

Bound to 127.0.0.1 (the default) the board is reachable from this machine only; the Host check still
stops a web page from reaching it through DNS rebinding. Bound beyond loopback, ``wipwatch board``
refuses to start without a token (docs/operations.md, "Deploying on a plant network"). A browser opens
``/?token=...`` once and gets the token as an HttpOnly cookie (the page's EventSource cannot send
headers); scripts send ``Authorization: Bearer ...``.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from typing import Final
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE: Final = "wipwatch_board_token"
#: Answer without a token (container healthchecks); the Host check still applies.
OPEN_PATHS: Final = frozenset({"/healthz"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses no other machine reaches."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """``example:8080`` -> ``example``; ``[::1]:8080`` -> ``::1``."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class BoardAccess:
    """ASGI middleware in front of the board's routes."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str], token: str = "") -> None:
        hosts = [h.strip().lower() for h in allowed_hosts if h.strip()]
        if not hosts:
            raise ValueError("allowed_hosts must name at least one host (or '*')")
        self.app = app
        self.any_host = "*" in hosts
        self.hosts = frozenset(_host_name(h) for h in hosts)
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        response = self._refusal(scope)
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        host = _host_name(headers.get("host", "").lower())
        if not self.any_host and host not in self.hosts:
            return PlainTextResponse("Invalid Host header", status_code=400)
        if not self.token or scope["path"] in OPEN_PATHS:
            return None
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = dict(query).get("token")
        if given is not None and self._valid(given):
            # once, from the link: move the token into a cookie and out of the address bar and history
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            redirect = RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""), status_code=303)
            secure = scope.get("scheme") == "https"
            redirect.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", secure=secure)
            return redirect
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer ") and self._valid(bearer[7:].strip()):
            return None
        cookie = _cookie(headers.get("cookie", ""), COOKIE)
        if cookie is not None and self._valid(cookie):
            return None
        return PlainTextResponse(
            "wipwatch board: token required (open /?token=... or send Authorization: Bearer ...)",
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    def _valid(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token.encode())


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None
