"""``App`` (§4.5): a long-lived TEN app; can run predefined graphs.

``App()`` takes no arguments (a subclass constructed with arguments is
rejected, as natively: "Expect 0 argument.").  ``run(False)`` blocks until the
app closes; ``run(True)`` runs it on a background thread; ``close()`` works
from any thread; ``wait()`` blocks until the app has ended.
"""

from __future__ import annotations

import inspect
import os
import threading
from typing import Any

from ._core.app_runtime import AppRuntime
from .ten_env import TenEnv

JOIN_TIMEOUT_S = 5.0


class App:
    def __new__(cls, *args: Any, **kwargs: Any) -> App:
        if args or kwargs:
            raise TypeError("Expect 0 argument.")
        return super().__new__(cls)

    def __init__(self) -> None:
        pass

    def _ten_rt(self) -> AppRuntime:
        rt = self.__dict__.get("_ten_runtime")
        if rt is None:
            try:
                base_dir: str | None = os.path.dirname(os.path.abspath(inspect.getfile(type(self))))
            except (TypeError, OSError):
                base_dir = None
            rt = self.__dict__["_ten_runtime"] = AppRuntime(
                type(self).__name__, base_dir=base_dir, user_app=self
            )
        return rt

    def run(self, run_in_background: bool) -> None:
        rt = self._ten_rt()
        if rt.state != "created" or rt.thread is not None:
            raise RuntimeError("App.run() may be called only once per App instance.")
        if run_in_background:
            rt.start_in_thread(f"ten-app-{type(self).__name__}", daemon=False)
            return
        rt.thread = threading.current_thread()
        rt.run()
        self._ten_finish(rt)

    def _ten_finish(self, rt: AppRuntime) -> None:
        rt.join_threads(JOIN_TIMEOUT_S)
        if rt.fatal_error is not None:
            raise rt.fatal_error

    def close(self) -> None:
        self._ten_rt().request_close()

    def wait(self) -> None:
        rt = self._ten_rt()
        rt.closed_event.wait()
        if rt.thread is not None and rt.thread is not threading.current_thread():
            rt.thread.join(JOIN_TIMEOUT_S)
        self._ten_finish(rt)

    def on_configure(self, ten_env: TenEnv) -> None:
        ten_env.on_configure_done()

    def on_init(self, ten_env: TenEnv) -> None:
        ten_env.on_init_done()

    def on_deinit(self, ten_env: TenEnv) -> None:
        ten_env.on_deinit_done()
