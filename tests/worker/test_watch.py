"""``arq --watch``: the ``watch`` extra installs what it needs, and a watched worker reloads."""

import asyncio
import signal
import subprocess
import sys
import tomllib

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from tests.support.waiting import ROOT, WorkerProcess

SETTINGS = "tests.support.workers.EmbeddingTestSettings"


def test_the_watch_extra_and_the_dev_extra_install_watchfiles():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("watch", "dev"):
        assert any(req.startswith("watchfiles") for req in extras[extra]), extra


class WatchedWorker(WorkerProcess):
    """``python -m arq --watch <directory> <settings>``."""

    def __init__(self, directory: str, settings: str) -> None:
        super().__init__(settings)
        self.directory = directory

    def start(self) -> "WatchedWorker":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "arq", "--watch", self.directory, self.settings],
            env=self.env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        return self


async def test_a_watched_worker_runs_jobs_and_reloads_when_a_file_changes(tmp_path):
    with WatchedWorker(str(tmp_path), SETTINGS) as worker:

        async def completed(n: int) -> bool:
            assert worker.proc.poll() is None, f"arq --watch exited:\n{worker.output()}"
            return (await embeddings.get_job_counts())["completed"] >= n

        async def reloaded() -> bool:
            return "files changed, reloading arq worker" in worker.output()

        await jobqueue.enqueue_product_embedding("before-reload")
        await worker.wait_for(lambda: completed(1), timeout=30, what="the first job")
        (tmp_path / "handlers.py").write_text("# changed\n")
        await worker.wait_for(reloaded, timeout=30, what="arq to reload the worker")
        await jobqueue.enqueue_product_embedding("after-reload")
        await worker.wait_for(lambda: completed(2), timeout=30, what="a job after the reload")
        worker.proc.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(worker.proc.wait, 30)
        print(f"\narq --watch exited with status {code}; output:\n{worker.output()}")
        assert "Traceback" not in worker.output()


async def test_a_worker_reloaded_while_paused_runs_jobs_again_after_resume(tmp_path):
    # arq reuses its Worker across reloads; the pause used to clear its allow_pick_jobs, which a
    # reload while paused left False for ever. Pause is now a flag START checks, nothing else.
    with WatchedWorker(str(tmp_path), SETTINGS) as worker:

        async def reloaded() -> bool:
            return "files changed, reloading arq worker" in worker.output()

        async def completed(n: int) -> bool:
            assert worker.proc.poll() is None, f"arq --watch exited:\n{worker.output()}"
            return (await embeddings.get_job_counts())["completed"] >= n

        await jobqueue.enqueue_product_embedding("warm-up")
        await worker.wait_for(lambda: completed(1), timeout=30, what="the worker to run a job")
        await embeddings.pause()
        await jobqueue.enqueue_product_embedding("held")
        (tmp_path / "handlers.py").write_text("# changed while paused\n")
        await worker.wait_for(reloaded, timeout=30, what="arq to reload the worker")
        assert (await embeddings.get_job_counts())["paused"] == 1
        await embeddings.resume()
        await worker.wait_for(lambda: completed(2), timeout=30, what="the held job after resume")
        worker.proc.send_signal(signal.SIGINT)
        await asyncio.to_thread(worker.proc.wait, 30)
