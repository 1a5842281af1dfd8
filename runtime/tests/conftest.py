"""Test setup for the stand-in runtime's own suite.

Puts ``runtime/`` (the ``ten_runtime`` package) and ``tests/fixtures`` (which
holds ``ten_packages/extension/<addon>`` packages) on ``sys.path``, and gives
every test a hard time limit so a regression can never hang the suite.
"""

from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
RUNTIME_DIR = os.path.dirname(HERE)
FIXTURES_DIR = os.path.join(HERE, "fixtures")

# A hung teardown should surface as the runtime's FatalRuntimeError (which
# names the stuck callback) well before pytest-timeout's thread dump.
os.environ.setdefault("TEN_STANDIN_TEARDOWN_GRACE_S", "5")

for entry in (RUNTIME_DIR, FIXTURES_DIR):
    if entry not in sys.path:
        sys.path.insert(0, entry)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("timeout"):
        return
    for item in items:
        if HERE in str(item.fspath) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(30))
