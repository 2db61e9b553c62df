"""`jobqueue dev` (or `make run`) in a subprocess, in a fresh directory, on a free Redis port."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.waiting import ROOT, free_port, wait_for

BIN = Path(sys.executable).parent
# Variables a developer's shell may carry that would change what `jobqueue dev` starts.
_CLEARED = ("REDIS_URL", "DATABASE_URL", "LLM_", "EMBEDDING_", "REMINDER_WEBHOOK_", "JOBQUEUE_")


def dev_env(workdir: Path, **extra: str) -> dict[str, str]:
    """A clean environment: REDIS_URL at a free loopback port, the dashboard (if any) on another."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED)}
    env |= {
        "REDIS_URL": f"redis://localhost:{free_port()}",
        "JOBQUEUE_DEV_DASHBOARD_PORT": str(free_port()),
        "PYTHONPATH": str(ROOT),
    }
    return env | extra


class DevProcess:
    """A running `jobqueue dev` (or any command that runs it) with its output in a file."""

    def __init__(self, command: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.log = tempfile.TemporaryFile()
        # A session of its own: a test can send the terminal's Ctrl-C to the whole group.
        self.proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    async def wait_for_output(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        async def found() -> re.Match[str] | None:
            match = re.search(pattern, self.output())
            if match is None and self.proc.poll() is not None:
                raise AssertionError(f"exited ({self.proc.returncode}) without {pattern!r}:\n{self.output()[-4000:]}")
            return match

        try:
            return await wait_for(found, timeout=timeout, interval=0.1, what=repr(pattern))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- output ---\n{self.output()[-4000:]}") from None

    async def interrupt(self, *, group: bool = False, timeout: float = 40) -> int:
        """SIGINT to the process (or, like Ctrl-C in a terminal, to its whole process group)."""
        if group:
            os.killpg(self.proc.pid, signal.SIGINT)
        else:
            self.proc.send_signal(signal.SIGINT)
        return await asyncio.to_thread(self.proc.wait, timeout)

    def close(self) -> None:
        """Stop it if it still runs: SIGTERM lets it stop its workers and Valkey; SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def __enter__(self) -> DevProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
