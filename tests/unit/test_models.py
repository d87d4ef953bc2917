from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.models import TERMINAL_STATUSES, TRANSITIONS, GenerateRequest, JobStatus


def test_no_job_leaves_completed():
    assert TRANSITIONS[JobStatus.COMPLETED] == frozenset()


def test_running_jobs_never_step_back_to_pending():
    assert JobStatus.PENDING not in TRANSITIONS[JobStatus.PROCESSING]
    assert JobStatus.PROCESSING not in TRANSITIONS[JobStatus.PROCESSING]


def test_only_failed_and_cancelled_can_be_retried():
    assert {s for s, targets in TRANSITIONS.items() if JobStatus.PENDING in targets} == {
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    }


def test_every_non_terminal_status_can_end():
    for status in set(JobStatus) - TERMINAL_STATUSES:
        assert TRANSITIONS[status] & TERMINAL_STATUSES


def test_defaults_fill_a_bare_prompt():
    request = GenerateRequest(prompt="  a cat  ")
    assert request.prompt == "a cat"
    assert (request.parameters.width, request.parameters.num_outputs) == (1024, 1)


def test_unknown_fields_are_refused():
    with pytest.raises(ValidationError):
        GenerateRequest.model_validate({"prompt": "x", "parameters": {"steps": 3}})
