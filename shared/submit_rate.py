"""A key's submit limit, `limit` submits a minute, as a sliding window over whole-minute counters.

Each key has one counter item per calendar minute (shared/job_store.py). Counting by calendar
minute alone would let a key submit `limit` times in a minute's last second and `limit` times again
in the next one's first. So a submit also weighs the previous minute's count by how much of that
minute still lies within the last 60 seconds (the sliding-window estimate that assumes its submits
were spread evenly): at 10 s into a minute, 5/6 of the previous minute's submits still count.
The current minute's counter is then checked against what is left, in the job's own transaction.
"""

from __future__ import annotations

import math

WINDOW_SECONDS = 60


def minute_of(now: float) -> int:
    return int(now // WINDOW_SECONDS)


def allowed_this_minute(limit: int, previous: int, now: float) -> int:
    """How many submits the current minute's counter may reach: the limit, less the previous
    minute's submits that still fall within the last 60 seconds (rounded down, so a key that kept
    to its limit is never refused by rounding)."""
    still_counted = previous * (WINDOW_SECONDS - now % WINDOW_SECONDS) / WINDOW_SECONDS
    return max(0, limit - math.floor(still_counted))


def seconds_until_allowed(limit: int, previous: int, current: int, now: float) -> int:
    """Retry-After for a refused submit: the first whole second from `now` at which one more
    submit fits, given this minute's and the previous minute's counts (1 to 60)."""
    minute = minute_of(now)
    for wait in range(1, WINDOW_SECONDS + 1):
        then = now + wait
        if minute_of(then) == minute:
            fits = current < allowed_this_minute(limit, previous, then)
        else:  # the next minute: this one's submits become the previous minute's
            fits = allowed_this_minute(limit, current, then) > 0
        if fits:
            return wait
    return WINDOW_SECONDS
