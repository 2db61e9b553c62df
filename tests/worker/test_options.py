"""Per-queue options from the environment, and what an operator sees when a value is bad."""

import os
import subprocess
import sys

import pytest

from jobqueue import ConfigurationError, queue_options
from jobqueue.settings import get_settings
from tests.support.waiting import ROOT
from workers.settings import collections_settings, embedding_settings


def test_environment_overrides_the_queue_defaults_and_code_overrides_the_environment(monkeypatch):
    monkeypatch.setenv("JOBQUEUE_PRODUCT_EMBEDDING_ATTEMPTS", "7")
    monkeypatch.setenv("JOBQUEUE_PRODUCT_EMBEDDING_BACKOFF_JITTER", "0.5")
    options = queue_options("product-embedding")
    assert (options.attempts, options.backoff_jitter, options.timeout) == (7, 0.5, 60)
    assert queue_options("product-embedding", attempts=2).attempts == 2
    assert queue_options("reminder-dispatch").attempts == 5  # another queue's variable does not apply


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("ATTEMPTS", "abc", "an integer >= 1"),
        ("ATTEMPTS", "0", "an integer >= 1"),
        ("CONCURRENCY", "2.5", "an integer >= 1"),
        ("TIMEOUT", "soon", "a number > 0"),
        ("TIMEOUT", "-1", "a number > 0"),
        ("BACKOFF_JITTER", "2", "a number >= 0 and <= 1"),
        ("KEEP_FAILED", "-5", "an integer >= 0"),
    ],
)
def test_a_bad_variable_is_one_line_naming_the_variable_the_value_and_what_is_expected(
    monkeypatch, option, value, expected
):
    monkeypatch.setenv(f"JOBQUEUE_PRODUCT_EMBEDDING_{option}", value)
    with pytest.raises(ConfigurationError) as info:
        queue_options("product-embedding")
    assert str(info.value) == f"JOBQUEUE_PRODUCT_EMBEDDING_{option}={value!r}: expected {expected}"
    with pytest.raises(ConfigurationError, match=f"JOBQUEUE_PRODUCT_EMBEDDING_{option}="):
        embedding_settings()


def test_every_bad_variable_is_named_on_the_one_line(monkeypatch):
    monkeypatch.setenv("JOBQUEUE_CURATED_COLLECTIONS_TIMEOUT", "soon")
    monkeypatch.setenv("JOBQUEUE_CURATED_COLLECTIONS_POLL_DELAY", "0")
    with pytest.raises(ConfigurationError) as info:
        queue_options("curated-collections")
    assert str(info.value) == (
        "JOBQUEUE_CURATED_COLLECTIONS_TIMEOUT='soon': expected a number > 0; "
        "JOBQUEUE_CURATED_COLLECTIONS_POLL_DELAY='0': expected a number > 0"
    )


def test_process_and_worker_settings_report_a_bad_variable_the_same_way(monkeypatch):
    monkeypatch.setenv("JOBQUEUE_REDIS_TIMEOUT", "soon")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match=r"^JOBQUEUE_REDIS_TIMEOUT='soon': expected a number > 0$"):
            get_settings()
    finally:
        get_settings.cache_clear()
    monkeypatch.setenv("COLLECTIONS_CRON_HOUR", "25")
    with pytest.raises(ConfigurationError, match=r"^COLLECTIONS_CRON_HOUR='25': expected an integer >= 0 and <= 23$"):
        collections_settings()


@pytest.mark.parametrize(
    ("arguments", "variable", "value", "line"),
    [
        (["workers.EmbeddingSettings"], "JOBQUEUE_PRODUCT_EMBEDDING_ATTEMPTS", "abc", "expected an integer >= 1"),
        (
            ["--check", "workers.EmbeddingSettings"],
            "JOBQUEUE_PRODUCT_EMBEDDING_ATTEMPTS",
            "abc",
            "expected an integer >= 1",
        ),
        (["workers.RemindersSettings"], "REMINDER_STALE_AFTER", "never", "expected a number > 0"),
        (
            ["workers.RemindersSettings"],
            "JOBQUEUE_REMINDER_DISPATCH_REDIS_URL",
            "http://cache:6379",
            "expected a redis://, rediss://, unix://, redis+sentinel://, rediss+sentinel:// URL",
        ),
    ],
)
def test_arq_with_a_bad_variable_prints_one_line_and_exits_non_zero(redis_url, arguments, variable, value, line):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_url, variable: value}
    done = subprocess.run(
        [sys.executable, "-m", "arq", *arguments], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    print(f"\nexit status {done.returncode}; stderr: {done.stderr!r}; stdout: {done.stdout!r}")
    assert done.returncode != 0
    assert done.stderr.splitlines() == [f"jobqueue: {variable}={value!r}: {line}"]
    assert "Traceback" not in done.stderr + done.stdout
