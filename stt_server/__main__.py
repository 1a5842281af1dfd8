"""python -m stt_server: run the local STT server until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from stt_server.protocol import DONE_TEXT_MODES
from stt_server.recognizers import DEFAULT_VAD_THRESHOLD_DB, RECOGNIZERS
from stt_server.server import STTServer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stt_server",
        description="Local xAI-compatible streaming speech-to-text WebSocket server.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback)"
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("STT_SERVER_API_KEY"),
        help="require 'Authorization: Bearer KEY' (default: $STT_SERVER_API_KEY, else any key)",
    )
    parser.add_argument(
        "--recognizer",
        choices=RECOGNIZERS,
        default="pocketsphinx",
        help="pocketsphinx: light offline English, exact on clear speech only; whisper: "
        "Whisper tiny.en, accurate, punctuated, about 0.2-0.3 CPU-s per audio second; "
        "marker: deterministic frame markers for tests (default: pocketsphinx)",
    )
    parser.add_argument(
        "--done-text",
        choices=DONE_TEXT_MODES,
        default="whole",
        help="transcript.done text: whole: every word of the connection (like xAI); "
        "pending: only the words no speech_final delivered (default: whole)",
    )
    parser.add_argument(
        "--done-delay-ms",
        type=int,
        default=0,
        help="wait this long between audio.done and transcript.done (default: 0)",
    )
    parser.add_argument(
        "--vad-threshold-db",
        type=float,
        default=DEFAULT_VAD_THRESHOLD_DB,
        help="pocketsphinx: frame level (dBFS) that counts as speech (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        help="DEBUG, INFO (one line per connection start and end), WARNING, ... (default: INFO)",
    )
    return parser


async def serve_until_signalled(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    async with STTServer(
        recognizer=args.recognizer,
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        done_text=args.done_text,
        done_delay_ms=args.done_delay_ms,
        vad_threshold_db=args.vad_threshold_db,
    ) as server:
        print(f"listening on {server.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    # Ctrl-C before the signal handlers are installed is still a clean stop.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_until_signalled(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
