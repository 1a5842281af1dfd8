"""Planted bugs (issue 25): does the suite's own run catch each one?

    python -m bench.planted                 # all seventeen, one at a time
    python -m bench.planted stop_no_salvage buffer_drops_newest   # just these
    python -m bench.planted --list          # names and what each breaks, no run
    python -m bench.planted --all-checks    # each bug against the default selection
    python -m bench.planted --profile default NAME  # with hypothesis's shrinking (slow)
    python -m bench.planted --checks tests/test_core_stateful.py NAME  # other tests

Each bug is a textual edit of the product code (file, exact old snippet, new snippet).
For each: the tracked files of this checkout (with their uncommitted edits) are copied
to a scratch directory, the edit is applied there (it fails loudly, "snippet not found",
when the code has moved: the list cannot rot silently), and the suite's own checks
that should catch it run there through tests/bin/start, as the suite runs them (its
own examples, seeds and settings; `-x`, stopping at the first failure). The one
difference is the hypothesis profile `planted` (tests/conftest.py): a failure is
reported as found, without shrinking it, which would take minutes per caught bug.
The scratch copy is always removed.

Prints a table (caught by which test, or MISSED) and writes its JSON to
bench/results/planted-<timestamp>.json (git-ignored). Exit 1 if any bug was missed
or could not be planted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = os.environ.get("PYTHON", sys.executable)
# A caught bug fails within seconds to a couple of minutes without shrinking; the
# suite's own pytest-timeout still bounds each test.
TIMEOUT_S = 1200

MACHINE = "tests/test_core_stateful.py"
SOAK = "integration_tests/test_it_soak.py"
DEFAULT_CHECKS = (
    "tests/test_core_*.py",
    "tests/test_engine_*.py",
    SOAK,
)


@dataclass(frozen=True)
class Edit:
    file: str
    old: str  # exactly once in `file`, or the bug is not planted
    new: str


@dataclass(frozen=True)
class Bug:
    name: str
    breaks: str  # what it breaks for a user, one line
    file: str
    old: str
    new: str
    # The suite's tests that should catch it, in the order they run (globs allowed).
    checks: tuple[str, ...] = DEFAULT_CHECKS
    also: tuple[Edit, ...] = ()  # a slip in two places

    @property
    def edits(self) -> tuple[Edit, ...]:
        return (Edit(self.file, self.old, self.new), *self.also)


BUGS: tuple[Bug, ...] = (
    # ---------------------------------------------------------- the nine of notes/planted
    Bug(
        "timers_armed_at_stop",
        "after stop the core still acts on its timers: a backoff timer opens a new "
        "connection on a stopped session",
        "session_core.py",
        "    def _on_timer(self, event: io.TimerFired) -> None:\n"
        "        if self.stopped:\n"
        "            return\n",
        "    def _on_timer(self, event: io.TimerFired) -> None:\n",
        ("tests/test_engine_stop.py", MACHINE),
        also=(
            Edit(
                "supervisor.py",
                "        self.phase = Phase.STOPPED\n        return self.abort_all()\n",
                "        return self.abort_all()\n",
            ),
        ),
    ),
    Bug(
        "stop_no_salvage",
        "at stop the current connection's interim text is dropped, not made final: the "
        "user's last words vanish",
        "turns.py",
        "        floor = _floor(self.salvage(conn, is_before, reason=reason))\n",
        "        floor = _floor(\n"
        "            None if reason == LOST_STOPPED\n"
        "            else self.salvage(conn, is_before, reason=reason)\n"
        "        )\n",
        ("tests/test_engine_stop.py", MACHINE),
    ),
    Bug(
        "replay_skips_frame",
        "a failed connection's window is replayed without its first frame: 10 ms of "
        "speech silently lost at every reconnect",
        "sender.py",
        "        replay_from = conn.window.start_ms  # connection time\n"
        "        frames = conn.window.take()\n",
        "        replay_from = conn.window.start_ms  # connection time\n"
        "        frames = conn.window.take()[1:]\n",
        ("tests/test_engine_replay.py", "tests/test_core_replay_window.py", MACHINE),
    ),
    Bug(
        "overflow_not_in_ledger",
        "audio the outage buffer drops for new audio is neither counted nor reported "
        "(silent loss during an outage)",
        "sender.py",
        "        report = self._buffer.push(chunk)\n"
        "        if report is not None:\n"
        "            self._reports.lose(report, LOST_BUFFER_FULL, self._host.now)\n",
        "        report = self._buffer.push(chunk)\n",
        ("tests/test_engine_ledger.py", MACHINE),
    ),
    Bug(
        "401_retried",
        "a refused handshake (bad key) is retried with backoff instead of a FATAL "
        "error at once: the user waits through every retry for the inevitable",
        "supervisor.py",
        "            decision = self._reconnect.record_failure(\n"
        "                fatal=failure.fatal, retry_after_s=failure.retry_after_s\n",
        "            decision = self._reconnect.record_failure(\n"
        "                fatal=False, retry_after_s=failure.retry_after_s\n",
        ("tests/test_engine_reconnect.py", MACHINE),
    ),
    Bug(
        "failure_not_disconnected",
        "a failed connection is never reported DISCONNECTED: the graph believes it is "
        "still connected through the outage",
        "supervisor.py",
        '        self._log.warning("gen %d: failed: %s", conn.generation, verdict.message)\n'
        "        self._reports.status(\n"
        "            ConnState.DISCONNECTED, numeric_code(verdict.vendor_code), verdict.message\n"
        "        )\n",
        '        self._log.warning("gen %d: failed: %s", conn.generation, verdict.message)\n',
        ("tests/test_engine_reconnect.py", MACHINE),
    ),
    Bug(
        "probe_dead_ignored",
        "a connection that answers no ping stays in use: the user's speech goes into "
        "a dead socket until the stall or finalize timeout",
        "watch.py",
        "        if event.alive:\n            conn.alive_at = self._host.now\n            return\n",
        "        if event.alive:\n            conn.alive_at = self._host.now\n        return\n",
        ("tests/test_engine_liveness.py", MACHINE),
    ),
    Bug(
        "drain_not_blocking",
        "results of a newer connection are delivered while an older turn still "
        "drains: the transcript comes out of order",
        "delivery.py",
        "        self._blockers.add(generation)\n",
        "        pass\n",
        ("tests/test_engine_order_time.py", MACHINE),
    ),
    Bug(
        "buffer_drops_newest",
        "the outage buffer drops its newest audio on overflow instead of its oldest "
        "(and puts finalizes after the audio they cut)",
        "audio_buffer.py",
        "            item = self._items.popleft()\n"
        "            if isinstance(item, FinalizeMarker):\n"
        "                kept_markers.append(item)\n",
        "            item = self._items.pop()\n"
        "            if isinstance(item, FinalizeMarker):\n"
        "                kept_markers.append(item)\n",
        ("tests/test_engine_buffer_timeline.py", MACHINE),
    ),
    # ---------------------------------------------------------- seven more
    Bug(
        "finalize_deadline_late",
        "asr_finalize_end comes 0.5 s after the configured finalize timeout when the "
        "server does not answer",
        "turns.py",
        "            deadline=now + self._host.settings.finalize_timeout_s,\n",
        "            deadline=now + self._host.settings.finalize_timeout_s + 0.5,\n",
        ("tests/test_core_finalize_paths.py", "tests/test_engine_finalize_mode.py", MACHINE),
    ),
    Bug(
        "finalize_deadline_early",
        'a turn ends "timeout" at a quarter of the finalize timeout, while the vendor '
        "still had time to answer: its last words reported lost instead of transcribed",
        "turns.py",
        "            deadline=now + self._host.settings.finalize_timeout_s,\n",
        "            deadline=now + self._host.settings.finalize_timeout_s / 4,\n",
        (MACHINE,),
    ),
    Bug(
        "trimmed_speech_unreported_on_failure",
        "speech that fell out of the replay window of a connection that fails is "
        "neither replayed nor reported (silent loss)",
        "turns.py",
        "        trimmed = conn.window.take_trimmed_speech()\n        if trimmed:\n",
        "        trimmed = conn.window.take_trimmed_speech()\n"
        "        if trimmed and is_before is None:\n",
        ("tests/test_core_replay_window.py", MACHINE),
    ),
    Bug(
        "stop_speech_unreported",
        "speech sent before stop past the latest interim text is not reported lost "
        "when silence follows it in the window",
        "turns.py",
        "        if reason == LOST_STOPPED and not any(f.speech for f in lost):\n",
        "        if reason == LOST_STOPPED and not all(f.speech for f in lost):\n",
        ("tests/test_engine_stop.py", MACHINE),
    ),
    Bug(
        "fatal_window_uncounted",
        "when the session gives up (FATAL) on a failed connection, its window's audio "
        "past the interim text is not counted lost",
        "supervisor.py",
        "            self._turns.give_up(conn, reason=LOST_GAVE_UP)\n",
        "            self._turns.salvage(conn)\n",
        ("tests/test_core_replay_window.py", "tests/test_engine_ledger.py", MACHINE),
    ),
    Bug(
        "crash_keeps_connections",
        "after an internal error (FATAL) the old connection stays open: its results "
        "still reach the graph and a new start opens a second one",
        "session_core.py",
        "            try:\n"
        "                conns = self._supervisor.abort_all()\n"
        '                self._turns.stop(conns, status="failed")\n'
        "            finally:\n"
        "                self._supervisor.forget_all()\n",
        "",
        ("tests/test_core_crash.py", MACHINE),
    ),
    Bug(
        "cut_tolerance_inverted",
        "a finalize is answered by the vendor's own endpoint final that ends before "
        "the cut, and not by the final that reaches it: the turn ends early, its "
        "last words land in the next turn",
        "turns.py",
        "        if end_s + CUT_TOLERANCE_S < waiting.cut_s:\n",
        "        if end_s + CUT_TOLERANCE_S > waiting.cut_s:\n",
        ("tests/test_core_finalize_mode.py", "tests/test_engine_finalize_mode.py", MACHINE),
    ),
    Bug(
        "stall_ignores_speech",
        "a vendor that goes deaf while the user speaks (pings still answered) is never "
        "found stalled: the user's speech is sent into a session that transcribes nothing",
        "sender.py",
        "        if conn.speech_since is None and frame.speech:\n",
        "        if conn.speech_since is not None and frame.speech:\n",
        ("tests/test_engine_liveness.py", MACHINE),
    ),
)


def _find(name: str) -> Bug:
    for bug in BUGS:
        if bug.name == name:
            return bug
    raise SystemExit(f"no planted bug named {name!r} (python -m bench.planted --list)")


def _copy_checkout(dest: Path) -> None:
    """The tracked files of this checkout, as they are on disk (uncommitted edits
    count: a test being written is checked against the bugs too)."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], check=True, capture_output=True
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)


def plant(bug: Bug, checkout: Path) -> None:
    for edit in bug.edits:
        path = checkout / edit.file
        text = path.read_text()
        count = text.count(edit.old)
        if count != 1:
            found = "snippet not found" if count == 0 else f"snippet found {count} times"
            raise RuntimeError(f"{bug.name}: {found} in {edit.file} (the code moved: update BUGS)")
        path.write_text(text.replace(edit.old, edit.new))


_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


def run_one(bug: Bug, checks: tuple[str, ...], profile: str = "planted") -> dict[str, object]:
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix=f"planted_{bug.name}_"))
    files = sorted({e.file for e in bug.edits})
    row: dict[str, object] = {"bug": bug.name, "breaks": bug.breaks, "files": files}
    try:
        _copy_checkout(scratch)
        try:
            plant(bug, scratch)
        except RuntimeError as exc:
            row.update(outcome="NOT PLANTED", detail=str(exc), seconds=0.0)
            return row
        paths = list(
            dict.fromkeys(
                str(p.relative_to(scratch)) for c in checks for p in sorted(scratch.glob(c))
            )
        )
        row["checks"] = paths
        env = dict(os.environ, PYTHON=PYTHON, HYPOTHESIS_PROFILE=profile)
        cmd = ["tests/bin/start", *paths, "-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
        try:
            proc = subprocess.run(
                cmd, cwd=scratch, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            row.update(outcome="TIMEOUT", detail=f"no verdict in {TIMEOUT_S} s")
        else:
            out = proc.stdout + proc.stderr
            failed = _FAILED.search(out)
            if proc.returncode == 0:
                row.update(outcome="MISSED", detail=out.strip().splitlines()[-1])
            elif failed:
                row.update(outcome="caught", detail=failed.group(1))
            else:  # not a test failure: collection, an import error...
                row.update(outcome="BROKEN RUN", detail="\n".join(out.splitlines()[-15:]))
        row["seconds"] = round(time.monotonic() - started, 1)
        return row
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.planted")
    parser.add_argument("names", nargs="*", help="bugs to plant (default: all)")
    parser.add_argument("--list", action="store_true", help="list the bugs, run nothing")
    parser.add_argument(
        "--all-checks",
        action="store_true",
        help="run the default selection (core, engine, soak) for each bug, not its narrower one",
    )
    parser.add_argument(
        "--checks",
        action="append",
        help="run these test paths (globs; repeatable) for each bug instead of its own",
    )
    parser.add_argument(
        "--profile",
        default="planted",
        help="hypothesis profile (tests/conftest.py); 'default' shrinks as the suite does",
    )
    args = parser.parse_args(argv)
    bugs = [_find(n) for n in args.names] if args.names else list(BUGS)
    if args.list:
        for bug in bugs:
            files = ",".join(sorted({e.file for e in bug.edits}))
            print(f"{bug.name:38} {files:28} {bug.breaks}")
        return 0
    rows = []
    for bug in bugs:
        checks = tuple(args.checks) if args.checks else bug.checks
        row = run_one(bug, DEFAULT_CHECKS if args.all_checks else checks, args.profile)
        rows.append(row)
        print(
            f"{row['bug']:38} {row['outcome']:11} {row['seconds']:7.1f}s  {row['detail']}",
            flush=True,
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"planted-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"python": PYTHON, "profile": args.profile, "bugs": rows}, indent=2))
    caught = sum(r["outcome"] == "caught" for r in rows)
    print(f"\n{caught}/{len(rows)} caught; {out.relative_to(ROOT)}")
    return 0 if caught == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
