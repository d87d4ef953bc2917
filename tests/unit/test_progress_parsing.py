"""Webhook progress is parsed exactly as the replicate client parses it (the API's bundle does not
ship the client, so shared/generation/predictions.py carries its own copy of the parser)."""

from __future__ import annotations

import pytest
from replicate.prediction import Prediction

from shared.generation.predictions import job_progress, progress_from_logs

LOGS = [
    None,
    "",
    "Using seed: 42\n",
    " 40%|████      | 20/50 [00:01<00:01, 16.5it/s]",
    "  0%|          | 0/4 [00:00<?, ?it/s]\n 50%|█████     | 2/4 [00:00<00:00,  8.1it/s]\n",
    " 50%|█████     | 2/4\n100%|██████████| 4/4 [00:00<00:00,  8.2it/s]\nsaving image\n",
    "100%|██████████| 4/4 [00:00<00:00, 8.2it/s] 100%|██████████| 4/4",  # two matches on a line
    "percent: 50% | nothing | here",
]


@pytest.mark.parametrize("logs", LOGS)
def test_same_result_as_the_client(logs):
    parsed = Prediction.Progress.parse(logs) if logs else None
    assert progress_from_logs(logs) == (parsed.percentage if parsed else None)


def test_job_progress_leaves_room_for_copying_outputs():
    assert (job_progress(None), job_progress(0.0), job_progress(1.0)) == (None, 5, 90)
