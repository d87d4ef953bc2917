"""The ASL file and its placeholders (the same rendering the emulation and CDK use)."""

from __future__ import annotations

import json

import pytest

from infra import spec

ARNS = {name: f"arn:aws:lambda:us-east-1:123456789012:function:{name}" for name in spec.FUNCTIONS}
SETTINGS = spec.WorkflowSettings(
    job_timeout_seconds=600,
    max_retry_attempts=3,
    retry_interval_seconds=2,
    poll_interval_seconds=3,
    heartbeat_seconds=60,
)


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


def test_the_job_deadline_bounds_the_wait_and_the_execution(definition):
    generate = definition["States"]["Generate"]
    assert generate["TimeoutSeconds"] == 600
    assert generate["HeartbeatSeconds"] == 60
    assert definition["TimeoutSeconds"] == 660, "the backstop: JOB_TIMEOUT + a minute to clean up"
    payload = generate["Parameters"]["Payload"]
    assert payload["job_timeout_seconds"] == 600
    assert payload["execution_started_at.$"] == "$$.Execution.StartTime"


def test_generate_waits_for_a_callback_with_its_task_token(definition):
    generate = definition["States"]["Generate"]
    assert generate["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert generate["Parameters"]["Payload"]["task_token.$"] == "$$.Task.Token"
    [timeouts, _] = generate["Catch"]
    assert set(timeouts["ErrorEquals"]) == {"States.Timeout", "States.HeartbeatTimeout"}
    assert timeouts["Next"] == "Collect", "a lost webhook falls back to polling"


def test_every_task_has_a_timeout(definition):
    tasks = [s for s in definition["States"].values() if s["Type"] == "Task"]
    assert tasks and all(isinstance(t.get("TimeoutSeconds"), int) for t in tasks)


def test_the_happy_path_is_one_state_and_collect_a_fallback(definition):
    """Generate ends the execution (its callback means the attempt ended); Collect is entered only
    when the heartbeat lapses or the deadline passes."""
    generate = definition["States"][definition["StartAt"]]
    assert generate.get("End") is True and "Next" not in generate
    to_collect = [c for c in generate["Catch"] if c["Next"] == "Collect"]
    assert [c["ErrorEquals"] for c in to_collect] == [["States.HeartbeatTimeout", "States.Timeout"]]
    assert definition["States"]["Collect"].get("End") is True


def test_collect_polls_until_the_deadline(definition):
    [poll, transient] = definition["States"]["Collect"]["Retry"]
    assert poll["ErrorEquals"] == ["PredictionRunning"]
    assert (poll["IntervalSeconds"], poll["BackoffRate"]) == (3, 1)
    assert poll["IntervalSeconds"] * poll["MaxAttempts"] >= 600
    assert "TransientError" in transient["ErrorEquals"]


@pytest.mark.parametrize("state", ["Generate", "Collect"])
def test_transient_errors_are_retried_with_backoff_and_jitter(definition, state):
    retry = next(r for r in definition["States"][state]["Retry"] if "TransientError" in r["ErrorEquals"])
    assert {"RateLimited", "AmbiguousCreate", "Lambda.TooManyRequestsException"} <= set(retry["ErrorEquals"])
    assert (retry["MaxAttempts"], retry["IntervalSeconds"], retry["BackoffRate"]) == (3, 2, 2)
    assert retry["JitterStrategy"] == "FULL" and retry["MaxDelaySeconds"] > 0


def test_every_failure_is_recorded_then_fails_the_execution(definition):
    for state in ("Generate", "Collect"):
        catch_all = definition["States"][state]["Catch"][-1]
        assert catch_all["ErrorEquals"] == ["States.ALL"] and catch_all["Next"] == "RecordFailure"
    assert definition["States"]["RecordFailure"]["Next"] == "JobFailed"
    assert definition["States"]["JobFailed"]["Type"] == "Fail"


def test_heartbeat_stays_below_a_short_deadline():
    short = spec.WorkflowSettings(
        job_timeout_seconds=5,
        max_retry_attempts=1,
        retry_interval_seconds=1,
        poll_interval_seconds=1,
        heartbeat_seconds=60,
    )
    rendered = json.loads(spec.render_workflow(spec.workflow_substitutions(ARNS, short)))
    assert rendered["States"]["Generate"]["HeartbeatSeconds"] == 4
