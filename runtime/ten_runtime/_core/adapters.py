"""Run user callbacks where the native runtime runs them, and report back.

* AsyncExtension: every callback invocation is its own task on the extension
  loop (``run_coroutine_threadsafe``), so handlers interleave at ``await``
  points and ``on_data`` can run while ``on_start`` is still running.
* Extension (sync): callbacks run on the extension group's worker thread and
  the user calls ``ten_env.on_X_done()``.
* AsyncExtensionTester: its own thread running ``asyncio.run``; callbacks are
  tasks on that loop.  ExtensionTester: the test group's worker thread.

An exception escaping any callback (CancelledError included, unless the
runtime itself is cancelling leftovers at shutdown) is fatal: logged as
"Uncaught exception: ..." with the traceback, then the app aborts and the
owner raises FatalRuntimeError (the native runtime calls ``os._exit(1)``).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import traceback
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .fatal import FatalRuntimeError
from .loops import EXTENSION_LOOPS, LoopThread

if TYPE_CHECKING:
    from .node import Node

_HANDLERS = {
    "cmd": "on_cmd",
    "data": "on_data",
    "audio_frame": "on_audio_frame",
    "video_frame": "on_video_frame",
}
ERROR = 4


def report_fatal(node: Node, owner: str, what: str) -> None:
    """Called inside an ``except`` block: log "Uncaught exception", abort the app."""
    exc = sys.exc_info()[1]
    tb = traceback.format_exc()
    text = f"Uncaught exception: {exc} \ntraceback: {tb}"
    err = node.env.log(ERROR, text, None, None, what, None, 0)
    if err is not None:
        print(text, flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    error = FatalRuntimeError(
        f"Uncaught exception in {owner}.{what} (node '{node.name}'): {exc!r}\n"
        f"The native runtime ends the process here (os._exit(1)).\n\n{tb}"
    )
    if isinstance(exc, BaseException):
        error.__cause__ = exc
    node.app.fatal(error)


def run_sync_handler(node: Node, owner: str, what: str, fn: Callable[[], None]) -> None:
    """Run a sync result/error handler on the node's group thread (native thread)."""
    app = node.app
    if app.aborted:
        return
    worker = node.engine.worker_for(node.group)

    def job() -> None:
        if app.aborted:
            return
        try:
            fn()
        except BaseException:
            if not app.aborted:
                report_fatal(node, owner, what)

    worker.submit(job)


class Adapter:
    def __init__(self, node: Node, instance: Any) -> None:
        self.node = node
        self.instance = instance

    def configure(self) -> None:
        raise NotImplementedError

    def init(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def deinit(self) -> None:
        raise NotImplementedError

    def dispatch(self, core: Any) -> None:
        raise NotImplementedError

    def released(self) -> None:
        """The node is closed (or aborted): give back any loop/thread."""

    def report_fatal(self, what: str) -> None:
        """Called inside an ``except`` block: log loudly, then abort the app."""
        report_fatal(self.node, type(self.instance).__name__, what)


class _AsyncAdapterBase(Adapter):
    """Shared scheduling of coroutine callbacks onto a loop."""

    env: Any = None

    def _loop(self) -> asyncio.AbstractEventLoop | None:
        raise NotImplementedError

    def _shutting_down(self) -> bool:
        raise NotImplementedError

    def schedule(
        self,
        method: Callable[..., Coroutine[Any, Any, None]],
        what: str,
        args: tuple[Any, ...] = (),
        after: Callable[[], None] | None = None,
    ) -> None:
        app = self.node.app
        loop = self._loop()
        if app.aborted or loop is None:
            return
        coro = self._run(method, what, args, after)
        try:
            asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:
            coro.close()  # the loop is already closed

    async def _run(
        self,
        method: Callable[..., Coroutine[Any, Any, None]],
        what: str,
        args: tuple[Any, ...],
        after: Callable[[], None] | None,
    ) -> None:
        app = self.node.app
        try:
            await method(self.env, *args)
        except asyncio.CancelledError:
            if self._shutting_down() or app.aborted:
                raise
            self.report_fatal(what)
            return
        except GeneratorExit:
            raise
        except BaseException:
            if app.aborted:
                return
            self.report_fatal(what)
            return
        if after is not None:
            app.post(after)


class AsyncExtensionAdapter(_AsyncAdapterBase):
    def __init__(self, node: Node, instance: Any) -> None:
        super().__init__(node, instance)
        self.loop_thread: LoopThread | None = None
        # Kept after release: tasks still running when the loop cancels its
        # leftovers must recognise that cancellation as the runtime's.
        self._used_loop_thread: LoopThread | None = None

    def _loop(self) -> asyncio.AbstractEventLoop | None:
        return self.loop_thread.loop if self.loop_thread is not None else None

    def _shutting_down(self) -> bool:
        lt = self._used_loop_thread
        return lt is not None and lt.shutting_down

    def configure(self) -> None:
        from ..async_ten_env import AsyncTenEnv
        from ..ten_env import TenEnv

        self.loop_thread = self._used_loop_thread = EXTENSION_LOOPS.acquire(self.node.name)
        self.env = AsyncTenEnv(
            TenEnv(self.node.env), self.loop_thread.loop, self.loop_thread.thread
        )
        self.schedule(self.instance.on_configure, "on_configure", after=self.node.configure_done)

    def init(self) -> None:
        self.schedule(self.instance.on_init, "on_init", after=self.node.init_done)

    def start(self) -> None:
        self.schedule(self.instance.on_start, "on_start", after=self.node.start_done)

    def stop(self) -> None:
        self.schedule(self.instance.on_stop, "on_stop", after=self.node.stop_done)

    def deinit(self) -> None:
        self.schedule(self.instance.on_deinit, "on_deinit", after=self.node.deinit_done)

    def dispatch(self, core: Any) -> None:
        name = _HANDLERS[core.kind]
        self.schedule(getattr(self.instance, name), name, (core.wrap(),))

    def released(self) -> None:
        loop_thread, self.loop_thread = self.loop_thread, None
        if loop_thread is not None:
            stopping = EXTENSION_LOOPS.release(loop_thread)
            if stopping is not None:
                self.node.app.loop_threads_to_join.append(stopping)


class SyncAdapterBase(Adapter):
    """Runs plain-function callbacks on the node's extension-group worker."""

    env: Any = None

    def submit(self, method: Callable[..., None], what: str, args: tuple[Any, ...] = ()) -> None:
        app = self.node.app
        if app.aborted:
            return
        worker = self.node.engine.worker_for(self.node.group)

        def job() -> None:
            if app.aborted:
                return
            try:
                method(self.env, *args)
            except BaseException:
                if not app.aborted:
                    self.report_fatal(what)

        worker.submit(job)


class SyncExtensionAdapter(SyncAdapterBase):
    def __init__(self, node: Node, instance: Any) -> None:
        super().__init__(node, instance)
        from ..ten_env import TenEnv

        self.env = TenEnv(node.env)

    def configure(self) -> None:
        self.submit(self.instance.on_configure, "on_configure")

    def init(self) -> None:
        self.submit(self.instance.on_init, "on_init")

    def start(self) -> None:
        self.submit(self.instance.on_start, "on_start")

    def stop(self) -> None:
        self.submit(self.instance.on_stop, "on_stop")

    def deinit(self) -> None:
        self.submit(self.instance.on_deinit, "on_deinit")

    def dispatch(self, core: Any) -> None:
        name = _HANDLERS[core.kind]
        self.submit(getattr(self.instance, name), name, (core.wrap(),))


class AsyncTesterAdapter(_AsyncAdapterBase):
    """The test extension of an AsyncExtensionTester: its own asyncio thread."""

    def __init__(self, node: Node, instance: Any, tester_core: Any) -> None:
        super().__init__(node, instance)
        self.tester_core = tester_core
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self._stop_event: asyncio.Event | None = None
        self._stopping = False

    def _loop(self) -> asyncio.AbstractEventLoop | None:
        return self.loop

    def _shutting_down(self) -> bool:
        return self._stopping

    def configure(self) -> None:
        # The tester has no on_configure; the test extension configures at once.
        self.node.app.post(self.node.configure_done)

    async def _thread_routine(self, ready: threading.Event) -> None:
        from ..async_test import AsyncTenEnvTester
        from ..test import TenEnvTester

        self.loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        assert self.thread is not None
        self.env = AsyncTenEnvTester(TenEnvTester(self.tester_core), self.loop, self.thread)
        ready.set()
        await self._run(self.instance.on_init, "on_init", (), self.node.init_done)
        await self._stop_event.wait()

    def _thread_main(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._thread_routine(ready))
        except BaseException:  # the routine itself never raises; be defensive
            ready.set()

    def init(self) -> None:
        ready = threading.Event()
        self.thread = threading.Thread(
            target=self._thread_main, args=(ready,), name="ten-tester-loop", daemon=True
        )
        self.thread.start()
        ready.wait()

    def start(self) -> None:
        self.schedule(self.instance.on_start, "on_start", after=self.node.start_done)

    def stop(self) -> None:
        if self.loop is None:
            self.node.app.post(self.node.stop_done)
            return
        self.schedule(self.instance.on_stop, "on_stop", after=self.node.stop_done)

    def deinit(self) -> None:
        if self.loop is None:
            self.node.app.post(self.node.deinit_done)
            return
        self.schedule(self.instance.on_deinit, "on_deinit", after=self.node.deinit_done)

    def dispatch(self, core: Any) -> None:
        name = _HANDLERS[core.kind]
        self.schedule(getattr(self.instance, name), name, (core.wrap(),))

    def stop_thread(self, timeout: float) -> None:
        """After the test app has ended: end the tester's asyncio loop and join it."""
        loop, event = self.loop, self._stop_event
        if loop is not None and event is not None:
            self._stopping = True
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass
        if self.thread is not None:
            self.thread.join(timeout)


class SyncTesterAdapter(SyncAdapterBase):
    """The test extension of a sync ExtensionTester."""

    def __init__(self, node: Node, instance: Any, tester_core: Any) -> None:
        super().__init__(node, instance)
        from ..test import TenEnvTester

        self.env = TenEnvTester(tester_core)

    def configure(self) -> None:
        self.node.app.post(self.node.configure_done)

    def init(self) -> None:
        self.submit(self.instance.on_init, "on_init")

    def start(self) -> None:
        self.submit(self.instance.on_start, "on_start")

    def stop(self) -> None:
        self.submit(self.instance.on_stop, "on_stop")

    def deinit(self) -> None:
        self.submit(self.instance.on_deinit, "on_deinit")

    def dispatch(self, core: Any) -> None:
        name = _HANDLERS[core.kind]
        self.submit(getattr(self.instance, name), name, (core.wrap(),))

    def stop_thread(self, timeout: float) -> None:
        pass


def make_extension_adapter(node: Node, instance: Any) -> Adapter:
    from ..async_extension import AsyncExtension

    if isinstance(instance, AsyncExtension):
        return AsyncExtensionAdapter(node, instance)
    return SyncExtensionAdapter(node, instance)
