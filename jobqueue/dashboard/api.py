"""The dashboard's JSON API (documented in docs/dashboard.md and docs/dashboard-live.md); the page uses nothing else."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from jobqueue._overview import all_summaries, queue_for_job, queue_summary, redis_servers
from jobqueue.batches import get_batches
from jobqueue.constants import LOG_LINES_KEPT
from jobqueue.coreapi.queues import get_queue
from jobqueue.dashboard.live import job_events
from jobqueue.errors import InvalidJobError, JobNotFoundError
from jobqueue.queue._inspection import LIST_STATES
from jobqueue.schedules._schedule_rows import schedule_rows
from jobqueue.schedules.schedules import remove_schedule

MAX_PAGE_SIZE = 200
# A job's log lines the page shows: the newest this many, unless it asks for more.
LOG_TAIL = 200
CANCEL_REASON = "cancelled from the dashboard"


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidJobError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise InvalidJobError(f"{name} must be between {low} and {high}, got {value}")
    return value


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidJobError("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidJobError("the request body must be a JSON object")
    return body


async def overview(request: Request) -> JSONResponse:
    servers = await redis_servers()
    return JSONResponse(
        {
            "queues": await all_summaries(),
            "redis_used_memory": sum(server["used_memory"] for server in servers),
            "redis_servers": servers,
        }
    )


async def queue_detail(request: Request) -> JSONResponse:
    queue = get_queue(request.path_params["queue"])
    minutes = _int(request, "minutes", 60, 1, 1440)
    return JSONResponse(await queue_summary(queue, minutes))


async def queue_jobs(request: Request) -> JSONResponse:
    queue = get_queue(request.path_params["queue"])
    state = request.query_params.get("state", "waiting")
    if state not in LIST_STATES:
        raise InvalidJobError(f"state must be one of {', '.join(LIST_STATES)}, got {state!r}")
    page = _int(request, "page", 1, 1, 1_000_000)
    size = _int(request, "size", 20, 1, MAX_PAGE_SIZE)
    start = (page - 1) * size
    jobs = await queue.get_jobs(state, start, start + size - 1)
    total = (await queue.get_job_counts())[state]  # type: ignore[literal-required]
    return JSONResponse(
        {"queue": queue.name, "state": state, "page": page, "size": size, "total": total, "jobs": _jobs(jobs)}
    )


async def queue_workers(request: Request) -> JSONResponse:
    queue = get_queue(request.path_params["queue"])
    return JSONResponse({"queue": queue.name, "workers": await queue.get_workers()})


async def queue_batches(request: Request) -> JSONResponse:
    """The queue's batch lane (``jobqueue.batches``): pending requests and its submissions."""
    queue = get_queue(request.path_params["queue"])
    return JSONResponse((await get_batches(queue.name)).as_dict())


async def job_detail(request: Request) -> JSONResponse:
    job_id = request.path_params["job_id"]
    job = await queue_for_job(job_id).get_job(job_id)
    if job is None:
        raise JobNotFoundError(f"job {job_id} not found")
    return JSONResponse(job.to_dict())


async def job_logs(request: Request) -> JSONResponse:
    job_id = request.path_params["job_id"]
    tail = _int(request, "tail", LOG_TAIL, 1, LOG_LINES_KEPT)
    lines = await queue_for_job(job_id).get_job_logs(job_id, -tail, -1)
    return JSONResponse({"job_id": job_id, "lines": lines})


async def job_timeline(request: Request) -> JSONResponse:
    job_id = request.path_params["job_id"]
    events, last = await job_events(job_id, request.query_params.get("since"))
    return JSONResponse({"job_id": job_id, "events": [e.to_dict() for e in events], "last_id": last})


def _jobs(jobs: list[Any]) -> list[dict[str, Any]]:
    return [j.to_dict() for j in jobs]


async def queue_action(request: Request) -> JSONResponse:
    queue = get_queue(request.path_params["queue"])
    action = request.path_params["action"]
    body = await _body(request)
    if action == "pause":
        await queue.pause()
        return JSONResponse({"paused": True})
    if action == "resume":
        await queue.resume()
        return JSONResponse({"paused": False})
    if action == "drain":
        return JSONResponse({"removed": await queue.drain(delayed=bool(body.get("delayed", False)))})
    if action == "clean":
        status = body.get("status", "completed")
        removed = await queue.clean(body.get("grace", 0), body.get("limit", 0), status)
        return JSONResponse({"removed": len(removed), "ids": removed})
    if action == "retry-failed":
        return JSONResponse({"retried": len(await queue.retry_failed())})
    raise JobNotFoundError(f"no action {action!r} on queues")


async def job_action(request: Request) -> JSONResponse:
    job_id, action = request.path_params["job_id"], request.path_params["action"]
    queue = queue_for_job(job_id)
    if action == "retry":
        handle = await queue.retry_job(job_id)
        return JSONResponse({"job_id": handle.job_id, "state": await handle.status()})
    if action == "remove":
        if not await queue.remove_job(job_id):
            raise JobNotFoundError(f"job {job_id} not found")
        return JSONResponse({"removed": True})
    if action == "promote":
        await queue.promote_job(job_id)
        return JSONResponse({"job_id": job_id, "state": await queue.get_job_state(job_id)})
    if action == "cancel":
        reason = (await _body(request)).get("reason", CANCEL_REASON)
        was = await queue.cancel_job(job_id, reason)
        return JSONResponse({"job_id": job_id, "was": was, "state": await queue.get_job_state(job_id)})
    raise JobNotFoundError(f"no action {action!r} on jobs")


async def schedules(request: Request) -> JSONResponse:
    return JSONResponse({"schedules": await schedule_rows(request.query_params.get("queue"))})


async def schedule_action(request: Request) -> JSONResponse:
    schedule_id, action = request.path_params["schedule_id"], request.path_params["action"]
    if action == "remove":
        if not await remove_schedule(schedule_id):
            raise JobNotFoundError(f"no schedule with id {schedule_id!r}")
        return JSONResponse({"removed": True})
    raise JobNotFoundError(f"no action {action!r} on schedules")


routes = [
    Route("/api/queues", overview),
    Route("/api/queues/{queue}", queue_detail),
    Route("/api/queues/{queue}/jobs", queue_jobs),
    Route("/api/queues/{queue}/workers", queue_workers),
    Route("/api/queues/{queue}/batches", queue_batches),
    Route("/api/queues/{queue}/{action}", queue_action, methods=["POST"]),
    Route("/api/jobs/{job_id:path}/{action}", job_action, methods=["POST"]),
    Route("/api/jobs/{job_id:path}/logs", job_logs),
    Route("/api/jobs/{job_id:path}/events", job_timeline),
    Route("/api/jobs/{job_id:path}", job_detail),
    Route("/api/schedules", schedules),
    Route("/api/schedules/{schedule_id:path}/{action}", schedule_action, methods=["POST"]),
]
