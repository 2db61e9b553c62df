"""compose.yaml: one service per worker class, each naming a real settings class, healthy dependencies
and secrets as required variables; `docker compose config` accepts it where docker compose exists."""

import os
import re
import shutil
import subprocess

import yaml

import workers
from tests.support.waiting import ROOT

SECRETS = ("LLM_API_KEY", "REMINDER_WEBHOOK_SECRET", "POSTGRES_PASSWORD", "JOBQUEUE_DASHBOARD_TOKEN")


def _compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_every_worker_class_has_one_service_naming_a_real_settings_class():
    services = _compose()["services"]
    commands = {name: s["command"] for name, s in services.items() if s.get("command", [""])[0] == "arq"}
    classes = []
    for name, command in commands.items():
        assert len(command) == 2 and command[1].startswith("workers."), (name, command)
        settings = getattr(workers, command[1].removeprefix("workers."))  # AttributeError if not a class
        assert settings.functions and settings.queue_name, name
        classes.append(command[1].removeprefix("workers."))
    assert sorted(classes) == sorted(workers.__all__)
    for name in commands:
        service = services[name]
        assert service["restart"] == "unless-stopped"
        assert service["build"] == "."
        assert {dep: c["condition"] for dep, c in service["depends_on"].items()} == {
            "redis": "service_healthy",
            "postgres": "service_healthy",
        }
        env = service["environment"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["DATABASE_URL"].startswith("postgresql+asyncpg://") and "@postgres:5432/" in env["DATABASE_URL"]


def test_redis_postgres_and_the_dashboard():
    services = _compose()["services"]
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command and "--maxmemory-policy noeviction" in redis_command
    for name in ("redis", "postgres"):
        assert services[name]["healthcheck"]["test"], name
    dashboard = services["dashboard"]
    assert dashboard["command"][:4] == ["jobqueue", "dashboard", "--host", "0.0.0.0"]
    assert dashboard["depends_on"] == {"redis": {"condition": "service_healthy"}}


def test_secrets_are_required_variables_never_values():
    text = (ROOT / "compose.yaml").read_text()
    for secret in SECRETS:
        uses = re.findall(r"\$\{" + secret + r"(:?[?-])?[^}]*\}", text)
        assert uses and all(use == ":?" for use in uses), (secret, uses)
    env = _compose()["services"]["embedding-worker"]["environment"]
    assert env["LLM_API_KEY"] == "${LLM_API_KEY:?set LLM_API_KEY}"


def test_dockerfile_copies_what_exists_and_docker_compose_accepts_the_file(tmp_path):
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), line
    compose = _compose_command()
    if compose is None:
        return  # neither `docker compose` nor `docker-compose` here: the checks above are what can run
    env = {**os.environ, **dict.fromkeys(SECRETS, "secret-value")}
    ok = subprocess.run([*compose, "config", "--quiet"], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    env.pop("LLM_API_KEY")
    missing = subprocess.run([*compose, "config"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "set LLM_API_KEY" in missing.stderr


def _compose_command() -> list[str] | None:
    """``docker compose`` (the plugin) or the standalone ``docker-compose``, whichever is installed."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=60).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None
