"""The local STT server with per-frame arrival times, for the latency benches.

    python -m bench._server [--handshake-delay-ms N] [--done-delay-ms N]

Runs `stt_server.STTServer` (marker recogniser) in this process and prints
`listening on ws://...` like `python -m stt_server`. It adds observation
only, by wrapping five methods of the server's connection runner in this
process (stt_server/ itself is unchanged):

- every binary message: `time.monotonic()` when the server starts handling
  it, and the marker indices decoded from it (one 10 ms frame per message
  for this project's engine), flagged when it arrived after the
  connection's `audio.done` ("late": audio that reached a finished
  connection);
- `audio.done`: when it arrived; `transcript.done`: when it was sent;
- each `finalize` (finalize mode): when it arrived and when the utterance
  final answering it (`transcript.partial` with `is_final` and
  `speech_final`, sent by the finalize handler) was sent, None when it was
  not answered (refused, ignored, after the session ended).

"Sent" is stamped as the server's send begins: websockets writes to the
socket before it first yields, and that write wakes the client, which may
take the server's CPU (wakeup preemption) before a stamp taken after the
send could be: on a loaded machine such a stamp came up to 0.3 ms after the
client had already handled the message.

CLOCK_MONOTONIC is one system-wide clock on Linux, so these times compare
directly with `time.monotonic()` in the bench's own process.

Control on stdin, one line each, answered with one line on stdout:
`dump PATH` writes every connection's observations as JSON to PATH (`ok`);
EOF on stdin or SIGTERM stops the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from bench import _paths

_paths.setup()

from stt_server import Fault, STTServer  # noqa: E402
from stt_server import marker as marker_audio  # noqa: E402
from stt_server import server as server_module  # noqa: E402


@dataclass
class ConnObservation:
    number: int
    handled_at: float  # when the connection runner started (socket open)
    frames: list[tuple[int, float]] = field(default_factory=list)  # (marker index, arrival)
    late_frames: list[int] = field(default_factory=list)  # indices that came after audio.done
    messages: int = 0
    audio_done_at: float | None = None
    done_sent_at: float | None = None
    bytes_before_created: int = 0
    # (finalize received, its utterance final sent or None), one per finalize message
    finalizes: list[tuple[float, float | None]] = field(default_factory=list)


OBSERVATIONS: dict[int, ConnObservation] = {}


def _obs(runner: Any) -> ConnObservation:
    found = OBSERVATIONS.get(runner.number)
    if found is None:
        found = OBSERVATIONS[runner.number] = ConnObservation(runner.number, time.monotonic())
    return found


def install_observers() -> None:
    runner_cls = server_module._ConnectionRunner
    orig_run = runner_cls.run
    orig_on_audio = runner_cls._on_audio
    orig_on_audio_done = runner_cls._on_audio_done
    orig_send = runner_cls._send
    orig_on_finalize = runner_cls._on_finalize
    # Runners inside their finalize handler: its utterance final is the answer.
    in_finalize: set[int] = set()

    async def run(self: Any) -> None:
        _obs(self)
        await orig_run(self)

    async def on_audio(self: Any, data: bytes) -> None:
        now = time.monotonic()
        obs = _obs(self)
        obs.messages += 1
        if self.record.audio_done_received:
            frames = marker_audio.decode(data, self.config.sample_rate, self.config.encoding)
            obs.late_frames.extend(f.index for f in frames if f.ok and f.index is not None)
            await orig_on_audio(self, data)
            return
        before = len(self.record.marker_frames)
        await orig_on_audio(self, data)
        for frame in self.record.marker_frames[before:]:
            if frame.ok and frame.index is not None:
                obs.frames.append((frame.index, now))
        obs.bytes_before_created = self.record.bytes_before_created

    async def on_audio_done(self: Any) -> None:
        obs = _obs(self)
        if obs.audio_done_at is None:
            obs.audio_done_at = time.monotonic()
        await orig_on_audio_done(self)

    async def on_finalize(self: Any, payload: dict[str, Any]) -> None:
        obs = _obs(self)
        obs.finalizes.append((time.monotonic(), None))
        in_finalize.add(id(self))
        try:
            await orig_on_finalize(self, payload)
        finally:
            in_finalize.discard(id(self))

    async def send(self: Any, event: dict[str, Any]) -> None:
        # Stamped as the send begins: websockets writes to the socket before its
        # first await, and the write wakes the client, which may take this CPU
        # (wakeup preemption) before a stamp taken after the send could be.
        now = time.monotonic()
        kind = event.get("type")
        if kind == "transcript.done":
            _obs(self).done_sent_at = now
        elif (
            kind == "transcript.partial"
            and id(self) in in_finalize
            and event.get("is_final")
            and event.get("speech_final")
        ):
            obs = _obs(self)
            obs.finalizes[-1] = (obs.finalizes[-1][0], now)
        await orig_send(self, event)

    runner_cls.run = run  # type: ignore[method-assign]
    runner_cls._on_audio = on_audio  # type: ignore[method-assign]
    runner_cls._on_audio_done = on_audio_done  # type: ignore[method-assign]
    runner_cls._send = send  # type: ignore[method-assign]
    runner_cls._on_finalize = on_finalize  # type: ignore[method-assign]


def _stdin_reader(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for line in sys.stdin:
        parts = line.strip().split(maxsplit=1)
        if not parts:
            continue
        if parts[0] == "dump" and len(parts) == 2:

            async def snapshot() -> str:
                ordered = sorted(OBSERVATIONS.values(), key=lambda o: o.number)
                return json.dumps([asdict(o) for o in ordered])

            text = asyncio.run_coroutine_threadsafe(snapshot(), loop).result(30)
            with open(parts[1], "w") as fh:
                fh.write(text)
            print("ok", flush=True)
        else:
            print(f"error: unknown command {parts[0]!r}", flush=True)
    loop.call_soon_threadsafe(stop.set)


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    async with STTServer(
        recognizer="marker", done_delay_ms=args.done_delay_ms, ping_interval=None
    ) as server:
        if args.handshake_delay_ms:
            server.set_default_fault(Fault(handshake_delay_ms=args.handshake_delay_ms))
        threading.Thread(target=_stdin_reader, args=(loop, stop), daemon=True).start()
        print(f"listening on {server.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._server")
    parser.add_argument("--handshake-delay-ms", type=int, default=0)
    parser.add_argument("--done-delay-ms", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    install_observers()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
