"""The FastAPI example runs: its handlers enqueue through the shared pool, its lifespan closes it."""

import asyncio
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from examples.fastapi_app import app
from jobqueue import connection
from tests.support.waiting import ROOT, free_port, wait_for


async def test_fastapi_example_enqueues_and_reports_jobs():
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            first = await client.post("/products/product-123/processing")
            assert first.status_code == 202
            assert first.json()["embedding_job"] == {"id": "product-embedding:product-123", "created": True}
            again = (await client.post("/products/product-123/processing")).json()
            assert again["enrichment_job"]["created"] is False
            job = (await client.get("/jobs/product-enrichment/product-enrichment:product-123")).json()
            assert job["state"] == "waiting" and job["priority"] == 3
            assert (await client.post("/products/bad id/processing")).status_code == 422
            assert (await client.get("/jobs/emails/x")).status_code == 404
            assert (await client.get("/health")).json() == {"redis": True}
            assert connection._client is not None
    assert connection._client is None  # the lifespan closed the pool


async def test_readme_command_serves_the_example_with_uvicorn(redis_url, redis_client, tmp_path):
    port = free_port()
    command = [str(Path(sys.executable).parent / "uvicorn"), "examples.fastapi_app:app", "--port", str(port)]
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

                async def serving():
                    try:
                        return (await client.get("/health")).json()
                    except httpx.TransportError:
                        assert server.poll() is None, "uvicorn exited"
                        return None

                assert await wait_for(serving, timeout=30, what="uvicorn to serve /health") == {"redis": True}
                first = await client.post("/products/product-9/reindex")
                assert (first.status_code, first.json()) == (
                    202,
                    {"job_id": "product-embedding:product-9", "created": True},
                )
                again = await client.post("/products/product-9/reindex")
                assert again.json()["created"] is False
                assert (await client.post("/products/bad id/reindex")).status_code == 422
                job = (await client.get("/jobs/product-embedding/product-embedding:product-9")).json()
                assert job["state"] == "waiting" and job["payload"]["triggered_by"] == "api.reindex"
                if importlib.util.find_spec("jobqueue.dashboard") is not None:
                    assert (await client.get("/admin/queues/")).status_code == 200
        finally:
            server.terminate()
            await asyncio.to_thread(server.wait, 20)
            log.seek(0)
            output = log.read().decode()
    assert "Traceback" not in output, output
