"""integration_tests/ shares the harness in tests/ (contract API only)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ten_fake_app import run_fake_app


@pytest.fixture(scope="session", autouse=True)
def global_setup_and_teardown() -> Iterator[None]:
    yield from run_fake_app()
