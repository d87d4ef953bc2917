"""The dispatcher's pacing: workflows start no faster than the configured rate."""

from __future__ import annotations

from itertools import pairwise

from shared.workflow import Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_burst_is_spread_at_the_rate():
    clock = FakeClock()
    pacer = Pacer(per_second=4, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(9):
        pacer.wait_turn()
        starts.append(clock.now)
    assert starts[-1] - starts[0] == 2.0, "9 starts at 4/s span 2 seconds"
    assert all(round(b - a, 6) == 0.25 for a, b in pairwise(starts))


def test_no_wait_when_starts_are_already_slower_than_the_rate():
    clock = FakeClock()
    pacer = Pacer(per_second=4, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        pacer.wait_turn()
        clock.now += 1.0  # the work itself takes longer than the interval
    assert clock.slept == []


def test_instances_share_the_total_rate(monkeypatch):
    from shared.settings import get_settings

    monkeypatch.setenv("DISPATCH_RATE_PER_SECOND", "10")
    monkeypatch.setenv("QUEUE_MAX_CONCURRENCY", "2")
    get_settings.cache_clear()
    try:
        assert Pacer.from_settings().interval == 0.2
    finally:
        get_settings.cache_clear()
