"""The Lua scripts, read once from ``_lua/`` (each after ``_common.lua``) and called by SHA.

The events stream's bound (``JOBQUEUE_EVENTS_MAXLEN``) is a setting, read on first use, never at
import: each script is rendered with it then (and again should the setting change), so the
scripts' argument lists stay as they are.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from jobqueue.constants import METRICS_KEEP_MINUTES, PARKED_SCORE, PRIORITY_BAND
from jobqueue.settings import get_settings


def _read(name: str) -> str:
    return resources.files("jobqueue.backend").joinpath(f"_lua/{name}.lua").read_text()


class Script:
    """One Lua script: its text and SHA1, computed once per value of the events stream's bound."""

    def __init__(self, name: str) -> None:
        self.name = name
        common = (
            _read("_common")
            .replace("{{PRIORITY_BAND}}", str(PRIORITY_BAND))
            .replace("{{METRICS_TTL_MS}}", str(METRICS_KEEP_MINUTES * 60_000))
            .replace("{{PARKED}}", str(PARKED_SCORE))
        )
        self._template = common + _read(name)
        self._rendered: tuple[int, str, str] | None = None  # (events maxlen, text, sha)

    def _render(self) -> tuple[int, str, str]:
        maxlen = get_settings().events_maxlen
        rendered = self._rendered
        if rendered is None or rendered[0] != maxlen:
            text = self._template.replace("{{EVENTS_MAXLEN}}", str(maxlen))
            rendered = self._rendered = (maxlen, text, hashlib.sha1(text.encode()).hexdigest())
        return rendered

    @property
    def text(self) -> str:
        return self._render()[1]

    @property
    def sha(self) -> str:
        return self._render()[2]

    async def __call__(self, redis: Redis, keys: list[str], args: list[Any]) -> Any:
        _, text, sha = self._render()
        try:
            return await redis.evalsha(sha, len(keys), *keys, *args)
        except NoScriptError:
            await redis.script_load(text)
            return await redis.evalsha(sha, len(keys), *keys, *args)

    def queue_in(self, pipe: Any, keys: list[str], args: list[Any]) -> None:
        """Add a call to a pipeline; ``run_pipeline`` loads the script if Redis lacks it."""
        pipe.evalsha(self.sha, len(keys), *keys, *args)


async def run_pipeline(redis: Redis, pipe: Any, *scripts: Script) -> list[Any]:
    """Execute ``pipe``; on NOSCRIPT load ``scripts`` and run the same commands once more."""
    commands = list(pipe.command_stack)
    try:
        return await pipe.execute()
    except NoScriptError:
        for script in scripts:
            await redis.script_load(script.text)
        retry = redis.pipeline(transaction=False)
        retry.command_stack.extend(commands)
        return await retry.execute()


ENQUEUE = Script("enqueue")
CLAIM = Script("claim")
FINISH = Script("finish")
TICK = Script("tick")
COUNTS = Script("counts")
CLEAN = Script("clean")
REMOVE = Script("remove")
PROMOTE = Script("promote")
SCHEDULE_UPSERT = Script("schedule_upsert")
SCHEDULE_FIRE = Script("schedule_fire")
SCHEDULE_REMOVE = Script("schedule_remove")
PROGRESS = Script("progress")
CANCEL = Script("cancel")
