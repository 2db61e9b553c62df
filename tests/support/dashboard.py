"""The dashboard served by a real uvicorn, and a probe app that shows which client uvicorn handed it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobqueue.dashboard import create_app
from tests.support.waiting import free_port, wait_for

SEEN_CLIENT = "x-probe-client"


@asynccontextmanager
async def serving(app: ASGIApp, **config: Any) -> AsyncIterator[str]:
    """``app`` served by uvicorn on a free loopback port (uvicorn's ``Config`` options in ``config``);
    yields its base URL."""
    port = free_port()
    options = {"host": "127.0.0.1", "port": port, "log_level": "warning", "lifespan": "off", **config}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    task = asyncio.create_task(server.serve())
    await wait_for(lambda: asyncio.sleep(0, server.started or task.done()), what="uvicorn to start")
    if task.done():
        task.result()  # uvicorn could not start: its error, not a timeout
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class ShowClient:
    """Passes every request on, answering with the ``scope["client"]`` the app was given in the
    ``x-probe-client`` response header: what uvicorn's proxy-header middleware made of the peer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")

        async def send_showing(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[SEEN_CLIENT] = client[0] if client else ""
            await send(message)

        await self.app(scope, receive, send_showing)


def probe_app() -> ASGIApp:
    """The dashboard without credentials behind ``ShowClient`` (``uvicorn --factory``)."""
    return ShowClient(create_app(token="", user="", password=""))
