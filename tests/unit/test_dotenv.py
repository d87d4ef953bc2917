"""`make dev` reads .env like the old service did; the environment wins over it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from local.dev import read_dotenv

ROOT = Path(__file__).resolve().parents[2]


def test_dotenv_settings_are_read_and_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Recorded first, so the teardown restores the token's original state, whatever .env set.
    monkeypatch.setenv("REPLICATE_API_TOKEN", "")
    monkeypatch.delenv("REPLICATE_API_TOKEN")
    monkeypatch.setenv("DEFAULT_MODEL", "from-environment")
    (tmp_path / ".env").write_text("REPLICATE_API_TOKEN=r8_from_dotenv\nDEFAULT_MODEL=from-dotenv\n")
    assert read_dotenv(tmp_path / ".env")
    assert os.environ["REPLICATE_API_TOKEN"] == "r8_from_dotenv"
    assert os.environ["DEFAULT_MODEL"] == "from-environment"


def test_no_dotenv_file_is_fine(tmp_path: Path) -> None:
    assert not read_dotenv(tmp_path / ".env")


def test_env_example_lists_every_setting_of_the_readme() -> None:
    readme = (ROOT / "README.md").read_text().split("## Settings")[1].split("\n## ")[0]
    documented = {line.split("`")[1] for line in readme.splitlines() if line.startswith("| `") and "`, `" not in line}
    example = (ROOT / "env.example").read_text()
    assert {name for name in documented if f"# {name}=" not in example} == set()
