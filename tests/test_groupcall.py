"""Group commit of the embedding jobs' store calls: concurrent callers share one query."""

from __future__ import annotations

import asyncio

import pytest

from jobqueue.errors import EntityNotFoundError, RetryableJobError
from workers.groupcall import GroupCall, ProductEmbeddingIO


async def test_callers_arriving_while_a_group_runs_share_the_next_one() -> None:
    groups: list[list[int]] = []
    release = asyncio.Event()

    async def run(args: list[int]) -> list[int]:
        groups.append(args)
        if len(groups) == 1:
            await release.wait()
        return [a * 10 for a in args]

    call: GroupCall[int, int] = GroupCall(run)
    first = asyncio.create_task(call(1))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(call(i)) for i in range(2, 6)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(first, *rest) == [10, 20, 30, 40, 50]
    assert groups == [[1], [2, 3, 4, 5]]


async def test_an_error_result_fails_its_caller_only_and_a_raised_error_fails_the_group() -> None:
    async def run(args: list[int]) -> list[int | BaseException]:
        if 0 in args:
            raise RetryableJobError("database unavailable")
        return [ValueError(f"bad {a}") if a == 2 else a for a in args]

    call: GroupCall[int, int] = GroupCall(run)
    results = await asyncio.gather(call(1), call(2), call(3), return_exceptions=True)
    assert results[0] == 1 and results[2] == 3 and isinstance(results[1], ValueError)
    failed = await asyncio.gather(call(0), call(4), return_exceptions=True)
    assert all(isinstance(r, RetryableJobError) for r in failed)
    assert failed[0] is not failed[1]  # each caller raises its own copy


async def test_a_cancelled_caller_is_left_out_of_its_group() -> None:
    groups: list[list[str]] = []

    async def run(args: list[str]) -> list[str]:
        groups.append(args)
        return args

    call: GroupCall[str, str] = GroupCall(run)
    gone = asyncio.create_task(call("gone"))
    kept = asyncio.create_task(call("kept"))
    await asyncio.sleep(0)
    gone.cancel()
    assert await kept == "kept"
    assert groups == [["kept"]]
    await call.aclose()
    with pytest.raises(RetryableJobError):
        await call("after close")


async def test_grouped_product_reads_and_writes_against_the_store(store) -> None:
    for pid in ("a", "b"):
        await store.upsert_product(pid, name=f"Product {pid}", price=100)
    io = ProductEmbeddingIO(store)
    try:
        a, b, ghost = await asyncio.gather(io.get_product("a"), io.get_product("b"), io.get_product("ghost"))
        assert (a.id, b.id, ghost) == ("a", "b", None)
        results = await asyncio.gather(
            io.save_product_embedding("a", [0.5, 0.25], "hash-a", "m"),
            io.save_product_embedding("ghost", [1.0], "hash-g", "m"),
            io.save_product_embedding("b", [0.125], "hash-b", "m"),
            return_exceptions=True,
        )
    finally:
        await io.aclose()
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], EntityNotFoundError)
    stored_a, stored_b = await store.get_product("a"), await store.get_product("b")
    assert (stored_a.embedding, stored_a.text_hash, stored_a.embedding_model) == ([0.5, 0.25], "hash-a", "m")
    assert (stored_b.embedding, stored_b.text_hash) == ([0.125], "hash-b")
    assert await store.get_product("ghost") is None
