"""python -m stt_server: run the local STT server until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from stt_server.recognizers import DEFAULT_VAD_THRESHOLD_DB, RECOGNIZERS
from stt_server.server import STTServer
from stt_server.wire import DONE_TEXT_MODES, FINALIZE_MODES, UTTERANCE_FINALS, WIRES


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
        "--wire",
        choices=WIRES,
        default="live",
        help="live: speak as the live xAI service does (restated utterance finals, empty "
        "transcript.done, empty partials in silence, finalize answered); legacy: as this "
        "server did before (tail utterance finals, whole done text, finalize refused). "
        "The options below override the preset (default: live)",
    )
    parser.add_argument(
        "--utterance-final",
        choices=UTTERANCE_FINALS,
        default=None,
        help="restate: the utterance final repeats every word of the utterance (live); "
        "tail: only the words after the last chunk final (default: from --wire)",
    )
    parser.add_argument(
        "--done-text",
        choices=DONE_TEXT_MODES,
        default=None,
        help="transcript.done text: empty (live); whole: every word of the connection; "
        "pending: only the words no speech_final delivered (default: from --wire)",
    )
    parser.add_argument(
        "--finalize",
        choices=FINALIZE_MODES,
        default=None,
        help='{"type": "finalize"}: answer (end the utterance now, live); refuse (an error '
        "event, the connection stays open); ignore (default: from --wire)",
    )
    parser.add_argument(
        "--empty-partials",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="empty transcript.partial events in silence when interim_results is on "
        "(default: from --wire)",
    )
    parser.add_argument(
        "--flush-on-done",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="at audio.done, end the open utterance with its finals before transcript.done "
        "(default: from --wire)",
    )
    parser.add_argument(
        "--stream-timeout-s",
        type=float,
        default=None,
        help='after this many seconds without audio send {"type": "error", "message": '
        '"ASR stream timed out"} and close (the live service: about 600; default: off)',
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
        wire=args.wire,
        utterance_final=args.utterance_final,
        done_text=args.done_text,
        finalize=args.finalize,
        empty_partials=args.empty_partials,
        flush_on_done=args.flush_on_done,
        stream_timeout_s=args.stream_timeout_s,
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
