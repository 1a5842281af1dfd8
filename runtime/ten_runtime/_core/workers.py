"""Threads that run *synchronous* user callbacks (sync Extension / ExtensionTester).

Natively, sync callbacks run on the extension group's thread.  Each group gets
one daemon worker here, so a blocking sync callback stalls only its group,
never the runtime's own thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class GroupWorker:
    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._stopped = False
        self.thread = threading.Thread(target=self._main, name=f"ten-group-{name}", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job()  # jobs do their own error handling (fatal reporting)

    def submit(self, job: Callable[[], None]) -> None:
        if not self._stopped:
            self._queue.put(job)

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._queue.put(None)

    def calling_thread_is_worker(self) -> bool:
        return threading.current_thread() is self.thread
