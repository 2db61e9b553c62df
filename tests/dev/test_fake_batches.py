"""The fake OpenAI server's Files and Batch APIs, through the real ``openai`` SDK."""

from __future__ import annotations

import json

import openai
import pytest

from workers.testing.fake_openai import FakeOpenAI


def _jsonl(texts: list[str], endpoint: str = "/v1/embeddings") -> bytes:
    lines = [
        {"custom_id": f"job-{i}", "method": "POST", "url": endpoint, "body": {"model": "embed-test", "input": text}}
        for i, text in enumerate(texts)
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


async def _submit(client: openai.AsyncOpenAI, content: bytes) -> openai.types.Batch:
    file = await client.files.create(file=("in.jsonl", content), purpose="batch")
    return await client.batches.create(
        input_file_id=file.id, endpoint="/v1/embeddings", completion_window="24h", metadata={"run": "1"}
    )


def _rows(text: str) -> dict[str, dict]:
    return {row["custom_id"]: row for row in map(json.loads, text.splitlines())}


@pytest.fixture
async def client_and_fake():
    with FakeOpenAI(dims=4, batch_completion_s=0) as fake:
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)
        try:
            yield client, fake
        finally:
            await client.close()


async def test_a_batch_answers_each_request_as_the_sync_endpoint_would(client_and_fake):
    client, fake = client_and_fake
    fake.fail_in_batch("second", status=500)
    batch = await _submit(client, _jsonl(["first", "second", "third"]))
    batch = await client.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.metadata == {"run": "1"}
    assert (batch.request_counts.completed, batch.request_counts.failed, batch.request_counts.total) == (2, 1, 3)
    output = _rows((await client.files.content(batch.output_file_id)).text)
    errors = _rows((await client.files.content(batch.error_file_id)).text)
    assert sorted(output) == ["job-0", "job-2"] and list(errors) == ["job-1"]
    vector = output["job-2"]["response"]["body"]["data"][0]["embedding"]
    assert vector == FakeOpenAI.vector_for("third", 4)
    assert errors["job-1"]["response"]["status_code"] == 500
    assert fake.stats()["batch_requests"] == 2 and fake.stats()["batch_input_tokens"] == 2


async def test_an_expiring_batch_answers_only_its_first_requests(client_and_fake):
    client, fake = client_and_fake
    fake.expire_next_batch(finished=1)
    batch = await client.batches.retrieve((await _submit(client, _jsonl(["a", "b", "c"]))).id)
    assert batch.status == "expired" and batch.request_counts.completed == 1
    errors = _rows((await client.files.content(batch.error_file_id)).text)
    assert {row["error"]["code"] for row in errors.values()} == {"batch_expired"} and len(errors) == 2


async def test_a_running_batch_can_be_cancelled_once_and_is_listed_newest_first(client_and_fake):
    client, fake = client_and_fake
    fake.batch_completion_s = 60
    first = await _submit(client, _jsonl(["a"]))
    second = await _submit(client, _jsonl(["b", "c"]))
    assert (await client.batches.retrieve(second.id)).status == "in_progress"
    assert (await client.batches.cancel(second.id)).status == "cancelling"
    assert (await client.batches.retrieve(second.id)).status == "cancelled"
    with pytest.raises(openai.ConflictError):
        await client.batches.cancel(second.id)
    page = await client.batches.list(limit=1)
    assert [b.id for b in page.data] == [second.id] and page.has_more
    assert [b.id for b in (await client.batches.list(limit=5, after=second.id)).data] == [first.id]
    assert [b["requests"] for b in fake.batches()] == [1, 2]


async def test_files_and_batches_the_api_would_refuse(client_and_fake):
    client, _ = client_and_fake
    with pytest.raises(openai.NotFoundError):
        await client.batches.retrieve("batch-missing")
    bad = await client.files.create(file=("in.jsonl", b'{"custom_id": 1}\n'), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="custom_id"):
        await client.batches.create(input_file_id=bad.id, endpoint="/v1/embeddings", completion_window="24h")
    other = await client.files.create(file=("in.jsonl", _jsonl(["a"], "/v1/chat/completions")), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="POST to /v1/embeddings"):
        await client.batches.create(input_file_id=other.id, endpoint="/v1/embeddings", completion_window="24h")
    assert (await client.files.retrieve(other.id)).purpose == "batch"
