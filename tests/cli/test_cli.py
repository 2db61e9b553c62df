"""The ``jobqueue`` command against real Redis: every operations command, and each error exit
(unknown queue, bad argument, unknown job, Redis down) as one line on stderr with a non-zero code.

Most commands run in-process through ``jobqueue.cli.run`` (what the console script calls); the
console script, ``python -m jobqueue.cli`` and ``jobqueue dashboard`` run as real subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from jobqueue.cli import run
from jobqueue.cli._output import run_async
from tests.support.waiting import ROOT, WorkerProcess, free_port
from tests.support.workers import behaviour_key, counts, run_burst, settings_for

SCRIPT = Path(sys.executable).parent / "jobqueue"


@pytest.fixture
def jq(capsys):
    """Run the command in-process: returns (exit code, stdout, stderr)."""

    def invoke(*args: str) -> tuple[int, str, str]:
        try:
            run(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 1, err
    assert err.startswith("jobqueue: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err


def failed_jobs(redis_url: str, *ids: str, ok: tuple[str, ...] = ()) -> None:
    """Run a burst worker over ``ids`` (each failing at once) and ``ok`` (each completing)."""
    client = redis.Redis.from_url(redis_url)
    for pid in ids:
        client.set(behaviour_key(pid), json.dumps({"permanent": True}))
    client.close()

    async def go():
        await jobqueue.enqueue_product_embeddings([*ids, *ok])
        await run_burst(settings_for())

    run_async(go)


def counts_now(queue=embeddings) -> dict[str, int]:
    return run_async(queue.get_job_counts)


def test_stats_shows_every_queue_and_its_json_has_exact_counts(jq, redis_url):
    failed_jobs(redis_url, "bad", ok=("good",))
    run_async(lambda: jobqueue.enqueue_product_embedding("next"))
    run_async(jobqueue.reminder_dispatch_queue.pause)
    code, out, _ = jq("stats")
    assert code == 0 and all(name in out for name in jobqueue.QUEUE_NAMES.values())
    code, out, _ = jq("stats", "--json")
    stats = {s["name"]: s for s in json.loads(out)}
    assert stats["product-embedding"]["counts"] == counts(waiting=1, completed=1, failed=1)
    assert stats["product-embedding"]["duration_p50"] is not None
    assert stats["reminder-dispatch"]["paused"] is True and stats["curated-collections"]["paused"] is False


def _cells(line: str) -> list[str]:
    """The cells of one row of a rich table (its header's borders are heavier)."""
    return [c.strip() for c in re.split("[│┃]", line)[1:-1]]


def test_stats_calls_a_paused_queue_and_its_ready_jobs_paused(jq):
    run_async(jobqueue.reminder_dispatch_queue.pause)
    content = {"title": "t", "body": "b"}
    run_async(lambda: jobqueue.enqueue_reminder_dispatch("s1", "u1", "PUSH", content, "2020-01-01T00:00:00Z"))
    code, out, _ = jq("stats")
    assert code == 0 and "held" not in out
    rows: dict[str, list[str]] = {}
    for cells in filter(None, map(_cells, out.splitlines())):
        rows.setdefault(cells[0], cells)  # the first table's rows (the LLM spend table follows)
    assert rows["queue"][:8] == ["queue", "state", "waiting", "active", "delayed", "paused", "completed", "failed"]
    assert rows["reminder-dispatch"][:8] == ["reminder-dispatch", "paused", "0", "0", "0", "1", "0", "0"]
    assert rows["product-embedding"][1] == "running"


def test_a_few_jobs_an_hour_do_not_read_as_zero_per_minute():
    from jobqueue.cli._output import per_minute

    assert [per_minute(v) for v in (0, 2 / 60, 0.5, 1, 12.345)] == ["0.0", "0.033", "0.5", "1.0", "12.3"]


def test_job_shows_its_times_in_utc_with_their_zone_and_no_empty_due(jq, redis_url):
    failed_jobs(redis_url, ok=("good",))
    code, out, _ = jq("job", "product-embedding:good")
    assert code == 0
    fields = {cells[0]: cells[1] for cells in map(_cells, out.splitlines()) if len(cells) == 2}
    assert "due" not in fields and "error" not in fields  # a completed job that was due at once
    for name in ("enqueued", "started", "finished"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", fields[name]), fields
    assert re.fullmatch(r"\d+ ms|\d+\.\d\d s", fields["waited"]), fields
    code, out, _ = jq("jobs", "product-embedding", "--state", "completed")
    assert re.search(r"\d\d:\d\d:\d\dZ", out), out


def test_pause_and_resume_a_queue(jq):
    assert jq("pause", "product-embedding")[:2] == (0, "product-embedding: paused\n")
    assert run_async(embeddings.is_paused)
    assert jq("resume", "product-embedding")[0] == 0
    assert not run_async(embeddings.is_paused)
    code, _, err = jq("pause", "emails")
    one_line_error(code, err, "unknown queue 'emails'", "product-embedding")


def test_clean_by_status_and_age(jq, redis_url):
    failed_jobs(redis_url, "bad", ok=("a", "b"))
    code, out, _ = jq("clean", "product-embedding", "--status", "completed", "--grace", "3600")
    assert (code, out) == (0, "product-embedding: removed 0 completed job(s)\n")
    code, out, _ = jq("clean", "product-embedding", "--status", "completed", "--limit", "1", "--json")
    assert code == 0 and len(json.loads(out)["removed"]) == 1
    assert counts_now() == counts(completed=1, failed=1)
    one_line_error(*jq("clean", "product-embedding", "--status", "everything")[::2], "status must be one of")
    one_line_error(*jq("clean", "product-embedding", "--grace", "-5")[::2], "grace")
    code, _, err = jq("clean", "product-embedding", "--limit", "many")
    assert code == 2 and "--limit" in err  # the argument parser's own usage error


def test_retry_one_failed_job_or_all(jq, redis_url):
    failed_jobs(redis_url, "bad1", "bad2", "bad3", ok=("good",))
    code, out, _ = jq("retry", "product-embedding", "product-embedding:bad1")
    assert (code, out) == (0, "product-embedding: 1 job(s) back in the queue\n")
    code, out, _ = jq("retry", "product-embedding", "--all-failed", "--json")
    assert sorted(json.loads(out)["retried"]) == ["product-embedding:bad2", "product-embedding:bad3"]
    assert counts_now() == counts(waiting=3, completed=1)
    one_line_error(*jq("retry", "product-embedding")[::2], "JOB_ID or --all-failed")
    one_line_error(*jq("retry", "product-embedding", "x", "--all-failed")[::2], "JOB_ID or --all-failed")
    one_line_error(*jq("retry", "product-embedding", "product-embedding:good")[::2], "only failed jobs")
    one_line_error(*jq("retry", "product-embedding", "product-embedding:ghost")[::2], "not found")


def test_remove_promote_and_drain(jq):
    run_async(lambda: jobqueue.enqueue_product_embedding("later", delay=3600))
    run_async(lambda: jobqueue.enqueue_product_embedding("soon", delay=3600))
    run_async(lambda: jobqueue.enqueue_product_embedding("now"))
    assert jq("remove", "product-embedding", "product-embedding:later")[0] == 0
    one_line_error(*jq("remove", "product-embedding", "product-embedding:later")[::2], "not found")
    one_line_error(*jq("remove", "product-enrichment", "product-embedding:now")[::2], "not a job of queue")
    assert jq("promote", "product-embedding", "product-embedding:soon")[0] == 0
    assert counts_now() == counts(waiting=2)
    one_line_error(*jq("promote", "product-embedding", "product-embedding:now")[::2], "not delayed")
    assert jq("drain", "product-embedding")[1] == "product-embedding: removed 2 job(s)\n"
    assert counts_now() == counts()


def test_job_inspects_one_job_from_its_id_alone(jq, redis_url):
    failed_jobs(redis_url, "bad")
    code, out, _ = jq("job", "product-embedding:bad")
    assert code == 0
    assert "failed" in out and "PermanentJobError: product bad cannot be embedded" in out
    assert '"product_id": "bad"' in out
    code, out, _ = jq("job", "product-embedding:bad", "--json")
    job = json.loads(out)
    assert (job["state"], job["attempts_made"], job["queue_name"]) == ("failed", 1, "product-embedding")
    one_line_error(*jq("job", "product-embedding:ghost")[::2], "not found")
    one_line_error(*jq("job", "no-such-queue:1")[::2], "cannot tell the queue")


def test_jobs_lists_a_state(jq, redis_url):
    failed_jobs(redis_url, "bad1", "bad2")
    code, out, _ = jq("jobs", "product-embedding", "--state", "failed", "--json")
    assert code == 0 and {j["job_id"] for j in json.loads(out)} == {"product-embedding:bad1", "product-embedding:bad2"}
    code, out, _ = jq("jobs", "product-embedding", "--state", "failed", "--limit", "1")
    assert code == 0 and "(1 shown)" in out
    one_line_error(*jq("jobs", "product-embedding", "--state", "lost")[::2], "status must be one of")


def test_enqueue_one_job_of_each_type(jq):
    cases = [
        ("product-embedding", "p1", "--priority", "1"),
        ("product-enrichment", "p1", "--prompt-version", "v2"),
        ("taste-profile-embedding", "tp1", "u1"),
        ("curated-collections", "home", "2025-12-21"),
        (
            "reminder-dispatch",
            "s1",
            "u1",
            "PUSH",
            "--title",
            "Hi",
            "--body",
            "Soon",
            "--scheduled-for",
            "2020-01-01T09:00:00Z",
        ),
    ]
    for args in cases:
        code, out, err = jq("enqueue", *args, "--json")
        assert code == 0, err
        assert json.loads(out)["created"] is True
    code, out, _ = jq("enqueue", "product-processing", "p2")
    assert out == "product-enrichment:p2: created\nproduct-embedding:p2: created\n"
    assert jq("enqueue", "product-embedding", "p1")[1] == "product-embedding:p1: already queued\n"
    for queue in jobqueue.QUEUES.values():
        assert counts_now(queue)["waiting"] >= 1, queue.name
    one_line_error(*jq("enqueue", "curated-collections", "attic", "2025-12-21")[::2], "surface")
    one_line_error(*jq("enqueue", "product-embedding", "p3", "--priority", "11")[::2], "priority")
    assert run_async(lambda: embeddings.get_job("product-embedding:p3")) is None


def _pythonpath() -> str:
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)


def _subprocess(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": _pythonpath(), **(env or {})}
    return subprocess.run(args, capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=timeout)


async def test_workers_lists_a_live_arq_worker_process_through_the_console_script():
    with WorkerProcess("tests.support.workers.EmbeddingTestSettings") as worker:
        await worker.wait_for(_worker_alive, timeout=20, what="the worker's heartbeat")
        done = await asyncio.to_thread(_subprocess, str(SCRIPT), "workers", "--json")
        assert done.returncode == 0, done.stderr
        (found,) = json.loads(done.stdout)
        assert (found["queue"], found["pid"], found["running"]) == ("product-embedding", worker.pid, 0)
        table = await asyncio.to_thread(_subprocess, str(SCRIPT), "workers", "product-embedding")
        assert str(worker.pid) in table.stdout and "1 live worker(s)" in table.stdout


async def _worker_alive() -> bool:
    return len(await embeddings.get_workers()) == 1


def test_python_dash_m_reports_redis_down_in_one_line_without_the_password():
    port = free_port()
    done = _subprocess(
        sys.executable, "-m", "jobqueue.cli", "stats", env={"REDIS_URL": f"redis://:pw123@127.0.0.1:{port}/2"}
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and f"redis://***@127.0.0.1:{port}/2" in done.stderr
    assert "pw123" not in done.stderr


def test_dashboard_refuses_a_public_address_without_credentials():
    env = {"JOBQUEUE_DASHBOARD_TOKEN": "", "JOBQUEUE_DASHBOARD_USER": "", "JOBQUEUE_DASHBOARD_PASSWORD": ""}
    done = _subprocess(str(SCRIPT), "dashboard", "--host", "0.0.0.0", "--port", str(free_port()), env=env)
    assert done.returncode == 1
    assert done.stderr.startswith("jobqueue: error: refusing to listen on 0.0.0.0")
    assert "JOBQUEUE_DASHBOARD_TOKEN" in done.stderr


def test_dashboard_serves_on_loopback_with_a_token():
    port = free_port()
    env = {**os.environ, "PYTHONPATH": _pythonpath(), "JOBQUEUE_DASHBOARD_TOKEN": "tok"}
    proc = subprocess.Popen([str(SCRIPT), "dashboard", "--port", str(port)], env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/queues", headers={"Authorization": "Bearer tok"})
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.1)
        assert response.status_code == 200 and len(response.json()["queues"]) == 5
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 401
    finally:
        proc.terminate()
        # uvicorn shuts down gracefully, then re-raises the signal it caught
        assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
