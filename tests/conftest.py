"""Session fixture: a long-lived TEN app, as TEN extension test suites keep."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ten_fake_app import run_fake_app


@pytest.fixture(scope="session", autouse=True)
def global_setup_and_teardown() -> Iterator[None]:
    yield from run_fake_app()
