"""Recognition in worker processes, for recognisers that hold the GIL.

pocketsphinx decodes with the GIL held: two connections in two threads take
twice the wall time of one, and the server never uses more than one core.
A backend with `runs_in_process` therefore runs each connection's
STTSession in one of `lanes` worker processes (one per usable core, at
most 8, shared by every server of the process, started once). A worker is
`python -m stt_server.workers`, talking pickled requests over its stdin and
stdout: unlike multiprocessing's spawn it never re-runs the parent's main
script, and unlike fork it inherits no lock of a threaded parent. A lane
serves its connections' requests one at a time; the server's
per-connection worker thread waits for the answer, so the event loop stays
free. A connection goes to the lane with the fewest open sessions.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from typing import IO, Any

from stt_server.protocol import SessionConfig

log = logging.getLogger("stt_server")

# -- worker side -------------------------------------------------------------

_sessions: dict[int, Any] = {}
_backends: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}


def _backend(name: str, options: tuple[tuple[str, Any], ...]) -> Any:
    from stt_server.recognizers import make_backend

    key = (name, options)
    if key not in _backends:
        backend = make_backend(name, in_process=True, **dict(options))
        backend.prepare()
        _backends[key] = backend
    return _backends[key]


def _warm(name: str, options: tuple[tuple[str, Any], ...]) -> int:
    _backend(name, options)
    return os.getpid()


def _open(session_id: int, config: SessionConfig, name: str, options: Any, style: Any) -> None:
    from stt_server.session import STTSession

    _sessions[session_id] = STTSession(config, _backend(name, options), style)


def _call(session_id: int, method: str, args: tuple[Any, ...]) -> Any:
    return getattr(_sessions[session_id], method)(*args)


def _close(session_id: int) -> None:
    session = _sessions.pop(session_id, None)
    if session is not None:
        session.close()


def _write(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<I", len(data)) + data)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    header = stream.read(4)
    if len(header) < 4:
        raise EOFError
    (size,) = struct.unpack("<I", header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


def worker_main() -> None:
    """Serve requests on stdin until it closes (the server process went away)."""
    # Ctrl-C reaches the whole process group: the server stops its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write on the reply channel
    functions = {"warm": _warm, "open": _open, "call": _call, "close": _close}
    while True:
        try:
            name, args = _read(requests)
        except EOFError:
            return
        try:
            reply = ("ok", functions[name](*args))
        except Exception as exc:  # the server raises it in the connection
            reply = ("error", f"{type(exc).__name__}: {exc}")
        _write(replies, reply)


# -- server side -------------------------------------------------------------


# Each worker holds its own decoders (pocketsphinx: about 40 MB).
MAX_LANES = 8


def default_lanes() -> int:
    """One worker per usable core, at most MAX_LANES."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_LANES))


class WorkerError(RuntimeError):
    """A worker process failed a request or died."""


class _Lane:
    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stt_server.workers"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.sessions = 0
        self._lock = threading.Lock()
        log.info("recognition worker %d started", self.process.pid)

    def request(self, name: str, *args: Any) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        with self._lock:
            try:
                _write(self.process.stdin, (name, args))
                status, value = _read(self.process.stdout)
            except (EOFError, OSError, ValueError) as exc:  # ValueError: pipe closed
                self._discard()
                raise WorkerError(
                    f"recognition worker {self.process.pid} is gone ({exc or 'EOF'})"
                ) from exc
        if status != "ok":
            raise WorkerError(value)
        return value

    def _discard(self) -> None:
        """The worker failed: make sure it is gone, drop its pipes quietly."""
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def stop(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class WorkerLanes:
    """Worker processes, each running the sessions given to it, in order."""

    def __init__(self, lanes: int | None = None) -> None:
        self.count = lanes or default_lanes()
        self._lanes: list[_Lane] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def _started(self) -> list[_Lane]:
        with self._lock:
            self._lanes = [lane for lane in self._lanes if lane.process.poll() is None]
            while len(self._lanes) < self.count:
                self._lanes.append(_Lane())
            return self._lanes

    def warm(self, name: str, options: tuple[tuple[str, Any], ...]) -> list[int]:
        """Start every lane and load the recogniser there (blocking); their pids."""
        lanes = self._started()
        pids: list[int] = [0] * len(lanes)

        def warm_one(index: int) -> None:
            pids[index] = lanes[index].request("warm", name, options)

        threads = [threading.Thread(target=warm_one, args=(i,)) for i in range(len(lanes))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if not all(pids):
            raise WorkerError(f"a recognition worker did not start {name}")
        return pids

    def open(
        self,
        config: SessionConfig,
        name: str,
        options: tuple[tuple[str, Any], ...],
        style: Any = None,
    ) -> RemoteSession:
        """A session in a worker; style: a session.SessionStyle (None: the default)."""
        if style is None:
            from stt_server.session import SessionStyle

            style = SessionStyle()
        session_id = next(self._ids)
        for attempt in range(2):
            lanes = self._started()
            with self._lock:
                lane = min(lanes, key=lambda candidate: candidate.sessions)
                lane.sessions += 1
            try:
                lane.request("open", session_id, config, name, options, style)
            except WorkerError:
                self._release(lane)
                if attempt or lane.process.poll() is None:
                    raise
                continue  # that worker had died: once more, on a fresh one
            except BaseException:
                self._release(lane)
                raise
            return RemoteSession(self, lane, session_id, config)
        raise AssertionError("unreachable")

    def _release(self, lane: _Lane) -> None:
        with self._lock:
            lane.sessions -= 1

    def shutdown(self) -> None:
        with self._lock:
            lanes, self._lanes = self._lanes, []
        for lane in lanes:
            lane.stop()


SHARED_LANES = WorkerLanes()
# Workers also exit on their own when this process goes (their stdin closes).
atexit.register(SHARED_LANES.shutdown)


class RemoteSession:
    """An STTSession living in a worker process; the same methods, blocking."""

    trackers: list[Any] = []  # the channel trackers stay in the worker

    def __init__(self, lanes: WorkerLanes, lane: _Lane, session_id: int, config: SessionConfig):
        self.config = config
        self.audio_bytes = 0
        self.finished = False
        self._lanes = lanes
        self._lane = lane
        self._id: int | None = session_id

    def _call(self, method: str, *args: Any) -> Any:
        if self._id is None:
            raise RuntimeError("session closed")
        return self._lane.request("call", self._id, method, args)

    @property
    def duration(self) -> float:
        return round(self.audio_bytes / self.config.bytes_per_second, 6)

    def feed_audio(self, data: bytes) -> list[dict[str, Any]]:
        self.audio_bytes += len(data)
        return self._call("feed_audio", data)

    def finalize(self, channel: int | None = None) -> list[dict[str, Any]]:
        return self._call("finalize", channel)

    def finish(self, done_text: str = "empty", flush: bool = True) -> list[dict[str, Any]]:
        self.finished = True
        return self._call("finish", done_text, flush)

    def close(self) -> None:
        session_id, self._id = self._id, None
        if session_id is None:
            return
        try:
            self._lane.request("close", session_id)
        finally:
            self._lanes._release(self._lane)


if __name__ == "__main__":
    worker_main()
