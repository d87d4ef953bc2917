"""Serve the Replicate double until Ctrl-C: python -m local.replicate_double [--port N]."""

from __future__ import annotations

import argparse
import logging

from local import catch_stop_signals, serve_until_stopped
from local.replicate_double.server import DEFAULT_TOKEN, ReplicateDouble


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    parser.add_argument("--files-port", type=int, default=0, help="HTTPS file server port (default: a free one)")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the API token to accept")
    parser.add_argument("--processing-seconds", type=float, default=3.0, help="how long a prediction runs")
    args = parser.parse_args()
    stopped = catch_stop_signals()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    double = ReplicateDouble(
        token=args.token,
        port=args.port,
        files_port=args.files_port,
        processing_seconds=args.processing_seconds,
    ).start()
    print(
        "\n  Replicate double is running (no network, nothing billed)\n"
        f"  export REPLICATE_BASE_URL={double.base_url}\n"
        f"  export REPLICATE_API_TOKEN={double.token}\n"
        f"  export SSL_CERT_FILE={double.ca_file}   # to download outputs from {double.files_base_url}\n"
        f"  webhook signing secret: {double.webhook_secret}\n"
        "  Ctrl-C to stop.\n",
        flush=True,
    )
    serve_until_stopped(stopped, double.stop)


if __name__ == "__main__":
    main()
