"""`make load`'s rates come from the jobs' own timestamps (bench/load.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from bench.load import Rates

T0 = 1_800_000_000.0


def job(created: float, waited: float, ended: float) -> dict:
    def iso(seconds: float) -> str:
        return datetime.fromtimestamp(T0 + seconds, UTC).isoformat().replace("+00:00", "Z")

    return {"created_at": iso(created), "metrics": {"queue_wait_seconds": waited}, "finished_at": iso(ended)}


def test_dispatch_and_drain_rates_count_from_the_first_dispatch_and_split_at_the_last_submit():
    # 11 jobs submitted at 0 s; dispatched at 1 s, 1.5 s, ... 6 s (2 per second); each takes 2 s
    jobs = [job(0, 1 + i / 2, 3 + i / 2) for i in range(11)]

    rates = Rates.of(jobs, last_submit=T0 + 3.2)

    assert rates.dispatch == 2.0
    assert rates.while_submitting == 2.0  # 1, 1.5, 2, 2.5, 3
    assert rates.after_submitting == 2.0  # 3.5 .. 6
    assert round(rates.drain, 3) == round(11 / (8 - 1), 3)  # first dispatch (1 s) to the last end (8 s)


def test_too_few_jobs_give_no_rate():
    rates = Rates.of([job(0, 1, 3)], last_submit=T0)
    assert (rates.dispatch, rates.while_submitting, rates.after_submitting) == (None, None, None)
