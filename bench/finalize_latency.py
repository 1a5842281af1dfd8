"""Finalize latency: asr_finalize -> asr_finalize_end, minus the server's own time.

    python -m bench.finalize_latency [--reps 3] [--turns 25] [--done-delay-ms 50] [--quick]
                                     [--no-upstream]

Both of the extension's ways to end a turn (`finalize_mode`), in the same run:

- audio_done: the finalize sends `{"type":"audio.done"}`; the server waits a
  fixed `done_delay_ms`, sends `transcript.done` and closes; the next turn
  goes to the standby connection (a new connection per turn);
- finalize: the finalize sends `{"type": "finalize"}` on the open
  connection; the server answers at once with the utterance final
  (`transcript.partial`, is_final and speech_final) and the connection stays
  open (one connection for every turn).

The server (bench/_server.py, its own process) records, per connection, when
`audio.done` arrived and `transcript.done` was sent, and when each
`finalize` arrived and its utterance final was sent. The tester streams
marker audio at a fixed multiple of real time (utterances separated by
silence; audio keeps flowing) and sends `asr_finalize` right after each
utterance's last frame. For every finalize:

  total     = tester receives asr_finalize_end - tester sends asr_finalize
  server    = audio_done: server sends transcript.done - receives audio.done
              finalize:   server sends the utterance final - receives finalize
  overhead  = total - server   (runtime hops, the extension, loopback)

with a breakdown from wrappers around the extension's methods (in the
worker process only; the extension is unchanged): tester -> extension
on_data, extension -> server (audio.done or finalize received), server,
server's answer -> engine's finalize end, engine -> tester. Variants, each
in a fresh process, interleaved per repetition:

  floor_audio_done  a bare websockets client, a connection per turn:
                    audio.done sent -> transcript.done received, minus the
                    same server time (loopback + websockets)
  floor_finalize    a bare websockets client, one connection: finalize sent
                    -> its utterance final received, minus the server time
  null              the null extension (bench/null_ext) under the same tester
                    and script: it answers each asr_finalize at once with a
                    final asr_result of the utterance's size and the
                    asr_finalize_end, so its total is the runtime's own round
                    trip (no server, no extension work)
  ext_audio_done    xai_asr_python, `finalize_mode: "audio_done"` (prewarm and
                    standby on, their defaults)
  ext_finalize      xai_asr_python with its defaults (`finalize_mode: "auto"`,
                    which starts with finalize and stays on it while the
                    server answers; a turn that fell back to audio.done makes
                    the worker fail)
  upstream          upstream's xai_asr_python (bench/upstream.py: extracted at
                    run time from a local mirror; skipped with one line where
                    there is none, or no ten_ai_base). It knows one way to end
                    a turn: audio.done, then transcript.done, then it
                    reconnects (audio meanwhile buffered), so it is compared
                    with ext_audio_done; its figures have no breakdown

Each mode's own overhead is its ext variant's minus null's (per repetition,
at p50 and at p99): what is left when the runtime's two hops are taken out,
as frame_cost takes out the runtime's per-frame cost. Connections per turn:
the connections the server saw (opened) over the finalizes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from bench import _paths

RUNTIME = _paths.setup()

from bench import common, upstream  # noqa: E402

MODULE = "bench.finalize_latency"
VARIANTS = ("floor_audio_done", "floor_finalize", "null", "ext_audio_done", "ext_finalize")
UPSTREAM = "upstream"
# How each variant ends a turn (None: no server in the loop).
MODE = {
    "floor_audio_done": "audio_done",
    "floor_finalize": "finalize",
    "null": None,
    "ext_audio_done": "audio_done",
    "ext_finalize": "finalize",
    UPSTREAM: "audio_done",
}
EXT_PROPERTIES: dict[str, dict[str, Any]] = {
    "ext_audio_done": {"finalize_mode": "audio_done"},
    "ext_finalize": {},  # the default: auto, which starts with finalize
}
EXT_VARIANTS = ("ext_audio_done", "ext_finalize")
DEFAULT_VARIANT = "ext_finalize"  # the goal is judged on the default
GOAL_P99_MS = 2.0


def _server_times(observations: list[dict[str, Any]], mode: str) -> list[tuple[float, float]]:
    """The server's own time per answered finalize, in order: (audio.done received,
    transcript.done sent) per finished connection, or (finalize received, its
    utterance final sent) per answered finalize message."""
    if mode == "audio_done":
        pairs = [
            (o["audio_done_at"], o["done_sent_at"])
            for o in observations
            if o["audio_done_at"] is not None and o["done_sent_at"] is not None
        ]
    else:
        pairs = [(a, b) for o in observations for a, b in o["finalizes"] if b is not None]
    return sorted(pairs)


def _server_counts(observations: list[dict[str, Any]], turns: int) -> dict[str, Any]:
    """Connections the server saw, per turn, and what ended turns on them."""
    return {
        "connections": len(observations),
        "connections_per_turn": round(len(observations) / turns, 3) if turns else None,
        "server_audio_dones": sum(1 for o in observations if o["audio_done_at"] is not None),
        "server_finalizes": sum(len(o["finalizes"]) for o in observations),
        "server_finalizes_answered": sum(
            1 for o in observations for _, b in o["finalizes"] if b is not None
        ),
    }


async def _floor_audio_done_client(
    url: str, turns: list[list[bytes]], period_s: float
) -> list[tuple[float, float]]:
    from bench.harness import ws_connect

    times: list[tuple[float, float]] = []
    for frames in turns:
        async with ws_connect(url) as ws:
            await asyncio.wait_for(ws.recv(), 10)  # transcript.created
            done = asyncio.get_running_loop().create_future()

            async def reader(done: asyncio.Future[float] = done) -> None:
                async for message in ws:
                    if isinstance(message, str) and '"transcript.done"' in message:
                        if not done.done():
                            done.set_result(time.monotonic())

            task = asyncio.get_running_loop().create_task(reader())
            pacer = common.Pacer(period_s)
            for k, frame in enumerate(frames):
                delay = pacer.due(k) - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await ws.send(frame)
            sent = time.monotonic()
            await ws.send('{"type":"audio.done"}')
            received = await asyncio.wait_for(done, 10)
            times.append((sent, received))
            await asyncio.wait_for(task, 5)
    return times


def _is_utterance_final(message: str | bytes) -> bool:
    if not isinstance(message, str) or '"speech_final"' not in message:
        return False
    event = json.loads(message)
    return bool(
        event.get("type") == "transcript.partial"
        and event.get("is_final")
        and event.get("speech_final")
    )


async def _floor_finalize_client(
    url: str, frames: list[bytes], finalize_after: set[int], period_s: float
) -> list[tuple[float, float]]:
    """One connection for every turn: finalize after each utterance, audio keeps
    flowing; (finalize sent, the next utterance final received) per finalize."""
    from bench.harness import ws_connect

    sent: list[float] = []
    finals: list[float] = []
    async with ws_connect(url) as ws:
        await asyncio.wait_for(ws.recv(), 10)  # transcript.created
        arrived = asyncio.Event()

        async def reader() -> None:
            async for message in ws:
                if _is_utterance_final(message):
                    finals.append(time.monotonic())
                    arrived.set()

        task = asyncio.get_running_loop().create_task(reader())
        pacer = common.Pacer(period_s)
        for k, frame in enumerate(frames):
            delay = pacer.due(k) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send(frame)
            if k in finalize_after:
                sent.append(time.monotonic())
                await ws.send('{"type": "finalize"}')
        deadline = time.monotonic() + 10
        while len(finals) < len(sent) and time.monotonic() < deadline:
            arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(arrived.wait(), deadline - time.monotonic())
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # Each finalize is answered by the first utterance final after it.
    pairs: list[tuple[float, float]] = []
    j = 0
    for at in sent:
        while j < len(finals) and finals[j] < at:
            j += 1
        if j == len(finals):
            raise RuntimeError(f"{len(sent)} finalizes but {len(finals)} utterance finals")
        pairs.append((at, finals[j]))
        j += 1
    return pairs


def worker(args: argparse.Namespace) -> dict[str, Any]:
    from bench import harness

    pattern, finalize_after = harness.turn_schedule(args.turns, args.speech_frames, args.gap_frames)
    frames = harness.marker_frames(pattern)
    period_s = 0.01 / args.speed
    variant, mode = args.worker, MODE[args.worker]
    stage: dict[str, list[float]] = {}
    ahead: dict[str, int] = {}
    with harness.observing_server(done_delay_ms=args.done_delay_ms) as server:
        if variant == "floor_audio_done":
            per_turn = args.speech_frames + args.gap_frames
            turns = [
                frames[i * per_turn : i * per_turn + args.speech_frames] for i in range(args.turns)
            ]
            client = asyncio.run(_floor_audio_done_client(server.url, turns, period_s))
        elif variant == "floor_finalize":
            client = asyncio.run(
                _floor_finalize_client(server.url, frames, finalize_after, period_s)
            )
        if variant.startswith("floor"):
            assert mode is not None
            observations = harness.dump_observations(server)
            srv = _server_times(observations, mode)
            total = [b - a for a, b in client]
            return _result(args, total, srv, {}, ahead, _server_counts(observations, args.turns))
        is_ext = variant in EXT_VARIANTS
        probe = harness.ExtProbe().install() if is_ext else None
        decoded = upstream.DECODED if variant == UPSTREAM else harness.DECODED
        built = [harness.make_frame(pcm) for pcm in frames]
        sent: dict[str, float] = {}
        ended: dict[str, float] = {}

        async def script(t: harness.BenchTester) -> None:
            if is_ext:
                await t.wait_connected()
            elif variant == UPSTREAM:
                await upstream.wait_connected(t)
            pacer = common.Pacer(period_s)
            for k, frame in enumerate(built):
                delay = pacer.due(k) - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await t.send_frame(frame)
                if k in finalize_after:
                    sent[f"turn-{k}"] = time.monotonic()
                    await t.send_finalize(f"turn-{k}")
            for fid in sent:
                m = await t.wait_for(
                    "asr_finalize_end", lambda p, fid=fid: p.get("finalize_id") == fid
                )
                ended[fid] = m.at

        if variant == UPSTREAM:
            addon, props = upstream.ADDON, upstream.properties(server.url)
        elif probe is None:
            addon, props = _paths.NULL_ADDON, {"result_words": args.speech_frames}
        else:
            addon = harness.EXT_ADDON
            props = harness.ext_properties(server.url, **EXT_PROPERTIES[variant])
        tester = harness.run_tester(addon, props, script, timeout_s=600, decoded=decoded)
        # What the extension sent in the 10 ms before each asr_finalize_end: the
        # messages it queued ahead of it in its outbox.
        for end_at in ended.values():
            names = tuple(
                m.name
                for m in tester.received
                if end_at - 0.010 <= m.at < end_at and m.name != "asr_finalize_end"
            )
            key = " + ".join(names) or "(none)"
            ahead[key] = ahead.get(key, 0) + 1
        observations = harness.dump_observations(server)
        order = sorted(sent, key=sent.__getitem__)
        total = [ended[f] - sent[f] for f in order]
        # The final text's delay: the last asr_result between a finalize and its end (with
        # audio_done the server sends the utterance final before its done_delay, so the
        # text comes well before the end; with finalize they come together).
        results = [m.at for m in tester.received if m.name == "asr_result"]
        to_result = [
            max((at for at in results if sent[f] <= at <= ended[f]), default=ended[f]) - sent[f]
            for f in order
        ]
        if mode is None:  # no server in the loop: the runtime's round trip
            srv = [(0.0, 0.0)] * len(total)
            return _result(args, total, srv, {}, ahead, {}, to_result)
        srv = _server_times(observations, mode)
        if probe is None:  # upstream: no breakdown
            return _result(
                args, total, srv, {}, ahead, _server_counts(observations, args.turns), to_result
            )
        n = min(len(order), len(srv), len(probe.finalize_at), len(probe.finalize_end_at))
        stage = {
            "tester_to_ext": [probe.finalize_at[i] - sent[order[i]] for i in range(n)],
            "ext_to_server": [srv[i][0] - probe.finalize_at[i] for i in range(n)],
            "server": [srv[i][1] - srv[i][0] for i in range(n)],
            "server_to_engine_end": [probe.finalize_end_at[i] - srv[i][1] for i in range(n)],
            "engine_end_to_tester": [ended[order[i]] - probe.finalize_end_at[i] for i in range(n)],
        }
    counts = _server_counts(observations, args.turns)
    return _result(args, total, srv, stage, ahead, counts, to_result)


def _result(
    args: argparse.Namespace,
    total: list[float],
    srv: list[tuple[float, float]],
    stage: dict[str, list[float]],
    ahead: dict[str, int],
    counts: dict[str, Any],
    to_result: list[float] | None = None,
) -> dict[str, Any]:
    if len(srv) != len(total):
        raise RuntimeError(
            f"{args.worker}: {len(total)} finalizes but {len(srv)} server turns "
            f"({MODE[args.worker]} mode; server saw {counts})"
        )
    server_s = [b - a for a, b in srv]
    overhead = [t - s for t, s in zip(total, server_s, strict=True)]
    return {
        "variant": args.worker,
        "mode": MODE[args.worker],
        "finalizes": len(total),
        **counts,
        "total": common.summary_ms(total),
        "server": common.summary_ms(server_s),
        "overhead": common.summary_ms(overhead),
        "overhead_ms": [round(v * 1000, 3) for v in overhead],
        "to_result": common.summary_ms(to_result) if to_result else None,
        "stages": {k: common.summary_ms(v) for k, v in stage.items()},
        "stages_ms": {k: [round(x * 1000, 3) for x in v] for k, v in stage.items()},
        "sent_just_before_finalize_end": (
            ahead if args.worker in (*EXT_VARIANTS, UPSTREAM) else {}
        ),
    }


def _variants(args: argparse.Namespace) -> tuple[tuple[str, ...], Any, str | None]:
    """This run's variants, upstream's package (or None) and why it is skipped."""
    if args.no_upstream:
        return VARIANTS, None, "--no-upstream"
    prepared = upstream.prepare()
    if isinstance(prepared, str):
        return VARIANTS, None, prepared
    return (*VARIANTS, UPSTREAM), prepared, None


def drive(args: argparse.Namespace) -> dict[str, Any]:
    machine = common.machine_info(RUNTIME)
    variants, upstream_pkg, upstream_skipped = _variants(args)
    if upstream_skipped:
        print(f"upstream variant skipped: {upstream_skipped}", flush=True)
    worker_args = [
        "--turns",
        str(args.turns),
        "--speech-frames",
        str(args.speech_frames),
        "--gap-frames",
        str(args.gap_frames),
        "--speed",
        str(args.speed),
        "--done-delay-ms",
        str(args.done_delay_ms),
    ]
    reps: list[dict[str, Any]] = []
    for rep in range(args.reps):
        shift = rep % len(variants)
        order = variants[shift:] + variants[:shift]
        runs = {v: common.run_worker(MODULE, ["--worker", v, *worker_args]) for v in order}
        reps.append({"order": list(order), "runs": runs})
        print(
            f"rep {rep + 1}/{args.reps}: overhead p50/p99 ms: "
            + "; ".join(
                f"{v} {runs[v]['overhead']['p50_ms']:.2f}/{runs[v]['overhead']['p99_ms']:.2f}"
                for v in variants
            ),
            flush=True,
        )

    def med(v: str, section: str, key: str) -> float:
        return common.median(r["runs"][v][section][key] for r in reps)

    summary: dict[str, Any] = {"upstream_skipped": upstream_skipped}
    for v in variants:
        pooled = [x / 1000 for r in reps for x in r["runs"][v]["overhead_ms"]]
        runs_v = [r["runs"][v] for r in reps]
        summary[v] = {
            "mode": MODE[v],
            "total_p50_ms": med(v, "total", "p50_ms"),
            "total_p99_ms": med(v, "total", "p99_ms"),
            "server_p50_ms": med(v, "server", "p50_ms"),
            "overhead_p50_ms": med(v, "overhead", "p50_ms"),
            "overhead_p99_ms": med(v, "overhead", "p99_ms"),
            "overhead_pooled": common.summary_ms(pooled),
            "to_result_p50_ms": (
                med(v, "to_result", "p50_ms") if runs_v[0]["to_result"] is not None else None
            ),
            "to_result_p99_ms": (
                med(v, "to_result", "p99_ms") if runs_v[0]["to_result"] is not None else None
            ),
            "overhead_p99_ms_per_rep": [x["overhead"]["p99_ms"] for x in runs_v],
            "connections_per_turn": (
                common.median(x["connections_per_turn"] for x in runs_v)
                if MODE[v] is not None
                else None
            ),
            "connections": [x.get("connections") for x in runs_v],
            "server_audio_dones": [x.get("server_audio_dones") for x in runs_v],
            "server_finalizes": [x.get("server_finalizes") for x in runs_v],
        }
    for v in variants:
        if v not in (*EXT_VARIANTS, UPSTREAM):
            continue
        stages = reps[0]["runs"][v]["stages"]
        summary[v]["stages_p50_ms"] = {
            k: common.median(r["runs"][v]["stages"][k]["p50_ms"] for r in reps) for k in stages
        }
        summary[v]["stages_p99_ms"] = {
            k: common.median(r["runs"][v]["stages"][k]["p99_ms"] for r in reps) for k in stages
        }
        ahead: dict[str, int] = {}
        for r in reps:
            for k, n in r["runs"][v]["sent_just_before_finalize_end"].items():
                ahead[k] = ahead.get(k, 0) + n
        summary[v]["sent_just_before_finalize_end"] = ahead
        own50 = [
            r["runs"][v]["overhead"]["p50_ms"] - r["runs"]["null"]["overhead"]["p50_ms"]
            for r in reps
        ]
        own99 = [
            r["runs"][v]["overhead"]["p99_ms"] - r["runs"]["null"]["overhead"]["p99_ms"]
            for r in reps
        ]
        summary[v]["own_overhead_p50_ms"] = common.median(own50)
        summary[v]["own_overhead_p99_ms"] = common.median(own99)
        summary[v]["own_overhead_p99_ms_per_rep"] = [round(x, 3) for x in own99]
        if v in EXT_VARIANTS:
            summary[v]["goal_met"] = summary[v]["own_overhead_p99_ms"] < GOAL_P99_MS
    default = summary[DEFAULT_VARIANT]
    summary["default_variant"] = DEFAULT_VARIANT
    summary["goal_p99_ms"] = GOAL_P99_MS
    summary["goal_met"] = default["goal_met"]
    summary["total_goal_met"] = default["overhead_p99_ms"] < GOAL_P99_MS
    return {
        "bench": "finalize_latency",
        "machine": machine,
        "params": {
            "reps": args.reps,
            "turns": args.turns,
            "speech_frames": args.speech_frames,
            "gap_frames": args.gap_frames,
            "speed": args.speed,
            "done_delay_ms": args.done_delay_ms,
            "variants": list(variants),
            "upstream": upstream_pkg.describe() if upstream_pkg else None,
        },
        "summary": summary,
        "reps": reps,
    }


def report(result: dict[str, Any]) -> str:
    s, p = result["summary"], result["params"]
    rows = [
        [
            v,
            s[v]["mode"] or "-",
            s[v]["total_p50_ms"],
            s[v]["total_p99_ms"],
            s[v]["server_p50_ms"],
            s[v]["overhead_p50_ms"],
            s[v]["overhead_p99_ms"],
            s[v]["overhead_pooled"]["p99_ms"],
            s[v]["to_result_p50_ms"],
            s[v]["to_result_p99_ms"],
            s[v]["connections_per_turn"],
        ]
        for v in p["variants"]
    ]
    a, f = s["ext_audio_done"], s["ext_finalize"]
    stages = [
        [
            k,
            a["stages_p50_ms"][k],
            a["stages_p99_ms"][k],
            f["stages_p50_ms"][k],
            f["stages_p99_ms"][k],
        ]
        for k in a["stages_p50_ms"]
    ]
    lines = [
        f"finalize_latency: {p['turns']} turns ({p['speech_frames'] * 10} ms utterance + "
        f"{p['gap_frames'] * 10} ms silence) at {p['speed']:g}x, server done_delay "
        f"{p['done_delay_ms']} ms (audio.done only; finalize is answered at once), "
        f"{p['reps']} reps (medians of per-rep percentiles)",
        common.header_lines(result["machine"]),
        f"upstream: {p['upstream']}"
        if p["upstream"]
        else f"upstream: skipped ({s['upstream_skipped']})",
        "",
        common.table(
            [
                "variant",
                "mode",
                "total p50",
                "total p99",
                "server p50",
                "overhead p50",
                "overhead p99",
                "pooled p99",
                "result p50",
                "result p99",
                "conns/turn",
            ],
            rows,
            digits=2,
        ),
        "(ms; overhead = total - the server's own time (audio.done -> transcript.done, or "
        "finalize -> its utterance final), per finalize; pooled = p99 over all reps' "
        "finalizes; result = asr_finalize -> the last asr_result before its asr_finalize_end "
        "(the final text; server time not taken out); conns/turn = connections the server "
        "saw / finalizes)",
        "",
        "ext breakdown (ms):",
        common.table(
            ["stage", "audio_done p50", "audio_done p99", "finalize p50", "finalize p99"],
            stages,
            digits=2,
        ),
    ]
    for v in (*EXT_VARIANTS, *((UPSTREAM,) if UPSTREAM in s else ())):
        ahead = s[v]["sent_just_before_finalize_end"]
        lines.append(
            f"{v}: messages the tester got in the 10 ms before each asr_finalize_end: "
            + "; ".join(f"{k} (x{n})" for k, n in sorted(ahead.items(), key=lambda kv: -kv[1]))
        )
    for v in EXT_VARIANTS:
        x = s[v]
        lines.append(
            f"{v}: the extension's own overhead (ext - null, per rep): p50 "
            f"{x['own_overhead_p50_ms']:.2f} ms, p99 {x['own_overhead_p99_ms']:.2f} ms "
            f"(reps {', '.join(f'{r:.2f}' for r in x['own_overhead_p99_ms_per_rep'])}); "
            f"goal p99 < {GOAL_P99_MS:g} ms: {'MET' if x['goal_met'] else 'MISSED'} "
            f"(with the runtime's hops, overhead p99 {x['overhead_p99_ms']:.2f} ms)"
            + ("  <- the default" if v == DEFAULT_VARIANT else "")
        )
    if UPSTREAM in s:
        x, a = s[UPSTREAM], s["ext_audio_done"]
        lines.append(
            f"upstream (audio_done, its only mode): own overhead (upstream - null, per rep) "
            f"p50 {x['own_overhead_p50_ms']:.2f} ms, p99 {x['own_overhead_p99_ms']:.2f} ms; "
            f"ours in the same mode (ext_audio_done) {a['own_overhead_p50_ms']:.2f} / "
            f"{a['own_overhead_p99_ms']:.2f} ms; conns/turn {x['connections_per_turn']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.finalize_latency", description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--turns", type=int, default=25)
    parser.add_argument("--speech-frames", type=int, default=30)
    parser.add_argument("--gap-frames", type=int, default=40)
    parser.add_argument("--speed", type=float, default=1.0, help="multiple of real time")
    parser.add_argument("--done-delay-ms", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument(
        "--no-upstream",
        action="store_true",
        help="skip the upstream variant (default: run it where bench/upstream.py can "
        "extract and load it; BENCH_UPSTREAM_REPO, BENCH_UPSTREAM_REV)",
    )
    parser.add_argument("--worker", choices=(*VARIANTS, UPSTREAM), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        common.write_worker_output(args.out, worker(args))
        return 0
    if args.quick:
        args.reps, args.turns, args.speech_frames, args.gap_frames = 1, 3, 10, 20
        args.speed = 2.0
    result = drive(args)
    common.publish("finalize_latency", result, report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
