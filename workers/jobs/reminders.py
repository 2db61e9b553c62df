"""Reminder dispatch: claimed PENDING→SENDING, sent once, marked SENT (or FAILED)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from jobqueue import PermanentJobError, ReminderDispatchJobPayload, ReminderDispatchJobResult, RetryableJobError
from workers.providers.notifier import Notification
from workers.resources import resources


async def reminder_dispatch(ctx: dict[str, Any], payload: ReminderDispatchJobPayload) -> ReminderDispatchJobResult:
    """Send one reminder.

    The schedule row is claimed atomically, so a duplicated job never notifies twice. A worker that
    dies between sending and marking SENT leaves the row SENDING; after ``REMINDER_STALE_AFTER``
    the job claims it again and re-sends under the same ``Idempotency-Key`` (the schedule id), so a
    receiver that honours the key delivers it once.
    """
    res = resources(ctx)
    store, stale_after = res.store, res.env.reminder_stale_after
    schedule = await store.claim_schedule(payload.schedule_id, stale_after=stale_after)
    if schedule is None:
        current = await store.get_schedule(payload.schedule_id)
        if current is not None and current.status == "SENDING":
            held = (dt.datetime.now(dt.UTC) - (current.claimed_at or dt.datetime.now(dt.UTC))).total_seconds()
            raise RetryableJobError(
                f"reminder {payload.schedule_id} is being sent by another run",
                retry_after=max(stale_after - held, 0.5),
            )
        status = current.status if current is not None else "missing"
        return ReminderDispatchJobResult(
            status="skipped", schedule_id=payload.schedule_id, channel=payload.channel, reason=f"schedule is {status}"
        )
    notification = Notification(
        schedule_id=payload.schedule_id,
        user_id=payload.user_id,
        channel=payload.channel,
        title=payload.content.title,
        body=payload.content.body,
        data=payload.content.data or {},
        occasion_id=payload.occasion_id,
        scheduled_for=payload.scheduled_for,
    )
    # Released or failed only under this run's claim: if it stalled and another run claimed the
    # schedule meanwhile, that run's claim stands.
    try:
        await res.notifier.send(notification)
    except RetryableJobError as exc:
        if ctx.get("last_attempt"):
            await store.mark_schedule_failed(payload.schedule_id, str(exc), claim=schedule)
        else:
            await store.release_schedule(payload.schedule_id, str(exc), claim=schedule)
        raise
    except PermanentJobError as exc:
        await store.mark_schedule_failed(payload.schedule_id, str(exc), claim=schedule)
        raise
    await store.mark_schedule_sent(payload.schedule_id)
    return ReminderDispatchJobResult(
        status="processed",
        schedule_id=payload.schedule_id,
        channel=payload.channel,
        sent_at=dt.datetime.now(dt.UTC),
    )
