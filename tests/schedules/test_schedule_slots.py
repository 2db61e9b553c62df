"""Slot computation, a pure function: cron patterns in their time zone across DST changes, every.

Europe/London in 2026: clocks go forward at 01:00 UTC on 29 March (01:00 GMT becomes 02:00 BST)
and back at 01:00 UTC on 25 October (02:00 BST becomes 01:00 GMT).
"""

import datetime as dt

import pytest

from jobqueue import Schedule

UTC = dt.UTC


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def schedule(**rule) -> Schedule:
    return Schedule(id="s", queue="product-embedding", payload={"product_id": "p"}, **rule)


def slots(s: Schedule, after: dt.datetime, n: int) -> list[dt.datetime]:
    found = []
    for _ in range(n):
        after = s.next_slot(after)
        found.append(after)
    return found


def test_a_fixed_local_time_moves_in_utc_when_the_clocks_change():
    nine = schedule(cron="0 9 * * *", tz="Europe/London")
    assert slots(nine, utc(2026, 3, 27, 12), 3) == [utc(2026, 3, 28, 9), utc(2026, 3, 29, 8), utc(2026, 3, 30, 8)]
    assert slots(nine, utc(2026, 10, 24, 12), 2) == [utc(2026, 10, 25, 9), utc(2026, 10, 26, 9)]


def test_a_time_in_the_skipped_hour_fires_once_when_the_clocks_jump():
    # 01:30 does not exist on 29 March: cron runs it at the jump (02:00 BST), as Debian cron does.
    s = schedule(cron="30 1 * * *", tz="Europe/London")
    assert slots(s, utc(2026, 3, 28, 2), 3) == [utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30), utc(2026, 3, 31, 0, 30)]


def test_a_time_in_the_repeated_hour_fires_once():
    # 01:30 happens twice on 25 October (00:30 and 01:30 UTC): it fires at the first only.
    s = schedule(cron="30 1 * * *", tz="Europe/London")
    assert slots(s, utc(2026, 10, 24, 2), 2) == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    # Asked from inside the repeated hour, after the first 01:30 fired: nothing more that day.
    assert s.next_slot(utc(2026, 10, 25, 1, 10)) == utc(2026, 10, 26, 1, 30)


def test_a_pattern_with_a_wildcard_hour_follows_real_time_through_the_change():
    s = schedule(cron="*/30 * * * *", tz="Europe/London")
    assert slots(s, utc(2026, 10, 24, 23, 50), 5) == [
        utc(2026, 10, 25, 0, 0),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 1, 0),
        utc(2026, 10, 25, 1, 30),
        utc(2026, 10, 25, 2, 0),
    ]


def test_every_counts_absolute_time_whatever_the_zone():
    s = schedule(every=3600, tz="Europe/London")
    assert slots(s, utc(2026, 10, 24, 23, 30), 4) == [utc(2026, 10, 25, h) for h in range(4)]


def test_start_end_and_strictly_later_slots():
    start, end = utc(2030, 1, 1, 0, 0, 10), utc(2030, 1, 1, 0, 0, 40)
    s = schedule(every=15, start=start, end=end)
    assert s.next_slot(utc(2029, 1, 1)) == start
    assert s.next_slot(start) == utc(2030, 1, 1, 0, 0, 25)
    assert s.next_slot(utc(2030, 1, 1, 0, 0, 25)) == end  # end itself is a slot
    assert s.next_slot(end) is None
    daily = schedule(cron="0 3 * * *", start=utc(2030, 1, 5, 3), end=utc(2030, 1, 6, 3))
    assert slots(daily, utc(2030, 1, 1), 3) == [utc(2030, 1, 5, 3), utc(2030, 1, 6, 3), None]


def test_six_field_cron_has_seconds():
    s = schedule(cron="*/20 * * * * *")
    assert slots(s, utc(2030, 1, 1, 0, 0, 5), 3) == [
        utc(2030, 1, 1, 0, 0, 20),
        utc(2030, 1, 1, 0, 0, 40),
        utc(2030, 1, 1, 0, 1),
    ]


def test_next_slot_wants_an_aware_datetime():
    with pytest.raises(ValueError, match="timezone"):
        schedule(every=1).next_slot(dt.datetime(2030, 1, 1))
