"""Per-frame cost: client CPU seconds per second of audio, against a floor.

    python -m bench.frame_cost [--reps 8] [--audio-s 60] [--speed 20] [--speech] [--quick]
                               [--no-pin] [--no-upstream]

Streams 10 ms marker frames at a fixed multiple of real time (one send per
frame) to the local server (`python -m stt_server --recognizer marker`, its
own process, so only the client's CPU is measured), in up to four variants:

  ws        a bare `websockets` client sending the same frames (the floor)
  null      a null extension (bench/null_ext) under TEN's extension tester: it
            receives the frames and drops them (what the runtime itself costs)
  forward   the null extension sending each frame over one bare websockets
            connection to the same server: the floor of any extension that
            streams frames to a WebSocket service (one send a frame)
  ext       xai_asr_python under the same tester, streaming to the server
  upstream  upstream's xai_asr_python (TEN-framework/ten-framework), extracted
            at run time from a local mirror (bench/upstream.py), under the same
            tester, streaming to the same server; skipped, with one line
            saying why, where there is no mirror or no ten_ai_base

Each variant runs in a fresh worker process per repetition, and the
variants are interleaved (their order rotates every repetition) so that
noise from other work on the machine hits all of them alike. CPU is
`time.process_time()` of the worker (all its threads) around the streaming
phase only: from the first frame to the end of the turn (transcript.done
for `ws`, asr_finalize_end for the others), so every frame has been
handled. Frames are built before the clock starts. Ratios are formed within
one repetition; the table shows their medians, ranges and the medians'
confidence intervals. Where two CPUs or more may be used, the worker (all its
threads) is pinned to the first and the server to the second (`--no-pin`
leaves both to the scheduler: on a loaded machine that made the figures
useless, see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from typing import Any

from bench import _paths

RUNTIME = _paths.setup()

from bench import common, upstream  # noqa: E402

MODULE = "bench.frame_cost"
VARIANTS = ("ws", "null", "forward", "ext")
UPSTREAM = "upstream"
WORKER_VARIANTS = (*VARIANTS, UPSTREAM)
GOAL_OWN_SHARE = 1.0
# Issue 24: our own share at most 0.6 of upstream's, medians over >= 6 repetitions.
GOAL_VS_UPSTREAM = 0.6


def pattern(audio_s: float, speech: bool) -> list[tuple[bool, int]]:
    from bench.harness import utterance

    frames = max(1, round(audio_s * 100))
    if not speech:
        return [(False, frames)]
    # 1 s utterances (a word every 250 ms) and 1 s of silence, repeated.
    out: list[tuple[bool, int]] = []
    left = frames
    while left > 0:
        n = min(100, left)
        out += utterance(n)
        left -= n
        if left > 0:
            out.append((False, min(100, left)))
            left -= min(100, left)
    return out


# ---------------------------------------------------------------- workers


async def _ws_client(url: str, frames: list[bytes], period_s: float) -> dict[str, Any]:
    from bench.harness import ws_connect

    async with ws_connect(url) as ws:
        created = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert created.get("type") == "transcript.created", created
        done = asyncio.get_running_loop().create_future()

        async def reader() -> None:
            async for message in ws:
                if isinstance(message, str) and '"transcript.done"' in message:
                    if not done.done():
                        done.set_result(None)

        read_task = asyncio.get_running_loop().create_task(reader())
        threads0 = common.thread_cpu_s()
        cpu0, wall0 = time.process_time(), time.monotonic()
        pacer = common.Pacer(period_s)
        for k, frame in enumerate(frames):
            delay = pacer.due(k) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send(frame)
        sent_wall = time.monotonic() - wall0
        await ws.send('{"type":"audio.done"}')
        await asyncio.wait_for(done, 30)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        threads = common.thread_cpu_delta(threads0, common.thread_cpu_s())
        read_task.cancel()
    return {"cpu_s": cpu, "wall_s": wall, "send_wall_s": sent_wall, "thread_cpu_s": threads}


def worker_ws(url: str, frames: list[bytes], period_s: float) -> dict[str, Any]:
    return asyncio.run(_ws_client(url, frames, period_s))


def _group(filename: str, funcname: str) -> str:
    """A coarse "where the time goes" bucket for one profiled function."""
    if filename == "~":
        if "_socket.socket" in funcname:
            return "socket send/recv (C)"
        if "select.epoll" in funcname:
            return "epoll (C)"
        if "urandom" in funcname:
            return "websockets mask key (urandom)"
        return "other builtins (C)"
    for marker, label in (
        ("xai_asr_python/", "ext:"),
        ("xai_asr_python_upstream/", "upstream:"),
        ("/ten_ai_base/", "ten_ai_base:"),
        ("bench/null_ext/", "null_ext:"),
        ("bench_null_asr/", "null_ext:"),
    ):
        if marker in filename:
            return label + filename.rsplit("/", 1)[-1]
    for part, label in (
        ("/ten_runtime/", "ten_runtime (its Python layer)"),
        ("/websockets/", "websockets"),
        ("/asyncio/", "asyncio"),
        ("fractions.py", "fractions"),
        ("/json/", "json"),
    ):
        if part in filename:
            return label
    return "other python"


def _install_profiler(variant: str) -> tuple[dict[int, Any], Any]:
    """cProfile in the extension's own loop thread, from its first frame on."""
    import cProfile
    import threading

    if variant == "ext":
        from ten_packages.extension.xai_asr_python.extension import XAIASRExtension as cls
    elif variant == UPSTREAM:
        # Upstream's on_audio_frame (ten_ai_base's) queues the frame for a consumer
        # task on the same loop thread, which this thread's profiler also covers.
        import importlib

        cls = importlib.import_module(f"ten_packages.extension.{upstream.ADDON}.extension")
        cls = cls.XAIASRExtension
    else:
        from ten_packages.extension.bench_null_asr.extension import NullASRExtension as cls
    profilers: dict[int, Any] = {}
    original = cls.on_audio_frame

    async def on_audio_frame(self: Any, ten_env: Any, audio_frame: Any) -> None:
        ident = threading.get_ident()
        if ident not in profilers:
            profilers[ident] = cProfile.Profile(time.thread_time)  # CPU, not wall
            profilers[ident].enable()
        await original(self, ten_env, audio_frame)

    cls.on_audio_frame = on_audio_frame
    return profilers, original


def _profile_summary(profilers: dict[int, Any], audio_s: float) -> dict[str, Any]:
    import pstats

    groups: dict[str, float] = {}
    top: list[tuple[float, int, str]] = []
    for profiler in profilers.values():
        profiler.disable()
        stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
        for (filename, _line, funcname), (_cc, ncalls, tottime, _ct, _callers) in stats.items():
            label = _group(filename, funcname)
            groups[label] = groups.get(label, 0.0) + tottime
            where = funcname if filename == "~" else f"{filename.rsplit('/', 1)[-1]}:{funcname}"
            top.append((tottime, ncalls, where))
    top.sort(reverse=True)
    return {
        "thread_cpu_ms_per_audio_s_by_group": {
            k: round(v / audio_s * 1000, 3)
            for k, v in sorted(groups.items(), key=lambda kv: -kv[1])
        },
        "top_functions": [
            {"function": w, "calls": n, "ms_per_audio_s": round(t / audio_s * 1000, 3)}
            for t, n, w in top[:20]
        ],
    }


def worker_tester(
    variant: str, url: str, frames: list[bytes], period_s: float, profile: bool = False
) -> dict[str, Any]:
    from bench import harness

    built = [harness.make_frame(pcm) for pcm in frames]
    out: dict[str, Any] = {}
    profilers = _install_profiler(variant)[0] if profile else None
    probe = None
    if variant == UPSTREAM:
        probe = upstream.UpstreamProbe().install()

    async def script(t: harness.BenchTester) -> None:
        if variant == "ext":
            await t.wait_connected()
        elif variant == UPSTREAM:
            await upstream.wait_connected(t)
        threads0 = common.thread_cpu_s()
        cpu0, wall0 = time.process_time(), time.monotonic()
        pacer = common.Pacer(period_s)
        for k, frame in enumerate(built):
            delay = pacer.due(k) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await t.send_frame(frame)
        out["send_wall_s"] = time.monotonic() - wall0
        mark = len(t.received)
        await t.send_finalize("bench-end")
        await t.wait_for("asr_finalize_end", timeout=30, start=mark)
        out["cpu_s"] = time.process_time() - cpu0
        out["wall_s"] = time.monotonic() - wall0
        out["thread_cpu_s"] = common.thread_cpu_delta(threads0, common.thread_cpu_s())
        out["results"] = t.count("asr_result")
        if probe is not None:
            # Upstream's finalize can overtake frames still queued for its consumer
            # task (they follow audio.done): reported, with the frames it sent.
            out["frames_sent"] = probe.sent
            out["frames_sent_at_finalize"] = probe.sent_at_finalize[-1]

    decoded = harness.DECODED
    if variant == "ext":
        addon, props = harness.EXT_ADDON, harness.ext_properties(url)
    elif variant == UPSTREAM:
        addon, props, decoded = upstream.ADDON, upstream.properties(url), upstream.DECODED
    elif variant == "forward":
        addon, props = _paths.NULL_ADDON, {"forward_url": f"{url}?{harness.ws_query()}"}
    else:
        addon, props = _paths.NULL_ADDON, {}
    harness.run_tester(addon, props, script, timeout_s=120, decoded=decoded)
    if profilers is not None:
        out["profile"] = _profile_summary(profilers, len(frames) / 100)
    return out


def run_worker(args: argparse.Namespace) -> None:
    from bench import harness

    frames = harness.marker_frames(pattern(args.audio_s, args.speech))
    period_s = 0.01 / args.speed
    if args.worker == "ws":
        result = worker_ws(args.url, frames, period_s)
    else:
        result = worker_tester(args.worker, args.url, frames, period_s, args.profile)
    result.update(variant=args.worker, frames=len(frames), audio_s=len(frames) / 100)
    common.write_worker_output(args.out, result)


# ---------------------------------------------------------------- driver


def _thread_medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median CPU ms per audio second of each thread (the threads alive at the end)."""
    names = sorted({name for run in runs for name in run.get("thread_cpu_s", {})})
    out = {}
    for name in names:
        values = [run["thread_cpu_s"].get(name, 0.0) / run["audio_s"] * 1000 for run in runs]
        out[name] = round(common.median(values), 2)
    return {k: v for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v >= 0.05}


def _upstream(args: argparse.Namespace) -> tuple[Any, str | None]:
    """Upstream's package if this run compares against it, else why not."""
    if args.no_upstream:
        return None, "--no-upstream"
    prepared = upstream.prepare()
    if isinstance(prepared, str):
        return None, prepared
    return prepared, None


def _pinning(args: argparse.Namespace) -> tuple[int | None, int | None]:
    """(worker CPU, server CPU): distinct cores, so that the server's work per frame
    never runs on the core the measured process waits for, and the worker's threads
    stay on one core's cache (see bench/README.md for what it changed)."""
    if args.no_pin or not hasattr(os, "sched_getaffinity"):
        return None, None
    chosen = os.environ.get("BENCH_PIN")  # "WORKER,SERVER", e.g. "1,0": CPU 0 is busy
    if chosen:
        worker, server = (int(cpu) for cpu in chosen.split(","))
        return worker, server
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return None, None
    return usable[0], usable[1]


def spread(values: list[float]) -> dict[str, float]:
    """Median, range, half the range relative to the median (+-%), and a >= 90%
    confidence interval of the median (order statistics), also as +-% of it: what
    a difference must exceed to be judged from this run."""
    mid = common.median(values)
    low, high = min(values), max(values)
    ci_low, ci_high, coverage = common.median_ci(values, 0.9)
    return {
        "median": mid,
        "min": low,
        "max": high,
        "half_range_pct": (high - low) / 2 / abs(mid) * 100 if mid else math.nan,
        "median_ci": [ci_low, ci_high],
        "median_ci_coverage": coverage,
        "median_ci_half_pct": (ci_high - ci_low) / 2 / abs(mid) * 100 if mid else math.nan,
    }


def drive(args: argparse.Namespace) -> dict[str, Any]:
    machine = common.machine_info(RUNTIME)
    upstream_pkg, upstream_skipped = _upstream(args)
    if upstream_skipped:
        print(f"upstream variant skipped: {upstream_skipped}", flush=True)
    variants = (*VARIANTS, UPSTREAM) if upstream_pkg else VARIANTS
    worker_cpu, server_cpu = _pinning(args)
    worker_args = ["--audio-s", str(args.audio_s), "--speed", str(args.speed)]
    if args.speech:
        worker_args.append("--speech")
    reps: list[dict[str, Any]] = []
    loads: list[float] = []
    server_argv = ["stt_server", "--recognizer", "marker", "--port", "0", "--log-level", "WARNING"]
    with common.ServerProcess(server_argv, cpu=server_cpu) as server:
        for rep in range(args.reps):
            shift = rep % len(variants)
            order = variants[shift:] + variants[:shift]
            loads.append(os.getloadavg()[0])
            runs: dict[str, Any] = {}
            for variant in order:
                runs[variant] = common.run_worker(
                    MODULE,
                    ["--worker", variant, "--url", server.url, *worker_args],
                    cpu=worker_cpu,
                )
            per_audio = {v: runs[v]["cpu_s"] / runs[v]["audio_s"] for v in variants}
            floor = per_audio["ws"]
            rep_result: dict[str, Any] = {
                "order": list(order),
                "load_1min_at_start": loads[-1],
                "runs": runs,
                "cpu_per_audio_s": per_audio,
                "ext_over_ws": per_audio["ext"] / floor,
                "null_over_ws": per_audio["null"] / floor,
                "own_share": (per_audio["ext"] - per_audio["null"]) / floor,
                # What one send a frame costs an extension, and what it adds above that.
                "forward_share": (per_audio["forward"] - per_audio["null"]) / floor,
                "over_forward": (per_audio["ext"] - per_audio["forward"]) / floor,
                "achieved_speed": {
                    v: runs[v]["audio_s"] / runs[v]["send_wall_s"] for v in variants
                },
            }
            line = (
                f"rep {rep + 1}/{args.reps}: ext/ws {rep_result['ext_over_ws']:.2f}  "
                f"null/ws {rep_result['null_over_ws']:.2f}  "
                f"own share {rep_result['own_share']:.2f}"
            )
            if upstream_pkg:
                upstream_share = (per_audio[UPSTREAM] - per_audio["null"]) / floor
                rep_result["upstream_own_share"] = upstream_share
                rep_result["ours_over_upstream"] = rep_result["own_share"] / upstream_share
                upstream_over = (per_audio[UPSTREAM] - per_audio["forward"]) / floor
                rep_result["upstream_over_forward"] = upstream_over
                rep_result["ours_over_upstream_above_forward"] = (
                    rep_result["over_forward"] / upstream_over
                )
                line += (
                    f"  upstream own share {upstream_share:.2f}"
                    f"  ours/upstream {rep_result['ours_over_upstream']:.2f}"
                )
            reps.append(rep_result)
            print(line, flush=True)

    def med(key: str) -> float:
        return common.median(r[key] for r in reps)

    summary: dict[str, Any] = {
        "cpu_ms_per_audio_s": {
            v: common.median(r["cpu_per_audio_s"][v] for r in reps) * 1000 for v in variants
        },
        "cpu_ms_per_audio_s_range": {
            v: [
                min(r["cpu_per_audio_s"][v] for r in reps) * 1000,
                max(r["cpu_per_audio_s"][v] for r in reps) * 1000,
            ]
            for v in variants
        },
        "achieved_speed": {
            v: common.median(r["achieved_speed"][v] for r in reps) for v in variants
        },
        "ext_over_ws": med("ext_over_ws"),
        "null_over_ws": med("null_over_ws"),
        "own_share": med("own_share"),
        "forward_share": med("forward_share"),
        "over_forward": med("over_forward"),
        "thread_cpu_ms_per_audio_s": {
            v: _thread_medians([r["runs"][v] for r in reps]) for v in variants
        },
        "own_share_range": [min(r["own_share"] for r in reps), max(r["own_share"] for r in reps)],
        "spread": {
            key: spread([r[key] for r in reps])
            for key in ("ext_over_ws", "null_over_ws", "own_share", "forward_share", "over_forward")
        },
        "goal_own_share_max": GOAL_OWN_SHARE,
        "load_1min": [min(loads), max(loads)],
        "upstream_skipped": upstream_skipped,
    }
    summary["goal_met"] = summary["own_share"] <= GOAL_OWN_SHARE
    if upstream_pkg:
        for key in (
            "upstream_own_share",
            "ours_over_upstream",
            "upstream_over_forward",
            "ours_over_upstream_above_forward",
        ):
            summary[key] = med(key)
            summary["spread"][key] = spread([r[key] for r in reps])
        summary["goal_vs_upstream_max"] = GOAL_VS_UPSTREAM
        summary["goal_vs_upstream_met"] = summary["ours_over_upstream"] <= GOAL_VS_UPSTREAM
        runs_up = [r["runs"][UPSTREAM] for r in reps]
        summary["upstream_frames"] = {
            "frames": runs_up[0]["frames"],
            "sent_min": min(run["frames_sent"] for run in runs_up),
            "sent_at_finalize_min": min(run["frames_sent_at_finalize"] for run in runs_up),
        }
    return {
        "bench": "frame_cost",
        "machine": machine,
        "params": {
            "reps": args.reps,
            "audio_s": args.audio_s,
            "speed": args.speed,
            "speech": args.speech,
            "frame_ms": 10,
            "variants": list(variants),
            "server": " ".join(["python -m", *server_argv]),
            "worker_cpu": worker_cpu,
            "server_cpu": server_cpu,
            "upstream": (
                {
                    "repo": upstream_pkg.repo,
                    "commit": upstream_pkg.commit,
                    "version": upstream_pkg.version,
                    "addon": upstream.ADDON,
                    "label": upstream_pkg.describe(),
                }
                if upstream_pkg
                else None
            ),
        },
        "summary": summary,
        "reps": reps,
    }


def pieces(n: int = 20000) -> dict[str, float | None]:
    """Unprofiled cost of the pieces of the extension's per-frame path, in us per
    10 ms frame (timeit in this process; engine internals, so a piece that no
    longer exists shows as None)."""
    import json as json_module
    import timeit

    from bench import harness

    silence = harness.marker_frames([(False, 1)])[0]
    loud = harness.marker_frames([(True, 1)])[0]
    out: dict[str, float | None] = {}

    def measure(name: str, setup: Any) -> None:
        try:
            fn = setup()
            fn()
            out[name] = round(timeit.timeit(fn, number=n) / n * 1e6, 2)
        except Exception:
            out[name] = None

    def level() -> Any:
        from ten_packages.extension.xai_asr_python import audio_buffer

        return lambda: audio_buffer.level_dbfs(loud, "pcm")

    def speech_silent() -> Any:
        from ten_packages.extension.xai_asr_python import audio_buffer

        return lambda: audio_buffer.is_speech(silence, "pcm")

    def buffer_push_pop() -> Any:
        from ten_packages.extension.xai_asr_python.audio_buffer import AudioBuffer
        from ten_packages.extension.xai_asr_python.timeline import AudioFormat

        buf = AudioBuffer(AudioFormat(16000, "pcm", 1), 60_000)

        def go() -> None:
            buf.push(silence)
            buf.pop()

        return go

    def timeline_record() -> Any:
        from ten_packages.extension.xai_asr_python.timeline import TICKS_PER_MS, ConnectionTimeline

        timeline = ConnectionTimeline(16000, 0)
        step = 10 * TICKS_PER_MS
        state = {"at": 0}

        def go() -> None:
            timeline.record_sent(state["at"], step)
            state["at"] += step

        return go

    def metadata_read() -> Any:
        frame = harness.make_frame(silence)

        def go() -> None:
            text, _ = frame.get_property_to_json("metadata")
            json_module.loads(text)

        return go

    def buffer_copy() -> Any:
        frame = harness.make_frame(silence)
        return lambda: bytes(frame.get_buf())

    measure("level_dbfs (a loud frame: the full speech level)", level)
    measure("is_speech (a silent frame: peak test)", speech_silent)
    measure("AudioBuffer.push + pop", buffer_push_pop)
    measure("ConnectionTimeline.record_sent", timeline_record)
    measure("metadata: get_property_to_json + json.loads", metadata_read)
    measure("bytes(get_buf())", buffer_copy)
    return out


def drive_profile(args: argparse.Namespace) -> dict[str, Any]:
    machine = common.machine_info(RUNTIME)
    worker_args = ["--audio-s", str(args.audio_s), "--speed", str(args.speed), "--profile"]
    if args.speech:
        worker_args.append("--speech")
    server_argv = ["stt_server", "--recognizer", "marker", "--port", "0", "--log-level", "WARNING"]
    upstream_pkg, upstream_skipped = _upstream(args)
    if upstream_skipped:
        print(f"upstream variant skipped: {upstream_skipped}", flush=True)
    runs: dict[str, Any] = {}
    with common.ServerProcess(server_argv) as server:
        for variant in ("null", "ext", *((UPSTREAM,) if upstream_pkg else ())):
            runs[variant] = common.run_worker(
                MODULE, ["--worker", variant, "--url", server.url, *worker_args]
            )
    return {
        "bench": "frame_cost-profile",
        "machine": machine,
        "params": {
            "audio_s": args.audio_s,
            "speed": args.speed,
            "speech": args.speech,
            "upstream": upstream_pkg.describe() if upstream_pkg else None,
        },
        "runs": runs,
        "pieces_us_per_frame": pieces(),
    }


def report_profile(result: dict[str, Any]) -> str:
    runs = result["runs"]
    columns = [v for v in ("ext", UPSTREAM, "null") if v in runs]
    groups = {v: runs[v]["profile"]["thread_cpu_ms_per_audio_s_by_group"] for v in columns}
    keys = set().union(*groups.values())
    rows = [
        [k, *(groups[v].get(k, 0.0) for v in columns)]
        for k in sorted(keys, key=lambda k: -max(groups[v].get(k, 0.0) for v in columns))
    ]
    rows.append(["total (profiled thread)", *(sum(groups[v].values()) for v in columns)])
    top = [
        [f["function"][:70], f["calls"], f["ms_per_audio_s"]]
        for f in runs["ext"]["profile"]["top_functions"]
    ]
    return "\n".join(
        [
            "frame_cost --profile: CPU of the extension's loop thread under cProfile "
            f"(ms per audio second, {result['params']['audio_s']:g} s at "
            f"{result['params']['speed']:g}x; inflated by the profiler)",
            common.header_lines(result["machine"]),
            f"upstream: {result['params']['upstream'] or 'skipped'}",
            "",
            common.table(["where (tottime)", *columns], rows, digits=1),
            "",
            "top functions of the ext run (tottime):",
            common.table(["function", "calls", "ms/audio s"], top, digits=1),
            "",
            "pieces of the per-frame path, unprofiled (timeit, us per 10 ms frame; "
            "1 us/frame = 0.1 ms/audio s):",
            common.table(
                ["piece", "us/frame"],
                [[k, v] for k, v in result["pieces_us_per_frame"].items()],
                digits=1,
            ),
        ]
    )


def report(result: dict[str, Any]) -> str:
    s = result["summary"]
    p = result["params"]
    variants = p["variants"]
    rows = [
        [v, s["cpu_ms_per_audio_s"][v], *s["cpu_ms_per_audio_s_range"][v], s["achieved_speed"][v]]
        for v in variants
    ]
    ratio_rows = [
        ["ext / ws", "ext_over_ws"],
        ["null / ws (runtime)", "null_over_ws"],
        ["(ext - null) / ws (own share)", "own_share"],
        ["(forward - null) / ws (one send a frame)", "forward_share"],
        ["(ext - forward) / ws (own share above it)", "over_forward"],
    ]
    if UPSTREAM in variants:
        ratio_rows += [
            ["(upstream - null) / ws (upstream's own share)", "upstream_own_share"],
            ["ours / upstream own share", "ours_over_upstream"],
            ["(upstream - forward) / ws", "upstream_over_forward"],
            ["ours / upstream, above one send a frame", "ours_over_upstream_above_forward"],
        ]
    coverage = s["spread"]["own_share"]["median_ci_coverage"]
    pinned = (
        f"worker pinned to CPU {p['worker_cpu']}, server to CPU {p['server_cpu']}"
        if p["worker_cpu"] is not None
        else "not pinned"
    )
    lines = [
        f"frame_cost: {p['audio_s']:g} s of {'utterance/silence' if p['speech'] else 'silence'} "
        f"marker audio in 10 ms frames at {p['speed']:g}x, {p['reps']} reps (medians; "
        f"{pinned})",
        common.header_lines(result["machine"]),
        f"load average (1 min) at the repetitions' starts: {s['load_1min'][0]:.2f} .. "
        f"{s['load_1min'][1]:.2f}",
        (
            f"upstream: {p['upstream']['label']}, loaded as {p['upstream']['addon']}"
            if p["upstream"]
            else f"upstream: skipped ({s['upstream_skipped']})"
        ),
        "",
        common.table(["variant", "CPU ms / audio s", "min", "max", "achieved x"], rows, digits=1),
        "",
        common.table(
            [
                "ratio (per repetition)",
                "median",
                "min",
                "max",
                "+-% range",
                f"median CI ({coverage:.0%})",
                "+-% CI",
            ],
            [
                [
                    label,
                    *(s["spread"][key][k] for k in ("median", "min", "max", "half_range_pct")),
                    "{:.2f} .. {:.2f}".format(*s["spread"][key]["median_ci"]),
                    s["spread"][key]["median_ci_half_pct"],
                ]
                for label, key in ratio_rows
            ],
        ),
        "CPU ms / audio s by thread (median; threads alive at the end of the window): "
        + "; ".join(
            f"{v}: "
            + ", ".join(f"{k} {x:.1f}" for k, x in s["thread_cpu_ms_per_audio_s"][v].items())
            for v in variants
        ),
        f"own share range over reps: {s['own_share_range'][0]:.2f} .. "
        f"{s['own_share_range'][1]:.2f}; goal <= {GOAL_OWN_SHARE:g}: "
        f"{'MET' if s['goal_met'] else 'MISSED'}",
    ]
    if UPSTREAM in variants:
        lines.append(
            f"ours / upstream own share: median {s['ours_over_upstream']:.2f} over "
            f"{p['reps']} reps; goal <= {GOAL_VS_UPSTREAM:g} (issue 24, >= 6 reps): "
            + (
                ("MET" if s["goal_vs_upstream_met"] else "MISSED")
                if p["reps"] >= 6
                else f"not judged ({p['reps']} reps)"
            )
        )
        f = s["upstream_frames"]
        lines.append(
            f"upstream frames sent (fewest in a rep): {f['sent_min']} of {f['frames']} by its "
            f"asr_finalize_end, {f['sent_at_finalize_min']} when its finalize began (the rest "
            "were still queued for its consumer task and followed audio.done)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.frame_cost", description=__doc__)
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--audio-s", type=float, default=60.0)
    parser.add_argument("--speed", type=float, default=20.0, help="multiple of real time")
    parser.add_argument(
        "--speech", action="store_true", help="1 s utterances (4 words/s) / 1 s silence"
    )
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="leave the worker and the server to the scheduler (default: distinct CPUs)",
    )
    parser.add_argument(
        "--no-upstream",
        action="store_true",
        help="skip the upstream variant (default: run it where bench/upstream.py can "
        "extract and load it; BENCH_UPSTREAM_REPO, BENCH_UPSTREAM_REV)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead: cProfile the extension's loop thread (null, ext and upstream when "
        "available) and show where the time goes (profiling inflates every figure; "
        "compare rows, not totals)",
    )
    parser.add_argument("--worker", choices=WORKER_VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        run_worker(args)
        return 0
    if args.quick:
        args.reps, args.audio_s = 1, 2.0
    if args.profile:
        result = drive_profile(args)
        common.publish("frame_cost-profile", result, report_profile(result))
        return 0
    result = drive(args)
    common.publish("frame_cost", result, report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
