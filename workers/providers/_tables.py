"""The ``jq_`` tables behind ``SqlStore`` (SQLAlchemy Core), the records read from them, and the
few statements that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Final, Literal, NamedTuple, get_args

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import ReturningInsert
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from jobqueue.errors import ConfigurationError

ScheduleStatus = Literal["PENDING", "SENDING", "SENT", "FAILED", "CANCELLED"]
SCHEDULE_STATUSES: Final = get_args(ScheduleStatus)
SQLITE_BUSY_TIMEOUT_S: Final = 15.0
# Plain URLs (as many hosts hand them out) get the async driver of their database.
_ASYNC_DRIVERS: Final = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}
# Any constant works; it only has to be the same in every process that creates the tables.
_SCHEMA_LOCK_KEY: Final = 0x6A715F736368656D
# The SQL function each SQLite connection gets for ``json_equals``.
_SQLITE_JSON_FUNCTION: Final = "jq_json"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which stores no offset) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware datetime")
        value = value.astimezone(UTC)
        # SQLite keeps the text as given; one offset-free UTC format keeps comparisons lexical-safe.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json(*, nullable: bool) -> Any:
    # none_as_null: a Python None is SQL NULL, not the JSON text 'null', so IS NULL works.
    return JSON(none_as_null=nullable).with_variant(JSONB(none_as_null=nullable), "postgresql")


metadata = MetaData()

products = Table(
    "jq_products",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("category", Text),
    Column("brand", Text),
    Column("tags", _json(nullable=False), nullable=False, default=list),
    Column("price", BigInteger, nullable=False),
    Column("is_featured", Boolean, nullable=False, default=False),
    Column("text_hash", String(128)),
    Column("embedding", _json(nullable=True)),
    Column("embedding_model", String(255)),
    Column("enrichment", _json(nullable=True)),
    Column("enrichment_version", Integer, nullable=False, default=0),
    Column("prompt_version", String(255)),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_jq_products_featured_price", "is_featured", "price"),
)

taste_profiles = Table(
    "jq_taste_profiles",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("user_id", String(255), nullable=False, index=True),
    Column("recipient_id", String(255)),
    Column("answers", _json(nullable=False), nullable=False, default=dict),
    Column("vector", _json(nullable=True)),
    Column("vector_model", String(255)),
    Column("updated_at", UTCDateTime, nullable=False),
)

curated_collections = Table(
    "jq_curated_collections",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("surface", String(32), nullable=False),
    Column("date", Date, nullable=False),
    Column("position", Integer, nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text),
    Column("product_ids", _json(nullable=False), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # The arbiter of "stored once": a second writer for the same surface and date collides here.
    UniqueConstraint("surface", "date", "position", name="uq_jq_curated_collections_slot"),
)

notification_schedules = Table(
    "jq_notification_schedules",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("user_id", String(255), nullable=False, index=True),
    Column("channel", String(16), nullable=False),
    Column("status", String(16), nullable=False, default="PENDING"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("claimed_at", UTCDateTime),
    Column("sent_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint(
        "status IN ({})".format(", ".join(f"'{s}'" for s in SCHEDULE_STATUSES)),
        name="ck_jq_notification_schedules_status",
    ),
)


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


# The JSON columns' text: orjson writes a 1,536-float vector about 15 times faster than the json
# module (shortest round-trip floats, compact, the same values read back); SQLite keeps it as it
# is written, PostgreSQL parses it into JSONB either way.
_JSON_CODEC: Final = {"json_serializer": _json_text, "json_deserializer": orjson.loads}


def make_engine(database_url: str) -> AsyncEngine:
    """An async engine on a SQLite or PostgreSQL URL; it opens no connection until used."""
    try:
        url = make_url(database_url)
        if url.drivername in _ASYNC_DRIVERS:
            url = url.set(drivername=_ASYNC_DRIVERS[url.drivername])
        backend = url.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise ConfigurationError(f"DATABASE_URL: only SQLite and PostgreSQL are supported, got {backend}")
        if backend != "sqlite":
            return create_async_engine(url, pool_pre_ping=True, **_JSON_CODEC)
        # A local file needs no liveness ping before each checkout (it doubled every query).
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, **_JSON_CODEC)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "connect", _sqlite_json_function)
        return engine
    except (sa_exc.ArgumentError, sa_exc.InvalidRequestError, sa_exc.NoSuchModuleError) as exc:
        raise ConfigurationError(f"DATABASE_URL is not usable: {exc}") from exc


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # In WAL mode (create_tables switches the file to it) synchronous=NORMAL is SQLite's advice:
    # a commit no longer waits for an fsync (the WAL is synced at checkpoints), which made each
    # job's write take milliseconds. A power cut may lose the last commits, never corrupt the file;
    # the jobs are idempotent and run again.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _normal_json(text: str | None) -> str | None:
    # One text per JSON value: orjson's, which the JSON columns are written with.
    if text is None:
        return None
    try:
        return orjson.dumps(orjson.loads(text)).decode()
    except orjson.JSONDecodeError:
        return text  # not JSON: compared as it is, never an error that would fail the write


def _sqlite_json_function(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.create_function(_SQLITE_JSON_FUNCTION, 1, _normal_json, deterministic=True)


async def create_tables(engine: AsyncEngine) -> None:
    """Create the missing ``jq_`` tables and indexes; safe when several processes do it at once."""
    if engine.dialect.name == "sqlite":
        try:
            async with engine.connect() as conn:
                # WAL lets readers in other worker processes run while one of them writes.
                await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        except sa_exc.OperationalError:
            pass  # "locked": another process is switching it right now, and WAL is only an optimisation
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # IF NOT EXISTS alone still races in PostgreSQL (duplicate pg_type rows): serialize.
            await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK_KEY})")
        for table in metadata.sorted_tables:
            await conn.execute(CreateTable(table, if_not_exists=True))
            for index in table.indexes:
                await conn.execute(CreateIndex(index, if_not_exists=True))


def upsert(dialect: str, table: Table, values: dict[str, Any]) -> ReturningInsert[Any]:
    """INSERT ... ON CONFLICT (id) DO UPDATE every given column, RETURNING the row."""
    dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = dialect_insert(table).values(**values)
    changes = {name: stmt.excluded[name] for name in values if name != "id"}
    return stmt.on_conflict_do_update(index_elements=[table.c.id], set_=changes).returning(*table.c)


class _json_value(FunctionElement[Any]):
    """A JSON expression in the form that compares by value (see ``json_equals``)."""

    name = "json_value"
    inherit_cache = True


@compiles(_json_value)
def _json_value_as_is(element: _json_value, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(_json_value, "sqlite")
def _json_value_normal(element: _json_value, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{_SQLITE_JSON_FUNCTION}({compiler.process(element.clauses, **kw)})"


def json_equals(column: Any, value: Any) -> ColumnElement[bool]:
    """``column`` holds the JSON ``value`` (a bind parameter of the column's type).

    PostgreSQL compares JSONB by value. SQLite keeps JSON as the text it was given, and its
    ``json()`` keeps escapes as written, so both sides go through a function of ours that writes
    the value again as orjson does: JSON from another serializer (spaces, ``\\u00e9``) compares
    equal. Object keys compare in order there; a value read back from the row has the row's order.
    """
    return _json_value(column) == _json_value(value)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class ProductRecord(_Record):
    """A product; ``price`` is in pence, ``embedding`` and ``enrichment`` are set by the jobs."""

    id: str
    name: str
    description: str = ""
    category: str | None = None
    brand: str | None = None
    tags: list[str] = []
    price: int
    is_featured: bool = False
    text_hash: str | None = None
    embedding: list[float] | None = None
    embedding_model: str | None = None
    enrichment: dict[str, Any] | None = None
    enrichment_version: int = 0
    prompt_version: str | None = None
    updated_at: AwareDatetime


class TasteProfileRecord(_Record):
    """A user's (or a recipient's) taste profile; ``answers`` is the content to embed."""

    id: str
    user_id: str
    recipient_id: str | None = None
    answers: dict[str, Any] = {}
    vector: list[float] | None = None
    vector_model: str | None = None
    updated_at: AwareDatetime


class CollectionRecord(_Record):
    """One curated collection of a surface and date, at ``position`` (0-based)."""

    id: str
    surface: str
    date: date
    position: int
    title: str
    description: str | None = None
    product_ids: list[str]
    created_at: AwareDatetime


class ScheduleRecord(_Record):
    """A notification schedule and where its delivery stands."""

    id: str
    user_id: str
    channel: str
    status: ScheduleStatus
    attempts: int = 0
    last_error: str | None = None
    claimed_at: AwareDatetime | None = None
    sent_at: AwareDatetime | None = None
    updated_at: AwareDatetime


class NewCollection(NamedTuple):
    """A collection to store; a plain ``(title, description, product_ids)`` tuple works too."""

    title: str
    description: str | None
    product_ids: list[str]
