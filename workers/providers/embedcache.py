"""Same text, one call: a content-hash cache of embeddings in Redis, shared by every worker process.

Products whose canonical text is identical (duplicate listings, variants) share one vector per
provider, model and dimensions. The key is ``jq:embcache:<sha256>`` of everything that decides the
vector: the provider's address, the model, the ``dimensions`` sent (or none), the length a stored
vector must have, and the text; a change to any of them reads another key. The value is the vector
packed as float32 (what the ``openai`` SDK decodes, so exact), or float64 when a value would not
survive float32; a value of the wrong length is a miss, never a vector.

Bounded by time: each entry lives ``JOBQUEUE_EMBEDDING_CACHE_TTL`` seconds (a day by default; 0
turns the cache off) from its last write, about ``4 * dims + 90`` bytes each, so Redis holds at most
the distinct texts embedded in one TTL.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import Final

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobqueue.constants import KEY_PREFIX

CACHE_KEY_PREFIX: Final = f"{KEY_PREFIX}:embcache:"
DEFAULT_CACHE_TTL_S: Final = 24 * 3600
_FLOAT32, _FLOAT64 = b"f", b"d"


class CacheSettings(BaseSettings):
    """``JOBQUEUE_EMBEDDING_CACHE_TTL``: seconds an embedding is kept by its text (0: no cache)."""

    model_config = SettingsConfigDict(env_prefix="JOBQUEUE_", extra="ignore")

    embedding_cache_ttl: int = Field(DEFAULT_CACHE_TTL_S, ge=0)


def cache_key(identity: str, model: str, sent_dimensions: int | None, dims: int | None, text: str) -> str:
    """The key of ``text``'s vector: a sha256 of every input that changes it, each length-prefixed
    so no two different inputs run together into the same bytes."""
    digest = hashlib.sha256()
    for part in (identity, model, str(sent_dimensions), str(dims), text):
        raw = part.encode()
        digest.update(len(raw).to_bytes(8, "big") + raw)
    return CACHE_KEY_PREFIX + digest.hexdigest()


def pack(vector: Sequence[float]) -> bytes:
    """``vector`` as bytes that unpack to exactly the same floats."""
    packed = struct.pack(f"<{len(vector)}f", *vector)
    if list(struct.unpack(f"<{len(vector)}f", packed)) == list(vector):
        return _FLOAT32 + packed
    return _FLOAT64 + struct.pack(f"<{len(vector)}d", *vector)


def unpack(raw: bytes, dims: int | None) -> list[float] | None:
    """The vector in ``raw``, or None when it is not a vector of ``dims`` floats."""
    kind, body = raw[:1], raw[1:]
    size = {_FLOAT32: 4, _FLOAT64: 8}.get(kind)
    if size is None or not body or len(body) % size:
        return None
    count = len(body) // size
    if dims is not None and count != dims:
        return None
    return list(struct.unpack(f"<{count}{kind.decode()}", body))


class EmbeddingCache:
    """Vectors by text for one provider, model and dimensions."""

    def __init__(
        self, redis: Redis, *, identity: str, model: str, sent_dimensions: int | None, dims: int | None, ttl: int
    ) -> None:
        if ttl < 1:
            raise ValueError(f"a cache TTL must be at least 1 second, got {ttl}")
        self._redis = redis
        self._identity = identity
        self._model = model
        self._sent_dimensions = sent_dimensions
        self.dims = dims
        self.ttl = ttl

    def key(self, text: str) -> str:
        return cache_key(self._identity, self._model, self._sent_dimensions, self.dims, text)

    async def get_many(self, texts: Sequence[str]) -> list[list[float] | None]:
        """Each text's cached vector or None; all None when Redis cannot answer (the texts are
        then embedded, which is never wrong)."""
        if not texts:
            return []
        try:
            raws = await self._redis.mget([self.key(t) for t in texts])
        except RedisError:
            return [None] * len(texts)
        return [None if raw is None else unpack(raw, self.dims) for raw in raws]

    async def put_many(self, pairs: Sequence[tuple[str, Sequence[float]]]) -> None:
        """Keep each text's vector for ``ttl`` seconds; a Redis error only loses the entries."""
        if not pairs:
            return
        pipe = self._redis.pipeline(transaction=False)
        for text, vector in pairs:
            pipe.set(self.key(text), pack(vector), ex=self.ttl)
        try:
            await pipe.execute()
        except RedisError:
            return
