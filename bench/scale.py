"""Scale: real-time sessions one core carries with p99 frame-forward delay < 20 ms.

    python -m bench.scale [--reps 2] [--start 10] [--duration-s 6] [--quick]

Uses the session engine (`StreamingSession`, session.py) directly, many
sessions on one event loop in one process, rather than many extension
instances in a graph: with no native runtime here, a graph would run on the
pure-Python stand-in, whose per-message cost is not the native runtime's and
is already measured by bench/frame_cost.py (variant `null`). The engine is
what this project owns, and what would carry every session in production.

The worker pins itself to CPU 0 (os.sched_setaffinity); the local server
(`python -m stt_server --recognizer marker`, a fresh process per step) is
pinned to CPU 1 so it does not eat the measured core. Every session streams
real-time 10 ms marker frames (phases spread over the 10 ms period): a 2 s
utterance (a word every 250 ms: bench/harness.py WORD_EVERY), then
`finalize` while 1 s of silence keeps flowing (turn phases are staggered
too), with the extension's defaults (`prewarm` and `standby`: the next turn's
connection opens at a turn's first speech) and no handshake delay. Each frame
and each finalize is handed over by its own task, the way the runtime calls
the extension's on_audio_frame / on_data and the extension calls
`push_audio_and_send` / `finalize`.

  frame-forward delay = the engine's on_audio_sent (the WebSocket send of
  that frame returned) - the frame's real-time due time

so a late scheduler, a busy loop and a blocked send all count. Frames still
unsent at the end of the window count with their age then. Variants per
step, each in a fresh process, interleaved: `engine` and `ws` (N bare
websockets clients on the same schedule, one connection each, no turns: the
floor). The search doubles N from --start while the engine's p99 (median
over --reps) stays under 20 ms, then bisects between the last pass and the
first failure. An engine run during which other processes held the pinned
core more than --max-wait (10%) of the time (Linux schedstat run delay) is
repeated, at most twice; the JSON keeps the discarded runs. Memory: RSS per
streaming session at the capacity found, and
per session with a full outage buffer (60 s, the default `buffer_max_ms`,
pushed while never connected).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import heapq
import os
import sys
import time
from collections import deque
from typing import Any

from bench import _paths

RUNTIME = _paths.setup()

from bench import common  # noqa: E402

MODULE = "bench.scale"
GOAL_P99_MS = 20.0
WORKER_CPU = 0
SERVER_CPU = 1
SPEECH_FRAMES = 200
GAP_FRAMES = 100
WARMUP_S = 1.0
AFTER_FINALIZE_S = 0.3


def _cycle() -> list[bytes]:
    from bench import harness

    return harness.marker_frames([*harness.utterance(SPEECH_FRAMES), (False, GAP_FRAMES)])


class _Listener:
    """Times each sent frame against its due time (frames are sent in push order)."""

    def __init__(self, measure: dict[str, Any]) -> None:
        self.measure = measure
        self.pending: deque[tuple[float, bool]] = deque()  # (due, after a finalize)
        self.connected = 0
        self.errors: list[str] = []
        self.finalize_status: dict[str, int] = {}

    def on_audio_sent(self, chunk: bytes) -> None:
        due, after = self.pending.popleft()
        m = self.measure
        if m["from"] <= due < m["until"]:
            delay = time.monotonic() - due
            m["all"].append(delay)
            if not after:
                m["steady"].append(delay)

    def on_connected(self, generation: int, connect_delay_ms: float) -> None:
        self.connected += 1

    def on_error(self, e: Any) -> None:
        if not self.measure.get("stopping"):
            self.errors.append(f"{e.kind}: {e.message} (vendor code {e.vendor_code})")

    def on_finalize_end(self, outcome: Any) -> None:
        self.finalize_status[outcome.status] = self.finalize_status.get(outcome.status, 0) + 1

    def on_transcript(self, t: Any) -> None:
        pass

    def on_status(self, current: Any, last: Any, code: int, message: str) -> None:
        pass

    def on_audio_dropped(self, dropped_ms: float, total_dropped_ms: float) -> None:
        # At stop the speech no result covered yet is reported lost, by design: not an
        # engine error of the run (every step failed on it once the engine reported it).
        if not self.measure.get("stopping"):
            self.errors.append(f"dropped {dropped_ms:.0f} ms")


def _overrides(settings: list[str]) -> dict[str, Any]:
    """--setting KEY=VALUE (SessionSettings fields; values parsed as JSON, else strings)."""
    import json

    out: dict[str, Any] = {}
    for item in settings:
        key, _, raw = item.partition("=")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


_handlers: set[asyncio.Task[None]] = set()


def _hand_over(coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _handlers.add(task)
    task.add_done_callback(_handlers.discard)


async def _finalize(session: Any, finalize_id: str) -> None:
    session.finalize(finalize_id)


async def _engine(
    n: int,
    url: str,
    duration_s: float,
    overrides: dict[str, Any] | None = None,
    gc_freeze: bool = False,
) -> dict[str, Any]:
    from ten_packages.extension.xai_asr_python.session import SessionSettings, StreamingSession

    cycle = _cycle()
    period = len(cycle)
    gc.collect()
    rss_before = common.rss_bytes()
    measure: dict[str, Any] = {"from": float("inf"), "until": float("inf"), "all": [], "steady": []}
    settings = SessionSettings(
        url=url, api_key="bench-key", **{"prewarm": True, "standby": True, **(overrides or {})}
    )
    listeners = [_Listener(measure) for _ in range(n)]
    sessions = [StreamingSession(settings, lis) for lis in listeners]
    for s in sessions:
        s.start()
    deadline = time.monotonic() + 30
    while any(lis.connected == 0 for lis in listeners):
        if time.monotonic() > deadline:
            raise RuntimeError("sessions did not connect within 30 s")
        await asyncio.sleep(0.01)
    if gc_freeze:
        # What an app can do once it has started: everything alive now (modules, the
        # sessions, their settings) moves out of the collector's way for good.
        gc.collect()
        gc.freeze()
    t0 = time.monotonic() + 0.05
    measure["from"] = t0 + WARMUP_S
    measure["until"] = t0 + WARMUP_S + duration_s
    offsets = [(i * 7919) % period for i in range(n)]  # staggered turns
    heap = [(t0 + 0.01 * i / n, i, 0) for i in range(n)]
    heapq.heapify(heap)
    last_finalize = [-1.0] * n
    cpu0 = wall0 = wait0 = 0.0
    started = False
    end = measure["until"]
    gc_pauses = common.GcPauses().__enter__()
    while heap and heap[0][0] < end:
        due, i, k = heap[0]
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
            continue
        if not started and due >= measure["from"]:
            started, cpu0, wall0 = True, time.process_time(), time.monotonic()
            wait0 = common.run_delay_s() or 0.0
            gc_pauses.active = True
        heapq.heapreplace(heap, (due + 0.01, i, k + 1))
        position = (k + offsets[i]) % period
        listeners[i].pending.append((due, due - last_finalize[i] < AFTER_FINALIZE_S))
        # A fresh buffer, as live; a task per message, in arrival order, as the runtime.
        _hand_over(sessions[i].push_audio_and_send(bytes(bytearray(cycle[position]))))
        if position == SPEECH_FRAMES - 1:
            _hand_over(_finalize(sessions[i], f"s{i}-{k}"))
            last_finalize[i] = due
    now = time.monotonic()
    cpu, wall = time.process_time() - cpu0, now - wall0
    waited = (common.run_delay_s() or 0.0) - wait0
    gc_pauses.active = False
    gc_pauses.__exit__()
    # Frames of the window still waiting count with their age now (censored).
    unsent = 0
    for lis in listeners:
        for due, after in lis.pending:
            if measure["from"] <= due < measure["until"]:
                unsent += 1
                measure["all"].append(now - due)
                if not after:
                    measure["steady"].append(now - due)
    gc.collect()
    rss_after = common.rss_bytes()
    measure["until"] = float("-inf")  # stop recording
    measure["stopping"] = True  # stop() aborts sockets: not a failure of the run
    await asyncio.gather(*(s.stop() for s in sessions))
    statuses: dict[str, int] = {}
    for lis in listeners:
        for k2, v in lis.finalize_status.items():
            statuses[k2] = statuses.get(k2, 0) + v
    errors = [e for lis in listeners for e in lis.errors]
    return {
        "delay_all": common.summary_ms(measure["all"]),
        "delay_steady": common.summary_ms(measure["steady"]),
        "unsent_at_end": unsent,
        "cpu_util": cpu / wall if wall > 0 else None,
        "runqueue_wait_share": waited / wall if wall > 0 else None,
        "gc": gc_pauses.summary(),
        "finalize_status": statuses,
        "errors": len(errors),
        "first_errors": errors[:5],
        "rss_per_session_mb": (rss_after - rss_before) / n / 2**20,
    }


async def _ws(n: int, url: str, duration_s: float, handover: bool = False) -> dict[str, Any]:
    """N bare websockets clients. `handover`: each frame is sent by its own task, as the
    engine variant hands each frame over (the runtime's way), so the floor pays the same
    task machinery; without it the driver loop sends inline."""
    from bench.harness import ws_connect

    cycle = _cycle()
    period = len(cycle)
    conns = []
    readers = []

    async def drain(ws: Any) -> None:
        async for _ in ws:
            pass

    for _ in range(n):
        ws = await ws_connect(url)
        await asyncio.wait_for(ws.recv(), 10)
        conns.append(ws)
        readers.append(asyncio.get_running_loop().create_task(drain(ws)))
    delays: list[float] = []
    t0 = time.monotonic() + 0.05
    start, end = t0 + WARMUP_S, t0 + WARMUP_S + duration_s
    offsets = [(i * 7919) % period for i in range(n)]
    heap = [(t0 + 0.01 * i / n, i, 0) for i in range(n)]
    heapq.heapify(heap)
    cpu0 = wall0 = wait0 = 0.0
    started = False
    while heap and heap[0][0] < end:
        due, i, k = heap[0]
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
            continue
        if not started and due >= start:
            started, cpu0, wall0 = True, time.process_time(), time.monotonic()
            wait0 = common.run_delay_s() or 0.0
        heapq.heapreplace(heap, (due + 0.01, i, k + 1))
        frame = bytes(bytearray(cycle[(k + offsets[i]) % period]))
        if handover:
            _hand_over(_send_one(conns[i], frame, due, delays if due >= start else None))
            continue
        await conns[i].send(frame)
        if due >= start:
            delays.append(time.monotonic() - due)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    waited = (common.run_delay_s() or 0.0) - wait0
    for r in readers:
        r.cancel()
    await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    return {
        "delay_all": common.summary_ms(delays),
        "delay_steady": common.summary_ms(delays),
        "unsent_at_end": 0,
        "cpu_util": cpu / wall if wall > 0 else None,
        "runqueue_wait_share": waited / wall if wall > 0 else None,
        "errors": 0,
    }


async def _send_one(ws: Any, frame: bytes, due: float, delays: list[float] | None) -> None:
    await ws.send(frame)
    if delays is not None:
        delays.append(time.monotonic() - due)


async def _outage(n: int, buffer_ms: int) -> dict[str, Any]:
    """Sessions that never connect: each buffer fills to buffer_max_ms (and drops beyond)."""
    from ten_packages.extension.xai_asr_python.session import SessionSettings, StreamingSession

    cycle = _cycle()
    gc.collect()
    rss_before = common.rss_bytes()
    settings = SessionSettings(
        url="ws://127.0.0.1:9/v1/stt", api_key="bench-key", buffer_max_ms=buffer_ms
    )
    listeners = [_Listener({"from": 0.0, "until": 0.0, "all": [], "steady": []}) for _ in range(n)]
    sessions = [StreamingSession(settings, lis) for lis in listeners]
    frames = buffer_ms // 10 + 100  # a full buffer, plus a second of drops
    for s in sessions:
        for k in range(frames):
            s.push_audio(bytes(bytearray(cycle[k % len(cycle)])))
    gc.collect()
    rss_after = common.rss_bytes()
    raw = buffer_ms / 1000 * 32000
    per_session = (rss_after - rss_before) / n
    await asyncio.gather(*(s.stop() for s in sessions))
    return {
        "sessions": n,
        "buffer_max_ms": buffer_ms,
        "rss_per_session_mb": per_session / 2**20,
        "raw_audio_mb": raw / 2**20,
        "overhead_factor": per_session / raw,
        "queued_ms": float(sessions[0].queued_ms) if sessions else 0.0,
    }


def worker(args: argparse.Namespace) -> dict[str, Any]:
    pinned = common.pin_to_cpu(WORKER_CPU) if args.pin else False
    if args.worker == "engine":
        out = asyncio.run(
            _engine(
                args.sessions,
                args.url,
                args.duration_s,
                _overrides(args.setting),
                gc_freeze=args.gc_freeze,
            )
        )
    elif args.worker == "ws":
        out = asyncio.run(_ws(args.sessions, args.url, args.duration_s, args.ws_handover))
    else:
        out = asyncio.run(_outage(args.sessions, args.buffer_ms))
    out.update(variant=args.worker, sessions=args.sessions, pinned=pinned)
    return out


# ---------------------------------------------------------------- driver


def drive(args: argparse.Namespace) -> dict[str, Any]:
    machine = common.machine_info(RUNTIME)
    pin = len(os.sched_getaffinity(0)) >= 2 if hasattr(os, "sched_getaffinity") else False
    server_cpu = SERVER_CPU if pin else None
    steps: dict[int, dict[str, Any]] = {}

    def run_one(v: str, n: int) -> dict[str, Any]:
        server_argv = ["stt_server", "--recognizer", "marker", "--log-level", "WARNING"]
        with common.ServerProcess(server_argv, cpu=server_cpu) as server:
            cpu_before = server.cpu_seconds() or 0.0
            started = time.monotonic()
            wargs = ["--worker", v, "--sessions", str(n), "--url", server.url]
            wargs += ["--duration-s", str(args.duration_s)]
            for item in args.setting:
                wargs += ["--setting", item]
            if args.gc_freeze and v == "engine":
                wargs.append("--gc-freeze")
            if args.ws_handover and v == "ws":
                wargs.append("--ws-handover")
            if pin:
                wargs.append("--pin")
            run = common.run_worker(MODULE, wargs)
            elapsed = time.monotonic() - started
            run["server_cpu_util"] = ((server.cpu_seconds() or 0.0) - cpu_before) / elapsed
        return run

    discarded: list[dict[str, Any]] = []

    def measure(n: int) -> bool:
        reps = []
        for rep in range(args.reps):
            order = ("ws", "engine") if rep % 2 == 0 else ("engine", "ws")
            runs: dict[str, Any] = {}
            for v in order:
                runs[v] = run_one(v, n)
                # A run during which other processes held the pinned core for long
                # measures the machine: repeat it (at most twice), keep the record.
                retries = 0
                while (
                    v == "engine"
                    and (runs[v]["runqueue_wait_share"] or 0.0) > args.max_wait
                    and retries < 2
                ):
                    discarded.append(runs[v])
                    print(
                        f"  N={n}: engine run discarded: the core was taken by other "
                        f"processes {runs[v]['runqueue_wait_share']:.0%} of the time",
                        flush=True,
                    )
                    runs[v] = run_one(v, n)
                    retries += 1
            reps.append(runs)
        eng = [r["engine"] for r in reps]
        step = {
            "sessions": n,
            "engine_p99_ms": common.median(r["delay_all"]["p99_ms"] for r in eng),
            "engine_p50_ms": common.median(r["delay_all"]["p50_ms"] for r in eng),
            "engine_steady_p99_ms": common.median(r["delay_steady"]["p99_ms"] for r in eng),
            "engine_cpu_util": common.median(r["cpu_util"] for r in eng),
            "engine_errors": sum(r["errors"] for r in eng),
            "engine_unsent": sum(r["unsent_at_end"] for r in eng),
            "engine_rss_per_session_mb": common.median(r["rss_per_session_mb"] for r in eng),
            "ws_p99_ms": common.median(r["ws"]["delay_all"]["p99_ms"] for r in reps),
            "ws_cpu_util": common.median(r["ws"]["cpu_util"] for r in reps),
            "cpu_ratio_engine_over_ws": common.median(
                r["engine"]["cpu_util"] / r["ws"]["cpu_util"] for r in reps
            ),
            "server_cpu_util": common.median(r["engine"]["server_cpu_util"] for r in reps),
            "engine_runqueue_wait_share": common.median(
                r["engine"]["runqueue_wait_share"] or 0.0 for r in reps
            ),
            "engine_gc_max_ms": max(r["engine"]["gc"]["max_ms"] for r in reps),
            "reps": reps,
        }
        step["pass"] = step["engine_p99_ms"] < GOAL_P99_MS and step["engine_errors"] == 0
        steps[n] = step
        print(
            f"N={n}: engine p99 {step['engine_p99_ms']:.1f} ms (steady "
            f"{step['engine_steady_p99_ms']:.1f}), cpu {step['engine_cpu_util']:.0%}, "
            f"waited {step['engine_runqueue_wait_share']:.0%}, "
            f"gc max {step['engine_gc_max_ms']:.0f} ms; "
            f"ws p99 {step['ws_p99_ms']:.1f} ms, cpu {step['ws_cpu_util']:.0%}; "
            f"server cpu {step['server_cpu_util']:.0%} -> {'pass' if step['pass'] else 'FAIL'}",
            flush=True,
        )
        return bool(step["pass"])

    best, fail = 0, None
    n = args.start
    while n <= args.max_sessions:
        if measure(n):
            best = n
            n *= 2
        else:
            fail = n
            break
    bisections = 0
    while (
        fail is not None and best and fail - best > max(2, best // 10) and bisections < args.bisect
    ):
        mid = (best + fail) // 2
        if measure(mid):
            best = mid
        else:
            fail = mid
        bisections += 1
    fits = {v: _cpu_fit(steps, v) for v in ("engine", "ws")}
    largest = max(steps) if steps else None
    outage = common.run_worker(
        MODULE,
        ["--worker", "outage", "--sessions", str(args.outage_sessions), "--buffer-ms", "60000"],
    )
    stream_mem = steps[largest]["engine_rss_per_session_mb"] if largest else None
    return {
        "bench": "scale",
        "machine": machine,
        "params": {
            "reps": args.reps,
            "start": args.start,
            "duration_s": args.duration_s,
            "warmup_s": WARMUP_S,
            "turn": f"{SPEECH_FRAMES * 10} ms utterance (4 words/s), finalize, "
            f"{GAP_FRAMES * 10} ms silence",
            "pinned": pin,
            "worker_cpu": WORKER_CPU if pin else None,
            "server_cpu": server_cpu,
            "mode": "StreamingSession x N in one process (no TEN runtime)",
            "max_runqueue_wait": args.max_wait,
            "engine_settings": _overrides(args.setting),
            "gc_freeze": args.gc_freeze,
            "ws_handover": args.ws_handover,
        },
        "summary": {
            "max_sessions_p99_under_20ms": best,
            "first_failing": fail,
            "rss_per_streaming_session_mb": stream_mem,
            "rss_measured_at_sessions": largest,
            "cpu_fit": fits,
            "cpu_per_session_ratio_engine_over_ws": (
                fits["engine"]["per_session_pct"] / fits["ws"]["per_session_pct"]
                if fits["engine"] and fits["ws"] and fits["ws"]["per_session_pct"]
                else None
            ),
            "outage": outage,
        },
        "steps": [steps[k] for k in sorted(steps)],
        "discarded_runs": discarded,
    }


def _cpu_fit(steps: dict[int, dict[str, Any]], variant: str) -> dict[str, float] | None:
    """Least-squares line through (N, CPU share of the core) of every run below 90%.

    CPU time is what the work costs whoever else uses the machine, so this
    estimate holds up where the latency search does not: `per_session_pct` is
    the core share one more session takes, `sessions_at_full_core` where the
    line reaches 100% (a throughput bound: the latency bound comes first).
    """
    points = [
        (float(n), float(r[variant]["cpu_util"]))
        for n, st in steps.items()
        for r in st["reps"]
        if r[variant].get("cpu_util") is not None and r[variant]["cpu_util"] < 0.9
    ]
    if len({n for n, _ in points}) < 2:
        return None
    mean_n = sum(n for n, _ in points) / len(points)
    mean_c = sum(c for _, c in points) / len(points)
    var = sum((n - mean_n) ** 2 for n, _ in points)
    slope = sum((n - mean_n) * (c - mean_c) for n, c in points) / var
    intercept = mean_c - slope * mean_n
    return {
        "per_session_pct": slope * 100,
        "intercept_pct": intercept * 100,
        "sessions_at_full_core": (1 - intercept) / slope if slope > 0 else float("inf"),
        "points": len(points),
    }


def report(result: dict[str, Any]) -> str:
    s, p = result["summary"], result["params"]
    rows = [
        [
            st["sessions"],
            st["engine_p50_ms"],
            st["engine_p99_ms"],
            st["engine_steady_p99_ms"],
            st["engine_cpu_util"] * 100,
            st["ws_p99_ms"],
            st["ws_cpu_util"] * 100,
            st["cpu_ratio_engine_over_ws"],
            st["server_cpu_util"] * 100,
            st["engine_runqueue_wait_share"] * 100,
            st["engine_gc_max_ms"],
            "pass" if st["pass"] else "FAIL",
        ]
        for st in result["steps"]
    ]
    o = s["outage"]
    mem = s["rss_per_streaming_session_mb"]
    return "\n".join(
        [
            f"scale: StreamingSession x N on one event loop, one core "
            f"({'pinned to CPU 0, server on CPU 1' if p['pinned'] else 'not pinned'}); real-time "
            f"10 ms frames, turns of {p['turn']}; {p['duration_s']:g} s windows, "
            f"{p['reps']} reps per step (medians)",
            common.header_lines(result["machine"]),
            "",
            common.table(
                [
                    "N",
                    "p50 ms",
                    "p99 ms",
                    "steady p99",
                    "cpu %",
                    "ws p99",
                    "ws cpu %",
                    "cpu eng/ws",
                    "server cpu %",
                    "waited %",
                    "gc max ms",
                    "p99<20",
                ],
                rows,
                digits=1,
            ),
            "(delay = frame's real-time due time -> its WebSocket send returned; steady = "
            "not within 300 ms after that session's finalize; ws = bare websockets floor"
            + (", a task a frame as the engine; " if p.get("ws_handover") else ", sent inline; ")
            + "waited = share of the window the engine process was runnable but another process "
            "had the core (schedstat): high values mean the machine, not the code; gc max = "
            "longest garbage-collector pause in the window)",
            f"max sessions with p99 < {GOAL_P99_MS:g} ms: {s['max_sessions_p99_under_20ms']} "
            f"(first failing: {s['first_failing']})",
            _fit_line(s),
            (
                f"memory: {mem:.2f} MB RSS per streaming session "
                f"(at N={s['rss_measured_at_sessions']}, the largest N run)"
                if mem is not None
                else "memory: -"
            ),
            f"full outage buffer ({o['buffer_max_ms'] / 1000:g} s): "
            f"{o['rss_per_session_mb']:.2f} MB per session ({o['overhead_factor']:.2f}x the "
            f"{o['raw_audio_mb']:.2f} MB of raw audio; {o['sessions']} sessions)",
        ]
    )


def _fit_line(s: dict[str, Any]) -> str:
    eng, ws = s["cpu_fit"]["engine"], s["cpu_fit"]["ws"]
    if not eng or not ws:
        return "CPU fit: not enough steps"
    return (
        f"CPU per session (line through all runs): engine {eng['per_session_pct']:.2f}% of the "
        f"core (+{eng['intercept_pct']:.0f}% fixed), ws floor {ws['per_session_pct']:.2f}%; "
        f"ratio {s['cpu_per_session_ratio_engine_over_ws']:.2f}; the engine's line reaches "
        f"100% at N={eng['sessions_at_full_core']:.0f}"
    )


def plot(result: dict[str, Any], path: Any) -> str | None:
    """A PNG of what each step cost: p99 frame delay, and CPU per session, against N
    (engine and the bare websockets floor). None when written; else why not (matplotlib
    is a bench-only dependency: requirements-bench.txt)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no matplotlib (pip install -r requirements-bench.txt)"
    steps = result["steps"]
    if not steps:
        return "no steps"
    n = [st["sessions"] for st in steps]
    fig, (delay_ax, cpu_ax) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
    delay_ax.plot(n, [st["engine_p99_ms"] for st in steps], "o-", label="engine p99")
    delay_ax.plot(n, [st["engine_steady_p99_ms"] for st in steps], "s--", label="engine steady p99")
    delay_ax.plot(n, [st["ws_p99_ms"] for st in steps], "^:", label="bare websockets p99")
    delay_ax.axhline(GOAL_P99_MS, color="red", linewidth=0.8, label=f"goal {GOAL_P99_MS:g} ms")
    delay_ax.set_ylabel("frame delay, ms")
    delay_ax.set_yscale("log")
    delay_ax.legend(fontsize=8)
    delay_ax.grid(True, which="both", alpha=0.3)
    for variant, style, label in (("engine", "o-", "engine"), ("ws", "^:", "bare websockets")):
        cpu_ax.plot(
            n,
            [st[f"{variant}_cpu_util"] * 100 / st["sessions"] for st in steps],
            style,
            label=label,
        )
    cpu_ax.set_ylabel("CPU per session, % of a core")
    cpu_ax.set_xlabel("real-time sessions on one core")
    cpu_ax.set_ylim(bottom=0)
    cpu_ax.legend(fontsize=8)
    cpu_ax.grid(True, alpha=0.3)
    freeze = ", gc.freeze()" if result["params"].get("gc_freeze") else ""
    fig.suptitle(
        f"bench.scale: StreamingSession x N on one core{freeze}; max N at p99 < "
        f"{GOAL_P99_MS:g} ms: {result['summary']['max_sessions_p99_under_20ms']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--start", type=int, default=10, help="first N (doubled while passing)")
    parser.add_argument("--max-sessions", type=int, default=2000)
    parser.add_argument("--bisect", type=int, default=3, help="bisection steps after the ramp")
    parser.add_argument("--duration-s", type=float, default=6.0, help="measured window per run")
    parser.add_argument("--outage-sessions", type=int, default=20)
    parser.add_argument(
        "--max-wait",
        type=float,
        default=0.10,
        help="repeat an engine run (at most twice) whose run-queue wait share exceeds this",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a SessionSettings field for the engine (e.g. replay_max_ms=0)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument(
        "--plot", metavar="JSON", help="instead: draw the PNG of an earlier run's JSON"
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="the engine worker calls gc.freeze() once its sessions are connected "
        "(start-up objects out of the garbage collector's way)",
    )
    parser.add_argument(
        "--ws-handover",
        action="store_true",
        help="the bare websockets floor sends each frame by its own task, as the engine "
        "variant is handed each frame (the fair floor; default: sent inline)",
    )
    parser.add_argument("--worker", choices=("engine", "ws", "outage"), help=argparse.SUPPRESS)
    parser.add_argument("--sessions", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--buffer-ms", type=int, default=60000, help=argparse.SUPPRESS)
    parser.add_argument("--pin", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        common.write_worker_output(args.out, worker(args))
        return 0
    if args.plot:
        import json
        from pathlib import Path

        source = Path(args.plot)
        png = source.with_suffix(".png")
        why_not = plot(json.loads(source.read_text()), png)
        print(f"plot: {png}" if why_not is None else f"no plot: {why_not}")
        return 0 if why_not is None else 1
    if args.quick:
        args.reps, args.start, args.max_sessions, args.bisect = 1, 4, 4, 0
        args.duration_s, args.outage_sessions = 1.0, 2
    result = drive(args)
    png = common.publish("scale", result, report(result)).with_suffix(".png")
    why_not = plot(result, png)
    print(f"plot: {png.relative_to(common.ROOT)}" if why_not is None else f"no plot: {why_not}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
