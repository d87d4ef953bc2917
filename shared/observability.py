"""Logger, metrics and tracer: one instance each, shared by every module of a function.

Each handler decorates itself with `logger.inject_lambda_context`, `metrics.log_metrics` and
`tracer.capture_lambda_handler`; shared code only appends keys, adds metrics and opens subsegments.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = "media-generation"
NAMESPACE = "MediaGeneration"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)

__all__ = ["MetricUnit", "logger", "metrics", "tracer"]
