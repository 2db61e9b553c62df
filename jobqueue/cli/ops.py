"""Operations commands: stats, pause/resume, clean, retry, remove, cancel, promote, drain, job, jobs, workers,
dashboard. Errors (unknown queue or job, bad argument, Redis down) are one line and exit code 1."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from jobqueue._overview import all_summaries, queue_for_job
from jobqueue.cli._app import app
from jobqueue.cli._output import JSON_HELP, ms_time, per_minute, print_json, run_async, seconds, table
from jobqueue.coreapi.queues import QUEUES, get_queue
from jobqueue.errors import JobNotFoundError, JobQueueError
from jobqueue.queue._inspection import LIST_STATES
from jobqueue.queue.job import JobInfo

JsonFlag = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
QueueArg = Annotated[str, typer.Argument(help=f"Queue name: {', '.join(QUEUES)}.", show_default=False)]


@app.command()
def stats(as_json: JsonFlag = False) -> None:
    """Every queue: counts, paused, workers, the last hour's throughput, failures and p50/p95, and
    the LLM tokens and cost of the last hour and day."""
    summaries = run_async(all_summaries)
    if as_json:
        print_json([{k: v for k, v in s.items() if k != "history"} for s in summaries])
        return
    columns = ["queue", "state", "waiting", "active", "delayed", "paused", "completed", "failed"]
    columns += ["workers", "done/min", "failed %", "p50", "p95"]
    rows = [
        [s["name"], "paused" if s["paused"] else "running"]
        + [s["counts"][k] for k in ("waiting", "active", "delayed", "paused", "completed", "failed")]
        + [s["workers"], per_minute(s["throughput_per_minute"]), f"{s['failure_rate'] * 100:.1f}"]
        + [seconds(s["duration_p50"]), seconds(s["duration_p95"])]
        for s in summaries
    ]
    title = "queues (rates and durations: last hour; paused = jobs ready to run in a paused queue)"
    table(title, columns, rows, set(columns[2:]))
    spend_columns = ["queue", "requests 1h", "tokens in 1h", "tokens out 1h", "cost 1h"]
    spend_columns += ["requests 24h", "tokens in 24h", "tokens out 24h", "cost 24h"]
    spend_rows = [
        [s["name"]] + [figure for window in ("hour", "day") for figure in _spend_cells(s["llm"][window])]
        for s in summaries
    ]
    table("LLM spend (priced from JOBQUEUE_LLM_PRICES)", spend_columns, spend_rows, set(spend_columns[1:]))


def _spend_cells(window: dict[str, Any]) -> list[str]:
    return [
        f"{window['requests']:,.0f}",
        f"{window['input_tokens']:,}",
        f"{window['output_tokens']:,}",
        f"${window['cost_usd']:,.4f}",
    ]


@app.command()
def pause(queue: QueueArg) -> None:
    """Stop workers of every process from starting jobs of QUEUE (enqueues still work)."""
    q = get_queue(queue)
    run_async(q.pause)
    print(f"{q.name}: paused")


@app.command()
def resume(queue: QueueArg) -> None:
    """Let workers start jobs of QUEUE again."""
    q = get_queue(queue)
    run_async(q.resume)
    print(f"{q.name}: resumed")


@app.command()
def clean(
    queue: QueueArg,
    status: Annotated[str, typer.Option(help="completed, failed, waiting or delayed.")] = "completed",
    grace: Annotated[float, typer.Option(help="Only jobs older than this many seconds.")] = 0,
    limit: Annotated[int, typer.Option(help="Remove at most this many (0: no limit).")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Remove STATUS jobs of QUEUE older than GRACE seconds."""
    q = get_queue(queue)
    removed = run_async(lambda: q.clean(grace, limit, status))  # type: ignore[arg-type]
    if as_json:
        print_json({"queue": q.name, "status": status, "removed": removed})
    else:
        print(f"{q.name}: removed {len(removed)} {status} job(s)")


@app.command()
def retry(
    queue: QueueArg,
    job_id: Annotated[str | None, typer.Argument(help="The failed job to retry.", show_default=False)] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Retry every failed job.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Put a failed job (or, with --all-failed, every failed job) back in QUEUE with fresh attempts."""
    q = get_queue(queue)
    if (job_id is None) == (not all_failed):
        raise JobQueueError("give a JOB_ID or --all-failed (one of them)")
    if job_id is not None:
        handles = [run_async(lambda: q.retry_job(job_id))]
    else:
        handles = run_async(q.retry_failed)
    ids = [h.job_id for h in handles]
    if as_json:
        print_json({"queue": q.name, "retried": ids})
    else:
        print(f"{q.name}: {len(ids)} job(s) back in the queue")


@app.command()
def remove(queue: QueueArg, job_id: Annotated[str, typer.Argument(show_default=False)]) -> None:
    """Remove a job of QUEUE in any state but active."""
    q = get_queue(queue)
    if not run_async(lambda: q.remove_job(job_id)):
        raise JobNotFoundError(f"job {job_id} not found in queue {q.name}")
    print(f"{q.name}: removed {job_id}")


@app.command()
def cancel(
    queue: QueueArg,
    job_id: Annotated[str, typer.Argument(show_default=False)],
    reason: Annotated[str | None, typer.Option(help="Recorded in the job's error.")] = None,
) -> None:
    """Cancel a job of QUEUE: it ends failed (JobCancelled); a running one within about a second."""
    q = get_queue(queue)
    state = run_async(lambda: q.cancel_job(job_id, reason))
    what = "its worker stops it within about a second" if state == "active" else "failed (JobCancelled)"
    print(f"{q.name}: cancelled {job_id} ({state}): {what}")


@app.command()
def promote(queue: QueueArg, job_id: Annotated[str, typer.Argument(show_default=False)]) -> None:
    """Make a delayed job of QUEUE due now (it keeps its priority)."""
    q = get_queue(queue)
    run_async(lambda: q.promote_job(job_id))
    print(f"{q.name}: {job_id} is due now")


@app.command()
def drain(
    queue: QueueArg,
    delayed: Annotated[bool, typer.Option("--delayed", help="Remove delayed jobs too.")] = False,
) -> None:
    """Remove every waiting job of QUEUE (active jobs run on)."""
    q = get_queue(queue)
    removed = run_async(lambda: q.drain(delayed=delayed))
    print(f"{q.name}: removed {removed} job(s)")


def _job_rows(job: JobInfo) -> list[list[Any]]:
    """The job's fields; its timeline only as far as it got (no ``due -`` for a job due at once)."""
    rows = [
        ["queue", job.queue_name],
        ["state", job.state],
        ["function", job.function],
        ["priority", job.priority],
        ["attempts", job.attempts_made],
    ]
    timeline = [
        ["enqueued", job.enqueued_at],
        ["due", job.due_at],
        ["started", job.started_at],
        ["waited", None if job.waited is None else seconds(job.waited)],
        ["finished", job.finished_at],
        ["error", job.error],
    ]
    return rows + [row for row in timeline if row[1] is not None]


@app.command()
def job(
    job_id: Annotated[str, typer.Argument(help="A job id; its queue is the part before ':'.", show_default=False)],
    as_json: JsonFlag = False,
) -> None:
    """Inspect one job: state, priority, attempts, timeline, payload, result or error."""
    info = run_async(lambda: queue_for_job(job_id).get_job(job_id))
    if info is None:
        raise JobNotFoundError(f"job {job_id} not found")
    if as_json:
        print_json(info.to_dict())
        return
    table(job_id, ["field", "value"], _job_rows(info))
    print("payload:")
    print_json(info.payload)
    if info.result is not None:
        print("result:")
        print_json(info.result)


@app.command()
def jobs(
    queue: QueueArg,
    state: Annotated[str, typer.Option(help=", ".join(LIST_STATES) + ".")] = "waiting",
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """List jobs of QUEUE in STATE (waiting/delayed in run order, completed/failed newest first)."""
    q = get_queue(queue)
    found = run_async(lambda: q.get_jobs(state, 0, limit - 1))
    if as_json:
        print_json([j.to_dict() for j in found])
        return
    columns = ["job", "state", "priority", "attempts", "enqueued", "due", "finished", "error"]
    rows = [
        [j.job_id, j.state, j.priority, j.attempts_made, j.enqueued_at, j.due_at, j.finished_at, j.error] for j in found
    ]
    table(f"{q.name}: {state} ({len(found)} shown)", columns, rows, {"priority", "attempts"})


@app.command()
def workers(
    queue: Annotated[str | None, typer.Argument(help="Only this queue.", show_default=False)] = None,
    as_json: JsonFlag = False,
) -> None:
    """Live workers: id, host, pid, concurrency, running jobs, started, last heartbeat."""
    queues = [get_queue(queue)] if queue else list(QUEUES.values())

    async def read() -> list[dict[str, Any]]:
        return [{"queue": q.name, **w} for q in queues for w in await q.get_workers()]

    found = run_async(read)

    def times(w: dict[str, Any]) -> list[str]:
        return [ms_time(w["started_at"]), ms_time(w["last_heartbeat"])]

    if as_json:
        print_json(found)
        return
    columns = ["queue", "id", "host", "pid", "concurrency", "running", "started", "last heartbeat"]
    rows = [[w["queue"], w["id"], w["host"], w["pid"], w["concurrency"], w["running"], *times(w)] for w in found]
    table(f"{len(found)} live worker(s)", columns, rows, {"pid", "concurrency", "running"})


@app.command()
def dashboard(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Serve the web dashboard (and the queue metrics at /metrics).

    Without JOBQUEUE_DASHBOARD_TOKEN or JOBQUEUE_DASHBOARD_USER/_PASSWORD it listens on loopback only.
    """
    from jobqueue.dashboard import create_app
    from jobqueue.dashboard.auth import NO_CREDENTIALS, Credentials, resolve_served
    from jobqueue.dashboard.live import serve
    from jobqueue.dashboard.origins import is_loopback

    try:
        credentials = Credentials.resolve()
        resolve_served()  # a bad JOBQUEUE_DASHBOARD_ALLOWED_HOSTS/_ORIGINS fails here, not per request
    except ValueError as exc:
        raise JobQueueError(str(exc)) from None
    if not credentials.configured and not is_loopback(host):
        raise JobQueueError(f"refusing to listen on {host}: {NO_CREDENTIALS} (or listen on 127.0.0.1)")
    print(f"jobqueue dashboard on http://{host}:{port}/")
    serve(create_app(close_pool_on_shutdown=True), host=host, port=port, log_level="warning")
