"""The FastAPI example runs: its handlers enqueue through the shared pool, its lifespan closes it."""

import httpx

from examples.fastapi_app import app
from jobqueue import connection


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
