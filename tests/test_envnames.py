"""An unknown JOBQUEUE_* variable (a misspelt setting) gets one warning naming the closest known one;
every name the code and the configuration files read is known, so none of them ever gets one."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest

from jobqueue import _envnames
from jobqueue.dashboard.auth import DashboardSettings
from jobqueue.settings import Settings, get_settings
from jobqueue.worker.options import QueueOptions
from tests.support.waiting import ROOT, WorkerProcess
from workers.providers.batching import BatchSettings

TYPO = "JOBQUEUE_PRODUCT_EMBEDDING_CONCURENCY"


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    _envnames.forget_warnings()
    yield
    _envnames.forget_warnings()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "jobqueue.settings" and r.levelno == logging.WARNING]


def test_a_misspelt_variable_gets_one_warning_naming_the_closest_known_one(monkeypatch, caplog):
    monkeypatch.setenv(TYPO, "5")
    with caplog.at_level(logging.WARNING, logger="jobqueue.settings"):
        get_settings()
        get_settings.cache_clear()
        get_settings()  # read again: no second warning
    assert _warnings(caplog) == [
        f"{TYPO} is not a jobqueue setting and is ignored; did you mean JOBQUEUE_PRODUCT_EMBEDDING_CONCURRENCY?"
    ]


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("JOBQUEUE_REDIS_TIMOUT", "JOBQUEUE_REDIS_TIMEOUT"),
        ("JOBQUEUE_REMINDERS_DISPATCH_ATTEMPTS", "JOBQUEUE_REMINDER_DISPATCH_ATTEMPTS"),
        ("JOBQUEUE_DASHBOARD_TOKN", "JOBQUEUE_DASHBOARD_TOKEN"),
        ("JOBQUEUE_METRICS_ADRESS", "JOBQUEUE_METRICS_ADDR"),
        ("JOBQUEUE_WHATEVER", None),
    ],
)
def test_the_suggestion_is_the_closest_known_name_or_none(name, suggestion, caplog):
    with caplog.at_level(logging.WARNING, logger="jobqueue.settings"):
        assert _envnames.warn_unknown_variables({name: "1", "OTHER_TOOL_VAR": "x"}) == [name]
    (message,) = _warnings(caplog)
    assert message.startswith(f"{name} is not a jobqueue setting and is ignored")
    if suggestion is None:
        assert "did you mean" not in message
    else:
        assert message.endswith(f"did you mean {suggestion}?")


def test_known_variables_and_every_queue_option_of_every_queue_get_no_warning(caplog):
    env = {
        "JOBQUEUE_REDIS_TIMEOUT": "2",
        "JOBQUEUE_DASHBOARD_TOKEN": "t",
        "JOBQUEUE_REMINDER_DISPATCH_CONCURRENCY": "20",
        "JOBQUEUE_TASTE_PROFILE_EMBEDDING_BATCH_SIZE": "32",
        "JOBQUEUE_CURATED_COLLECTIONS_METRICS_PORT": "9400",
        "REDIS_URL": "redis://elsewhere",  # not ours to judge
    }
    with caplog.at_level(logging.WARNING, logger="jobqueue.settings"):
        assert _envnames.warn_unknown_variables(env) == []
    assert _warnings(caplog) == []


def test_every_variable_a_settings_class_reads_is_known():
    fields = {
        *{f"JOBQUEUE_PRODUCT_EMBEDDING_{name.upper()}" for name in QueueOptions.model_fields},
        *{f"JOBQUEUE_PRODUCT_EMBEDDING_{name.upper()}" for name in BatchSettings.model_fields},
        *{f"JOBQUEUE_DASHBOARD_{name.upper()}" for name in DashboardSettings.model_fields},
        *{
            info.validation_alias
            for info in Settings.model_fields.values()
            if isinstance(info.validation_alias, str) and info.validation_alias.startswith("JOBQUEUE_")
        },
    }
    assert sorted(name for name in fields if not _envnames.is_known(name)) == []


def test_every_jobqueue_variable_the_code_and_configuration_name_is_known():
    sources = [
        path
        for folder in ("jobqueue", "workers", "examples", "bench", "tests", "docs")
        for path in (ROOT / folder).rglob("*")
        if path.suffix in (".py", ".md", ".yaml", ".yml") and path.name != "test_envnames.py"
    ] + [ROOT / name for name in ("compose.yaml", "Makefile", "Dockerfile", ".ci/run")]
    named = {
        match
        for path in sources
        if path.is_file()
        for match in re.findall(r"\bJOBQUEUE_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="replace"))
    }
    # The misspellings the documentation shows as examples: of the warning, and of the per-queue
    # Redis URL naming no queue (refused, not warned: a typo there would move a queue's keys).
    examples = {TYPO, "JOBQUEUE_PRODUCT_EMBEDING_REDIS_URL"}
    assert sorted(name for name in named - examples if not _envnames.is_known(name)) == []


def test_a_process_whose_parent_said_it_already_says_it_only_at_debug(caplog):
    env = {TYPO: "5", _envnames.REPORTED_VARIABLE: "1"}
    with caplog.at_level(logging.DEBUG, logger="jobqueue.settings"):
        assert _envnames.warn_unknown_variables(env) == [TYPO]
    assert [r.levelno for r in caplog.records if r.name == "jobqueue.settings"] == [logging.DEBUG]


async def test_a_worker_started_with_a_misspelt_option_says_so_once(redis_url):
    with WorkerProcess("tests.support.workers.EmbeddingTestSettings", **{TYPO: "5"}) as worker:
        await worker.wait_for(lambda: _started(worker), timeout=30, what="the worker to start")
        output = worker.output()
    assert output.count(f"{TYPO} is not a jobqueue setting") == 1, output
    assert "did you mean JOBQUEUE_PRODUCT_EMBEDDING_CONCURRENCY?" in output


async def _started(worker: WorkerProcess) -> bool:
    return "started (concurrency" in worker.output()
