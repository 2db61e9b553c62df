"""The conditional writes of the product jobs: the row must still hold what the run read.

A run can outlive its lease (a handler left behind after its timeout, a stalled process) while a
newer run of the job reads newer data and stores its result. jobqueue fences the old run off from
Redis; these statements fence it off from the products table: the database writes a result only
while the fields it was computed from are unchanged, in the ``UPDATE ... WHERE`` itself. A write
the fence keeps out matches no row. Built once, run with the parameters of ``*_params``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import and_, bindparam, update
from sqlalchemy.sql import ColumnElement

from workers.providers import _tables as t
from workers.providers._tables import ProductRecord

__all__ = ["SAVE_EMBEDDING", "SAVE_ENRICHMENT", "embedding_params", "enrichment_params"]

_c = t.products.c


def _same_text() -> ColumnElement[bool]:
    # The fields the embedded text is made of (``workers.jobs.products.canonical_text``), as the
    # run read them; tests/providers/test_store_fence.py changes each field of a product to check this list.
    return and_(
        _c.id == bindparam("f_id"),
        _c.name == bindparam("f_name"),
        _c.description == bindparam("f_description"),
        _c.category.is_not_distinct_from(bindparam("f_category", type_=_c.category.type)),
        _c.brand.is_not_distinct_from(bindparam("f_brand", type_=_c.brand.type)),
        t.json_equals(_c.tags, bindparam("f_tags", type_=_c.tags.type)),
    )


def _text_params(id: str, source: ProductRecord) -> dict[str, Any]:
    text = {"f_name": source.name, "f_description": source.description, "f_category": source.category}
    return {"f_id": id, **text, "f_brand": source.brand, "f_tags": list(source.tags)}


SAVE_EMBEDDING: Final = (
    update(t.products)
    .where(_same_text())
    .values(
        embedding=bindparam("v_embedding", type_=_c.embedding.type),
        text_hash=bindparam("v_text_hash"),
        embedding_model=bindparam("v_model"),
        updated_at=bindparam("v_updated_at", type_=_c.updated_at.type),
    )
)

# The enrichment prompt also carries the price; a newer enrichment version is never replaced.
SAVE_ENRICHMENT: Final = (
    update(t.products)
    .where(_same_text(), _c.price == bindparam("f_price"), _c.enrichment_version <= bindparam("v_version"))
    .values(
        enrichment=bindparam("v_enrichment", type_=_c.enrichment.type),
        enrichment_version=bindparam("v_version"),
        prompt_version=bindparam("v_prompt_version"),
        updated_at=bindparam("v_updated_at", type_=_c.updated_at.type),
    )
)


def embedding_params(
    id: str, source: ProductRecord, vector: Sequence[float], digest: str, model: str, now: datetime
) -> dict[str, Any]:
    values = {"v_embedding": list(vector), "v_text_hash": digest, "v_model": model, "v_updated_at": now}
    return _text_params(id, source) | values


def enrichment_params(
    id: str, source: ProductRecord, enrichment: dict[str, Any], version: int, prompt_version: str | None, now: datetime
) -> dict[str, Any]:
    values = {"v_enrichment": enrichment, "v_version": version, "v_prompt_version": prompt_version}
    return _text_params(id, source) | {"f_price": source.price, **values, "v_updated_at": now}
