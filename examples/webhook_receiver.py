"""A reminder webhook receiver: checks the signature and the timestamp, delivers once per key.

Run it with ``REMINDER_WEBHOOK_SECRET=... uvicorn examples.webhook_receiver:app`` and point
``REMINDER_WEBHOOK_URL_PUSH`` at ``http://<host>:8000/reminders/push``. The delivered set lives in
memory here; a real receiver keeps it in its database.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, HTTPException, Request

from workers.providers.notifier import verify_signature

app = FastAPI()
delivered: dict[str, bytes] = {}  # Idempotency-Key -> the notification delivered under it


@app.post("/reminders/{channel}")
async def receive(channel: str, request: Request) -> dict[str, str]:
    body = await request.body()  # the exact bytes that were signed: verify before parsing
    headers = request.headers
    secret = os.environ["REMINDER_WEBHOOK_SECRET"]
    if not verify_signature(body, secret, headers.get("X-Jobqueue-Signature"), headers.get("X-Jobqueue-Timestamp")):
        raise HTTPException(401, "bad or stale signature")
    key = headers.get("Idempotency-Key")
    if not key:
        raise HTTPException(400, "missing Idempotency-Key")
    if key not in delivered:  # a retry, or a repeat inside the tolerance, is acknowledged, not re-sent
        delivered[key] = body  # ... hand the notification to the push/email/SMS provider here
    return {"id": f"{channel}:{key}"}
