"""The workers' provider calls as child spans of the run: OpenAI (against the loopback fake), the
SQL store (SQLite) and the reminder webhook (a loopback receiver).

Each call is made inside a span standing for the job's run, as a handler's are.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel

from jobqueue.errors import PermanentJobError
from tests.support import tracing as otel
from workers.providers.llm import OpenAIProvider
from workers.providers.notifier import Notification, WebhookNotifier
from workers.providers.store import SqlStore
from workers.testing.fake_openai import FakeOpenAI

DIMS = 8


class Title(BaseModel):
    title: str


@pytest.fixture
def exporter():
    return otel.install()


@pytest.fixture
def fake():
    with FakeOpenAI(dims=DIMS, api_key="k") as server:
        yield server


def _provider(base_url: str) -> OpenAIProvider:
    return OpenAIProvider(
        api_key="k", base_url=base_url, model="gpt-test", embedding_model="emb-test", dims=DIMS, timeout=5.0
    )


async def test_openai_calls_are_client_spans_with_the_genai_attributes(exporter, fake):
    fake.responder = lambda request: json.dumps({"title": "Scarf"})
    provider = _provider(fake.base_url)
    try:
        with trace.get_tracer("tests").start_as_current_span("process product-embedding") as run:
            await provider.embed(["red scarf", "blue mug"])
            await provider.complete_json("system", "user", Title, schema_name="title")
    finally:
        await provider.aclose()
    (embeddings,) = otel.named("embeddings emb-test")
    (chat,) = otel.named("chat gpt-test")
    for span in (embeddings, chat):
        assert span.kind is SpanKind.CLIENT
        assert span.parent.span_id == run.get_span_context().span_id
        assert span.attributes["gen_ai.system"] == "openai"
        assert span.attributes["server.address"] == "127.0.0.1"
    assert embeddings.attributes["gen_ai.operation.name"] == "embeddings"
    assert embeddings.attributes["gen_ai.request.model"] == "emb-test"
    assert embeddings.attributes["jobqueue.llm.inputs"] == 2
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.request.model"] == "gpt-test"


async def test_a_provider_error_marks_its_span(exporter, fake):
    fake.fail_next(400, message="bad input")
    provider = _provider(fake.base_url)
    try:
        with pytest.raises(PermanentJobError):
            await provider.embed(["red scarf"])
    finally:
        await provider.aclose()
    (embeddings,) = otel.named("embeddings emb-test")
    assert embeddings.status.status_code is StatusCode.ERROR
    assert [e.name for e in embeddings.events] == ["exception"]
    assert (
        embeddings.events[0].attributes["exception.type"] == "workers.providers.llm.InvalidInputError"
    )  # a PermanentJobError


async def test_store_writes_are_spans_named_by_the_write(exporter, tmp_path):
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path}/store.db")
    try:
        with trace.get_tracer("tests").start_as_current_span("process product-embedding") as run:
            await store.upsert_product("p1", name="Mug", price=1299, tags=[], category="home")
            await store.get_product("p1")  # a read: no span
    finally:
        await store.aclose()
    spans = [s for s in exporter.get_finished_spans() if s.name != "process product-embedding"]
    assert [s.name for s in spans] == ["upsert_product sqlite"]
    assert spans[0].parent.span_id == run.get_span_context().span_id
    assert spans[0].attributes["db.system.name"] == "sqlite"
    assert spans[0].attributes["db.operation.name"] == "upsert_product"


async def test_a_reminder_webhook_is_a_post_span_with_its_status(exporter, receiver):
    notification = Notification(
        schedule_id="s1",
        user_id="u1",
        channel="PUSH",
        title="t",
        body="b",
        scheduled_for=datetime(2025, 12, 21, 9, 0, tzinfo=UTC),
    )
    notifier = WebhookNotifier({"PUSH": receiver.route("/push", 202)}, "secret")
    try:
        await notifier.send(notification)
    finally:
        await notifier.aclose()
    (post,) = otel.named("POST")
    assert post.kind is SpanKind.CLIENT
    assert post.attributes["http.response.status_code"] == 202
    assert post.attributes["http.request.method"] == "POST"
    assert post.attributes["jobqueue.notification.channel"] == "PUSH"
