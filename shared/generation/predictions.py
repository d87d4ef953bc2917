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
    def from_json(cls, data: dict[str, Any]) -> PredictionState:
        return cls(
            id=str(data["id"]),
            status=str(data.get("status") or "starting"),
            outputs=_output_urls(data.get("output")),
            error=str(data["error"]) if data.get("error") else None,
            logs=data.get("logs"),
            predict_time=(data.get("metrics") or {}).get("predict_time"),
            input=data.get("input") or {},
            created_at=data.get("created_at"),
        )


def _output_urls(output: Any) -> list[str]:
    """Image models return a list of URLs; others a single URL or a dict of them."""
    if output is None:
        return []
    if isinstance(output, str):
        return [output]
    if isinstance(output, dict):
        return [v for v in output.values() if isinstance(v, str)]
    return [v for v in output if isinstance(v, str)]
