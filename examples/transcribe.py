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
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent
ROOT = EXAMPLES.parent
DEFAULT_GRAPH = EXAMPLES / "property.json"
DEFAULT_SAMPLE = ROOT / "stt_server" / "audio" / "demo.wav"
LOCAL_KEY = "local-server-needs-no-key"
# Seconds the graph may run beyond the audio's own length before we give up.
GRACE_S = 30.0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.CRITICAL,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _use_project_paths()
    try:
        from audio_file_source.audio_io import AudioInputError, load_pcm16_mono
    except ImportError as exc:
        return _fail(f"missing dependency ({exc}); run: pip install -r requirements-dev.txt")

    audio_path = Path(args.file) if args.file else DEFAULT_SAMPLE
    try:
        pcm = load_pcm16_mono(audio_path, 16000, args.rate or 0)
    except AudioInputError as exc:
        return _fail(str(exc))
    if not pcm:
        return _fail(f"{audio_path}: no audio in the file")
    audio_s = len(pcm) / 32000

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
    try:
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
                    graph_file, args, audio_path, audio_s, base_url, key, summary_path
                )
            except ValueError as exc:
                return _fail(str(exc))
            speed = 0.0 if args.fast else args.speed
            budget = (audio_s / speed if speed > 0 else 0.0) + finalize_s + GRACE_S
            return _run_graph(graph_file, args.graph, budget, summary_path, args.verbose)
    finally:
        summary_path.unlink(missing_ok=True)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="transcribe",
        description="Transcribe audio through the xai_asr_python extension in a TEN graph.",
    )
    parser.add_argument(
        "file",
        nargs="?",
        help="WAV, FLAC, OGG/Vorbis or MP3 file (any rate/channels/sample format), "
        "or raw 16-bit mono PCM with --rate (default: the bundled demo.wav)",
    )
    parser.add_argument("--rate", type=int, help="the file is raw 16-bit mono PCM at this rate")
    parser.add_argument("--graph", default=str(DEFAULT_GRAPH), help="graph JSON to run")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--fast", action="store_true", help="stream as fast as possible")
    pace.add_argument("--speed", type=float, default=1.0, help="multiple of real time")
    parser.add_argument("--json", action="store_true", help="one JSON object per result")
    parser.add_argument("--language", help="language code for the recognizer (e.g. en)")
    parser.add_argument("--base-url", help="use this xAI-compatible server (ws:// or wss://)")
    parser.add_argument(
        "--max-retries", type=int, default=3, help="reconnect attempts before giving up"
    )
    parser.add_argument(
        "--recognizer",
        choices=("whisper", "pocketsphinx"),
        default="whisper",
        help="the local server's recognizer, used when XAI_API_KEY is not set and no "
        "--base-url is given (default: whisper)",
    )
    parser.add_argument("--verbose", action="store_true", help="show the runtime's logs")
    return parser.parse_args(argv)


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
    audio_path: Path,
    audio_s: float,
    base_url: str | None,
    key: str,
    summary_path: Path,
) -> float:
    """Point the graph at the file and the recognizer; returns the finalize timeout (s)."""
    nodes = _graph_nodes(graph_file)
    by_addon = {node.get("addon"): node for node in nodes}
    for addon in ("audio_file_source", "xai_asr_python", "transcript_printer"):
        if addon not in by_addon:
            raise ValueError(f"graph {args.graph} has no {addon} node")
    source = by_addon["audio_file_source"].setdefault("property", {})
    source["path"] = str(audio_path.resolve())
    source["raw_sample_rate"] = args.rate or 0
    source["speed"] = 0.0 if args.fast else float(args.speed)
    stt = by_addon["xai_asr_python"].setdefault("property", {})
    params = stt.setdefault("params", {})
    if base_url:
        params["base_url"] = base_url
    if key:
        params["api_key"] = key
    if args.language:
        params["language"] = args.language
    stt.setdefault("reconnect_max_attempts", max(1, args.max_retries))
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
    printer = by_addon["transcript_printer"].setdefault("property", {})
    printer["json"] = bool(args.json)
    printer["summary_path"] = str(summary_path)
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
            return _fail(f"the graph {graph_path} did not start: {exc}")
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
    try:
        summary = json.loads(summary_path.read_text() or "{}")
    except (OSError, ValueError):
        summary = {}
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


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
