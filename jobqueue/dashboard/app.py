"""The dashboard as an ASGI app: ``create_app()`` mounts at any prefix (``/admin/queues``).

One page (``/``) over the JSON API (``/api/...``, see ``jobqueue.dashboard.api``), the page's own
script and style (``/static/...``) and the queue-wide Prometheus metrics (``/metrics``). Every route
is behind ``jobqueue.dashboard.auth``, and every response carries ``jobqueue.dashboard.headers``.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jobqueue.backend.connection import close_queues
from jobqueue.collector import CONTENT_TYPE_LATEST, render_queue_metrics
from jobqueue.dashboard import api
from jobqueue.dashboard.auth import AuthMiddleware, Credentials, resolve_served
from jobqueue.dashboard.headers import SecurityHeadersMiddleware
from jobqueue.dashboard.live import MAX_STREAMS, LiveStreams
from jobqueue.dashboard.origins import Served
from jobqueue.errors import ConfigurationError, InvalidJobError, JobNotFoundError, JobStateError, RedisUnavailableError

HERE = Path(__file__).parent
POLL_INTERVAL_MS = 2000


def _error(status: int):
    async def handler(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=status)

    return handler


def _listed(value: str | Iterable[str] | None) -> str | list[str] | None:
    return value if value is None or isinstance(value, str) else list(value)  # read twice: not an iterator


def create_app(
    *,
    token: str | None = None,
    user: str | None = None,
    password: str | None = None,
    allowed_hosts: str | Iterable[str] | None = None,
    allowed_origins: str | Iterable[str] | None = None,
    poll_interval_ms: int = POLL_INTERVAL_MS,
    max_live_streams: int = MAX_STREAMS,
    close_pool_on_shutdown: bool = False,
) -> Starlette:
    """The dashboard app. Credentials default to ``JOBQUEUE_DASHBOARD_TOKEN`` /
    ``JOBQUEUE_DASHBOARD_USER`` + ``JOBQUEUE_DASHBOARD_PASSWORD``; with none, only loopback
    clients naming a loopback host get in. ``allowed_hosts`` and ``allowed_origins`` (lists or
    comma-separated) default to ``JOBQUEUE_DASHBOARD_ALLOWED_HOSTS`` and
    ``JOBQUEUE_DASHBOARD_ALLOWED_ORIGINS``: the host names, besides loopback ones, the dashboard
    answers to, and the origins actions may come from. ``max_live_streams`` bounds the pages
    that get live updates at once (each holds a Redis connection; the rest poll every
    ``poll_interval_ms``; see ``jobqueue.dashboard.live``). ``close_pool_on_shutdown`` closes jobqueue's
    pool when the app stops (for the app served alone; a host app closes it in its own lifespan).
    """
    given = (token, user, password)
    if any(v is not None for v in given):
        Credentials.resolve(*given)  # half-given credentials fail here, not at the first request
    hosts, origins = _listed(allowed_hosts), _listed(allowed_origins)
    Served.parse(hosts or (), origins or ())  # so do bad hosts or origins
    live = LiveStreams(max_live_streams)

    @cache
    def credentials() -> Credentials:  # the environment is read on first use, never at import
        return Credentials.resolve(*given)

    @cache
    def served() -> Served:
        return resolve_served(hosts, origins)

    templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    page = templates.get_template("index.html")

    async def index(request: Request) -> HTMLResponse:
        base = str(request.scope.get("root_path", "")).rstrip("/")
        html = page.render(base=base, csrf=credentials().csrf_token, poll_interval_ms=poll_interval_ms)
        return HTMLResponse(html, headers={"cache-control": "no-store"})

    async def metrics(request: Request) -> Response:
        return Response(await render_queue_metrics(), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        yield
        if close_pool_on_shutdown:
            await close_queues()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/metrics", metrics),
            Route("/api/events", live.endpoint),
            *api.routes,
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[
            Middleware(SecurityHeadersMiddleware),
            Middleware(AuthMiddleware, credentials=credentials, served=served),
        ],
        exception_handlers={
            InvalidJobError: _error(400),
            JobNotFoundError: _error(404),
            JobStateError: _error(409),
            RedisUnavailableError: _error(503),
            ConfigurationError: _error(500),  # a worker settings class cannot be built (api/schedules)
        },
        lifespan=lifespan,
    )
    app.state.live_streams = live  # jobqueue.dashboard.live.serve stops them when the server stops
    return app
