"""The submit limit's sliding window over whole-minute counters (shared/submit_rate.py)."""

from __future__ import annotations

import pytest

from shared.submit_rate import allowed_this_minute, seconds_until_allowed

MINUTE = 29_000_000 * 60.0  # the start of some calendar minute


@pytest.mark.parametrize(
    ("previous", "into_minute", "allowed"),
    [
        (0, 0, 60),  # a quiet key: the whole limit
        (60, 0, 0),  # the previous minute used it all, and all of it is within the last 60 s
        (60, 1, 1),  # a second later, 1/60 of it has slid out
        (60, 30, 30),
        (60, 59.5, 60),  # 0.5 submits still counted: rounded down, never refused by rounding
        (30, 45, 53),  # 7.5 still counted
        (200, 10, 0),  # never negative
    ],
)
def test_the_previous_minute_counts_for_what_still_lies_within_the_last_60_seconds(
    previous: int, into_minute: float, allowed: int
) -> None:
    assert allowed_this_minute(60, previous, MINUTE + into_minute) == allowed


def test_a_burst_at_a_minutes_end_is_not_allowed_again_at_the_next_ones_start() -> None:
    # 60 submits in the last second of a minute: one second into the next, one more fits, not 60.
    assert allowed_this_minute(60, 60, MINUTE + 60 + 1) == 1
    # Over the next minute the places come back one a second (60 a minute), not all at once.
    places = [allowed_this_minute(60, 60, MINUTE + 60 + s) for s in range(60)]
    assert places == list(range(60))


@pytest.mark.parametrize(
    ("previous", "current", "into_minute", "wait"),
    [
        # the limit used this minute: at the next minute's start all 3 still count, 1 s later 2.95
        (0, 3, 10, 51),
        # 3 in the previous minute and none yet: 2.95 still count 1 s in, rounded down to 2
        (3, 0, 0, 1),
        # 2 now and 1.5 still counted (rounded down to 1): one more once less than 1 still counts
        (3, 2, 30, 11),
    ],
)
def test_retry_after_is_the_first_second_at_which_one_more_submit_fits(
    previous: int, current: int, into_minute: float, wait: int
) -> None:
    now = MINUTE + into_minute
    assert allowed_this_minute(3, previous, now) <= current  # refused now
    waited = seconds_until_allowed(3, previous, current, now)
    assert 1 <= waited <= 60
    then = now + waited
    if then < MINUTE + 60:
        assert allowed_this_minute(3, previous, then) > current
        assert allowed_this_minute(3, previous, then - 1) <= current
    else:
        assert allowed_this_minute(3, current, then) > 0
        assert then - 1 < MINUTE + 60 or allowed_this_minute(3, current, then - 1) == 0
    assert waited == wait
