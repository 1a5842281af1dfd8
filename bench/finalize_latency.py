"""Finalize latency: asr_finalize -> asr_finalize_end, minus the server's own time.

    python -m bench.finalize_latency [--reps 3] [--turns 25] [--done-delay-ms 50] [--quick]

The server (bench/_server.py, its own process) waits a fixed `done_delay_ms`
between `audio.done` and `transcript.done`, and records both moments per
connection. The tester streams marker audio at a fixed multiple of real time
(utterances separated by silence; audio keeps flowing) and sends
`asr_finalize` right after each utterance's last frame. For every finalize:

  total     = tester receives asr_finalize_end - tester sends asr_finalize
  server    = server sends transcript.done - server receives audio.done
  overhead  = total - server   (runtime hops, the extension, loopback)

with a breakdown from wrappers around the extension's methods (in the
worker process only; the extension is unchanged): tester -> extension
on_data, extension -> server audio.done, server, server transcript.done ->
engine's finalize end, engine -> tester. Variants, each in a fresh process,
interleaved per repetition:

  floor  a bare websockets client: audio.done sent -> transcript.done
         received, minus the same server time (loopback + websockets)
  null   the null extension (bench/null_ext) under the same tester and script:
         it answers each asr_finalize at once with a final asr_result of the
         utterance's size and the asr_finalize_end, so its total is the
         runtime's own round trip (no server, no extension work)
  ext    xai_asr_python under TEN's extension tester (defaults: prewarm,
         standby)

The extension's own overhead is ext's minus null's (per repetition, at p50
and at p99): what is left when the runtime's two hops are taken out, as
frame_cost takes out the runtime's per-frame cost.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from bench import _paths

RUNTIME = _paths.setup()

from bench import common  # noqa: E402

MODULE = "bench.finalize_latency"
VARIANTS = ("floor", "null", "ext")
GOAL_P99_MS = 2.0


def _server_times(observations: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(audio.done received, transcript.done sent) per finished connection, in order."""
    done = [
        (o["audio_done_at"], o["done_sent_at"])
        for o in observations
        if o["audio_done_at"] is not None and o["done_sent_at"] is not None
    ]
    return sorted(done)


async def _floor_client(
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


def worker(args: argparse.Namespace) -> dict[str, Any]:
    from bench import harness

    pattern, finalize_after = harness.turn_schedule(args.turns, args.speech_frames, args.gap_frames)
    frames = harness.marker_frames(pattern)
    period_s = 0.01 / args.speed
    stage: dict[str, list[float]] = {}
    ahead: dict[str, int] = {}
    with harness.observing_server(done_delay_ms=args.done_delay_ms) as server:
        if args.worker == "floor":
            per_turn = args.speech_frames + args.gap_frames
            turns = [
                frames[i * per_turn : i * per_turn + args.speech_frames] for i in range(args.turns)
            ]
            client = asyncio.run(_floor_client(server.url, turns, period_s))
            observations = harness.dump_observations(server)
            srv = _server_times(observations)
            total = [b - a for a, b in client]
        else:
            probe = harness.ExtProbe().install() if args.worker == "ext" else None
            built = [harness.make_frame(pcm) for pcm in frames]
            sent: dict[str, float] = {}
            ended: dict[str, float] = {}

            async def script(t: harness.BenchTester) -> None:
                if args.worker == "ext":
                    await t.wait_connected()
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

            if probe is None:
                addon, props = _paths.NULL_ADDON, {"result_words": args.speech_frames}
            else:
                addon, props = harness.EXT_ADDON, harness.ext_properties(server.url)
            tester = harness.run_tester(addon, props, script, timeout_s=600)
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
            if probe is None:  # no server in the loop: the runtime's round trip alone
                srv = [(0.0, 0.0)] * len(total)
                return _result(args, total, srv, {}, ahead)
            srv = _server_times(observations)
            n = min(len(order), len(srv), len(probe.finalize_at), len(probe.finalize_end_at))
            stage = {
                "tester_to_ext": [probe.finalize_at[i] - sent[order[i]] for i in range(n)],
                "ext_to_server": [srv[i][0] - probe.finalize_at[i] for i in range(n)],
                "server": [srv[i][1] - srv[i][0] for i in range(n)],
                "server_to_engine_end": [probe.finalize_end_at[i] - srv[i][1] for i in range(n)],
                "engine_end_to_tester": [
                    ended[order[i]] - probe.finalize_end_at[i] for i in range(n)
                ],
            }
    return _result(args, total, srv, stage, ahead)


def _result(
    args: argparse.Namespace,
    total: list[float],
    srv: list[tuple[float, float]],
    stage: dict[str, list[float]],
    ahead: dict[str, int],
) -> dict[str, Any]:
    if len(srv) != len(total):
        raise RuntimeError(f"{len(total)} finalizes but {len(srv)} server turns")
    server_s = [b - a for a, b in srv]
    overhead = [t - s for t, s in zip(total, server_s, strict=True)]
    return {
        "variant": args.worker,
        "finalizes": len(total),
        "total": common.summary_ms(total),
        "server": common.summary_ms(server_s),
        "overhead": common.summary_ms(overhead),
        "overhead_ms": [round(v * 1000, 3) for v in overhead],
        "stages": {k: common.summary_ms(v) for k, v in stage.items()},
        "sent_just_before_finalize_end": ahead if args.worker == "ext" else {},
    }


def drive(args: argparse.Namespace) -> dict[str, Any]:
    machine = common.machine_info(RUNTIME)
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
        shift = rep % len(VARIANTS)
        order = VARIANTS[shift:] + VARIANTS[:shift]
        runs = {v: common.run_worker(MODULE, ["--worker", v, *worker_args]) for v in order}
        reps.append({"order": list(order), "runs": runs})
        print(
            f"rep {rep + 1}/{args.reps}: ext overhead p50 "
            f"{runs['ext']['overhead']['p50_ms']:.2f} ms p99 "
            f"{runs['ext']['overhead']['p99_ms']:.2f} ms; null (runtime) p99 "
            f"{runs['null']['overhead']['p99_ms']:.2f} ms; floor p99 "
            f"{runs['floor']['overhead']['p99_ms']:.2f} ms",
            flush=True,
        )

    def med(v: str, section: str, key: str) -> float:
        return common.median(r["runs"][v][section][key] for r in reps)

    summary: dict[str, Any] = {}
    for v in VARIANTS:
        pooled = [x / 1000 for r in reps for x in r["runs"][v]["overhead_ms"]]
        summary[v] = {
            "total_p50_ms": med(v, "total", "p50_ms"),
            "total_p99_ms": med(v, "total", "p99_ms"),
            "server_p50_ms": med(v, "server", "p50_ms"),
            "overhead_p50_ms": med(v, "overhead", "p50_ms"),
            "overhead_p99_ms": med(v, "overhead", "p99_ms"),
            "overhead_pooled": common.summary_ms(pooled),
        }
    summary["ext_stages_p50_ms"] = {
        k: common.median(r["runs"]["ext"]["stages"][k]["p50_ms"] for r in reps)
        for k in reps[0]["runs"]["ext"]["stages"]
    }
    summary["ext_stages_p99_ms"] = {
        k: common.median(r["runs"]["ext"]["stages"][k]["p99_ms"] for r in reps)
        for k in reps[0]["runs"]["ext"]["stages"]
    }
    ahead: dict[str, int] = {}
    for r in reps:
        for k, v in r["runs"]["ext"]["sent_just_before_finalize_end"].items():
            ahead[k] = ahead.get(k, 0) + v
    summary["ext_sent_just_before_finalize_end"] = ahead
    summary["own_overhead_p50_ms"] = common.median(
        r["runs"]["ext"]["overhead"]["p50_ms"] - r["runs"]["null"]["overhead"]["p50_ms"]
        for r in reps
    )
    summary["own_overhead_p99_ms"] = common.median(
        r["runs"]["ext"]["overhead"]["p99_ms"] - r["runs"]["null"]["overhead"]["p99_ms"]
        for r in reps
    )
    summary["goal_p99_ms"] = GOAL_P99_MS
    summary["goal_met"] = summary["own_overhead_p99_ms"] < GOAL_P99_MS
    summary["total_goal_met"] = summary["ext"]["overhead_p99_ms"] < GOAL_P99_MS
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
            "variants": list(VARIANTS),
        },
        "summary": summary,
        "reps": reps,
    }


def report(result: dict[str, Any]) -> str:
    s, p = result["summary"], result["params"]
    rows = [
        [
            v,
            s[v]["total_p50_ms"],
            s[v]["total_p99_ms"],
            s[v]["server_p50_ms"],
            s[v]["overhead_p50_ms"],
            s[v]["overhead_p99_ms"],
            s[v]["overhead_pooled"]["p99_ms"],
        ]
        for v in VARIANTS
    ]
    stages = [
        [k, s["ext_stages_p50_ms"][k], s["ext_stages_p99_ms"][k]] for k in s["ext_stages_p50_ms"]
    ]
    return "\n".join(
        [
            f"finalize_latency: {p['turns']} turns ({p['speech_frames'] * 10} ms utterance + "
            f"{p['gap_frames'] * 10} ms silence) at {p['speed']:g}x, server done_delay "
            f"{p['done_delay_ms']} ms, {p['reps']} reps (medians of per-rep percentiles)",
            common.header_lines(result["machine"]),
            "",
            common.table(
                [
                    "variant",
                    "total p50",
                    "total p99",
                    "server p50",
                    "overhead p50",
                    "overhead p99",
                    "pooled p99",
                ],
                rows,
                digits=2,
            ),
            "(ms; overhead = total - server's audio.done->transcript.done, per finalize; "
            "pooled = p99 over all reps' finalizes)",
            "",
            "ext breakdown (ms):",
            common.table(["stage", "p50", "p99"], stages, digits=2),
            "messages the tester got in the 10 ms before each asr_finalize_end: "
            + "; ".join(
                f"{k} (x{v})"
                for k, v in sorted(
                    s["ext_sent_just_before_finalize_end"].items(), key=lambda kv: -kv[1]
                )
            ),
            f"the extension's own overhead (ext - null, per rep): p50 "
            f"{s['own_overhead_p50_ms']:.2f} ms, p99 {s['own_overhead_p99_ms']:.2f} ms; "
            f"goal p99 < {GOAL_P99_MS:g} ms: {'MET' if s['goal_met'] else 'MISSED'} "
            f"(with the runtime's hops, ext overhead p99 {s['ext']['overhead_p99_ms']:.2f} ms: "
            f"{'under' if s['total_goal_met'] else 'over'} {GOAL_P99_MS:g} ms)",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.finalize_latency", description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--turns", type=int, default=25)
    parser.add_argument("--speech-frames", type=int, default=30)
    parser.add_argument("--gap-frames", type=int, default=40)
    parser.add_argument("--speed", type=float, default=1.0, help="multiple of real time")
    parser.add_argument("--done-delay-ms", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
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
