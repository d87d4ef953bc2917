"""`make dev`: the whole service on this machine. API on 127.0.0.1:$PORT, AWS emulation on
127.0.0.1:$EMULATOR_PORT, generation in mock mode unless REPLICATE_API_TOKEN is set.

`make dev-replicate` (`--replicate-double`) runs the real-provider path against the Replicate
test double instead: the official client, signed webhooks to this API, outputs copied over HTTPS.
Nothing leaves the machine and nothing is billed."""

from __future__ import annotations

import argparse
import base64
import logging
import os
import secrets
import warnings
from pathlib import Path
from typing import Any

from local import catch_stop_signals, serve_until_stopped
from local.emulator import Emulator
from shared.settings import get_settings


def start_replicate_double(api: str) -> Any:
    """Point the provider settings at an in-process Replicate double; webhooks come to `api` (the
    gateway serves the webhook function's path there, as its function URL does when deployed)."""
    from local.replicate_double import ReplicateDouble

    double = ReplicateDouble(processing_seconds=float(os.environ.get("DOUBLE_PROCESSING_SECONDS", "4"))).start()
    os.environ.update(
        {
            "REPLICATE_API_TOKEN": double.token,
            "REPLICATE_BASE_URL": double.base_url,
            "REPLICATE_OUTPUT_HOSTS": double.files_host,
            "SSL_CERT_FILE": str(double.ca_file),
            "WEBHOOK_BASE_URL": os.environ.get("WEBHOOK_BASE_URL", api),
        }
    )
    return double


def read_dotenv(path: Path) -> bool:
    """The old service's `cp env.example .env`: settings from `path`; the environment wins."""
    from dotenv import load_dotenv

    return path.is_file() and load_dotenv(path, override=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicate-double", action="store_true", help="generate on the Replicate test double")
    parser.add_argument("--no-dotenv", action="store_true", help="do not read .env")
    args = parser.parse_args(argv)
    stopped = catch_stop_signals()
    dotenv = Path(".env")
    read = not args.no_dotenv and read_dotenv(dotenv)
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    port = int(os.environ.get("PORT", "8000"))
    aws_port = int(os.environ.get("EMULATOR_PORT", "4566"))
    api = f"http://127.0.0.1:{port}"
    double = start_replicate_double(api) if args.replicate_double else None
    webhook_secret = "from CLIENT_WEBHOOK_SECRET"
    if not os.environ.get("CLIENT_WEBHOOK_SECRET"):  # client webhooks need one: make one for this run
        webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        os.environ["CLIENT_WEBHOOK_SECRET"] = webhook_secret
    emulator = Emulator(aws_port=aws_port, api_port=port).start()
    settings = get_settings()
    if double:
        mode = f"generation on the Replicate test double at {double.base_url}, webhooks to {settings.webhook_base_url}"
    elif settings.mock_mode:
        mode = "mock generation: no REPLICATE_API_TOKEN"
    else:
        waiting = f"webhooks to {settings.webhook_base_url}" if settings.webhook_base_url else "polling"
        mode = f"generation on Replicate ({settings.default_model}, {waiting})"
    auth = "off: every caller is anonymous"
    key_header = ""
    if settings.api_auth == "keys":
        auth = "API keys required: make api-key NAME=<name>"
        key_header = '-H "Authorization: Bearer $KEY" '
    print(
        f"\n  Media generation service is running ({mode})\n"
        f"  Settings          environment{' + ' + str(dotenv.resolve()) if read else ' (no .env read)'}\n"
        f"  API               {api}\n"
        f"  Docs (Swagger UI) {api}/docs\n"
        f"  OpenAPI document  {api}/openapi.json\n"
        f"  Webhook secret    {webhook_secret}  (verifies the client webhooks of jobs made without an API key)\n"
        f"  Emulated AWS      {emulator.endpoint}  (e.g. aws --endpoint-url {emulator.endpoint} sqs list-queues)\n"
        f"  Authentication    {auth}\n\n"
        f"  Try: curl -s -X POST {api}/api/v1/generate {key_header}-H 'Content-Type: application/json' "
        f'-d \'{{"prompt": "a lighthouse at dawn"}}\'\n'
        f"  Ctrl-C to stop.\n",
        flush=True,
    )
    serve_until_stopped(stopped, emulator.stop, *([double.stop] if double else []))


if __name__ == "__main__":
    main()
