"""cfn-lint on the synthesized templates: no error. Warnings only from the accepted list."""

from __future__ import annotations

import json

from cfnlint.api import lint

from .conftest import Synthesized

REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]
ACCEPTED_WARNINGS = {
    # CDK adds an explicit DependsOn from each function (and the state machine) to its role next to
    # the GetAtt that already orders them: redundant, harmless, not ours to remove.
    "W3005",
}


def test_no_errors(each_stage: Synthesized) -> None:
    matches = lint(json.dumps(each_stage.json), regions=REGIONS)
    errors = [str(m) for m in matches if m.rule.id.startswith("E")]
    assert not errors, "\n".join(errors)
    unexpected = [str(m) for m in matches if m.rule.id.startswith("W") and m.rule.id not in ACCEPTED_WARNINGS]
    assert not unexpected, "\n".join(unexpected)
