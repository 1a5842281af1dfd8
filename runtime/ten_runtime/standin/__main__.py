"""``python -m ten_runtime.standin run GRAPH.json [--graph NAME] [--search-path DIR]...``

Runs the graph until Ctrl-C / SIGTERM (clean stop, exit 0) or until the graph
stops by itself (a node sent StopGraphCmd: exit 0).  Exit 1 when the graph
cannot start or an extension crashed (where the native runtime would exit).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from .._core.fatal import FatalRuntimeError, GraphStartError
from .runner import GraphRunner


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ten_runtime.standin",
        description="Run a TEN graph on the pure-Python ten_runtime stand-in.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a graph until Ctrl-C or until it stops")
    run.add_argument(
        "file", help="a graph JSON, or an app property.json with ten.predefined_graphs"
    )
    run.add_argument("--graph", help="predefined graph to run (default: the auto_start one)")
    run.add_argument(
        "--search-path",
        action="append",
        default=[],
        metavar="DIR",
        help="directory put on sys.path for addon resolution (repeatable)",
    )
    run.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="level of Python logging on stderr (ten.log handlers print independently)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        runner = GraphRunner.from_file(args.file, args.graph, args.search_path)
    except GraphStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    ten = (runner.app_property or {}).get("ten")
    if isinstance(ten, dict) and isinstance(ten.get("log"), dict) and ten["log"].get("handlers"):
        # The app's own ten.log handlers print TEN logs; do not print them twice.
        logging.getLogger("ten").propagate = False

    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()
        runner.request_stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    try:
        runner.start()
    except GraphStartError as exc:
        if stop_requested.is_set() and runner.fatal_error is None:
            print("graph stopped (before it had fully started)", file=sys.stderr)
            return 0
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except FatalRuntimeError as exc:
        print(f"fatal: {exc}", file=sys.stderr)
        return 1

    print(f"graph running: nodes {', '.join(runner.node_names)} (Ctrl-C to stop)", file=sys.stderr)
    try:
        while not runner.wait(0.2):
            if stop_requested.is_set():
                runner.stop()
                break
    except FatalRuntimeError as exc:
        print(f"fatal: {exc}", file=sys.stderr)
        return 1
    print("graph stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
