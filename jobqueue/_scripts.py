"""The Lua scripts, read once from ``_lua/`` (each after ``_common.lua``) and called by SHA."""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from jobqueue.constants import METRICS_KEEP_MINUTES, PARKED_SCORE, PRIORITY_BAND


def _read(name: str) -> str:
    return resources.files("jobqueue").joinpath(f"_lua/{name}.lua").read_text()


class Script:
    """One Lua script: its text and SHA1, computed once."""

    def __init__(self, name: str) -> None:
        self.name = name
        common = (
            _read("_common")
            .replace("{{PRIORITY_BAND}}", str(PRIORITY_BAND))
            .replace("{{METRICS_TTL_MS}}", str(METRICS_KEEP_MINUTES * 60_000))
            .replace("{{PARKED}}", str(PARKED_SCORE))
        )
        self.text = common + _read(name)
        self.sha = hashlib.sha1(self.text.encode()).hexdigest()

    async def __call__(self, redis: Redis, keys: list[str], args: list[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await redis.script_load(self.text)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)

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
