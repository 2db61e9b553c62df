"""Job results: what each queue's job returns, stored with the completed job."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict

from jobqueue.coreapi.payloads import Channel, Surface

Outcome = Literal["processed", "skipped"]
# How a provider call was made: at once ("sync") or gathered into a Batch API submission ("batch").
Lane = Literal["sync", "batch"]


class LLMUsage(BaseModel):
    """What one job's provider calls used, priced from ``JOBQUEUE_LLM_PRICES`` (see ``jobqueue.spend``).

    ``requests`` is the job's share of the provider requests it took part in: a request that
    carried the texts of 64 jobs counts 1/64 for each, so the shares of all jobs sum to the
    requests sent. Tokens of a shared request are split in proportion to each text's estimated
    tokens (the provider reports one total), whole tokens that sum to that total. ``cached``: the
    vector came from the content-hash cache (``workers.providers.embedcache``), no request was made.
    """

    model_config = ConfigDict(extra="forbid")

    model: str
    lane: Lane = "sync"
    requests: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cached: bool = False


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Outcome
    reason: str | None = None


class ProductEmbeddingJobResult(_Result):
    product_id: str
    text_hash: str | None = None
    model: str | None = None
    dims: int | None = None
    usage: LLMUsage | None = None


class ProductEnrichmentJobResult(_Result):
    product_id: str
    enrichment_version: int | None = None
    prompt_version: str | None = None
    usage: LLMUsage | None = None


class TasteProfileEmbeddingJobResult(_Result):
    taste_profile_id: str
    model: str | None = None
    dims: int | None = None
    usage: LLMUsage | None = None


class CuratedCollectionsJobResult(_Result):
    surface: Surface
    date: dt.date
    collection_ids: list[str] = []
    usage: LLMUsage | None = None


class ReminderDispatchJobResult(_Result):
    schedule_id: str
    channel: Channel | None = None
    sent_at: dt.datetime | None = None
