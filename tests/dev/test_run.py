"""`make run` itself: it comes up (embedded Valkey, demo data, five workers), and a Ctrl-C stops all of it."""

import redis

from jobqueue.embedded import redis_answers
from tests.support.devstack import DevProcess, dev_env
from tests.support.waiting import ROOT


async def test_make_run_comes_up_and_stops_cleanly_on_ctrl_c(tmp_path):
    env = dev_env(
        tmp_path,
        JOBQUEUE_DEV_DATA_DIR=str(tmp_path / ".jobqueue"),
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'run.db'}",
    )
    with DevProcess(["make", "--no-print-directory", "run", "ARGS=--demo"], cwd=ROOT, env=env) as run:
        await run.wait_for_output(r"\n  cannot run +nothing: every job can run")
        await run.wait_for_output(r"jobqueue dev: ready: 5 workers are up")
        out = run.output()
        assert "embedded Valkey started there" in out and "LLM         FAKE (no LLM_API_KEY" in out
        assert "\n  demo data   wrote 12 products, 3 taste profiles, 3 reminder schedules\n" in out
        assert "\n  dashboard   http://127.0.0.1:" in out
        # make run turns the workers' metrics on (JOBQUEUE_METRICS_PORT=9310 unless set)
        assert "\n  metrics     http://127.0.0.1:9310/metrics, http://127.0.0.1:9311/metrics," in out
        client = redis.Redis.from_url(env["REDIS_URL"])
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.close()
        # Ctrl-C in a terminal: SIGINT to the foreground process group, make and jobqueue dev.
        code = await run.interrupt(group=True)
        out = run.output()
        assert code == -2, out[-3000:]  # make re-raises the SIGINT once its child has exited
        assert out.count("shutdown on SIGTERM") == 5, out[-3000:]  # each worker stopped once
        assert "jobqueue dev: stopped" in out
        assert "Traceback" not in out
    assert not redis_answers(env["REDIS_URL"])
    assert (tmp_path / ".jobqueue" / "appendonlydir").is_dir()


async def test_an_arq_worker_logs_one_line_per_run_without_arqs_huge_delay(redis_client):
    import jobqueue
    from tests.support.waiting import WorkerProcess, wait_for

    async def completed():
        return (await jobqueue.product_embedding_queue.get_job_counts())["completed"] >= 1

    await jobqueue.enqueue_product_embedding("logged", priority=1)
    with WorkerProcess("tests.support.workers.EmbeddingTestSettings") as worker:
        await worker.wait_for(completed, timeout=20, what="the job")
        await wait_for(lambda: _logged(worker), timeout=10, what="the run's log line")
        out = worker.output()
    line = next(line for line in out.splitlines() if "product-embedding:logged completed" in line)
    assert "attempt=1" in line and " in " in line and "waited=" in line
    assert "delayed=" not in out  # arq's reading of a priority-band score, filtered out


async def _logged(worker):
    return "product-embedding:logged completed" in worker.output()
