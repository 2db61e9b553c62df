"""Every bad input raises InvalidJobError before anything is written to Redis."""

import datetime as dt
import sys

import pytest

import jobqueue
from jobqueue import InvalidJobError, _validate
from jobqueue.constants import ID_FORBIDDEN_CHARACTERS
from tests.support.redis_server import OWNED_PATTERNS

CONTENT = {"title": "Birthday", "body": "Sarah's birthday is tomorrow!"}
WHEN = "2025-12-22T09:00:00Z"

BAD_CALLS = {
    "empty product id": lambda: jobqueue.enqueue_product_embedding(""),
    "blank product id": lambda: jobqueue.enqueue_product_embedding("   "),
    "product id with spaces": lambda: jobqueue.enqueue_product_enrichment("a b"),
    "priority zero": lambda: jobqueue.enqueue_product_embedding("p1", priority=0),
    "priority eleven": lambda: jobqueue.enqueue_product_embedding("p1", priority=11),
    "priority bool": lambda: jobqueue.enqueue_product_embedding("p1", priority=True),
    "priority str": lambda: jobqueue.enqueue_product_embedding("p1", priority="1"),
    "negative delay": lambda: jobqueue.enqueue_product_embedding("p1", delay=-1),
    "negative timedelta": lambda: jobqueue.enqueue_product_embedding("p1", delay=dt.timedelta(seconds=-5)),
    "nan delay": lambda: jobqueue.enqueue_product_embedding("p1", delay=float("nan")),
    "delay str": lambda: jobqueue.enqueue_product_embedding("p1", delay="5"),
    "negative enrichment version": lambda: jobqueue.enqueue_product_enrichment("p1", current_enrichment_version=-1),
    "empty taste profile id": lambda: jobqueue.enqueue_taste_profile_embedding("", "u1"),
    "empty user id": lambda: jobqueue.enqueue_taste_profile_embedding("t1", ""),
    "unknown surface": lambda: jobqueue.enqueue_curated_collections("homepage", "2025-12-21"),
    "malformed date": lambda: jobqueue.enqueue_curated_collections("home", "21/12/2025"),
    "impossible date": lambda: jobqueue.enqueue_curated_collections("home", "2025-02-30"),
    "zero collections": lambda: jobqueue.enqueue_curated_collections("home", "2025-12-21", collections_count=0),
    "negative price": lambda: jobqueue.enqueue_curated_collections("home", "2025-12-21", filters={"min_price": -1}),
    "min above max": lambda: jobqueue.enqueue_curated_collections(
        "home", "2025-12-21", filters={"min_price": 500, "max_price": 100}
    ),
    "unknown filter": lambda: jobqueue.enqueue_curated_collections("home", "2025-12-21", filters={"colour": "red"}),
    "unknown channel": lambda: jobqueue.enqueue_reminder_dispatch("s1", "u1", "FAX", CONTENT, WHEN),
    "naive datetime": lambda: jobqueue.enqueue_reminder_dispatch(
        "s1", "u1", "PUSH", CONTENT, dt.datetime(2025, 12, 22, 9, 0)
    ),
    "naive iso string": lambda: jobqueue.enqueue_reminder_dispatch("s1", "u1", "PUSH", CONTENT, "2025-12-22T09:00:00"),
    "malformed datetime": lambda: jobqueue.enqueue_reminder_dispatch("s1", "u1", "PUSH", CONTENT, "tomorrow"),
    "content without title": lambda: jobqueue.enqueue_reminder_dispatch("s1", "u1", "PUSH", {"body": "x"}, WHEN),
    "empty schedule id": lambda: jobqueue.enqueue_reminder_dispatch("", "u1", "PUSH", CONTENT, WHEN),
    "processing with bad priority": lambda: jobqueue.enqueue_product_processing("p1", priority=42),
    "unknown queue": lambda: jobqueue.enqueue_many("emails", [{"product_id": "p1"}]),
    "one bad payload in a bulk": lambda: jobqueue.enqueue_many(
        "product-embedding", [{"product_id": "p1"}, {"product_id": ""}]
    ),
    "daily collections bad date": lambda: jobqueue.schedule_daily_curated_collections("2025-13-01"),
}


def owned_keys(client):
    return [k for pattern in OWNED_PATTERNS for k in client.scan_iter(match=pattern)]


@pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
async def test_bad_input_raises_before_any_write(call, redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        with pytest.raises(InvalidJobError) as info:
            await call()
        assert str(info.value)
        assert owned_keys(client) == []
    finally:
        client.close()


async def test_error_names_the_field_and_queue():
    with pytest.raises(InvalidJobError, match=r"curated-collections.*surface"):
        await jobqueue.enqueue_curated_collections("homepage", "2025-12-21")
    with pytest.raises(InvalidJobError, match="priority must be from 1"):
        await jobqueue.enqueue_product_embedding("p1", priority=11)
    with pytest.raises(InvalidJobError, match="timezone"):
        await jobqueue.enqueue_reminder_dispatch("s1", "u1", "PUSH", CONTENT, "2025-12-22T09:00:00")


async def test_queue_calls_validate_their_arguments():
    q = jobqueue.product_embedding_queue
    with pytest.raises(InvalidJobError, match="status"):
        await q.clean(0, 0, "active")
    with pytest.raises(InvalidJobError, match="grace"):
        await q.clean(-1)
    with pytest.raises(InvalidJobError, match="limit"):
        await q.clean(0, -5)
    with pytest.raises(InvalidJobError, match="status"):
        await q.get_jobs("running")


def test_an_id_is_refused_exactly_for_blanks_unprintables_and_glob_characters():
    # entity_id checks a whole string at C speed; this is its rule, character by character, over
    # all of Unicode.
    def refused(c: str) -> bool:
        return c.isspace() or not c.isprintable() or c in ID_FORBIDDEN_CHARACTERS

    for code in range(sys.maxunicode + 1):
        c = chr(code)
        try:
            _validate.entity_id(f"p{c}1")
        except ValueError:
            assert refused(c), repr(c)
        else:
            assert not refused(c), repr(c)
