"""Group commit: calls from concurrent jobs that reach the store together run as one query.

``GroupCall(run)`` runs ``run(args)`` for a whole group of callers, one group at a time: the first
caller starts a group at once, and every caller that arrives while a group is running joins the
next one. A lone job waits for nothing; under load, 64 jobs whose embeddings just came back write
their vectors in one transaction instead of 64 that queue for SQLite's single writer.

``run`` returns one result per argument (an exception instance fails that caller only); if it
raises, every caller of the group gets the error (each job retries on its own).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Generic, TypeVar

from jobqueue.errors import EntityNotFoundError, RetryableJobError
from workers.providers.store import ProductRecord, Store

A = TypeVar("A")
R = TypeVar("R")

# Arguments per group at most (SQLite allows 32,766 bound parameters per statement).
MAX_GROUP: Final = 500


class GroupCall(Generic[A, R]):
    """``await call(arg)`` runs ``run([...arg...])`` with the args of concurrent callers."""

    def __init__(self, run: Callable[[list[A]], Awaitable[Sequence[R | BaseException]]], *, max_group: int = MAX_GROUP):
        self._run = run
        self._max_group = max_group
        self._pending: list[tuple[A, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def __call__(self, arg: A) -> R:
        if self._closed:
            raise RetryableJobError("the store is closing: the worker is shutting down")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((arg, future))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="store-group")
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending[: self._max_group], self._pending[self._max_group :]
                live = [(arg, future) for arg, future in group if not future.done()]
                if live:
                    await self._run_group(live)
        finally:
            self._task = None

    async def _run_group(self, live: list[tuple[A, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([arg for arg, _ in live])
        except asyncio.CancelledError:
            _fail([f for _, f in live], RetryableJobError("the store call was cancelled: the worker is shutting down"))
            raise
        except Exception as exc:  # handed to every caller of the group, who raises it as its own
            _fail([f for _, f in live], exc)
            return
        for (_, future), result in zip(live, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def aclose(self) -> None:
        """Fail the callers still waiting and stop the running group; safe to call twice."""
        self._closed = True
        pending, self._pending = self._pending, []
        _fail([f for _, f in pending], RetryableJobError("the store closed before the call ran"))
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _fail(futures: list[asyncio.Future[Any]], exc: BaseException) -> None:
    for future in futures:
        if not future.done():
            try:
                own = copy.copy(exc)
            except Exception:
                own = exc
            future.set_exception(own)


class ProductEmbeddingIO:
    """The product reads and writes of embedding jobs, grouped when the store has bulk forms
    (``SqlStore`` does), else one call per job (a host app's own ``Store``)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        bulk = hasattr(store, "get_products") and hasattr(store, "save_product_embeddings")
        self._get: GroupCall[str, ProductRecord | None] | None = GroupCall(self._get_many) if bulk else None
        self._save: GroupCall[tuple[str, Sequence[float], str, str, ProductRecord], bool] | None = (
            GroupCall(self._save_many) if bulk else None
        )

    async def get_product(self, product_id: str) -> ProductRecord | None:
        if self._get is None:
            return await self._store.get_product(product_id)
        return await self._get(product_id)

    async def save_product_embedding(
        self, product_id: str, vector: Sequence[float], digest: str, model: str, *, source: ProductRecord
    ) -> bool:
        """``Store.save_product_embedding``: False when the product's text changed since ``source``."""
        if self._save is None:
            return await self._store.save_product_embedding(product_id, vector, digest, model, source=source)
        return await self._save((product_id, vector, digest, model, source))

    async def _get_many(self, ids: list[str]) -> list[ProductRecord | None]:
        found = await self._store.get_products(ids)  # type: ignore[attr-defined]
        return [found.get(product_id) for product_id in ids]

    async def _save_many(self, rows: list[tuple[str, Sequence[float], str, str, ProductRecord]]) -> list[Any]:
        stored = await self._store.save_product_embeddings(rows)  # type: ignore[attr-defined]
        return [
            EntityNotFoundError(f"no row {row[0]!r} in jq_products") if done is None else done
            for row, done in zip(rows, stored, strict=True)
        ]

    async def aclose(self) -> None:
        for call in (self._get, self._save):
            if call is not None:
                await call.aclose()
