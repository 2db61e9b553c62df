"""`jobqueue dev` and the README's quickstart, run as a new user would, in a fresh directory."""

import asyncio
import datetime as dt
import inspect
import re
import shlex
import socket
import subprocess
import sys

import httpx
import redis

import jobqueue
from jobqueue.backend._keys import QueueKeys
from jobqueue.embedded import redis_answers
from jobqueue.settings import get_settings
from tests.support.devstack import BIN, DevProcess, dev_env
from tests.support.waiting import ROOT, WorkerProcess, free_port
from workers.dev.devstack import WORKER_QUEUES
from workers.jobs.products import ProductEnrichment
from workers.providers.store import SqlStore

DIMS = 64
READY = r"jobqueue dev: ready: 5 workers are up"
READY_ONE = r"jobqueue dev: ready: 1 worker is up"


def _run(command, cwd, env):
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


async def test_quickstart_embeds_enriches_collects_and_delivers_a_reminder(tmp_path):
    env = dev_env(tmp_path, EMBEDDING_DIMS=str(DIMS))
    with DevProcess([BIN / "jobqueue", "dev", "--fake-llm"], cwd=tmp_path, env=env) as dev:
        summary = await dev.wait_for_output(r"cannot run +(.*)")
        assert summary.group(1) == "nothing: every job can run"
        out = dev.output()
        assert f"{env['REDIS_URL']} (embedded Valkey started there; data in {tmp_path / '.jobqueue'}" in out
        assert "FAKE (--fake-llm): a loopback OpenAI-compatible server" in out
        assert f"vectors of {DIMS} dimensions" in out
        assert "REMINDER_WEBHOOK_SECRET was unset: a generated one is used" in out
        await dev.wait_for_output(READY)
        dashboard = re.search(r"\n  dashboard +(http://\S+)", out).group(1)
        async with httpx.AsyncClient() as client:
            assert (await client.get(dashboard)).status_code == 200

        seeded = await asyncio.to_thread(_run, [BIN / "jobqueue", "seed-demo"], tmp_path, env)
        assert seeded.returncode == 0, seeded.stderr
        assert "wrote 12 products, 3 taste profiles, 3 reminder schedules" in seeded.stdout
        quickstart = await asyncio.to_thread(_run, [sys.executable, ROOT / "examples" / "quickstart.py"], tmp_path, env)
        assert quickstart.returncode == 0, quickstart.stderr + dev.output()[-3000:]
        lines = quickstart.stdout.splitlines()
        assert lines[0] == f"product-embedding:demo-p01: processed, {DIMS}-dimension vector stored"
        assert lines[1].startswith("product-enrichment:demo-p01: processed, version 1: 'Cast-iron Dutch oven")
        assert lines[2].startswith(f"curated-collections:home:{dt.datetime.now(dt.UTC).date()}: processed, 3 ")
        assert lines[3] == "reminder-dispatch:demo-reminder-1: processed, schedule SENT"
        await dev.wait_for_output(r"reminder received on PUSH for demo-user-1: 'Birthday reminder'")
        again = await asyncio.to_thread(_run, [sys.executable, ROOT / "examples" / "quickstart.py"], tmp_path, env)
        assert again.returncode == 0, again.stderr
        assert [line.split(": ", 1)[1].split(" (")[0] for line in again.stdout.splitlines()] == ["skipped"] * 4
        assert "reminder-dispatch:demo-reminder-1: skipped (schedule is SENT), schedule SENT" in again.stdout
        assert "LLM not configured" not in dev.output()

        store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'jobqueue.db'}")
        try:
            product = await store.get_product("demo-p01")
            assert len(product.embedding) == DIMS
            ProductEnrichment.model_validate(product.enrichment)
            assert product.enrichment_version == 1
            collections = await store.get_collections("home", dt.datetime.now(dt.UTC).date())
            assert len(collections) == 3 and all(c.title and c.product_ids for c in collections)
            assert (await store.get_schedule("demo-reminder-1")).status == "SENT"
        finally:
            await store.aclose()

        assert await dev.interrupt() == 0
        assert dev.output().rstrip().endswith("jobqueue dev: stopped")
    assert not redis_answers(env["REDIS_URL"])


ONE_WORKER = ["--worker", "EmbeddingSettings"]


async def test_a_delayed_job_survives_stopping_and_starting_dev(tmp_path, monkeypatch):
    env = dev_env(tmp_path)
    monkeypatch.setenv("REDIS_URL", env["REDIS_URL"])
    get_settings.cache_clear()
    with DevProcess([BIN / "jobqueue", "dev", "--fake-llm", *ONE_WORKER], cwd=tmp_path, env=env) as dev:
        await dev.wait_for_output(READY_ONE)
        handle = await jobqueue.enqueue_product_embedding("demo-p01", delay=3600)
        assert await handle.status() == "delayed"
        await jobqueue.close_queues()
        assert await dev.interrupt() == 0, dev.output()[-3000:]
    assert not redis_answers(env["REDIS_URL"])
    with DevProcess([BIN / "jobqueue", "dev", "--fake-llm", *ONE_WORKER], cwd=tmp_path, env=env) as dev:
        await dev.wait_for_output(READY_ONE)
        assert await handle.status() == "delayed"
        job = await jobqueue.product_embedding_queue.get_job(handle.job_id)
        assert job.payload["product_id"] == "demo-p01"
        await jobqueue.close_queues()
        assert await dev.interrupt() == 0


def test_help_prints_help_and_starts_nothing(tmp_path):
    env = dev_env(tmp_path)
    for command in (
        [BIN / "jobqueue", "dev", "--help"],
        [sys.executable, "-m", "workers.run", "--help"],
        [sys.executable, "-m", "jobqueue.cli", "dev", "--help"],
    ):
        out = _run(command, tmp_path, env)
        assert out.returncode == 0, out.stderr
        assert "Usage" in out.stdout and "--fake-llm" in out.stdout
    assert not redis_answers(env["REDIS_URL"])
    assert list(tmp_path.iterdir()) == []


def test_a_port_held_by_something_else_is_a_one_line_error(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = dev_env(tmp_path, REDIS_URL=f"redis://localhost:{port}/0")
        out = subprocess.run(
            [BIN / "jobqueue", "dev"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"jobqueue: error: nothing that speaks Redis answers at redis://localhost:{port}/0, but port {port} is taken: "
        "stop what listens there or set REDIS_URL to another port"
    )
    assert out.stdout == ""


def test_no_embedded_server_behind_a_password_or_a_remote_host(tmp_path):
    port = free_port()
    for url, says in [
        (f"redis://:s3cret@localhost:{port}", f"nothing answers at redis://***@localhost:{port}; an embedded Valkey"),
        (f"redis://redis.example.invalid:{port}", "an embedded Valkey can only be started for a redis:// URL on"),
    ]:
        env = dev_env(tmp_path, REDIS_URL=url)
        out = subprocess.run(
            [BIN / "jobqueue", "dev"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 1 and says in out.stderr and "s3cret" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


async def test_dev_uses_a_redis_that_answers_and_says_so(tmp_path, redis_url):
    env = dev_env(tmp_path, REDIS_URL=redis_url)
    command = [BIN / "jobqueue", "dev", "--no-fake-llm", "--no-webhook-receiver"]
    command += ["-w", "RemindersSettings", "-w", "EmbeddingSettings"]
    with DevProcess(command, cwd=tmp_path, env=env) as dev:
        await dev.wait_for_output(r"jobqueue dev: ready: 2 workers are up")
        out = dev.output()
        config = redis.Redis.from_url(redis_url, decode_responses=True).config_get("*")
        assert f"Redis       {redis_url} (a server that was already running; data in {config['dir']}, " in out
        assert "LLM         none configured" in out
        cannot = next(line for line in out.splitlines() if line.startswith("  cannot run"))
        assert "product-embedding, product-enrichment and taste-profile-embedding jobs: set LLM_API_KEY" in cannot
        assert "reminder-dispatch jobs: set REMINDER_WEBHOOK_SECRET" in cannot
        assert "LLM not configured" not in out and "notifier not configured" not in out
        assert await dev.interrupt() == 0
    assert redis.Redis.from_url(redis_url).ping()
    assert not (tmp_path / ".jobqueue").exists()


def test_an_unknown_worker_is_refused_before_anything_starts(tmp_path):
    env = dev_env(tmp_path)
    out = _run([BIN / "jobqueue", "dev", "-w", "EmbeddingSettings", "-w", "EmailSettings"], tmp_path, env)
    assert out.returncode == 1
    assert out.stderr.startswith("jobqueue: error: unknown worker EmailSettings: choose from EmbeddingSettings,")
    assert not redis_answers(env["REDIS_URL"]) and list(tmp_path.iterdir()) == []


def test_each_worker_class_serves_the_queue_dev_waits_for():
    import workers

    assert set(WORKER_QUEUES) == set(workers.__all__)
    for name, queue in WORKER_QUEUES.items():
        assert getattr(workers, name).queue_name == QueueKeys(queue).cron


async def test_a_worker_that_dies_stops_the_rest_with_exit_code_1(tmp_path):
    env = dev_env(tmp_path, JOBQUEUE_PRODUCT_EMBEDDING_CONCURRENCY="0")  # refused when the class is built
    command = [BIN / "jobqueue", "dev", "-w", "EmbeddingSettings", "-w", "RemindersSettings"]
    with DevProcess(command, cwd=tmp_path, env=env) as dev:
        await dev.wait_for_output(r"arq workers\.EmbeddingSettings exited with code 1; stopping the rest")
        assert await asyncio.to_thread(dev.proc.wait, 40) == 1
        assert dev.output().rstrip().endswith("jobqueue dev: stopped")
    assert not redis_answers(env["REDIS_URL"])


async def test_a_worker_started_by_hand_joins_dev_through_its_env_file(tmp_path, monkeypatch):
    # The fake LLM listens on a fixed port (JOBQUEUE_DEV_LLM_PORT here, 8090 by default), and
    # .jobqueue/env holds what a second shell needs: an embedding worker started by hand beside a
    # stack that runs none finds Redis, the store and the fake LLM through it.
    llm_port = free_port()
    typo = "JOBQUEUE_PRODUCT_EMBEDDING_CONCURENCY"  # said once by dev, not again by its worker
    env = dev_env(tmp_path, JOBQUEUE_DEV_LLM_PORT=str(llm_port), EMBEDDING_DIMS=str(DIMS), **{typo: "5"})
    command = [BIN / "jobqueue", "dev", "--fake-llm", "--demo", "--no-dashboard", "-w", "RemindersSettings"]
    env_file = tmp_path / ".jobqueue" / "env"
    with DevProcess(command, cwd=tmp_path, env=env) as dev:
        await dev.wait_for_output(READY_ONE)
        out = dev.output()
        assert f"a loopback OpenAI-compatible server at http://127.0.0.1:{llm_port}/v1 " in out
        assert "  env file    .jobqueue/env: `. .jobqueue/env` gives a second shell this stack's settings" in out
        assert out.count(f"{typo} is not a jobqueue setting") == 1, out
        exported = dict(
            shlex.split(line.removeprefix("export "))[0].split("=", 1)
            for line in env_file.read_text().splitlines()
            if line.startswith("export ")
        )
        assert exported["LLM_BASE_URL"] == f"http://127.0.0.1:{llm_port}/v1"
        assert exported["REDIS_URL"] == env["REDIS_URL"]
        assert exported["DATABASE_URL"] == f"sqlite+aiosqlite:///{tmp_path / 'jobqueue.db'}"
        monkeypatch.setenv("REDIS_URL", exported["REDIS_URL"])
        get_settings.cache_clear()
        with WorkerProcess("workers.EmbeddingSettings", **exported) as worker:
            handle = await jobqueue.enqueue_product_embedding("demo-p01")
            try:
                result = await handle.result(timeout=60)
            except jobqueue.JobQueueError as exc:
                raise AssertionError(f"{exc}\n{worker.output()[-3000:]}") from exc
        assert result.status == "processed"
        await jobqueue.close_queues()
        assert await dev.interrupt() == 0
    assert not env_file.exists()  # its URLs would point at what stopped


def test_the_fake_llms_default_port_is_the_one_dev_documents():
    from jobqueue.cli.dev import dev
    from workers.dev.devstack import DEFAULT_LLM_PORT, DevOptions

    default = inspect.signature(dev).parameters["fake_llm_port"].default
    assert default == DevOptions().llm_port == DEFAULT_LLM_PORT == 8090
    assert f"http://127.0.0.1:{DEFAULT_LLM_PORT}/v1" in dev.__doc__
