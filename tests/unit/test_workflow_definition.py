"""The ASL file and its placeholders (the same rendering the emulation and CDK use)."""

from __future__ import annotations

import json

import pytest

from infra import spec

ARNS = {name: f"arn:aws:lambda:us-east-1:123456789012:function:{name}" for name in spec.FUNCTIONS}
SETTINGS = spec.WorkflowSettings(job_timeout_seconds=600, max_retry_attempts=3, retry_interval_seconds=2)


@pytest.fixture
def definition() -> dict:
    return json.loads(spec.render_workflow(spec.workflow_substitutions(ARNS, SETTINGS)))


def test_every_placeholder_has_a_value():
    text = spec.WORKFLOW.definition.read_text()
    assert spec.placeholders(text) == set(spec.workflow_substitutions(ARNS, SETTINGS))
    assert "${" not in spec.render_workflow(spec.workflow_substitutions(ARNS, SETTINGS))


def test_a_missing_value_is_refused():
    values = spec.workflow_substitutions(ARNS, SETTINGS)
    del values["WorkerFunctionArn"]
    with pytest.raises(ValueError, match="WorkerFunctionArn"):
        spec.render_workflow(values)


def test_the_whole_job_has_the_job_timeout_as_deadline(definition):
    assert definition["TimeoutSeconds"] == 600
    payload = definition["States"]["Generate"]["Parameters"]["Payload"]
    assert payload["job_timeout_seconds"] == 600
    assert payload["execution_started_at.$"] == "$$.Execution.StartTime"


def test_every_task_has_a_timeout(definition):
    tasks = [s for s in definition["States"].values() if s["Type"] == "Task"]
    assert tasks and all(isinstance(t.get("TimeoutSeconds"), int) for t in tasks)


def test_the_happy_path_is_one_state(definition):
    state = definition["States"][definition["StartAt"]]
    assert state.get("End") is True


def test_transient_errors_are_retried_with_backoff_and_jitter(definition):
    [retry] = definition["States"]["Generate"]["Retry"]
    assert "TransientError" in retry["ErrorEquals"]
    assert (retry["MaxAttempts"], retry["IntervalSeconds"], retry["BackoffRate"]) == (3, 2, 2)
    assert retry["JitterStrategy"] == "FULL" and retry["MaxDelaySeconds"] > 0


def test_every_failure_is_recorded_then_fails_the_execution(definition):
    [catch] = definition["States"]["Generate"]["Catch"]
    assert catch["ErrorEquals"] == ["States.ALL"] and catch["Next"] == "RecordFailure"
    assert definition["States"]["RecordFailure"]["Next"] == "JobFailed"
    assert definition["States"]["JobFailed"]["Type"] == "Fail"
