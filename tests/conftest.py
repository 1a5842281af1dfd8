"""Session fixture: a long-lived TEN app, as TEN extension test suites keep.

Also the hypothesis profile `planted` (bench/planted.py): the same examples as each
test's own settings, but a failure is reported as found, without shrinking or
explaining it (minutes per caught bug otherwise). Chosen by HYPOTHESIS_PROFILE, read
here so that it is loaded before the test modules build their own `settings(...)`,
which take every field they do not name (phases) from the profile loaded then."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import Phase, settings
from ten_fake_app import run_fake_app

settings.register_profile(
    "planted",
    phases=[p for p in Phase if p not in (Phase.shrink, Phase.explain)],
    database=None,  # a planted bug's failures are not examples to replay later
)
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])


@pytest.fixture(scope="session", autouse=True)
def global_setup_and_teardown() -> Iterator[None]:
    yield from run_fake_app()
