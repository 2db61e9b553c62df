"""Job results: what each queue's job returns, stored with the completed job."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict

from jobqueue.payloads import Channel, Surface

Outcome = Literal["processed", "skipped"]


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Outcome
    reason: str | None = None


class ProductEmbeddingJobResult(_Result):
    product_id: str
    text_hash: str | None = None
    model: str | None = None
    dims: int | None = None


class ProductEnrichmentJobResult(_Result):
    product_id: str
    enrichment_version: int | None = None
    prompt_version: str | None = None


class TasteProfileEmbeddingJobResult(_Result):
    taste_profile_id: str
    model: str | None = None
    dims: int | None = None


class CuratedCollectionsJobResult(_Result):
    surface: Surface
    date: dt.date
    collection_ids: list[str] = []


class ReminderDispatchJobResult(_Result):
    schedule_id: str
    channel: Channel | None = None
    sent_at: dt.datetime | None = None
