"""``jobqueue dev`` and ``jobqueue seed-demo``: a development stack and its demo catalogue.

Both live in the application's ``workers`` (``workers.dev.devstack``, ``workers.dev.demo``), reached
through ``jobqueue._application`` when the command runs, so ``jobqueue --help`` and the other
commands do not load the workers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from jobqueue import _application
from jobqueue.cli._app import app


@app.command("dev")
def dev(
    fake_llm: Annotated[
        bool | None,
        typer.Option(
            "--fake-llm/--no-fake-llm",
            help="Serve an OpenAI-compatible fake to the workers (default: only when no LLM is configured).",
            show_default=False,
        ),
    ] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Write the demo catalogue first (see seed-demo).")] = False,
    webhook_receiver: Annotated[
        bool,
        typer.Option(
            "--webhook-receiver/--no-webhook-receiver",
            help="Receive reminders locally on channels with no REMINDER_WEBHOOK_URL_*.",
        ),
    ] = True,
    dashboard: Annotated[bool, typer.Option("--dashboard/--no-dashboard", help="Serve the dashboard.")] = True,
    dashboard_port: Annotated[
        int,
        typer.Option(
            envvar="JOBQUEUE_DEV_DASHBOARD_PORT",
            min=0,
            max=65535,
            help="The dashboard's port (0, or taken: a free one).",
        ),
    ] = 8080,
    fake_llm_port: Annotated[
        int,
        typer.Option(
            envvar="JOBQUEUE_DEV_LLM_PORT",
            min=0,
            max=65535,
            help="The fake LLM's port on 127.0.0.1 (0, or taken: a free one).",
        ),
    ] = 8090,
    worker: Annotated[
        list[str] | None,
        typer.Option(
            "--worker", "-w", help="Run only this settings class of `workers` (repeatable).", show_default=False
        ),
    ] = None,
    data_dir: Annotated[
        Path,
        typer.Option(envvar="JOBQUEUE_DEV_DATA_DIR", help="Where an embedded Valkey keeps its data."),
    ] = Path(".jobqueue"),
) -> None:
    """Run Redis (embedded if none answers at REDIS_URL), the five workers and the dashboard.

    Without an LLM key, the workers talk to a loopback fake (http://127.0.0.1:8090/v1 by default);
    reminders go to a local receiver. While it runs, DATA_DIR/env holds the settings another shell
    needs to join the stack (`. .jobqueue/env`). Ctrl-C stops everything.
    """
    devstack = _application.dev_stack()
    options = devstack.DevOptions(
        workers=tuple(worker or devstack.WORKER_QUEUES),
        fake_llm=fake_llm,
        webhook_receiver=webhook_receiver,
        demo=demo,
        data_dir=data_dir,
        dashboard=dashboard,
        dashboard_port=dashboard_port,
        llm_port=fake_llm_port,
    )
    raise typer.Exit(devstack.run(options))


@app.command("seed-demo")
def seed_demo(
    reset: Annotated[bool, typer.Option("--reset", help="Rewrite rows that exist (drops what jobs stored).")] = False,
) -> None:
    """Write a small demo catalogue into the store at DATABASE_URL: products, taste profiles, schedules."""
    typer.echo(f"jobqueue seed-demo: {asyncio.run(_application.seed_demo(reset=reset))}")
