"""The dashboard's live side against real Redis and a real uvicorn: a job's timeline and logs, the
Server-Sent Events stream (filtered, resumable from Last-Event-ID, bounded), and its Redis
connection closed when the client leaves."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import redis

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from jobqueue.dashboard import create_app
from jobqueue.dashboard.live import CLIENT_NAME, STREAM_LIFETIME_S
from jobqueue.settings import get_settings
from tests.support.dashboard import serving
from tests.support.private_valkey import private_valkey
from tests.support.waiting import ROOT, free_port, wait_for
from tests.support.workers import RunningWorker, behaviour_key, release_key, run_burst, settings_for

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JOB = "product-embedding:p1"


def api(app=None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app or create_app(token=TOKEN))
    return httpx.AsyncClient(transport=transport, base_url="http://dash.test", headers=AUTH)


async def messages(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The stream's messages as {"id", "events", "retry"} (comments skipped)."""
    message: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            continue
        if line == "":
            if message:
                yield message
            message = {}
            continue
        name, _, value = line.partition(": ")
        message[{"data": "events"}.get(name, name)] = json.loads(value) if name == "data" else value


async def live_clients(redis_client) -> list[str]:
    prefix = f"{CLIENT_NAME}:{os.getpid()}:"
    return [c["name"] for c in await redis_client.client_list() if c["name"].startswith(prefix)]


async def test_a_jobs_timeline_holds_its_events_in_order_and_reads_on_from_an_id(redis_client):
    await redis_client.set(behaviour_key("p1"), json.dumps({"fail": 1, "progress": [40], "logs": ["step"]}))
    await jobqueue.enqueue_product_embedding("p1")
    await jobqueue.enqueue_product_embedding("other")
    await run_burst(settings_for())
    async with api() as c:
        timeline = (await c.get(f"/api/jobs/{JOB}/events")).json()
        logs = (await c.get(f"/api/jobs/{JOB}/logs")).json()
        one = (await c.get(f"/api/jobs/{JOB}/logs?tail=1")).json()
        after = (await c.get(f"/api/jobs/{JOB}/events?since={timeline['last_id']}")).json()
        bad = await c.get(f"/api/jobs/{JOB}/events?since=yesterday")
        missing = await c.get("/api/jobs/product-embedding:ghost/events")
    names = [e["name"] for e in timeline["events"]]
    assert names == ["added", "active", "progress", "retrying", "active", "progress", "completed"]
    assert {e["job_id"] for e in timeline["events"]} == {JOB}
    assert timeline["events"][2]["data"] == {"attempt": 1, "progress": 40}
    assert timeline["events"][3]["data"]["error"] == "RuntimeError: transient failure 1"
    assert logs["lines"] == ["step (try 1)", "step (try 2)"] and one["lines"] == ["step (try 2)"]
    assert after == {"job_id": JOB, "events": [], "last_id": timeline["last_id"]}
    assert bad.status_code == 400 and "since must be" in bad.json()["error"]
    assert missing.status_code == 404


async def test_a_timeline_leaves_out_an_earlier_job_under_the_same_id(redis_client):
    await jobqueue.enqueue_product_embedding("p1")
    await run_burst(settings_for())
    await jobqueue.enqueue_product_embedding("p1")
    async with api() as c:
        timeline = (await c.get(f"/api/jobs/{JOB}/events")).json()
    assert [e["name"] for e in timeline["events"]] == ["added"]


async def test_the_stream_sends_a_jobs_events_as_they_happen_and_resumes_after_a_reconnect(redis_client):
    await redis_client.set(behaviour_key("p1"), json.dumps({"block": True, "progress": [25, 75]}))
    async with serving(create_app(token=TOKEN)) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as c:
        seen: list[str] = []
        async with c.stream("GET", f"/api/events?job={JOB}") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = messages(response)
            assert (await anext(stream))["retry"] == "1000"
            await jobqueue.enqueue_product_embedding("other")  # filtered out: another job
            await jobqueue.enqueue_product_embedding("p1")
            async with RunningWorker(settings_for(concurrency=2)):
                async for message in stream:
                    seen += [e["name"] for e in message["events"]]
                    assert {(e["queue"], e["job_id"]) for e in message["events"]} == {("product-embedding", JOB)}
                    if seen.count("progress") == 2:
                        break
                last_id = message["id"]
                await redis_client.set(release_key("p1"), 1)
                await wait_for(lambda: _finished(JOB), what="the job to complete")
        assert seen[:2] == ["added", "active"] and seen[2:] == ["progress", "progress"]
        assert message["events"][-1]["data"]["progress"] == 75
        # The job completed while no stream was open: the browser reconnects with the last id.
        async with c.stream("GET", f"/api/events?job={JOB}", headers={"Last-Event-ID": last_id}) as response:
            async for message in messages(response):
                if "events" in message:
                    assert [e["name"] for e in message["events"]] == ["completed"]
                    break
        bad = await c.get("/api/events", headers={"Last-Event-ID": "nope:1-0"})
        assert bad.status_code == 400 and "names no queue" in bad.json()["error"]
        assert (await c.get("/api/events?queue=emails")).status_code == 400


async def _finished(job_id: str) -> bool:
    return await embeddings.get_job_state(job_id) == "completed"


async def test_streams_are_bounded_and_a_client_that_leaves_releases_its_connection(redis_client):
    app = create_app(token=TOKEN, max_live_streams=1)
    async with serving(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as c:
        async with c.stream("GET", "/api/events?queue=product-embedding") as response:
            stream = messages(response)  # kept: a collected generator would close the response
            assert (await anext(stream))["retry"] == "1000"
            assert len(await live_clients(redis_client)) == 1
            refused = await c.get("/api/events")
            assert refused.status_code == 503 and "too many live streams" in refused.json()["error"]
        # The client left: its stream ends and its Redis connection is closed, with no event needed.
        await wait_for(lambda: _none(live_clients(redis_client)), what="the stream's connection to close")
        async with c.stream("GET", "/api/events") as response:  # the slot is free again
            assert response.status_code == 200


async def _none(found) -> bool:
    return not await found


async def test_a_stream_ends_after_its_lifetime_and_says_when_to_reconnect(redis_client, monkeypatch):
    from jobqueue.dashboard import live

    monkeypatch.setattr(live, "STREAM_LIFETIME_S", 0.3)
    app = create_app(token=TOKEN)
    async with serving(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as c:
        async with c.stream("GET", "/api/events") as response:
            got = [m async for m in messages(response)]  # ends by itself
    assert got == [{"retry": "1000"}]
    await wait_for(lambda: _none(live_clients(redis_client)), what="the stream's connection to close")


async def test_stop_ends_open_streams_at_once_and_refuses_new_ones():
    app = create_app(token=TOKEN)
    async with serving(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as c:
        async with c.stream("GET", "/api/events") as response:
            stream = messages(response)
            assert (await anext(stream))["retry"] == "1000"
            app.state.live_streams.stop()
            assert [m async for m in stream] == []  # the response ends, long before its lifetime
        refused = await c.get("/api/events")
        assert refused.status_code == 503 and "the server is stopping" in refused.json()["error"]


async def test_jobqueue_dashboard_stops_at_once_with_a_page_open(redis_url):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("TOKEN", "USER", "PASSWORD"):
        env.pop(f"JOBQUEUE_DASHBOARD_{name}", None)
    command = [sys.executable, "-m", "jobqueue.cli", "dashboard", "--port", str(port)]
    server = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            await wait_for(lambda: _answers(c), timeout=20, what="jobqueue dashboard to listen")
            async with c.stream("GET", "/api/events") as response:
                stream = messages(response)
                assert (await anext(stream))["retry"] == "1000"
                started = time.monotonic()
                server.send_signal(signal.SIGINT)
                assert [m async for m in stream] == []
                await asyncio.to_thread(server.wait, 20)
                assert time.monotonic() - started < STREAM_LIFETIME_S / 2
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    output = server.communicate()[0].decode()
    # 130: uvicorn stops on SIGINT, then lets it end the process as Ctrl-C does
    assert server.returncode == 130 and "Traceback" not in output and "ERROR" not in output, output


async def _answers(c: httpx.AsyncClient) -> bool:
    try:
        return (await c.get("/api/queues")).status_code == 200
    except httpx.TransportError:
        return False


async def test_a_compact_stream_stays_small_however_busy_the_queue(redis_client):
    async with serving(create_app(token=TOKEN)) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as c:
        path = "/api/events?queue=product-embedding&compact=1"
        async with c.stream("GET", path) as response:
            stream = messages(response)
            assert (await anext(stream))["retry"] == "1000"
            await jobqueue.enqueue_product_embeddings([f"p{i}" for i in range(1200)])  # 1200 "added" events
            (newest,) = [i.decode() for i, _ in await redis_client.xrevrange(embeddings.keys.events, count=1)]
            got = []
            async for message in stream:
                got.append(message)
                if message["id"] == f"product-embedding:{newest}":
                    break
    # One event per message (the queue's last), and a full read behind skips to the newest event.
    assert all(len(m["events"]) == 1 and m["events"][0]["name"] == "added" for m in got)
    assert len(got) <= 4


async def test_redis_down_is_a_503_for_the_stream_and_the_timeline(monkeypatch):
    port = free_port()
    monkeypatch.setenv("REDIS_URL", f"redis://:hunter2@127.0.0.1:{port}/0")
    get_settings.cache_clear()
    app = create_app(token=TOKEN)
    async with api(app) as c:
        stream = await c.get("/api/events")
        timeline = await c.get(f"/api/jobs/{JOB}/events")
    for response in (stream, timeline):
        assert response.status_code == 503, response.text
        assert f"redis://***@127.0.0.1:{port}/0" in response.json()["error"] and "hunter2" not in response.text
    assert app.state.live_streams.open == 0


async def test_an_empty_timeline_reads_on_after_the_newest_event_not_from_the_start(monkeypatch):
    await jobqueue.enqueue_product_embedding("p1")
    await run_burst(settings_for())  # its events: added, active, completed
    monkeypatch.setenv("JOBQUEUE_EVENTS_MAXLEN", "0")  # the next job under the same id writes none
    get_settings.cache_clear()
    await jobqueue.enqueue_product_embedding("p1")
    async with api() as c:
        empty = (await c.get(f"/api/jobs/{JOB}/events")).json()
        after = (await c.get(f"/api/jobs/{JOB}/events?since={empty['last_id']}")).json()
    assert empty["events"] == [] and after["events"] == []


async def test_a_redis_user_denied_client_commands_still_gets_the_stream(monkeypatch):
    """On a Valkey of the test's own: the shared server's users are left alone."""
    with private_valkey() as server:
        admin = redis.Redis.from_url(server.connection_url)
        rights = {"keys": ["*"], "channels": ["*"], "commands": ["+@all", "-client"]}
        admin.acl_setuser("app", enabled=True, passwords=["+pw"], **rights)
        admin.close()
        monkeypatch.setenv("REDIS_URL", f"redis://app:pw@127.0.0.1:{server.port}/0")
        get_settings.cache_clear()
        async with serving(create_app(token=TOKEN)) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as c:
            async with c.stream("GET", f"/api/events?job={JOB}") as response:
                assert response.status_code == 200
                stream = messages(response)
                assert (await anext(stream))["retry"] == "1000"
                await jobqueue.enqueue_product_embedding("p1")
                assert [e["name"] for e in (await anext(stream))["events"]] == ["added"]
        await jobqueue.close_queues()
