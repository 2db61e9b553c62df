"""Settings of the Core API workers beyond jobqueue's own, read when a worker starts."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerEnv(BaseSettings):
    """``COLLECTIONS_CRON_HOUR``, ``ENRICHMENT_VERSION``, ``REMINDER_STALE_AFTER``..."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    # The daily curated-collections cron job runs at this UTC hour and minute.
    collections_cron_hour: int = Field(3, ge=0, le=23)
    collections_cron_minute: int = Field(0, ge=0, le=59)
    # Bump to re-enrich every product (a new schema or prompt); stored versions below it are stale.
    enrichment_version: int = Field(1, ge=1)
    # A reminder claimed (SENDING) longer ago than this is presumed abandoned by a dead worker and
    # is sent again, under the same Idempotency-Key. Keep it above the reminder job timeout.
    reminder_stale_after: float = Field(120.0, gt=0)
