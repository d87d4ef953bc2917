"""A test double of the Replicate HTTP API, faithful to docs/provider.md.

The real `replicate` client talks to it unchanged (base_url / REPLICATE_BASE_URL); no network, no
Docker. Predictions really run in the background (starting -> processing -> succeeded), their logs
carry tqdm progress lines, their outputs are real image files served over HTTPS by a second
server with a throwaway CA, and webhooks are signed the Standard Webhooks way. Faults are scripted
per create, so tests can drive every failure mode.

    with ReplicateDouble(processing_seconds=0.3) as double:
        client = replicate.Client(api_token=double.token, base_url=double.base_url)
        double.script("storm", Fault.http(503))            # the next "storm" create gets a 503
        prediction = client.models.predictions.create(
            model=FLUX_SCHNELL, input={"prompt": "a lighthouse", "megapixels": "0.25"}, wait=5
        )
        httpx.get(prediction.output[0], verify=str(double.ca_file))   # a real 512x512 webp

`make dev`-style use: `python -m local.replicate_double` serves one and prints what to export.
"""

from local.replicate_double.faults import CreateRequest, Fault, Script
from local.replicate_double.files import FileRequest
from local.replicate_double.models import (
    FLUX_ASPECT_RATIOS,
    FLUX_SCHNELL,
    FLUX_SCHNELL_VERSION,
    SDXL,
    SDXL_VERSION,
    flux_size,
    tqdm_line,
)
from local.replicate_double.server import (
    DEFAULT_TOKEN,
    TERMINAL,
    PredictionRecord,
    ReplicateDouble,
    RequestRecord,
)
from local.replicate_double.webhooks import WebhookDelivery, sign

__all__ = [
    "DEFAULT_TOKEN",
    "FLUX_ASPECT_RATIOS",
    "FLUX_SCHNELL",
    "FLUX_SCHNELL_VERSION",
    "SDXL",
    "SDXL_VERSION",
    "TERMINAL",
    "CreateRequest",
    "Fault",
    "FileRequest",
    "PredictionRecord",
    "ReplicateDouble",
    "RequestRecord",
    "Script",
    "WebhookDelivery",
    "flux_size",
    "sign",
    "tqdm_line",
]
