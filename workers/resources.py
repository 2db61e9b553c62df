"""What a worker opens at start-up and closes at shutdown: store, LLM provider, embeddings batcher,
notifier.

A provider or notifier that is not configured does not stop the worker: the error is kept and
raised by the first job that needs it, so that job fails at once naming the variable to set.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from jobqueue._env import read_settings
from jobqueue._envnames import REPORTED_VARIABLE
from jobqueue.errors import ConfigurationError
from workers.config import WorkerEnv
from workers.providers.batching import SharedEmbedder, open_shared_embedder
from workers.providers.batchlane import BatchLane
from workers.providers.groupcall import ProductEmbeddingIO
from workers.providers.llm import OpenAIProvider, provider_from_settings
from workers.providers.notifier import WebhookNotifier, notifier_from_settings
from workers.providers.store import Store, store_from_settings

logger = logging.getLogger("workers")
RESOURCES_KEY = "resources"
# Set by `jobqueue dev`, whose start-up summary already said what is not configured (and which
# unknown JOBQUEUE_* variables are set: jobqueue._envnames).
CONFIG_REPORTED_ENV = REPORTED_VARIABLE


@dataclass
class Resources:
    """Clients shared by the jobs of one worker process (``ctx["resources"]``)."""

    store: Store
    env: WorkerEnv
    llm_provider: OpenAIProvider | None = None
    llm_error: ConfigurationError | None = None
    notifier_client: WebhookNotifier | None = None
    notifier_error: ConfigurationError | None = None
    embedder: SharedEmbedder | None = None
    embedder_error: ConfigurationError | None = None
    # Product reads and writes of concurrent embedding jobs, grouped into one query each.
    product_io: ProductEmbeddingIO | None = None
    # The queue's Batch API lane (workers.providers.batchlane), for jobs enqueued with lane="batch".
    batch_lane_runner: BatchLane | None = None
    batch_lane_error: ConfigurationError | None = None

    @property
    def llm(self) -> OpenAIProvider:
        if self.llm_provider is None:
            raise self.llm_error or ConfigurationError("no LLM provider configured: set LLM_API_KEY")
        return self.llm_provider

    @property
    def embeddings(self) -> SharedEmbedder:
        """The process's embeddings batcher (see ``workers.providers.batching``)."""
        if self.embedder is None:
            raise self.embedder_error or ConfigurationError("no LLM provider configured: set LLM_API_KEY")
        return self.embedder

    @property
    def batch_lane(self) -> BatchLane:
        if self.batch_lane_runner is None:
            raise self.batch_lane_error or ConfigurationError("this worker has no batch lane: enqueue on lane='sync'")
        return self.batch_lane_runner

    @property
    def notifier(self) -> WebhookNotifier:
        if self.notifier_client is None:
            raise self.notifier_error or ConfigurationError("no notifier configured: set REMINDER_WEBHOOK_SECRET")
        return self.notifier_client

    async def aclose(self) -> None:
        closers = (
            self.batch_lane_runner,
            self.embedder,
            self.product_io,
            self.llm_provider,
            self.notifier_client,
            self.store,
        )
        for closer in closers:
            if closer is not None:
                await closer.aclose()


def resources(ctx: dict[str, Any]) -> Resources:
    return ctx[RESOURCES_KEY]


def make_hooks(
    *, llm: str | None = None, notifier: bool = False, embeddings: str | None = None, batch_lane: str | None = None
):
    """``on_startup``/``on_shutdown`` opening the store and, when asked, the provider (``llm``: the
    queue its calls are accounted to), the notifier, (``embeddings``: the queue whose batch options
    apply) the shared embeddings batcher and (``batch_lane``: its queue) the Batch API lane with its
    runner."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        level = logging.DEBUG if os.environ.get(CONFIG_REPORTED_ENV) == "1" else logging.WARNING
        res = Resources(store=store_from_settings(), env=read_settings(WorkerEnv))
        if llm is not None:
            try:
                res.llm_provider = provider_from_settings(redis=ctx["redis"], queue=llm)
                res.llm_provider.warm_up()
            except ConfigurationError as exc:
                res.llm_error = exc
                logger.log(level, "LLM not configured, jobs that need it will fail: %s", exc)
        if embeddings is not None:
            res.product_io = ProductEmbeddingIO(res.store)
            try:
                res.embedder = open_shared_embedder(embeddings, ctx["redis"])
            except ConfigurationError as exc:
                res.embedder_error = exc
                logger.log(level, "LLM not configured, embedding jobs will fail: %s", exc)
        if batch_lane is not None:
            try:
                res.batch_lane_runner = BatchLane.open(batch_lane, ctx["redis"], provider_from_settings())
                res.batch_lane_runner.start()
            except ConfigurationError as exc:
                res.batch_lane_error = exc
                logger.log(level, "LLM not configured, batch-lane jobs will fail: %s", exc)
        if notifier:
            try:
                res.notifier_client = notifier_from_settings()
            except ConfigurationError as exc:
                res.notifier_error = exc
                logger.log(level, "notifier not configured, reminders will fail: %s", exc)
        ctx[RESOURCES_KEY] = res

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        res: Resources | None = ctx.get(RESOURCES_KEY)
        if res is not None:
            await res.aclose()

    return on_startup, on_shutdown
