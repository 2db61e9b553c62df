"""Who may see and steer the dashboard: a bearer token or basic-auth credentials, and a CSRF guard.

- ``JOBQUEUE_DASHBOARD_TOKEN``: ``Authorization: Bearer <token>`` (scripts), or basic auth with any
  user name and the token as password (browsers).
- ``JOBQUEUE_DASHBOARD_USER`` + ``JOBQUEUE_DASHBOARD_PASSWORD``: basic auth.
- Neither: only loopback clients are let in (``jobqueue dashboard`` refuses to listen elsewhere).

Every other request gets 401. A POST made with basic auth (or none, on loopback) must also carry
``X-CSRF-Token`` with the token the page was served with, and a same-origin ``Origin`` if any:
a browser adds basic credentials to a forged cross-site request by itself, but no custom header.
A bearer token is never added by a browser, so bearer requests need no CSRF token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.types import ASGIApp, Receive, Scope, Send

CSRF_HEADER = "x-csrf-token"
NO_CREDENTIALS = (
    "the dashboard has no credentials configured: set JOBQUEUE_DASHBOARD_TOKEN "
    "or JOBQUEUE_DASHBOARD_USER and JOBQUEUE_DASHBOARD_PASSWORD"
)


class DashboardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOBQUEUE_DASHBOARD_", extra="ignore")

    token: str | None = None
    user: str | None = None
    password: str | None = None


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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AuthMiddleware:
    """401 for unauthenticated requests; 403 for an unsafe request without the CSRF token."""

    def __init__(self, app: ASGIApp, credentials: Callable[[], Credentials]) -> None:
        self.app = app
        self.credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        creds = self.credentials()
        if creds.configured:
            how = creds.check(headers.get("authorization", ""))
            if how is None:
                await _reply(send, 401, "authentication required", {"www-authenticate": 'Basic realm="jobqueue"'})
                return
        else:
            how = "loopback"
            client = scope.get("client")
            if client is None or not is_loopback(client[0]):
                await _reply(send, 401, NO_CREDENTIALS, {})
                return
        if scope["method"] not in ("GET", "HEAD", "OPTIONS") and how != "bearer":
            problem = _csrf_problem(headers, creds.csrf_token)
            if problem:
                await _reply(send, 403, problem, {})
                return
        await self.app(scope, receive, send)


def _csrf_problem(headers: dict[str, str], expected: str) -> str | None:
    origin = headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != headers.get("host"):
        return "cross-origin request refused"
    if not hmac.compare_digest(headers.get(CSRF_HEADER, "").encode(), expected.encode()):
        return "missing or wrong X-CSRF-Token header"
    return None


async def _reply(send: Send, status: int, message: str, extra: dict[str, str]) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
