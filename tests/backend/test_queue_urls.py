"""``JOBQUEUE_<QUEUE>_REDIS_URL``: the variable's name, the URL forms taken, and the settings' view."""

from __future__ import annotations

import pytest

from jobqueue.backend._queue_urls import queue_urls, url_problem, variable_for
from jobqueue.errors import ConfigurationError
from jobqueue.settings import Settings, redact_url


def test_the_variable_is_the_queue_name_upper_cased_with_underscores() -> None:
    assert variable_for("reminder-dispatch") == "JOBQUEUE_REMINDER_DISPATCH_REDIS_URL"


@pytest.mark.parametrize(
    "url",
    [
        "redis://cache:6379/2",
        "rediss://:pw@cache:6380/0?ssl_ca_certs=/etc/ca.pem",
        "unix:///run/redis.sock?db=3",
        "redis+sentinel://:pw@s1:26379,s2:26379/jobs/0",
    ],
)
def test_every_url_form_redis_url_takes_is_taken(url: str) -> None:
    assert url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://cache:6379", "expected a redis://"),
        ("cache:6379", "expected a redis://"),
        ("redis://:99999", "Port out of range"),
        ("redis:///0", "names no host"),
        ("unix://", "needs the socket's path"),
    ],
)
def test_a_malformed_url_says_what_is_wrong(url: str, problem: str) -> None:
    assert problem in (url_problem(url) or "")


def test_only_set_variables_of_known_queues_are_read() -> None:
    env = {
        "JOBQUEUE_PRODUCT_EMBEDDING_REDIS_URL": "redis://a:6379/0",
        "JOBQUEUE_CURATED_COLLECTIONS_REDIS_URL": " ",  # empty: the queue stays on REDIS_URL
        "JOBQUEUE_REDIS_TIMEOUT": "5",
        "REDIS_URL": "redis://main:6379/0",
    }
    assert queue_urls(env, redact_url) == {"product-embedding": "redis://a:6379/0"}


def test_a_bad_value_is_refused_without_its_password() -> None:
    with pytest.raises(ConfigurationError, match="JOBQUEUE_PRODUCT_ENRICHMENT_REDIS_URL='http://\\*\\*\\*@x'"):
        queue_urls({"JOBQUEUE_PRODUCT_ENRICHMENT_REDIS_URL": "http://:secret@x"}, redact_url)


def test_the_settings_group_the_queues_by_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://main:6379/0")
    monkeypatch.setenv("JOBQUEUE_PRODUCT_EMBEDDING_REDIS_URL", "redis://vectors:6379/0")
    monkeypatch.setenv("JOBQUEUE_TASTE_PROFILE_EMBEDDING_REDIS_URL", "redis://vectors:6379/0")
    settings = Settings()
    assert settings.queue_redis_url("product-embedding") == "redis://vectors:6379/0"
    assert settings.queue_redis_url("reminder-dispatch") == settings.queue_redis_url(None) == "redis://main:6379/0"
    assert settings.redis_servers() == {
        "redis://vectors:6379/0": ["product-embedding", "taste-profile-embedding"],
        "redis://main:6379/0": ["product-enrichment", "curated-collections", "reminder-dispatch"],
    }
    assert "vectors" not in repr(settings)  # URLs with passwords stay out of reprs
