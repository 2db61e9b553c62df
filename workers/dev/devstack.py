"""``jobqueue dev`` (what ``make run`` runs): everything a laptop needs to see the jobs work.

Redis (the one at ``REDIS_URL``, or an embedded Valkey started at that address with its data in
``./.jobqueue/``), the five workers as ``python -m arq workers.<Name>`` processes, the dashboard
when it is installed, an OpenAI-compatible fake when no LLM is configured (or with
``--fake-llm``), and a local receiver for the reminder webhooks. One summary at start says what
runs where and which jobs cannot run; Ctrl-C stops the workers, then the rest.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from jobqueue._env import read_settings
from jobqueue._envnames import warn_unknown_variables
from jobqueue.backend import _sentinel
from jobqueue.backend._keys import QueueKeys
from jobqueue.constants import QueueName
from jobqueue.embedded import port_is_free
from jobqueue.errors import ConfigurationError
from jobqueue.metrics import metrics_port
from jobqueue.settings import Settings, redact_url
from workers.dev.devredis import DevRedis, start_dev_redis
from workers.providers.notifier import URL_VARIABLES, NotifierSettings
from workers.resources import CONFIG_REPORTED_ENV
from workers.testing import FakeOpenAI
from workers.testing.catalogue_responder import catalogue_responder
from workers.testing.webhook_receiver import Delivery, WebhookReceiver

FAKE_API_KEY = "fake-key"
# The fake LLM's port unless --fake-llm-port / JOBQUEUE_DEV_LLM_PORT says otherwise: fixed, so a
# worker started by hand beside `jobqueue dev` finds it at http://127.0.0.1:8090/v1.
DEFAULT_LLM_PORT = 8090
# What `jobqueue dev` writes into its data directory for a second shell: `. .jobqueue/env`.
ENV_FILE = "env"
STOP_TIMEOUT_S = 20.0
POLL_S = 0.2
LLM_JOBS = "product-embedding, product-enrichment and taste-profile-embedding"
# The queue each settings class of `workers` serves (a test checks it against the classes).
WORKER_QUEUES = {
    "EmbeddingSettings": QueueName.PRODUCT_EMBEDDING,
    "EnrichmentSettings": QueueName.PRODUCT_ENRICHMENT,
    "TasteProfileSettings": QueueName.TASTE_PROFILE_EMBEDDING,
    "CollectionsSettings": QueueName.CURATED_COLLECTIONS,
    "RemindersSettings": QueueName.REMINDER_DISPATCH,
}


def say(message: str) -> None:
    print(f"jobqueue dev: {message}", flush=True)


@dataclass
class DevOptions:
    """The ``jobqueue dev`` command line."""

    fake_llm: bool | None = None  # None: a fake when no LLM is configured
    webhook_receiver: bool = True
    demo: bool = False
    data_dir: Path = Path(".jobqueue")
    dashboard: bool = True
    dashboard_port: int = 8080
    llm_port: int = DEFAULT_LLM_PORT
    workers: tuple[str, ...] = tuple(WORKER_QUEUES)


@dataclass
class DevStack:
    """What ``jobqueue dev`` started, so that it can stop all of it."""

    redis: DevRedis | None = None
    fake_llm: FakeOpenAI | None = None
    receiver: WebhookReceiver | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    summary: list[tuple[str, str]] = field(default_factory=list)
    cannot_run: list[str] = field(default_factory=list)
    env_file: Path | None = None  # the settings written for a second shell, removed on stop
    made_dir: Path | None = None  # the data directory, when writing env_file created it

    def stop(self) -> int:
        """SIGTERM the processes and wait; then the fakes, then Redis. 1 if a process failed."""
        if self.env_file is not None:
            self.env_file.unlink(missing_ok=True)  # its URLs would point at what is stopped now
            if self.made_dir is not None and not any(self.made_dir.iterdir()):
                self.made_dir.rmdir()
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.processes:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for service in (self.receiver, self.fake_llm, self.redis):
            if service is not None:
                service.stop()
        clean = (0, -signal.SIGTERM)
        return 0 if all(p.returncode in clean for p in self.processes) else 1


def _print_delivery(delivery: Delivery) -> None:
    body = delivery.body
    again = " (again: same Idempotency-Key, a receiver would drop it)" if delivery.duplicate else ""
    say(
        f"reminder received on {delivery.channel} for {body.get('user_id')}: {body.get('title')!r} "
        f"[Idempotency-Key {delivery.idempotency_key}, signature ok]{again}"
    )


def _start_llm(stack: DevStack, options: DevOptions, settings: Settings) -> None:
    configured = bool(settings.llm_api_key or settings.llm_base_url)
    use_fake = options.fake_llm if options.fake_llm is not None else not configured
    if not use_fake:
        if configured:
            where = settings.llm_base_url or "OpenAI"
            stack.summary.append(("LLM", f"{settings.llm_model} / {settings.embedding_model} at {where}"))
        else:
            stack.summary.append(("LLM", "none configured"))
            stack.cannot_run.append(f"{LLM_JOBS} jobs: set LLM_API_KEY (or LLM_BASE_URL), or use --fake-llm")
        return
    dims = settings.embedding_dims
    port, note = _port_or_free(options.llm_port)
    stack.fake_llm = FakeOpenAI(dims=dims, responder=catalogue_responder, port=port).start()
    stack.env |= {
        "LLM_PROVIDER": "openai-compatible",
        "LLM_BASE_URL": stack.fake_llm.base_url,
        "LLM_API_KEY": FAKE_API_KEY,
        "EMBEDDING_DIMS": str(dims),
    }
    why = "--fake-llm" if options.fake_llm else "no LLM_API_KEY or LLM_BASE_URL is set"
    stack.summary.append(
        (
            "LLM",
            f"FAKE ({why}): a loopback OpenAI-compatible server at {stack.fake_llm.base_url} answers with "
            f"made-up, deterministic vectors of {dims} dimensions and canned enrichments — not a model{note}",
        )
    )


def _start_receiver(stack: DevStack, options: DevOptions) -> None:
    notifier = NotifierSettings()
    urls = {"PUSH": notifier.url_push, "EMAIL": notifier.url_email, "SMS": notifier.url_sms}
    missing = [channel for channel, url in urls.items() if not url]
    secret = notifier.secret.get_secret_value() if notifier.secret else ""
    if not options.webhook_receiver or not missing:
        if not secret:
            stack.cannot_run.append("reminder-dispatch jobs: set REMINDER_WEBHOOK_SECRET")
        for channel in missing:
            stack.cannot_run.append(f"reminders on {channel}: set {URL_VARIABLES[channel]}")
        where = ", ".join(f"{c} → webhook" for c, url in urls.items() if url) or "no webhook URLs"
        stack.summary.append(("reminders", where))
        return
    notes = []
    if not secret:
        secret = "dev-" + secrets.token_hex(16)
        stack.env["REMINDER_WEBHOOK_SECRET"] = secret
        notes.append("REMINDER_WEBHOOK_SECRET was unset: a generated one is used")
    stack.receiver = WebhookReceiver(secret=secret, on_delivery=_print_delivery).start()
    for channel in missing:
        stack.env[URL_VARIABLES[channel]] = stack.receiver.url_for(channel)
    notes.insert(0, f"local webhook receiver at {stack.receiver.base_url} for {', '.join(missing)}")
    stack.summary.append(("reminders", "; ".join(notes)))


def _start_dashboard(stack: DevStack, options: DevOptions) -> None:
    if not options.dashboard:
        stack.summary.append(("dashboard", "off (--no-dashboard)"))
        return
    if importlib.util.find_spec("jobqueue.dashboard") is None:
        stack.summary.append(("dashboard", "not installed in this version"))
        return
    port, note = _port_or_free(options.dashboard_port)
    command = [sys.executable, "-m", "jobqueue.cli", "dashboard", "--host", "127.0.0.1", "--port", str(port)]
    stack.processes.append(subprocess.Popen(command, env=stack.env, process_group=0))
    stack.summary.append(("dashboard", f"http://127.0.0.1:{port}/{note}"))


def _describe_database(url: str) -> str:
    from sqlalchemy.engine import make_url

    shown = redact_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return f"{shown} (the file {Path(parsed.database).resolve()})"
    return shown


def _port_or_free(port: int) -> tuple[int, str]:
    """``port`` on loopback, or a free one when it is 0 or taken (with a note saying so)."""
    if port == 0:
        return _free_port(), ""
    if not port_is_free("127.0.0.1", port):
        return _free_port(), f" (port {port} is taken)"
    return port, ""


def _write_env_file(stack: DevStack, data_dir: Path) -> Path:
    """The settings a worker or a script in a second shell needs to join this stack, as ``export``
    lines: Redis, the database, the fake LLM and the reminder receiver, when started."""
    shared = {"REDIS_URL", "DATABASE_URL"}
    chosen = {
        name: value
        for name, value in stack.env.items()
        if name in shared or (os.environ.get(name) != value and name != CONFIG_REPORTED_ENV)
    }
    chosen["DATABASE_URL"] = _absolute_sqlite(chosen["DATABASE_URL"])  # a second shell may be elsewhere
    if not data_dir.exists():
        data_dir.mkdir(parents=True)
        stack.made_dir = data_dir
    path = data_dir / ENV_FILE
    lines = [
        "# Written by `jobqueue dev` while it runs (removed when it stops). In another shell:",
        f"#   . {path}",
        *(f"export {name}={shlex.quote(value)}" for name, value in sorted(chosen.items())),
    ]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)  # it may hold a generated webhook secret
    stack.env_file = path
    return path


def _absolute_sqlite(url: str) -> str:
    """A SQLite URL with its file made absolute; any other URL as it is."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return url
    return parsed.set(database=str(Path(parsed.database).resolve())).render_as_string(hide_password=False)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _seed(database_url: str) -> str:
    from workers.dev.demo import seed_demo
    from workers.providers.store import SqlStore

    async def seed() -> str:
        store = SqlStore(database_url)
        try:
            return str(await seed_demo(store))
        finally:
            await store.aclose()

    return asyncio.run(seed())


def _workers_up(url: str, names: tuple[str, ...]) -> bool:
    """Every named worker has a heartbeat: on ``url``, or on its queue's own Redis when it has one
    (``JOBQUEUE_<QUEUE>_REDIS_URL``)."""
    settings = Settings()
    for name in names:
        queue = WORKER_QUEUES[name]
        own = settings.queue_redis_url(queue)
        client = _sentinel.sync_client(own if own != settings.redis_url else url, timeout=1)
        try:
            if not client.zcard(QueueKeys(queue).workers):
                return False
        except (redis.RedisError, OSError):
            return False
        finally:
            _sentinel.close_sync_client(client)
    return True


def start(options: DevOptions, stack: DevStack) -> None:
    """Start everything into ``stack`` and print the summary (``stack.stop()`` undoes it)."""
    unknown = sorted(set(options.workers) - set(WORKER_QUEUES))
    if unknown:
        raise ConfigurationError(f"unknown worker {', '.join(unknown)}: choose from {', '.join(WORKER_QUEUES)}")
    warn_unknown_variables()  # once here; the workers, told it was said (CONFIG_REPORTED_ENV), do not repeat it
    settings = read_settings(Settings)  # a bad value is one line naming it (a URL's password hidden)
    stack.redis = start_dev_redis(settings.redis_url, options.data_dir)
    stack.env["REDIS_URL"] = stack.redis.url
    stack.summary.append(("Redis", stack.redis.description))
    stack.env["DATABASE_URL"] = settings.database_url
    stack.summary.append(("database", _describe_database(settings.database_url)))
    if options.demo:
        stack.summary.append(("demo data", _seed(settings.database_url)))
    _start_llm(stack, options, settings)
    _start_receiver(stack, options)
    _start_dashboard(stack, options)
    env_file = _write_env_file(stack, options.data_dir)
    stack.summary.append(("env file", f"{env_file}: `. {env_file}` gives a second shell this stack's settings"))
    stack.env[CONFIG_REPORTED_ENV] = "1"
    for name in options.workers:
        command = [sys.executable, "-m", "arq", f"workers.{name}"]
        # A group of its own: the terminal's Ctrl-C reaches only `jobqueue dev`, which stops each once.
        stack.processes.append(subprocess.Popen(command, env=stack.env, process_group=0))
    stack.summary.append(("workers", ", ".join(options.workers)))
    ports = [metrics_port(WORKER_QUEUES[name], stack.env) for name in options.workers]
    if any(port is not None for port in ports):
        urls = ", ".join(f"http://127.0.0.1:{port}/metrics" for port in ports if port is not None)
        stack.summary.append(("metrics", f"{urls} (a port that is taken is skipped, with a warning)"))
    stack.summary.append(("cannot run", "; ".join(stack.cannot_run) or "nothing: every job can run"))
    width = max(len(label) for label, _ in stack.summary)
    lines = [f"  {label.ljust(width)}  {text}" for label, text in stack.summary]
    print("jobqueue dev\n" + "\n".join(lines), flush=True)


def run(options: DevOptions) -> int:
    """Run the development stack until Ctrl-C or SIGTERM; the exit code."""
    stopping = False

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    stack = DevStack()
    failed = False
    try:
        start(options, stack)
        ready = False
        while not stopping:
            exited = [p for p in stack.processes if p.poll() is not None]
            if exited:
                say(f"{' '.join(exited[0].args)} exited with code {exited[0].returncode}; stopping the rest")
                failed = True
                break
            if not ready and _workers_up(stack.env["REDIS_URL"], options.workers):
                ready = True
                count = len(options.workers)
                up = f"{count} workers are up" if count > 1 else "1 worker is up"
                say(f"ready: {up} (Ctrl-C stops everything)")
            time.sleep(POLL_S)
    finally:
        code = stack.stop()
        if stack.redis is not None:
            say("stopped")
    return 1 if failed else code
