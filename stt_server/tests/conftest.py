"""Fixtures and a plain websockets client for the stt_server tests."""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# The repository root, so `import stt_server` works however pytest was started.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _placeholder_for_the_checkout_package() -> None:
    """Let pytest "import" the checkout root when ten_runtime is missing.

    The checkout root is the extension package itself (it has an
    __init__.py importing ten_runtime), so pytest imports it, under the
    root folder's name, only to look for a package-level setup function. These tests do
    not need the extension: without a usable ten_runtime (tests/bin/start
    provides one), an empty module with the right __file__ stands in.
    """
    try:
        import ten_runtime

        if hasattr(ten_runtime, "Addon"):
            return
    except ImportError:
        pass
    name = ROOT.name
    if name.isidentifier() and name not in sys.modules:
        module = types.ModuleType(name)
        module.__file__ = str(ROOT / "__init__.py")
        module.__path__ = [str(ROOT)]
        sys.modules[name] = module


_placeholder_for_the_checkout_package()

from stt_server import STTServer  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Run coroutine tests on asyncio whatever the root configuration says.
    for item in items:
        function = getattr(item, "function", None)
        if function is not None and inspect.iscoroutinefunction(function):
            item.add_marker(pytest.mark.asyncio)


@pytest.fixture
async def marker_server() -> AsyncIterator[STTServer]:
    async with STTServer(recognizer="marker") as server:
        yield server


@pytest.fixture
async def sphinx_server() -> AsyncIterator[STTServer]:
    async with STTServer(recognizer="pocketsphinx") as server:
        yield server


@pytest.fixture
async def whisper_server() -> AsyncIterator[STTServer]:
    # The Whisper model is loaded once per process and shared by every server.
    async with STTServer(recognizer="whisper") as server:
        yield server
