"""A provider prediction as the service sees it, built from the provider's JSON.

No dependency on the `replicate` package: the API's webhook handler uses this too, and the API's
bundle does not ship the provider client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})

# The replicate client's own progress parser (Prediction.Progress.parse, client 1.0.7): the last
# tqdm-style line of the logs, e.g. " 40%|████      | 20/50 [00:01<00:01, 16.5it/s]".
_PROGRESS_LINE = re.compile(r"^\s*(?P<percentage>\d+)%\s*\|.+?\|\s*(?P<current>\d+)\/(?P<total>\d+)")


def progress_from_logs(logs: str | None) -> float | None:
    """Fraction done (0.0-1.0) from a prediction's logs, parsed as the client parses it."""
    if not logs:
        return None
    for line in reversed(logs.split("\n")):
        line = line.strip()
        if _PROGRESS_LINE.match(line):
            matches = _PROGRESS_LINE.findall(line)
            if len(matches) == 1:
                return int(matches[0][0]) / 100.0
    return None


def job_progress(fraction: float | None) -> int | None:
    """Provider progress (0-1) as job progress: 5-90, leaving room for copying the outputs."""
    return None if fraction is None else 5 + int(fraction * 85)


@dataclass(frozen=True)
class PredictionState:
    id: str
    status: str
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    logs: str | None = None
    predict_time: float | None = None
    input: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def progress(self) -> float | None:
        return progress_from_logs(self.logs)

    @classmethod
    def from_json(cls, data: Any) -> PredictionState:
        """Read a prediction; MalformedPrediction naming the first field of the wrong type (a
        webhook body is whatever was signed, so nothing about its shape is taken for granted)."""
        if not isinstance(data, dict):
            raise MalformedPrediction("body")
        metrics = _typed(data, "metrics", dict) or {}
        predict_time = metrics.get("predict_time")
        if isinstance(predict_time, bool) or not isinstance(predict_time, int | float | None):
            raise MalformedPrediction("metrics.predict_time")
        prediction_id = _typed(data, "id", str)
        if not prediction_id:
            raise MalformedPrediction("id")
        error = data.get("error")
        return cls(
            id=prediction_id,
            status=_typed(data, "status", str) or "starting",
            outputs=_output_urls(data.get("output")),
            error=str(error) if error else None,
            logs=_typed(data, "logs", str),
            predict_time=predict_time,
            input=_typed(data, "input", dict) or {},
            created_at=_typed(data, "created_at", str),
        )


class MalformedPrediction(ValueError):
    def __init__(self, field: str) -> None:
        super().__init__(f"prediction field {field!r} is missing or of the wrong type")
        self.field = field


def _typed(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if value is not None and not isinstance(value, kind):
        raise MalformedPrediction(name)
    return value


def _output_urls(output: Any) -> list[str]:
    """Image models return a list of URLs; others a single URL or a dict of them."""
    if output is None:
        return []
    if isinstance(output, str):
        return [output]
    if isinstance(output, dict):
        return [v for v in output.values() if isinstance(v, str)]
    if isinstance(output, list):
        return [v for v in output if isinstance(v, str)]
    return []
