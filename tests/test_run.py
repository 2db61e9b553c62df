"""``make run``'s runner: embedded Valkey when REDIS_URL is unset, five workers, clean Ctrl-C."""

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from jobqueue import QUEUE_NAMES
from tests.support.waiting import ROOT, wait_for


async def _output_matches(proc, log, pattern):
    log.seek(0)
    match = re.search(pattern, log.read().decode())
    if match is None and proc.poll() is not None:
        log.seek(0)
        raise AssertionError(f"the runner exited without {pattern!r}:\n{log.read().decode()[-3000:]}")
    return match


async def _all_workers_alive(client):
    return all([await client.zcard(f"jq:{q}:workers") for q in QUEUE_NAMES.values()])


async def test_runner_starts_valkey_and_all_workers_and_stops_on_ctrl_c(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "LLM_", "REMINDER_WEBHOOK_"))}
    env |= {"PYTHONPATH": str(ROOT), "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'run.db'}"}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", "workers.run"], env=env, cwd=ROOT, stdout=log, stderr=log)
        try:
            found = await wait_for(lambda: _output_matches(proc, log, r"REDIS_URL=(redis://\S+)"), timeout=30)
            client = aioredis.Redis.from_url(found.group(1))
            await wait_for(lambda: _all_workers_alive(client), timeout=30, what="five workers")
            await wait_for(lambda: _output_matches(proc, log, "jobs will fail: set LLM_API_KEY"), timeout=5)
            await wait_for(lambda: _output_matches(proc, log, "reminder-dispatch jobs will fail"), timeout=5)
            proc.send_signal(signal.SIGINT)
            assert await asyncio.to_thread(proc.wait, 30) == 0
            assert await _output_matches(proc, log, "jobqueue: stopped")
            try:
                await client.ping()
                raise AssertionError("the embedded Valkey is still running")
            except RedisConnectionError:
                pass
            await client.aclose()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
