"""Webhook delivery, signed the Standard Webhooks way, from background threads.

One sender thread per prediction keeps its events in order. Only the terminal `completed` event is
retried (exponential backoff) when the receiver answers non-2xx or cannot be reached.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import queue
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from local.replicate_double.faults import Fault

log = logging.getLogger("local.replicate_double.webhooks")

_ALNUM = string.ascii_letters + string.digits
STALE_SECONDS = 600  # how old a forged "stale" timestamp is: twice the usual 300 s tolerance


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` value: v1,<base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))>,
    the key being the base64-decoded part of the secret after "whsec_"."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(frozen=True)
class WebhookDelivery:
    """One delivery attempt, as the double made it."""

    event: str
    prediction_id: str
    status_code: int | None  # None: the receiver could not be reached (or timed out)
    attempt: int  # 1 for the first try, 2+ for retries of `completed`, or for duplicates
    webhook_id: str
    timestamp: int
    url: str
    body: str
    forged: str | None = None  # "signature" | "timestamp" when a fault forged it
    error: str | None = None


@dataclass
class _Message:
    event: str
    body: str
    webhook_id: str = field(default_factory=lambda: "msg_" + "".join(secrets.choice(_ALNUM) for _ in range(27)))


class WebhookSender:
    """Delivers one prediction's webhooks in order, on its own daemon thread."""

    def __init__(
        self,
        *,
        prediction_id: str,
        url: str,
        secret: str,
        faults: list[Fault],
        retries: int,
        backoff: float,
        timeout: float,
        verify: bool | str,
        stopping: threading.Event,
        record: Callable[[WebhookDelivery], None],
    ) -> None:
        self.prediction_id = prediction_id
        self.url = url
        self.secret = secret
        self.faults = faults
        self.retries = retries
        self.backoff = backoff
        self.stopping = stopping
        self.record = record
        self.done = threading.Event()  # set once every event was delivered, dropped or given up
        self._queue: queue.Queue[_Message | None] = queue.Queue()
        self._http = httpx.Client(timeout=timeout, verify=verify, follow_redirects=False)
        self._thread = threading.Thread(target=self._run, name=f"webhooks-{prediction_id}", daemon=True)
        self._thread.start()

    def send(self, event: str, body: str) -> None:
        """Queue an event; never blocks."""
        self._queue.put(_Message(event, body))

    def close(self) -> None:
        """No more events: the thread ends once the queue (retries included) is done."""
        self._queue.put(None)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # ---- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while (message := self._queue.get()) is not None and not self.stopping.is_set():
                self._deliver(message)
        finally:
            self._http.close()
            self.done.set()

    def _fault(self, mode: str, event: str) -> Fault | None:
        return next((f for f in self.faults if f.mode == mode and f.webhook_applies(event)), None)

    def _deliver(self, message: _Message) -> None:
        event = message.event
        if self._fault("drop", event):
            log.debug("dropped %s webhook of %s (scripted)", event, self.prediction_id)
            return
        delay = self._fault("delay", event)
        if delay and self.stopping.wait(delay.seconds or 0):
            return
        duplicate = self._fault("duplicate", event)
        copies = duplicate.count if duplicate else 1
        terminal = event == "completed"
        attempt = 0
        for _ in range(copies):
            attempt += 1
            ok = self._post(message, attempt)
            # Only the terminal webhook is retried, with exponential backoff.
            retry = 0
            while terminal and not ok and retry < self.retries:
                if self.stopping.wait(self.backoff * 2**retry):
                    return
                retry += 1
                attempt += 1
                ok = self._post(message, attempt)

    def _post(self, message: _Message, attempt: int) -> bool:
        forged = next((how for how in ("signature", "timestamp") if self._fault(f"forged_{how}", message.event)), None)
        timestamp = int(time.time()) - (STALE_SECONDS if forged == "timestamp" else 0)
        secret = new_secret() if forged == "signature" else self.secret
        headers = {
            "content-type": "application/json",
            "user-agent": "Replicate-Webhooks/double",
            "webhook-id": message.webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, message.webhook_id, timestamp, message.body),
        }
        status: int | None = None
        error: str | None = None
        try:
            response = self._http.post(self.url, content=message.body.encode(), headers=headers)
            status = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.record(
            WebhookDelivery(
                event=message.event,
                prediction_id=self.prediction_id,
                status_code=status,
                attempt=attempt,
                webhook_id=message.webhook_id,
                timestamp=timestamp,
                url=self.url,
                body=message.body,
                forged=forged,
                error=error,
            )
        )
        return status is not None and 200 <= status < 300
