"""Event-loop threads for AsyncExtensions (§4.3).

``TEN_PYTHON_THREAD_MODE`` is read once per process:

* ``single_thread`` (default): one daemon thread ``PythonGlobalMainThread``
  runs one loop for every AsyncExtension in the process.  Instances are
  counted; when the last one has de-initialised, pending tasks are cancelled
  (0.5 s grace) and the loop closes.
* ``multi_thread``: every instance gets its own daemon thread
  ``AsyncExtension-<name>`` with its own loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable

from . import logsink

SINGLE_THREAD = "single_thread"
MULTI_THREAD = "multi_thread"
CANCEL_GRACE_S = 0.5


def _warn(message: str) -> None:
    logsink.runtime_logger(None)(3, message)


class LoopThread:
    """A daemon thread running an asyncio loop until :meth:`shutdown`."""

    def __init__(self, name: str, on_warning: Callable[[str], None] | None = None) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        # Set while the loop cancels leftover tasks at shutdown: a CancelledError
        # escaping a callback then is the runtime's doing, not a user bug.
        self.shutting_down = False
        self.finished = threading.Event()
        self._on_warning = on_warning
        self._shutdown_started = False
        self._lock = threading.Lock()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._main, args=(ready,), name=name, daemon=True)
        self.thread.start()
        ready.wait()

    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        try:
            self.loop.run_forever()
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()
            self.finished.set()

    async def _cancel_leftovers(self) -> None:
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks(self.loop) if t is not current and not t.done()]
        if pending:
            self.shutting_down = True
            for task in pending:
                task.cancel()
            _, still = await asyncio.wait(pending, timeout=CANCEL_GRACE_S)
            if still and self._on_warning is not None:
                names = ", ".join(sorted(t.get_name() for t in still))
                self._on_warning(
                    f"{len(still)} task(s) did not finish within {CANCEL_GRACE_S}s of "
                    f"cancellation and are abandoned: {names}"
                )
        self.loop.stop()

    def shutdown(self) -> None:
        """Cancel leftover tasks (with grace), then stop and close the loop."""
        with self._lock:
            if self._shutdown_started:
                return
            self._shutdown_started = True
        try:
            asyncio.run_coroutine_threadsafe(self._cancel_leftovers(), self.loop)
        except RuntimeError:
            self.finished.set()  # loop already closed

    def join(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)


class ExtensionLoops:
    """Hands out the loop an AsyncExtension instance runs on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mode: str | None = None
        self._shared: LoopThread | None = None
        self._refs = 0
        self.on_warning: Callable[[str], None] | None = _warn

    def mode(self) -> str:
        with self._lock:
            if self._mode is None:
                mode = os.environ.get("TEN_PYTHON_THREAD_MODE", SINGLE_THREAD)
                if mode not in (SINGLE_THREAD, MULTI_THREAD):
                    if self.on_warning is not None:
                        self.on_warning(
                            f"Invalid thread mode '{mode}', using default single_thread mode"
                        )
                    mode = SINGLE_THREAD
                self._mode = mode
            return self._mode

    def reset_mode_cache(self) -> None:
        """Re-read TEN_PYTHON_THREAD_MODE on next use (for the stand-in's own tests)."""
        with self._lock:
            self._mode = None

    def acquire(self, instance_name: str) -> LoopThread:
        if self.mode() == MULTI_THREAD:
            return LoopThread(f"AsyncExtension-{instance_name}", self.on_warning)
        with self._lock:
            if self._shared is None:
                self._shared = LoopThread("PythonGlobalMainThread", self.on_warning)
            self._refs += 1
            return self._shared

    def release(self, loop_thread: LoopThread) -> LoopThread | None:
        """Drop one instance; returns the loop thread if it is now shutting down."""
        with self._lock:
            if loop_thread is self._shared:
                self._refs -= 1
                if self._refs > 0:
                    return None
                self._refs = 0
                self._shared = None
        loop_thread.shutdown()
        return loop_thread


EXTENSION_LOOPS = ExtensionLoops()
