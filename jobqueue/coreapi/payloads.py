"""Job payloads: what each queue's job carries, validated before anything is written."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from jobqueue import _validate
from jobqueue.constants import MAX_ID_LENGTH

# Ids end up in job ids, Redis keys and log lines: bounded length, no blanks, control or glob characters.
EntityId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(_validate.entity_id)
]
Surface = Literal["home", "discovery", "occasion"]
Channel = Literal["PUSH", "EMAIL", "SMS"]
SURFACES: tuple[Surface, ...] = ("home", "discovery", "occasion")
# Absent (None) is the sync lane: a payload carries a lane only when it is "batch".
Lane = Literal["sync", "batch"]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    triggered_by: str | None = Field(None, max_length=200)


class _LanePayload(_Payload):
    # How the job calls the LLM provider: None or "sync" during the run, "batch" through the Batch
    # API (workers.providers.batchlane).
    lane: Lane | None = None

    @property
    def batch_lane(self) -> bool:
        return self.lane == "batch"


class ProductEmbeddingJobPayload(_LanePayload):
    product_id: EntityId
    previous_text_hash: str | None = Field(None, max_length=200)


class ProductEnrichmentJobPayload(_LanePayload):
    product_id: EntityId
    prompt_version: str | None = Field(None, max_length=100)
    current_enrichment_version: int | None = Field(None, ge=0)


class TasteProfileEmbeddingJobPayload(_LanePayload):
    taste_profile_id: EntityId
    user_id: EntityId
    recipient_id: EntityId | None = None


class CollectionFilters(BaseModel):
    """Which products a collection may contain; prices in integer pence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    is_featured: bool | None = None
    min_price: int | None = Field(None, ge=0)
    max_price: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _price_range(self) -> CollectionFilters:
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError("min_price must not exceed max_price")
        return self


class CuratedCollectionsJobPayload(_Payload):
    surface: Surface
    date: dt.date
    collections_count: int = Field(6, ge=1, le=50)
    products_per_collection: int = Field(8, ge=1, le=100)
    filters: CollectionFilters | None = None


class ReminderContent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=2000)
    data: dict[str, Any] | None = None


class ReminderDispatchJobPayload(_Payload):
    schedule_id: EntityId
    user_id: EntityId
    channel: Channel
    content: ReminderContent
    scheduled_for: AwareDatetime
    occasion_id: EntityId | None = None
