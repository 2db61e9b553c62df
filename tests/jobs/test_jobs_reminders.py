"""Reminder dispatch through the signed webhook: once per schedule, even across crashes."""

import datetime as dt
import json

import pytest

import jobqueue
from jobqueue import JobFailedError
from tests.support.waiting import WorkerProcess, wait_for
from tests.support.workers import run_burst
from workers.providers.notifier import verify_signature
from workers.settings import reminders_settings

CONTENT = {"title": "Birthday Reminder", "body": "Sarah's birthday is tomorrow!", "data": {"occasionId": "o-1"}}
PAST = "2025-12-22T09:00:00Z"


@pytest.fixture
def push_url(receiver, core_env, monkeypatch):
    url = receiver.route("/push", 200, {"X-Message-Id": "msg-1"})
    monkeypatch.setenv("REMINDER_WEBHOOK_URL_PUSH", url)
    return url


async def _enqueue(schedule_id="s1"):
    return await jobqueue.enqueue_reminder_dispatch(schedule_id, "u1", "PUSH", CONTENT, PAST, occasion_id="o-1")


async def test_reminder_is_sent_signed_with_the_schedule_id_as_idempotency_key(store, receiver, push_url):
    await store.upsert_schedule("s1", user_id="u1", channel="PUSH")
    handle = await _enqueue()
    await run_burst(reminders_settings())
    result = await handle.result(timeout=5)
    assert (result.status, result.channel) == ("processed", "PUSH") and result.sent_at is not None
    (request,) = receiver.requests
    assert request.headers["Idempotency-Key"] == "s1"
    signature, timestamp = request.headers["X-Jobqueue-Signature"], request.headers["X-Jobqueue-Timestamp"]
    assert verify_signature(request.body, "whsec-test", signature, timestamp)
    body = json.loads(request.body)
    assert (body["title"], body["data"], body["occasion_id"]) == ("Birthday Reminder", {"occasionId": "o-1"}, "o-1")
    schedule = await store.get_schedule("s1")
    assert schedule.status == "SENT" and schedule.attempts == 1


async def test_reminder_enqueued_twice_is_sent_once(store, receiver, push_url):
    await store.upsert_schedule("s1", user_id="u1", channel="PUSH")
    first, second = await _enqueue(), await _enqueue()
    assert first.created and not second.created
    await run_burst(reminders_settings())
    # Even a job that runs again later (a new enqueue after completion) finds the schedule SENT.
    third = await _enqueue()
    assert third.created
    await run_burst(reminders_settings())
    assert (await third.result(timeout=5)).reason == "schedule is SENT"
    assert len(receiver.requests) == 1


async def test_cancelled_schedule_is_skipped(store, receiver, push_url):
    await store.upsert_schedule("s1", user_id="u1", channel="PUSH", status="CANCELLED")
    handle = await _enqueue()
    await run_burst(reminders_settings())
    assert (await handle.result(timeout=5)).reason == "schedule is CANCELLED"
    assert receiver.requests == []


async def test_failing_webhook_is_retried_then_marked_failed(store, receiver, core_env, monkeypatch):
    monkeypatch.setenv("REMINDER_WEBHOOK_URL_PUSH", receiver.route("/push", 500))
    monkeypatch.setenv("JOBQUEUE_REMINDER_DISPATCH_ATTEMPTS", "2")
    await store.upsert_schedule("s1", user_id="u1", channel="PUSH")
    handle = await _enqueue()
    await run_burst(reminders_settings())
    with pytest.raises(JobFailedError) as info:
        await handle.result(timeout=5)
    assert info.value.attempts == 2
    assert [r.headers["Idempotency-Key"] for r in receiver.requests] == ["s1", "s1"]
    schedule = await store.get_schedule("s1")
    assert schedule.status == "FAILED" and "500" in schedule.last_error


async def test_missing_channel_url_fails_at_once_naming_the_variable(store, receiver, core_env):
    await store.upsert_schedule("s1", user_id="u1", channel="PUSH")
    handle = await _enqueue()
    await run_burst(reminders_settings())
    with pytest.raises(JobFailedError, match="REMINDER_WEBHOOK_URL_PUSH"):
        await handle.result(timeout=5)
    assert (await store.get_schedule("s1")).status == "FAILED"


async def _schedule_status(store, status):
    return (await store.get_schedule("s1")).status == status


async def test_worker_killed_between_send_and_mark_resends_under_the_same_key(store, receiver, push_url, monkeypatch):
    monkeypatch.setenv("REMINDER_STALE_AFTER", "1")
    await store.upsert_schedule("s1", user_id="u1", channel="PUSH")
    receiver.hold_next("/push")  # the first delivery arrives, but the worker dies before the answer
    handle = await _enqueue()
    doomed = WorkerProcess("workers.RemindersSettings").start()
    try:
        await doomed.wait_for(lambda: _requests(receiver, 1), timeout=20, what="the first delivery")
        assert await _schedule_status(store, "SENDING")
        doomed.kill()
    finally:
        doomed.stop()
    with WorkerProcess("workers.RemindersSettings") as survivor:
        await survivor.wait_for(lambda: _schedule_status(store, "SENT"), timeout=20, what="the re-send")
        await wait_for(lambda: _job_state(handle, "completed"), what="the job to complete")
    first, second = receiver.requests
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == "s1"
    assert json.loads(first.body) == json.loads(second.body)
    schedule = await store.get_schedule("s1")
    assert schedule.attempts == 2 and schedule.sent_at > dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)


async def _requests(receiver, n):
    return len(receiver.requests) >= n


async def _job_state(handle, state):
    return await handle.status() == state
