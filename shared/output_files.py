"""Outputs in S3. Key scheme: outputs/{job_id}/{attempt}/{index}.{ext}, one prefix per job
(so the lifecycle rule and a per-job delete are one prefix each) and per attempt (a retry never
overwrites what an earlier attempt produced)."""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.aws import client
from shared.models import utcnow
from shared.settings import get_settings

OUTPUTS_PREFIX = "outputs/"
EXTENSIONS = {"image/png": "png", "image/webp": "webp", "image/jpeg": "jpg"}


def output_key(job_id: str, attempt: int, index: int, content_type: str) -> str:
    return f"{OUTPUTS_PREFIX}{job_id}/{attempt}/{index}.{EXTENSIONS.get(content_type, 'bin')}"


def put_output(key: str, body: bytes, content_type: str, metadata: dict[str, str]) -> None:
    client("s3").put_object(
        Bucket=get_settings().outputs_bucket_name,
        Key=key,
        Body=body,
        ContentType=content_type,
        Metadata=metadata,
    )


def download_url(key: str) -> tuple[str, datetime]:
    """A presigned GET URL for one output and the moment it stops working. No network call."""
    ttl = get_settings().presigned_url_ttl
    url = client("s3").generate_presigned_url(
        "get_object",
        Params={"Bucket": get_settings().outputs_bucket_name, "Key": key},
        ExpiresIn=ttl,
    )
    return url, utcnow() + timedelta(seconds=ttl)
