"""cdk-nag's AWS Solutions rules: no unsuppressed finding, and every suppression says why."""

from __future__ import annotations

from aws_cdk.assertions import Match

from .conftest import Synthesis, Synthesized

NAG = Match.string_like_regexp("AwsSolutions-.*")


def test_no_unsuppressed_findings(each_stage: Synthesized) -> None:
    errors = each_stage.annotations.find_error("*", NAG)
    warnings = each_stage.annotations.find_warning("*", NAG)
    assert not errors + warnings, "\n".join(f"{f.id}: {f.entry.data}" for f in errors + warnings)


def test_every_suppression_has_a_reason_and_wildcards_are_named(each_stage: Synthesized) -> None:
    suppressions = [
        (logical_id, rule)
        for logical_id, resource in each_stage.json["Resources"].items()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]
    assert suppressions
    for logical_id, rule in suppressions:
        assert len(rule["reason"]) >= 40, (logical_id, rule)
        if rule["id"] == "AwsSolutions-IAM5":
            # A blanket IAM5 suppression would hide any new wildcard: name each accepted one.
            assert rule.get("applies_to"), (logical_id, rule)


def test_the_rules_run(synthesis: Synthesis) -> None:
    """cdk-nag 3.x silently fails with this aws-cdk-lib: prove the pinned one finds things."""
    found = {f.entry.data.split(":")[0] for f in synthesis.canary.find_error("*", NAG)}
    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= found
