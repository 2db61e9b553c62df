"""The documentation keeps up with the code: every public name, setting, per-queue option and command
is documented, and the README's links into docs/ lead somewhere. (`make docs` checks the links
between pages; the examples themselves run as tests through conftest.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import typer
from markdown.extensions.toc import slugify

import jobqueue
from jobqueue.cli import app as cli_app
from jobqueue.dashboard.auth import DashboardSettings
from jobqueue.settings import Settings
from jobqueue.spend import PriceSettings
from jobqueue.worker.options import QueueOptions
from tests.support.waiting import ROOT
from workers.config import WorkerEnv
from workers.providers.batching import BatchSettings, InputSettings
from workers.providers.embedcache import CacheSettings
from workers.providers.llm import LLMSettings
from workers.providers.notifier import NotifierSettings
from workers.providers.ratelimit import RateLimitSettings

DOCS = ROOT / "docs"
README = ROOT / "README.md"
SETTINGS_CLASSES = [
    Settings,
    DashboardSettings,
    NotifierSettings,
    WorkerEnv,
    LLMSettings,
    BatchSettings,
    InputSettings,
    RateLimitSettings,
    PriceSettings,
    CacheSettings,
]


def _text(*paths: Path) -> str:
    return "\n".join(path.read_text() for path in paths)


def _all_docs() -> str:
    return _text(*sorted(DOCS.rglob("*.md")))


def _env_names(settings_class) -> list[str]:
    # BatchSettings is read once per embedding queue, with that queue's prefix (batch_settings())
    prefix = settings_class.model_config["env_prefix"]
    if settings_class is BatchSettings:
        prefix = "JOBQUEUE_PRODUCT_EMBEDDING_"
    names = []
    for name, field in settings_class.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        names.append((alias or prefix + name).upper())
    return names


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    return {slugify(title.strip(), "-") for title in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_every_public_name_is_in_the_api_reference():
    reference = _text(*sorted((DOCS / "reference").glob("*.md")))
    missing = [name for name in jobqueue.__all__ if not re.search(rf"\b{re.escape(name)}\b", reference)]
    assert not missing, f"add to docs/reference/: {missing}"


@pytest.mark.parametrize("settings_class", SETTINGS_CLASSES, ids=lambda c: c.__name__)
def test_every_setting_is_on_the_settings_page(settings_class):
    page = _text(DOCS / "settings.md")
    missing = [env for env in _env_names(settings_class) if f"`{env}`" not in page]
    assert not missing, f"add to docs/settings.md: {missing}"


def test_every_per_queue_option_is_documented():
    page = _text(DOCS / "writing-workers.md")
    missing = [name for name in QueueOptions.model_fields if f"`{name}`" not in page]
    assert not missing, f"add to the per-queue options of docs/writing-workers.md: {missing}"


def test_every_command_is_on_the_command_line_page():
    page = _text(DOCS / "cli.md")

    def commands(group: click.Group, prefix: str):
        for name, command in group.commands.items():
            yield f"{prefix} {name}"
            if isinstance(command, click.Group):
                yield from commands(command, f"{prefix} {name}")

    missing = [c for c in commands(typer.main.get_command(cli_app), "jobqueue") if f"`{c}" not in page]
    assert not missing, f"add to docs/cli.md: {missing}"


def test_readme_links_lead_to_pages_and_headings_that_exist():
    links = re.findall(r"\]\(((?!https?:)[^)\s]+)\)", README.read_text())
    assert any(link.startswith("docs/") for link in links)
    broken = []
    for link in links:
        target, _, anchor = link.partition("#")
        path = ROOT / target if target else README
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in _anchors(path)):
            broken.append(link)
    assert not broken, f"README.md links to nothing: {broken}"


def test_readme_maps_every_page_of_the_guide():
    readme = README.read_text()
    pages = [p.relative_to(ROOT).as_posix() for p in DOCS.glob("*.md") if p.name != "index.md"]
    missing = [page for page in pages if f"]({page})" not in readme]
    assert not missing, f"add to the README's map: {missing}"
    assert len(readme.splitlines()) <= 250, "the README is what a newcomer reads first: keep it short"
