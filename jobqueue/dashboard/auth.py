"""Who may see and steer the dashboard: a bearer token or basic-auth credentials, and a CSRF guard.

- ``JOBQUEUE_DASHBOARD_TOKEN``: ``Authorization: Bearer <token>`` (scripts), or basic auth with any
  user name and the token as password (browsers).
- ``JOBQUEUE_DASHBOARD_USER`` + ``JOBQUEUE_DASHBOARD_PASSWORD``: basic auth.
- Neither: only loopback clients are let in (``jobqueue dashboard`` refuses to listen elsewhere):
  the socket peer must be loopback, the request must carry no proxy header (a proxy on this machine
  would make every client look local) and must name a loopback host (``jobqueue.dashboard.origins``).

Every other request gets 401 (421 for a host the dashboard does not serve). A POST made with basic
auth (or none, on loopback) must also come from a served origin if the browser names one
(``Origin``, else ``Referer``) and carry ``X-CSRF-Token`` with the token the page was served with:
a browser adds basic credentials to a forged cross-site request by itself, but no custom header.
A bearer token is never added by a browser, so bearer requests need neither.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.types import ASGIApp, Receive, Scope, Send

from jobqueue.dashboard.origins import FORWARDED_HEADERS, Served, is_loopback

CSRF_HEADER = "x-csrf-token"
NO_CREDENTIALS = (
    "the dashboard has no credentials configured: set JOBQUEUE_DASHBOARD_TOKEN "
    "or JOBQUEUE_DASHBOARD_USER and JOBQUEUE_DASHBOARD_PASSWORD"
)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class DashboardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOBQUEUE_DASHBOARD_", extra="ignore")

    token: str | None = None
    user: str | None = None
    password: str | None = None
    allowed_hosts: str = ""  # comma-separated, see jobqueue.dashboard.origins
    allowed_origins: str = ""


def resolve_served(hosts: str | Iterable[str] | None = None, origins: str | Iterable[str] | None = None) -> Served:
    """The given allowed hosts and origins, each else the environment's; raises ValueError for a bad one."""
    if hosts is None or origins is None:
        env = DashboardSettings()
        hosts = env.allowed_hosts if hosts is None else hosts
        origins = env.allowed_origins if origins is None else origins
    return Served.parse(hosts, origins)


@dataclass(frozen=True)
class Credentials:
    token: str | None = None
    user: str | None = None
    password: str | None = None
    # Signs the CSRF token; derived from the credentials so every dashboard process agrees on it.
    _secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @classmethod
    def resolve(cls, token: str | None = None, user: str | None = None, password: str | None = None) -> Credentials:
        """The given credentials, else those of the environment; raises ValueError when half-given."""
        if token is None and user is None and password is None:
            env = DashboardSettings()
            token, user, password = env.token, env.user, env.password
        token, user, password = token or None, user or None, password or None  # empty: unset
        if (user is None) != (password is None):
            raise ValueError("set both JOBQUEUE_DASHBOARD_USER and JOBQUEUE_DASHBOARD_PASSWORD, or neither")
        if token is None and user is None:
            return cls()
        material = json.dumps([token, user, password]).encode()
        return cls(token or None, user, password, hashlib.sha256(b"jobqueue-dashboard-csrf" + material).digest())

    @property
    def configured(self) -> bool:
        return bool(self.token or self.user)

    @property
    def csrf_token(self) -> str:
        return hmac.new(self._secret, b"csrf", hashlib.sha256).hexdigest()

    def check(self, authorization: str) -> str | None:
        """How the ``Authorization`` header authenticates (``"bearer"``/``"basic"``), or None."""
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self.token:
            return "bearer" if hmac.compare_digest(value.strip().encode(), self.token.encode()) else None
        if scheme != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if self.token and hmac.compare_digest(password.encode(), self.token.encode()):
            return "basic"
        if self.user and self.password is not None:
            good_user = hmac.compare_digest(user.encode(), self.user.encode())
            good_password = hmac.compare_digest(password.encode(), self.password.encode())
            return "basic" if good_user and good_password else None
        return None


class AuthMiddleware:
    """401 for unauthenticated requests, 421 for a host not served, 403 for an unsafe request from
    another origin or without the CSRF token."""

    def __init__(self, app: ASGIApp, credentials: Callable[[], Credentials], served: Callable[[], Served]) -> None:
        self.app = app
        self.credentials = credentials
        self.served = served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        creds, served = self.credentials(), self.served()
        if creds.configured:
            how = creds.check(headers.get("authorization", ""))
            if how is None:
                await _reply(send, 401, "authentication required", {"www-authenticate": 'Basic realm="jobqueue"'})
                return
        else:
            how = "loopback"
            problem = _not_loopback(scope, headers)
            if problem:
                await _reply(send, 401, problem, {})
                return
        if how == "loopback" or served.hosts:
            problem = served.host_problem(headers.get("host"), loopback_mode=how == "loopback")
            if problem:
                await _reply(send, 421, problem, {}, text=True)
                return
        if scope["method"] not in SAFE_METHODS and how != "bearer":
            problem = served.origin_problem(headers.get("origin"), headers.get("referer"))
            problem = problem or _csrf_problem(headers, creds.csrf_token)
            if problem:
                await _reply(send, 403, problem, {})
                return
        await self.app(scope, receive, send)


def _not_loopback(scope: Scope, headers: dict[str, str]) -> str | None:
    """Why a request is not known to come from a loopback client, or None when it is.

    The peer is ``scope["client"]``, which proxy-header middleware (uvicorn's, when
    ``forwarded_allow_ips`` trusts the peer) may have rewritten from ``X-Forwarded-For``; no trace
    of the socket peer is kept then. Such middleware only acts on those headers, and a proxy on this
    machine adds them, so a request carrying any is refused whatever address they name.
    """
    client = scope.get("client")
    if client is None or not is_loopback(client[0]):
        return NO_CREDENTIALS
    forwarded = next((name for name in FORWARDED_HEADERS if name in headers), None)
    if forwarded:
        return f"a request through a proxy (it has a {forwarded} header) is not a loopback client; {NO_CREDENTIALS}"
    return None


def _csrf_problem(headers: dict[str, str], expected: str) -> str | None:
    if not hmac.compare_digest(headers.get(CSRF_HEADER, "").encode(), expected.encode()):
        return "missing or wrong X-CSRF-Token header"
    return None


async def _reply(send: Send, status: int, message: str, extra: dict[str, str], *, text: bool = False) -> None:
    """``{"error": message}``, or with ``text`` the message as one line of plain text (for a
    request the dashboard does not serve at all, read in a browser as often as by a script)."""
    body = (message + "\n").encode() if text else json.dumps({"error": message}).encode()
    kind = b"text/plain; charset=utf-8" if text else b"application/json"
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
