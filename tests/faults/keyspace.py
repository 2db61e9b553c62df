"""Which keys may live in Redis, and for how long: the soak's check that nothing leaks.

A key is legitimate when it has a TTL (it goes by itself), or when it belongs to something alive:

| key (queue ``Q``)                                   | legitimate without a TTL when            |
|-----------------------------------------------------|------------------------------------------|
| ``jq:Q:queue``, ``active``, ``completed``, ``failed``, ``seq``, ``paused``, ``workers`` | always: one per queue |
| ``jq:Q:events``                                     | always: one per queue, bounded by ``JOBQUEUE_EVENTS_MAXLEN`` |
| ``jq:Q:done:<id>``                                  | ``<id>`` is in ``completed`` or ``failed`` (a retained record) |
| ``jq:Q:info:<id>``, ``jq:Q:rerun:<id>``             | ``<id>`` is a live job: in ``queue`` or ``active`` |
| ``jq:Q:progress:<id>``, ``jq:Q:logs:<id>``          | ``<id>`` is a live job or a retained record |
| ``arq:job:<id>``                                    | ``<id>`` is in some queue's ``queue``     |
| ``jq:schedules:ids``, ``jq:schedules:due:<queue>``   | always: the recurring schedules' indexes |
| ``jq:schedules:def:<id>``                           | ``<id>`` is in ``jq:schedules:ids`` (a live schedule) |
| ``jq:test:*``                                       | always: the tests' own instrumentation     |

Everything else needs a TTL: worker heartbeats ``jq:Q:worker:<id>``, cancel flags ``jq:Q:cancel:<id>``,
arq's ``arq:in-progress:<id>``, ``arq:retry:<id>`` and ``arq:result:<id>``, arq's
``jq:Q:queue:health-check``, rate-limit windows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import redis

from jobqueue.constants import QUEUE_NAMES

QUEUE_SINGLETONS = ("queue", "active", "completed", "failed", "seq", "paused", "workers", "events")
RECORD_KINDS = ("done",)
LIVE_JOB_KINDS = ("info", "rerun")
JOB_DATA_KINDS = ("progress", "logs")  # kept while the job is live and with its record


@dataclass
class KeyAudit:
    keys: int = 0
    with_ttl: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    strays: list[str] = field(default_factory=list)


def audit_keyspace(client: redis.Redis) -> KeyAudit:
    """Classify every key of the database; ``strays`` are keys with no TTL and no live owner."""
    live: set[str] = set()
    queued: set[str] = set()
    records: set[str] = set()
    for q in QUEUE_NAMES.values():
        base = f"jq:{q}:"
        ids = {m.decode() for m in client.zrange(base + "queue", 0, -1)}
        queued |= ids
        live |= ids | {m.decode() for m in client.hkeys(base + "active")}
        records |= {m.decode() for s in ("completed", "failed") for m in client.zrange(base + s, 0, -1)}
    schedules = {m.decode() for m in client.smembers("jq:schedules:ids")}
    audit = KeyAudit()
    batch: list[bytes] = []

    def flush() -> None:
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.pttl(key)
        for key, ttl in zip(batch, pipe.execute(), strict=True):
            _classify(
                audit, key.decode(errors="replace"), ttl, live=live, queued=queued, records=records, schedules=schedules
            )
        batch.clear()

    for key in client.scan_iter(count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            flush()
    if batch:
        flush()
    return audit


def _classify(
    audit: KeyAudit, key: str, ttl: int, *, live: set[str], queued: set[str], records: set[str], schedules: set[str]
) -> None:
    audit.keys += 1
    if ttl >= 0:
        audit.with_ttl += 1
        audit.by_kind["(ttl)"] += 1
        return
    parts = key.split(":", 3)
    if key.startswith("jq:test:"):
        kind, ok = "jq:test:*", True
    elif key.startswith("jq:schedules:"):
        rest = key[len("jq:schedules:") :]
        kind = "jq:schedules:" + rest.split(":", 1)[0]
        ok = rest == "ids" or (rest.startswith("due:") and rest[4:] in QUEUE_NAMES.values())
        ok = ok or (rest.startswith("def:") and rest[4:] in schedules)
    elif key.startswith("arq:job:"):
        kind, ok = "arq:job", key[len("arq:job:") :] in queued
    elif parts[0] == "jq" and len(parts) == 3 and parts[1] in QUEUE_NAMES.values():
        kind, ok = f"jq:Q:{parts[2]}", parts[2] in QUEUE_SINGLETONS
    elif parts[0] == "jq" and len(parts) == 4 and parts[1] in QUEUE_NAMES.values():
        job_id = parts[3]
        kind = f"jq:Q:{parts[2]}:<id>"
        ok = (parts[2] in RECORD_KINDS and job_id in records) or (parts[2] in LIVE_JOB_KINDS and job_id in live)
        ok = ok or (parts[2] in JOB_DATA_KINDS and (job_id in live or job_id in records))
    else:
        kind, ok = "other", False
    audit.by_kind[kind] += 1
    if not ok:
        audit.strays.append(key)
