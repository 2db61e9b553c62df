"""A FastAPI app that owns recurring schedules: declared at every start, changed at run time.

Run it with ``uvicorn examples.schedules_app:app`` next to the workers of the schedules' queues
(``arq workers.EmbeddingSettings``), which fire them. Declaring the schedules in the lifespan is
safe on every start and in every replica: ``upsert_schedule`` is by id, and an unchanged schedule
keeps its next slot.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

import jobqueue

# The schedules this service wants to exist.
DECLARED: dict[str, dict[str, Any]] = {
    "reembed-featured": {
        "queue": "product-embedding",
        "cron": "30 2 * * *",
        "tz": "Europe/London",
        "payload": {"product_id": "featured", "triggered_by": "schedule"},
    },
}


@asynccontextmanager
async def lifespan(app: FastAPI):
    for schedule_id, definition in DECLARED.items():
        await jobqueue.upsert_schedule(schedule_id, **definition)
    yield
    await jobqueue.close_queues()


app = FastAPI(lifespan=lifespan)


class ScheduleIn(BaseModel):
    queue: str
    cron: str | None = None
    every: float | None = None
    tz: str = "UTC"
    payload: dict[str, Any]
    priority: int | None = None
    limit: int | None = None


@app.get("/schedules")
async def list_schedules() -> list[dict[str, Any]]:
    return [s.model_dump(mode="json") for s in await jobqueue.get_schedules()]


@app.put("/schedules/{schedule_id}")
async def put_schedule(schedule_id: str, body: ScheduleIn) -> dict[str, Any]:
    try:
        schedule = await jobqueue.upsert_schedule(schedule_id, **body.model_dump())
    except jobqueue.InvalidJobError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    return schedule.model_dump(mode="json")


@app.delete("/schedules/{schedule_id}", status_code=204)
async def delete_schedule(schedule_id: str) -> None:
    if not await jobqueue.remove_schedule(schedule_id):
        raise HTTPException(status_code=404, detail=f"no schedule {schedule_id}")
