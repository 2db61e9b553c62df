"""The application's ``workers`` package as the library reaches it: only from this module, and only
inside its functions, so importing jobqueue (or running any other command) never loads the workers.

``jobqueue dev`` and ``jobqueue seed-demo`` start what lives there (the development stack, the demo
catalogue); the schedule listings of the CLI and the dashboard show the arq cron jobs of its
settings classes.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any


def settings_builders() -> dict[str, Callable[[], Any]]:
    """``workers.settings.BUILDERS``: each settings class's name and the function that builds it."""
    from workers.settings import BUILDERS

    return BUILDERS


def dev_stack() -> ModuleType:
    """``workers.dev.devstack``: the stack ``jobqueue dev`` runs."""
    from workers.dev import devstack

    return devstack


async def seed_demo(*, reset: bool) -> str:
    """Write the demo catalogue into the store at ``DATABASE_URL``; says where and what."""
    from workers.dev.demo import seed_demo as seed
    from workers.providers.store import store_from_settings

    store = store_from_settings()
    try:
        return f"{store.url}: {await seed(store, reset=reset)}"
    finally:
        await store.aclose()
