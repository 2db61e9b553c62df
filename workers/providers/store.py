"""Where job functions read and write their entities: the ``Store`` protocol and ``SqlStore``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from functools import wraps
from typing import Any, Final, Protocol, TypeVar

from sqlalchemy import Table, and_, bindparam, exists, insert, or_, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Update

from jobqueue import tracing
from jobqueue.errors import EntityNotFoundError, RetryableJobError
from workers.providers import _tables as t
from workers.providers._fences import SAVE_EMBEDDING, SAVE_ENRICHMENT, embedding_params, enrichment_params
from workers.providers._tables import (
    CollectionRecord,
    NewCollection,
    ProductRecord,
    ScheduleRecord,
    ScheduleStatus,
    TasteProfileRecord,
)

__all__ = [
    "CollectionRecord",
    "NewCollection",
    "ProductRecord",
    "ScheduleRecord",
    "ScheduleStatus",
    "SqlStore",
    "Store",
    "TasteProfileRecord",
    "store_from_settings",
]

MAX_ERROR_CHARS: Final = 2000
# Connection-level failures worth a retry; anything else (a bug, a constraint) is raised as is.
_TRANSIENT: Final = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, OSError)
# The bulk reads, with the ids bound as one expanding parameter: compiled once and cached, where a
# literal list was coerced element by element and compiled anew for each group.
_PRODUCTS_BY_IDS: Final = select(t.products).where(t.products.c.id.in_(bindparam("ids", expanding=True)))
_PRODUCT_UPDATED_AT: Final = select(t.products.c.id, t.products.c.updated_at).where(
    t.products.c.id.in_(bindparam("ids", expanding=True))
)


class Store(Protocol):
    """What the job functions need from a database; a host app may implement it on its own schema.

    Saving to a missing row raises ``EntityNotFoundError``; an unreachable database raises
    ``RetryableJobError``.

    A run can still be going after its lease expired and a newer run of the job started (a handler
    left behind after its timeout, a stalled process): jobqueue fences it off from Redis, not from
    this store. So the saves are conditional, decided by the database in the write itself (an
    ``UPDATE ... WHERE``), and return False, writing nothing, when the condition fails:

    - ``save_product_embedding`` only while the product still has the text of ``source``, the
      record the vector was computed from (name, brand, category, tags, description);
    - ``save_product_enrichment`` only while it still has that text and price, and no newer
      ``enrichment_version`` is stored;
    - ``save_taste_profile_vector`` only while the profile still has the answers of ``source``;
    - ``release_schedule`` and ``mark_schedule_failed``, given ``claim`` (what ``claim_schedule``
      returned), only while no other run has claimed the schedule since (``SqlStore`` compares
      ``attempts``, which each claim counts up). ``mark_schedule_sent`` is not fenced: whichever
      run marks it, the notification did go out.
    """

    async def get_product(self, id: str) -> ProductRecord | None: ...
    async def save_product_embedding(
        self, id: str, vector: Sequence[float], text_hash: str, model: str, *, source: ProductRecord
    ) -> bool: ...
    async def save_product_enrichment(
        self, id: str, enrichment: dict[str, Any], version: int, prompt_version: str | None, *, source: ProductRecord
    ) -> bool: ...
    async def find_products(
        self, *, is_featured: bool | None, min_price: int | None, max_price: int | None, limit: int
    ) -> list[ProductRecord]: ...
    async def get_taste_profile(self, id: str) -> TasteProfileRecord | None: ...
    async def save_taste_profile_vector(
        self, id: str, vector: Sequence[float], model: str, *, source: TasteProfileRecord
    ) -> bool: ...
    async def collections_exist(self, surface: str, date: date | str) -> bool: ...
    async def get_collections(self, surface: str, date: date | str) -> list[CollectionRecord]: ...
    async def save_collections(
        self, surface: str, date: date | str, collections: Sequence[NewCollection | tuple[Any, ...]]
    ) -> list[str]: ...
    async def get_schedule(self, id: str) -> ScheduleRecord | None: ...
    async def claim_schedule(self, id: str, *, stale_after: float) -> ScheduleRecord | None: ...
    async def mark_schedule_sent(self, id: str) -> bool: ...
    async def mark_schedule_failed(self, id: str, error: str, *, claim: ScheduleRecord | None = None) -> bool: ...
    async def release_schedule(self, id: str, error: str | None, *, claim: ScheduleRecord | None = None) -> bool: ...
    async def aclose(self) -> None: ...


def _now() -> datetime:
    return datetime.now(UTC)


def _as_date(value: date | str) -> date:
    if isinstance(value, datetime):
        raise ValueError(f"expected a date, got the datetime {value!r}")
    return value if isinstance(value, date) else date.fromisoformat(value)


def _still_claimed(claim: ScheduleRecord | None) -> list[Any]:
    # Each claim counts ``attempts`` up: a run whose claim was taken over (it stalled past
    # REMINDER_STALE_AFTER) finds a higher count and can no longer release or fail the newer claim.
    return [] if claim is None else [t.notification_schedules.c.attempts == claim.attempts]


W = TypeVar("W", bound=Callable[..., Awaitable[Any]])


def _traced_write(method: W) -> W:
    """A span per store write (a child of the job's run when tracing is on), named by the method."""
    operation = method.__name__

    @wraps(method)
    async def traced(self: SqlStore, *args: Any, **kwargs: Any) -> Any:
        attributes = {"db.system.name": self._dialect, "db.operation.name": operation}
        with tracing.span(f"{operation} {self._dialect}", kind="client", attributes=attributes):
            return await method(self, *args, **kwargs)

    return traced  # type: ignore[return-value]


class SqlStore:
    """``Store`` on SQLAlchemy async: SQLite (``sqlite+aiosqlite:///path``) or PostgreSQL
    (``postgresql+asyncpg://...``; plain ``sqlite://`` and ``postgresql://`` get the async driver).

    The ``jq_`` tables are created on first use; ``aclose()`` disposes the engine.
    """

    def __init__(self, database_url: str) -> None:
        self._engine = t.make_engine(database_url)
        self.url = self._engine.url.render_as_string(hide_password=True)
        self._dialect = self._engine.dialect.name
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()
        self._closed = False

    async def ensure_schema(self) -> None:
        """Create the missing ``jq_`` tables; idempotent and safe under concurrent first calls."""
        if self._closed:
            raise RuntimeError("this SqlStore is closed")
        if self._schema_ready:
            return
        async with self._schema_lock:
            if self._schema_ready:
                return
            async with self._guard():
                await t.create_tables(self._engine)
            self._schema_ready = True

    async def aclose(self) -> None:
        """Dispose of the engine and its connections; safe to call twice."""
        if not self._closed:
            self._closed = True
            await self._engine.dispose()

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        try:
            yield
        except _TRANSIENT as exc:
            raise RetryableJobError(f"database unavailable at {self.url}: {exc}") from exc

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        await self.ensure_schema()
        async with self._guard(), self._engine.begin() as conn:
            yield conn

    async def _get(self, table: Table, id: str) -> dict[str, Any] | None:
        async with self._tx() as conn:
            row = (await conn.execute(select(table).where(table.c.id == id))).mappings().first()
        return None if row is None else dict(row)

    async def _upsert(self, table: Table, values: dict[str, Any]) -> dict[str, Any]:
        async with self._tx() as conn:
            return dict((await conn.execute(t.upsert(self._dialect, table, values))).mappings().one())

    async def _update(self, table: Table, id: str, values: dict[str, Any], *where: Any) -> bool:
        # False when the row exists but ``where`` excludes it: callers tell "stale" from "missing".
        return await self._write(table, id, update(table).where(table.c.id == id, *where).values(**values))

    async def _write(self, table: Table, id: str, stmt: Update, params: dict[str, Any] | None = None) -> bool:
        async with self._tx() as conn:
            result = await conn.execute(stmt, params)
            if result.rowcount:
                return True
            found = await conn.scalar(select(exists().where(table.c.id == id)))
        if not found:
            raise EntityNotFoundError(f"no row {id!r} in {table.name}")
        return False

    # products

    async def get_product(self, id: str) -> ProductRecord | None:
        row = await self._get(t.products, id)
        return None if row is None else ProductRecord.model_validate(row)

    @_traced_write
    async def upsert_product(
        self,
        id: str,
        *,
        name: str,
        price: int,
        description: str = "",
        category: str | None = None,
        brand: str | None = None,
        tags: Sequence[str] = (),
        is_featured: bool = False,
        text_hash: str | None = None,
        embedding: Sequence[float] | None = None,
        embedding_model: str | None = None,
        enrichment: dict[str, Any] | None = None,
        enrichment_version: int = 0,
        prompt_version: str | None = None,
    ) -> ProductRecord:
        """Insert or fully replace a product (seeding, tests, host apps)."""
        values = {"id": id, "name": name, "price": price, "description": description, "category": category}
        values |= {"brand": brand, "tags": list(tags), "is_featured": is_featured, "text_hash": text_hash}
        values |= {"embedding": None if embedding is None else list(embedding), "embedding_model": embedding_model}
        values |= {"enrichment": enrichment, "enrichment_version": enrichment_version}
        values |= {"prompt_version": prompt_version, "updated_at": _now()}
        return ProductRecord.model_validate(await self._upsert(t.products, values))

    @_traced_write
    async def save_product_embedding(
        self, id: str, vector: Sequence[float], text_hash: str, model: str, *, source: ProductRecord
    ) -> bool:
        """Store the vector of ``source``'s text, unless the product's text changed since ``source``
        was read (then return False)."""
        params = embedding_params(id, source, vector, text_hash, model, _now())
        return await self._write(t.products, id, SAVE_EMBEDDING, params)

    # Bulk forms for many jobs at once (``workers.providers.groupcall``): one query, one transaction.

    async def get_products(self, ids: Sequence[str]) -> dict[str, ProductRecord]:
        """The products of ``ids`` that exist, by id."""
        async with self._tx() as conn:
            rows = (await conn.execute(_PRODUCTS_BY_IDS, {"ids": list(ids)})).mappings().all()
        return {row["id"]: ProductRecord.model_validate(dict(row)) for row in rows}

    @_traced_write
    async def save_product_embeddings(
        self, rows: Sequence[tuple[str, Sequence[float], str, str, ProductRecord]]
    ) -> list[bool | None]:
        """``save_product_embedding`` for each ``(id, vector, text_hash, model, source)`` in one
        transaction; per row, in order: True stored, False kept out by the fence, None no such row."""
        if not rows:
            return []
        now = _now()
        params = [embedding_params(id, src, vec, digest, model, now) for id, vec, digest, model, src in rows]
        first: dict[str, int] = {}  # product id -> its first row
        for i, row in enumerate(rows):
            first.setdefault(row[0], i)
        stored: list[bool | None] = [None] * len(rows)
        async with self._tx() as conn:
            await conn.execute(SAVE_EMBEDDING, [params[i] for i in first.values()])
            # An executemany does not say which rows the fence kept out (one statement per row cost
            # four times as much on SQLite). The rows it wrote carry this group's ``now`` and stay
            # locked until the commit; a row kept out has another timestamp. No row: no product.
            for id, updated_at in (await conn.execute(_PRODUCT_UPDATED_AT, {"ids": list(first)})).all():
                stored[first[id]] = updated_at == now
            for i, (id, *_) in enumerate(rows):
                # The same product again in this group (a stale run and a newer one): one by one, after.
                if first[id] != i and stored[first[id]] is not None:
                    stored[i] = bool((await conn.execute(SAVE_EMBEDDING, params[i])).rowcount)
        return stored

    @_traced_write
    async def save_product_enrichment(
        self, id: str, enrichment: dict[str, Any], version: int, prompt_version: str | None, *, source: ProductRecord
    ) -> bool:
        """Store the enrichment made from ``source``, unless the product's text or price changed since
        ``source`` was read or it has a newer enrichment version (then return False)."""
        params = enrichment_params(id, source, enrichment, version, prompt_version, _now())
        return await self._write(t.products, id, SAVE_ENRICHMENT, params)

    async def find_products(
        self,
        *,
        is_featured: bool | None = None,
        min_price: int | None = None,
        max_price: int | None = None,
        limit: int,
    ) -> list[ProductRecord]:
        c = t.products.c
        stmt = select(t.products).order_by(c.id).limit(max(limit, 0))
        if is_featured is not None:
            stmt = stmt.where(c.is_featured.is_(is_featured))
        if min_price is not None:
            stmt = stmt.where(c.price >= min_price)
        if max_price is not None:
            stmt = stmt.where(c.price <= max_price)
        async with self._tx() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [ProductRecord.model_validate(dict(r)) for r in rows]

    # taste profiles

    async def get_taste_profile(self, id: str) -> TasteProfileRecord | None:
        row = await self._get(t.taste_profiles, id)
        return None if row is None else TasteProfileRecord.model_validate(row)

    @_traced_write
    async def upsert_taste_profile(
        self,
        id: str,
        *,
        user_id: str,
        answers: dict[str, Any],
        recipient_id: str | None = None,
        vector: Sequence[float] | None = None,
        vector_model: str | None = None,
    ) -> TasteProfileRecord:
        """Insert or fully replace a taste profile (seeding, tests, host apps)."""
        values = {"id": id, "user_id": user_id, "answers": answers, "recipient_id": recipient_id}
        values |= {"vector": None if vector is None else list(vector), "vector_model": vector_model}
        row = await self._upsert(t.taste_profiles, {**values, "updated_at": _now()})
        return TasteProfileRecord.model_validate(row)

    @_traced_write
    async def save_taste_profile_vector(
        self, id: str, vector: Sequence[float], model: str, *, source: TasteProfileRecord
    ) -> bool:
        """Store the vector of ``source``'s answers, unless the profile's answers changed since
        ``source`` was read (then return False)."""
        c = t.taste_profiles.c
        values = {"vector": list(vector), "vector_model": model, "updated_at": _now()}
        same_answers = t.json_equals(c.answers, bindparam("f_answers", source.answers, type_=c.answers.type))
        return await self._update(t.taste_profiles, id, values, same_answers)

    # curated collections

    async def collections_exist(self, surface: str, date: date | str) -> bool:
        return bool(await self._collection_ids(surface, _as_date(date)))

    async def get_collections(self, surface: str, date: date | str) -> list[CollectionRecord]:
        c = t.curated_collections.c
        stmt = select(t.curated_collections).where(c.surface == surface, c.date == _as_date(date))
        async with self._tx() as conn:
            rows = (await conn.execute(stmt.order_by(c.position))).mappings().all()
        return [CollectionRecord.model_validate(dict(r)) for r in rows]

    async def _collection_ids(self, surface: str, day: date) -> list[str]:
        c = t.curated_collections.c
        stmt = select(c.id).where(c.surface == surface, c.date == day).order_by(c.position)
        async with self._tx() as conn:
            return list((await conn.scalars(stmt)).all())

    @_traced_write
    async def save_collections(
        self, surface: str, date: date | str, collections: Sequence[NewCollection | tuple[Any, ...]]
    ) -> list[str]:
        """Store the collections of a surface and date once, in one transaction, and return their ids.

        If that surface and date already has collections (also when a concurrent writer wins the
        race), nothing is stored and the existing ids are returned.
        """
        day = _as_date(date)
        existing = await self._collection_ids(surface, day)
        if existing or not collections:
            return existing
        now = _now()
        rows = [
            {"id": uuid.uuid4().hex, "surface": surface, "date": day, "position": position}
            | {"title": title, "description": description, "product_ids": list(product_ids)}
            | {"created_at": now}
            for position, (title, description, product_ids) in enumerate(collections)
        ]
        try:
            async with self._tx() as conn:
                await conn.execute(insert(t.curated_collections), rows)
        except sa_exc.IntegrityError:
            # The unique (surface, date, position) says another writer got there first: theirs stand.
            existing = await self._collection_ids(surface, day)
            if existing:
                return existing
            raise
        return [row["id"] for row in rows]

    # notification schedules

    @_traced_write
    async def upsert_schedule(
        self,
        id: str,
        *,
        user_id: str,
        channel: str,
        status: ScheduleStatus = "PENDING",
        attempts: int = 0,
        last_error: str | None = None,
        claimed_at: datetime | None = None,
        sent_at: datetime | None = None,
    ) -> ScheduleRecord:
        """Insert or fully replace a notification schedule (seeding, tests, host apps)."""
        values = {"id": id, "user_id": user_id, "channel": channel, "status": status}
        values |= {"attempts": attempts, "last_error": last_error, "claimed_at": claimed_at}
        values |= {"sent_at": sent_at, "updated_at": _now()}
        return ScheduleRecord.model_validate(await self._upsert(t.notification_schedules, values))

    async def get_schedule(self, id: str) -> ScheduleRecord | None:
        row = await self._get(t.notification_schedules, id)
        return None if row is None else ScheduleRecord.model_validate(row)

    @_traced_write
    async def claim_schedule(self, id: str, *, stale_after: float) -> ScheduleRecord | None:
        """Move the schedule PENDING→SENDING (counting an attempt) and return it, atomically.

        A SENDING row claimed more than ``stale_after`` seconds ago belongs to a worker that died
        and is claimed again. Returns None when the row is SENT, FAILED, CANCELLED or being sent.
        """
        c = t.notification_schedules.c
        now = _now()
        claimable = or_(
            c.status == "PENDING",
            and_(
                c.status == "SENDING",
                or_(c.claimed_at.is_(None), c.claimed_at < now - timedelta(seconds=stale_after)),
            ),
        )
        # One conditional UPDATE: the database, not a read-then-write, decides who wins.
        stmt = (
            update(t.notification_schedules)
            .where(c.id == id, claimable)
            .values(status="SENDING", attempts=c.attempts + 1, claimed_at=now, updated_at=now)
            .returning(*t.notification_schedules.c)
        )
        async with self._tx() as conn:
            row = (await conn.execute(stmt)).mappings().first()
            if row is None and not await conn.scalar(select(exists().where(c.id == id))):
                raise EntityNotFoundError(f"no notification schedule {id!r}")
        return None if row is None else ScheduleRecord.model_validate(dict(row))

    @_traced_write
    async def mark_schedule_sent(self, id: str) -> bool:
        """Record the delivery (from any state but SENT: the notification did go out)."""
        now = _now()
        values = {"status": "SENT", "sent_at": now, "last_error": None, "updated_at": now}
        return await self._update(t.notification_schedules, id, values, t.notification_schedules.c.status != "SENT")

    @_traced_write
    async def mark_schedule_failed(self, id: str, error: str, *, claim: ScheduleRecord | None = None) -> bool:
        """PENDING or SENDING → FAILED with ``error``; False if the row was in another state or, given
        ``claim``, another run has claimed it since."""
        c = t.notification_schedules.c
        values = {"status": "FAILED", "last_error": error[:MAX_ERROR_CHARS], "updated_at": _now()}
        where = c.status.in_(("PENDING", "SENDING"))
        return await self._update(t.notification_schedules, id, values, where, *_still_claimed(claim))

    @_traced_write
    async def release_schedule(self, id: str, error: str | None, *, claim: ScheduleRecord | None = None) -> bool:
        """SENDING → PENDING so that a retry can claim it again; False if it was not SENDING or,
        given ``claim``, another run has claimed it since."""
        c = t.notification_schedules.c
        error = None if error is None else error[:MAX_ERROR_CHARS]
        values = {"status": "PENDING", "claimed_at": None, "last_error": error, "updated_at": _now()}
        return await self._update(t.notification_schedules, id, values, c.status == "SENDING", *_still_claimed(claim))


def store_from_settings() -> SqlStore:
    """A ``SqlStore`` on ``DATABASE_URL`` (SQLite ``./jobqueue.db`` by default)."""
    from jobqueue.settings import get_settings

    return SqlStore(get_settings().database_url)
