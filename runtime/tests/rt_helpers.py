"""Small helpers shared by the stand-in runtime tests."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from ten_runtime import (
    Addon,
    AsyncExtensionTester,
    AsyncTenEnv,
    AsyncTenEnvTester,
    Data,
    TenEnv,
    register_addon_as_extension,
)

_counter = itertools.count(1)


def unique(prefix: str) -> str:
    """A fresh addon name: registrations are process-wide and first one wins."""
    return f"{prefix}_{next(_counter)}"


def register_extension(
    prefix: str, factory: Callable[[str], Any], base_dir_file: str | None = None
) -> str:
    """Register an addon creating ``factory(node_name)``; returns the addon name."""
    name = unique(prefix)

    class _Addon(Addon):
        def on_create_instance(self, ten_env: TenEnv, node_name: str, context: object) -> None:
            ten_env.on_create_instance_done(factory(node_name), context)

    register_addon_as_extension(name, base_dir_file)(_Addon)
    return name


class Events:
    """A thread-safe event log with a wait-for-condition helper."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self.items: list[tuple[float, Any]] = []

    def add(self, item: Any) -> None:
        with self._lock:
            self.items.append((time.monotonic(), item))
            self._lock.notify_all()

    def names(self) -> list[Any]:
        with self._lock:
            return [item for _, item in self.items]

    def time_of(self, item: Any) -> float:
        with self._lock:
            for t, i in self.items:
                if i == item:
                    return t
        raise KeyError(item)

    def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate([i for _, i in self.items]):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return True


class StopWhenReady(AsyncExtensionTester):
    """Stops the test when the extension sends data ``ready`` (from its on_start).

    Stopping straight from the tester's own on_start would race with the
    extension's start: a close during configure/init skips on_init/on_start.
    """

    async def on_data(self, ten_env: AsyncTenEnvTester, data: Data) -> None:
        if data.get_name() == "ready":
            ten_env.stop_test()


async def send_ready(ten_env: AsyncTenEnv) -> None:
    await ten_env.send_data(Data.create("ready"))
