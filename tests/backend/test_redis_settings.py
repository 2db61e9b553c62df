"""Settings that reach logs stay password-free, and a worker gets every TLS option of its URL."""

from jobqueue.backend._redis_settings import redis_settings_from_url
from jobqueue.settings import get_settings


def test_the_settings_repr_shows_no_password_and_no_api_key(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://app:redis-secret@cache:6379/2")
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://app:db-secret@db/app")
    monkeypatch.setenv("LLM_API_KEY", "sk-secret")
    get_settings.cache_clear()
    shown = repr(get_settings()) + str(get_settings())
    assert "redis://app:***@cache:6379/2" in shown and "postgresql+asyncpg://app:***@db/app" in shown
    assert "secret" not in shown
    assert get_settings().redis_url == "redis://app:redis-secret@cache:6379/2"  # the value itself is intact


def test_a_worker_takes_the_tls_options_of_a_rediss_url():
    url = "rediss://app:pw@cache:6380/0?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required"
    settings = redis_settings_from_url(url, 5.0)
    assert settings.ssl is True
    assert (settings.ssl_ca_certs, settings.ssl_cert_reqs) == ("/etc/ca.pem", "required")
    assert (settings.host, settings.port, settings.username, settings.password) == ("cache", 6380, "app", "pw")
