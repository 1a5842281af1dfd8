#!/usr/bin/env python3
"""Transcribe an audio file through xai_asr_python in a real TEN graph.

    python3 examples/transcribe.py [FILE] [--fast] [--json] [--graph GRAPH.json]

The graph (examples/property.json: examples/ is a TEN app, with its
manifest.json, that TEN's designer opens) has three nodes:
`audio_file_source` streams the file as pcm_frame messages in real time,
`xai_asr_python` recognises it, and `transcript_printer` prints what comes
back. With XAI_API_KEY set the
extension talks to xAI; without it this command starts the project's local
xAI-compatible server on loopback, with offline Whisper tiny.en recognition
(`--recognizer pocketsphinx` for the lighter, less accurate one).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, NoReturn

EXAMPLES = Path(__file__).resolve().parent
ROOT = EXAMPLES.parent
DEFAULT_GRAPH = EXAMPLES / "property.json"
DEFAULT_SAMPLE = ROOT / "stt_server" / "audio" / "demo.wav"
LOCAL_KEY = "local-server-needs-no-key"
# Seconds the graph may run beyond the audio's own length before we give up.
GRACE_S = 30.0
# How long the local server may take to answer a liveness ping (see _configure_graph).
LOCAL_LIVENESS_TIMEOUT_MS = 10_000
# The extension's upper bounds of replay_max_ms and stall_timeout_ms (config.py).
REPLAY_MAX_MS = 600_000
STALL_MAX_MS = 600_000


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.CRITICAL,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _use_project_paths()
    try:
        from audio_file_source.audio_io import AudioInputError, decode, header_format
    except ImportError as exc:
        return _fail(f"missing dependency ({exc}); run: pip install -r requirements-dev.txt")

    audio_path = Path(args.file)
    if args.rate:
        kind = header_format(audio_path)
        if kind:
            parser.error(
                f"--rate {args.rate} is for raw PCM without a header, but {audio_path} is a "
                f"{kind} file (its header gives the rate): drop --rate"
            )
    try:
        decoded = decode(audio_path, 16000, args.rate or 0)
    except AudioInputError as exc:
        return _fail(str(exc))
    # What the decoder library said, once (it prints on stderr by itself, in its own
    # words; the graph gets the decoded audio and never decodes the file again).
    if decoded.notes:
        _warn(f"{audio_path}: the {decoded.kind} decoder said: {'; '.join(decoded.notes)}")
    if not decoded.pcm:
        return _fail(f"{audio_path}: no audio in the file")
    if decoded.ends_early:
        _warn(f"{audio_path}: {_early_end(decoded)}; transcribing what is there")
    audio_s = len(decoded.pcm) / 32000

    try:
        graph_file = json.loads(Path(args.graph).read_text())
    except (OSError, ValueError) as exc:
        return _fail(f"cannot load graph {args.graph}: {exc}")

    key = os.environ.get("XAI_API_KEY", "")
    server_ctx: contextlib.AbstractContextManager[str | None] = contextlib.nullcontext(None)
    if args.base_url:
        base_url: str | None = args.base_url
        if not key:
            key = LOCAL_KEY
    elif key:
        base_url = None  # the graph's default: xAI
    else:
        server_ctx = _local_server(args.recognizer)
        base_url = None

    summary_path = Path(tempfile.mkstemp(prefix="transcribe-", suffix=".json")[1])
    pcm_path = Path(tempfile.mkstemp(prefix="transcribe-", suffix=".pcm")[1])
    try:
        pcm_path.write_bytes(decoded.pcm)
        with server_ctx as local_url:
            if local_url:
                base_url, key = local_url, LOCAL_KEY
                print(
                    f"no XAI_API_KEY: using the local xAI-compatible server ({args.recognizer}, "
                    f"offline) at {local_url}",
                    file=sys.stderr,
                    flush=True,
                )
            try:
                finalize_s = _configure_graph(
                    graph_file,
                    args,
                    pcm_path,
                    audio_s,
                    base_url,
                    key,
                    summary_path,
                    local_server=bool(local_url),
                )
            except ValueError as exc:
                return _fail(str(exc))
            speed = 0.0 if args.fast else args.speed
            budget = (audio_s / speed if speed > 0 else 0.0) + finalize_s + GRACE_S
            code = _run_graph(graph_file, args.graph, budget, summary_path, args.verbose)
    finally:
        summary_path.unlink(missing_ok=True)
        pcm_path.unlink(missing_ok=True)
    if code == 0 and decoded.ends_early:
        print(f"error: {audio_path}: {_early_end(decoded)}", file=sys.stderr)
        return 4
    return code


def _early_end(decoded: Any) -> str:
    return (
        f"the file ends before its header says: {decoded.seconds:.1f} s of audio decoded, "
        f"its header declares {decoded.declared_seconds:.1f} s (cut short or damaged)"
    )


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


EXIT_CODES = """\
exit codes:
  0    every bit of the audio was transcribed
  1    the recognizer failed for good (a refused key, the retries used up)
  2    the job could not run: a refused option, a file or graph that cannot be
       read, the local server or the graph did not start, no answer in time
  3    audio was dropped, not transcribed (the errors above say why)
  4    the file ends before its header says: what it holds was transcribed
  130  interrupted (Ctrl-C)
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other error of this command (argparse adds the usage).
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default in --help; the epilog (the exit codes) as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or action.default is argparse.SUPPRESS:
            return text
        if action.default is False:
            return f"{text} (default: off)"
        return super()._get_help_string(action)


def _number(kind: type[float] | type[int], text: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _above_zero(kind: type[float] | type[int]) -> Any:
    def check(text: str) -> float:
        value = _number(kind, text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0 (got {text})")
        return value

    return check


def _not_negative(text: str) -> int:
    value = int(_number(int, text))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (got {text})")
    return value


def _bundled(path: Path) -> str:
    """A file of this repository as --help names it: from the repository's root, so the
    help reads the same wherever the checkout lives (an absolute path would be broken
    across lines mid-word by argparse's wrapping)."""
    return path.relative_to(ROOT).as_posix()


def _parser() -> _Parser:
    parser = _Parser(
        prog="transcribe",
        description="Transcribe audio through the xai_asr_python extension in a TEN graph.",
        formatter_class=_HelpFormatter,
        epilog=EXIT_CODES,
    )
    parser.add_argument(
        "file",
        nargs="?",
        default=str(DEFAULT_SAMPLE),
        help="WAV, FLAC, OGG/Vorbis or MP3 file (any rate/channels/sample format), "
        f"or raw 16-bit mono PCM with --rate (default: the bundled {_bundled(DEFAULT_SAMPLE)})",
    )
    parser.add_argument(
        "--rate",
        type=_above_zero(int),
        metavar="HZ",
        help="the file is raw 16-bit mono PCM (no header) at this rate in Hz "
        "(default: none, the file's header gives the rate)",
    )
    parser.add_argument(
        "--graph",
        default=str(DEFAULT_GRAPH),
        metavar="GRAPH.json",
        help=f"graph JSON to run (default: the bundled {_bundled(DEFAULT_GRAPH)})",
    )
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--fast", action="store_true", help="stream as fast as possible")
    pace.add_argument(
        "--speed",
        type=_above_zero(float),
        default=1.0,
        metavar="X",
        help="send at X times real time, X > 0",
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per result, then a summary record"
    )
    parser.add_argument(
        "--language",
        metavar="CODE",
        help="language code for the recognizer (default: the graph's, en)",
    )
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help="use this xAI-compatible server, ws:// or wss:// (default: xAI when "
        "XAI_API_KEY is set, else the local server)",
    )
    parser.add_argument(
        "--max-retries",
        type=_not_negative,
        default=3,
        metavar="N",
        help="reconnect attempts after a failure before giving up (0: give up at the first)",
    )
    parser.add_argument(
        "--recognizer",
        choices=("whisper", "pocketsphinx"),
        default="whisper",
        help="the local server's recognizer, used when XAI_API_KEY is not set and no "
        "--base-url is given",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show the runtime's and the extension's logs (and no progress bar)",
    )
    return parser


def _use_project_paths() -> None:
    """Make the graph's addons importable the way a TEN app finds them."""
    app = ROOT / ".ten" / "app"
    link = app / "ten_packages" / "extension" / "xai_asr_python"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            link.symlink_to(ROOT, target_is_directory=True)
    for path in (EXAMPLES / "ten_packages" / "extension", ROOT):
        sys.path.append(str(path))
    # The graph runs on the project's pure-Python runtime, native TEN installed or not:
    # the native binding has no in-process graph runner (a TEN app runs this graph with
    # TEN's own tools instead: examples/ is such an app).
    standin = (ROOT / "runtime").resolve()
    loaded = sys.modules.get("ten_runtime")
    if loaded is not None and standin not in Path(loaded.__file__ or "/").resolve().parents:
        raise SystemExit(
            "error: the native ten_runtime is already loaded in this process; "
            "run examples/transcribe.py as its own command"
        )
    sys.path.insert(0, str(standin))


@contextlib.contextmanager
def _local_server(recognizer: str) -> Any:
    """The local server on its own loop thread, for the duration of the run."""
    import asyncio

    from stt_server import STTServer

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="local-stt-server", daemon=True)
    thread.start()
    server = STTServer(recognizer=recognizer)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(60)
    except (ImportError, RuntimeError) as exc:  # e.g. the Whisper model is missing
        loop.call_soon_threadsafe(loop.stop)
        raise SystemExit(_fail(f"the local {recognizer} server did not start: {exc}")) from None
    try:
        yield server.url
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


def _configure_graph(
    graph_file: dict[str, Any],
    args: argparse.Namespace,
    pcm_path: Path,
    audio_s: float,
    base_url: str | None,
    key: str,
    summary_path: Path,
    *,
    local_server: bool = False,
) -> float:
    """Point the graph at the file and the recognizer; returns the finalize timeout (s)."""
    nodes = _graph_nodes(graph_file)
    by_addon = {node.get("addon"): node for node in nodes}
    for addon in ("audio_file_source", "xai_asr_python", "transcript_printer"):
        if addon not in by_addon:
            raise ValueError(f"graph {args.graph} has no {addon} node")
    source = by_addon["audio_file_source"].setdefault("property", {})
    # The file was decoded once, here: the source streams that audio (16 kHz raw PCM).
    source["path"] = str(pcm_path)
    source["raw_sample_rate"] = 16000
    source["speed"] = 0.0 if args.fast else float(args.speed)
    stt = by_addon["xai_asr_python"].setdefault("property", {})
    params = stt.setdefault("params", {})
    if base_url:
        params["base_url"] = base_url
    if key:
        params["api_key"] = key
    if args.language:
        params["language"] = args.language
    # reconnect_max_attempts counts the failed attempts in a row, the first included.
    stt.setdefault("reconnect_max_attempts", args.max_retries + 1)
    audio_ms = int(audio_s * 1000)
    # A file can wait, so none of it may be dropped: the outage buffer holds the whole
    # file (a graph that sets a smaller one gets the loss reported, and a failed run).
    stt.setdefault("buffer_max_ms", max(60_000, audio_ms + 10_000))
    # No person waits on a turn here: the 2 s default is for live speech. At any speed
    # the recognizer may have a backlog after the finalize (faster than real time the
    # socket slows the sending to its pace; at real time a busy machine runs a local
    # recognizer late), so the finalize gets the time it takes to hear the whole file
    # in real time, plus a margin; a repair then never races a slow but healthy
    # recognizer. Dead connections are still found in a second by the liveness probes.
    stt["finalize_timeout_ms"] = max(stt.get("finalize_timeout_ms", 2000), audio_ms + 10_000)
    # After a failure the extension re-sends a connection's un-finalized audio only as
    # far back as replay_max_ms, and the rest is lost without a report. Faster than
    # real time the socket holds minutes of audio the recognizer has not heard yet
    # (loopback buffers are megabytes), so with the 20 s default one failed connection
    # lost most of a 3-minute file and the run still exited 0. The window holds the
    # whole file (the memory is the file's own; the extension's bound is 10 minutes).
    stt.setdefault("replay_max_ms", min(REPLAY_MAX_MS, max(20_000, audio_ms + 10_000)))
    if local_server:
        # The local server runs in this process, on loopback: no network can drop its
        # connection silently (a dead one ends with a close or a reset), and a slow
        # answer means its recognizer is busy: it reads the socket, pings included, at
        # the recognizer's pace, and a loaded machine runs whisper late. The live
        # defaults then gave up healthy connections (an error line, and the audio
        # decoded again on a machine already short of CPU): a pong 1 s late, or at
        # --fast a send blocked for 15 s while the server worked through the audio
        # queued before it. The stall limit follows the file, like the finalize.
        stt.setdefault("liveness_timeout_ms", LOCAL_LIVENESS_TIMEOUT_MS)
        stt.setdefault("stall_timeout_ms", min(STALL_MAX_MS, max(15_000, audio_ms + 10_000)))
    printer = by_addon["transcript_printer"].setdefault("property", {})
    printer["json"] = bool(args.json)
    printer["summary_path"] = str(summary_path)
    if not args.verbose and sys.stderr.isatty():
        # A progress bar on the terminal (the printer draws it; log lines would tear
        # it, so not with --verbose): the extension reports the audio sent every 0.5 s.
        printer["progress_total_ms"] = audio_ms
        stt.setdefault("metrics_interval_ms", 500)
    return int(stt.get("finalize_timeout_ms", 2000)) / 1000


def _graph_nodes(graph_file: dict[str, Any]) -> list[dict[str, Any]]:
    if "nodes" in graph_file:
        return graph_file["nodes"]
    graphs = graph_file.get("ten", {}).get("predefined_graphs", [])
    if not graphs:
        raise ValueError("the graph file has neither nodes nor ten.predefined_graphs")
    auto = [g for g in graphs if g.get("auto_start")] or graphs
    return auto[0]["graph"]["nodes"]


@contextlib.contextmanager
def _quiet_stdout(quiet: bool) -> Any:
    if not quiet:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def _run_graph(
    graph_file: dict[str, Any],
    graph_path: str,
    budget_s: float,
    summary_path: Path,
    verbose: bool,
) -> int:
    from ten_runtime.standin import GraphRunner, GraphStartError

    resolved = Path(tempfile.mkstemp(prefix="graph-", suffix=".json", dir=None)[1])
    try:
        resolved.write_text(json.dumps(graph_file))
        runner = GraphRunner.from_file(
            str(resolved), search_paths=[str(ROOT / ".ten" / "app"), str(EXAMPLES)]
        )
        interrupted = threading.Event()

        def on_sigint(signum: int, frame: object) -> None:
            interrupted.set()
            runner.request_stop()

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            # The runtime announces each addon it loads on stdout, as TEN does;
            # that is noise in a transcript.
            with _quiet_stdout(not verbose):
                runner.start()
            finished = runner.wait(timeout=budget_s)
        except GraphStartError as exc:
            # The printer may have ended the run before every node had started (a
            # refused connection is fatal at once): then its summary tells the outcome.
            if not _read_summary(summary_path):
                return _fail(f"the graph {graph_path} did not start: {exc}")
            finished = True
        finally:
            signal.signal(signal.SIGINT, previous)
            runner.stop()
    finally:
        resolved.unlink(missing_ok=True)
    if interrupted.is_set():
        print("interrupted", file=sys.stderr)
        return 130
    if not finished:
        return _fail(f"no answer within {budget_s:.0f} s; stopped the graph")
    summary = _read_summary(summary_path)
    if not summary:
        return _fail("the graph stopped without a summary")
    if summary.get("fatal"):
        return 1
    if summary.get("dropped_ms"):
        print(
            f"error: {summary['dropped_ms'] / 1000:.1f} s of the audio were dropped, "
            "not transcribed (see the errors above)",
            file=sys.stderr,
        )
        return 3
    return 0


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
