"""The fetched webhook signing secret: at most one fetch per refresh period, failures included."""

from __future__ import annotations

import pytest

from shared import webhooks


@pytest.fixture
def fetches(monkeypatch):
    calls: list[str] = []
    answers: list[str | None] = []

    def fetch(token: str) -> str | None:
        calls.append(token)
        return answers.pop(0) if answers else None

    monkeypatch.setattr(webhooks, "_fetch_secret", fetch)
    webhooks.forget_signing_secret()
    yield calls, answers
    webhooks.forget_signing_secret()


def test_a_failed_fetch_is_remembered_for_the_refresh_period(fetches, monkeypatch):
    calls, _ = fetches
    for _ in range(50):
        with pytest.raises(webhooks.WebhookRejected):
            webhooks._fetched.get("r8_token", refresh=True)
    assert len(calls) == 1
    clock = webhooks.time.monotonic() + webhooks.SECRET_REFRESH_SECONDS + 1
    monkeypatch.setattr(webhooks.time, "monotonic", lambda: clock)
    with pytest.raises(webhooks.WebhookRejected):
        webhooks._fetched.get("r8_token")
    assert len(calls) == 2


def test_refresh_after_the_period_keeps_the_old_secret_if_the_fetch_fails(fetches, monkeypatch):
    calls, answers = fetches
    answers.append("whsec_old")
    assert webhooks._fetched.get("r8_token") == "whsec_old"
    assert webhooks._fetched.get("r8_token", refresh=True) == "whsec_old"  # too soon: no fetch
    assert len(calls) == 1
    clock = webhooks.time.monotonic() + webhooks.SECRET_REFRESH_SECONDS + 1
    monkeypatch.setattr(webhooks.time, "monotonic", lambda: clock)
    assert webhooks._fetched.get("r8_token", refresh=True) == "whsec_old"
    assert len(calls) == 2


def test_another_token_is_another_account(fetches):
    calls, answers = fetches
    answers += ["whsec_a", "whsec_b"]
    assert webhooks._fetched.get("r8_a") == "whsec_a"
    assert webhooks._fetched.get("r8_b") == "whsec_b"
    assert len(calls) == 2
