"""A FastAPI app that enqueues jobs from its handlers, as in docs/enqueueing.md.

Run it with ``uvicorn examples.fastapi_app:app`` (``pip install -e '.[server]'``) next to the
workers (``make run``, or ``arq workers.EmbeddingSettings``). The connection pool is created on the
first enqueue and closed in the lifespan. The dashboard is at ``/admin/queues/``.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException

import jobqueue
from jobqueue.dashboard import create_app


@asynccontextmanager
async def lifespan(app: FastAPI):
    yield
    await jobqueue.close_queues()  # idempotent


app = FastAPI(lifespan=lifespan)

# The dashboard and its /metrics. Credentials from JOBQUEUE_DASHBOARD_TOKEN (or _USER/_PASSWORD);
# with none set it answers loopback clients only.
app.mount("/admin/queues", create_app())


@app.post("/products/{product_id}/reindex", status_code=202)
async def reindex(product_id: str) -> dict[str, object]:
    try:
        handle = await jobqueue.enqueue_product_embedding(product_id, triggered_by="api.reindex")
    except jobqueue.InvalidJobError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    except jobqueue.RedisUnavailableError as exc:
        raise HTTPException(status_code=503, detail="job queue unavailable") from exc
    return {"job_id": handle.job_id, "created": handle.created}


@app.post("/products/{product_id}/processing", status_code=202)
async def process_product(product_id: str) -> dict[str, object]:
    try:
        jobs = await jobqueue.enqueue_product_processing(product_id, triggered_by="product.created")
    except jobqueue.InvalidJobError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    except jobqueue.RedisUnavailableError as exc:
        raise HTTPException(status_code=503, detail="job queue unavailable") from exc
    return {
        "enrichment_job": {"id": jobs.enrichment_job.job_id, "created": jobs.enrichment_job.created},
        "embedding_job": {"id": jobs.embedding_job.job_id, "created": jobs.embedding_job.created},
    }


@app.get("/jobs/{queue}/{job_id}")
async def job_status(queue: str, job_id: str) -> dict[str, object]:
    try:
        job = await jobqueue.get_queue(queue).get_job(job_id)
    except jobqueue.InvalidJobError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    if job is None:
        raise HTTPException(status_code=404, detail="no such job")
    return job.to_dict()


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"redis": await jobqueue.check_queues_health()}  # never raises
