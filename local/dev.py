"""`make dev`: the whole service on this machine. API on 127.0.0.1:$PORT, AWS emulation on
127.0.0.1:$EMULATOR_PORT, generation in mock mode unless REPLICATE_API_TOKEN is set."""

from __future__ import annotations

import logging
import os
import signal
import threading
import warnings

from local.emulator import Emulator
from shared.settings import get_settings


def main() -> None:
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    port = int(os.environ.get("PORT", "8000"))
    aws_port = int(os.environ.get("EMULATOR_PORT", "4566"))
    emulator = Emulator(aws_port=aws_port, api_port=port).start()
    api = f"http://127.0.0.1:{port}"
    mode = "mock generation: no REPLICATE_API_TOKEN" if get_settings().mock_mode else "generation on Replicate"
    print(
        f"\n  Media generation service is running ({mode})\n"
        f"  API               {api}\n"
        f"  Docs (Swagger UI) {api}/docs\n"
        f"  OpenAPI document  {api}/openapi.json\n"
        f"  Emulated AWS      {emulator.endpoint}  (e.g. aws --endpoint-url {emulator.endpoint} sqs list-queues)\n\n"
        f"  Try: curl -s -X POST {api}/api/v1/generate -H 'Content-Type: application/json' "
        f"-d '{{\"prompt\": \"a lighthouse at dawn\"}}'\n"
        f"  Ctrl-C to stop.\n",
        flush=True,
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
