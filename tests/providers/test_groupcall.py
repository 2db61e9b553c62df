"""Group commit of the embedding jobs' store calls: concurrent callers share one query."""

from __future__ import annotations

import asyncio

import pytest

from jobqueue.errors import EntityNotFoundError, RetryableJobError
from workers.providers.groupcall import GroupCall, ProductEmbeddingIO


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
    for pid in ("a", "b", "c"):
        await store.upsert_product(pid, name=f"Product {pid}", price=100)
    io = ProductEmbeddingIO(store)
    try:
        a, b, c, ghost = await asyncio.gather(*(io.get_product(pid) for pid in ("a", "b", "c", "ghost")))
        assert (a.id, b.id, c.id, ghost) == ("a", "b", "c", None)
        await store.upsert_product("c", name="Product c, renamed", price=100)
        results = await asyncio.gather(
            io.save_product_embedding("a", [0.5, 0.25], "hash-a", "m", source=a),
            io.save_product_embedding("ghost", [1.0], "hash-g", "m", source=a.model_copy(update={"id": "ghost"})),
            io.save_product_embedding("b", [0.125], "hash-b", "m", source=b),
            io.save_product_embedding("c", [0.75], "hash-c", "m", source=c),
            return_exceptions=True,
        )
    finally:
        await io.aclose()
    assert (results[0], results[2], results[3]) == (True, True, False)  # c's text changed since it was read
    assert isinstance(results[1], EntityNotFoundError)
    stored_a, stored_b, stored_c = [await store.get_product(pid) for pid in ("a", "b", "c")]
    assert (stored_a.embedding, stored_a.text_hash, stored_a.embedding_model) == ([0.5, 0.25], "hash-a", "m")
    assert (stored_b.embedding, stored_b.text_hash) == ([0.125], "hash-b")
    assert (stored_c.embedding, stored_c.text_hash) == (None, None)
    assert await store.get_product("ghost") is None
