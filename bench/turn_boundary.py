"""Turn-boundary delay: how long each frame waits in the extension, around finalizes.

    python -m bench.turn_boundary [--reps 3] [--turns 8] [--speed 1] [--quick]

The server (bench/_server.py: the local marker server plus per-frame arrival
times, in its own process) delays every handshake by 150 ms, standing for a
real network and TLS. The tester streams marker audio (frame k carries index
k) at a fixed multiple of real time: utterances, each followed by
`asr_finalize` right after its last speech frame while silence keeps
flowing. For every frame:

  delay = server receipt - the extension's on_audio_frame entry

(the extension is observed by wrapping its methods in the worker process;
it is not changed). The runtime's own hop (tester send -> on_audio_frame) is
reported separately. Frames whose arrival at the extension falls within
300 ms after an asr_finalize arrived are "after finalize"; the rest are
"steady". Both of the extension's ways to end a turn (`finalize_mode`) run
in the same run: `finalize` sends `{"type": "finalize"}` and the audio after
it goes on on the same connection; `audio_done` sends `audio.done`, the
server closes that connection and the audio after it goes to the next one
(the standby, opened earlier, or a new one). Variants, each in a fresh
process, interleaved per repetition:

  floor        a bare websockets client on one connection, same pacing,
               sending `finalize` after each utterance (the finalize mode's
               floor): send -> server receipt (loopback + server)
  finalize     the extension with its defaults (`finalize_mode: "auto"`,
               which starts with finalize and stays on it while the server
               answers): one connection for every turn
  standby      `finalize_mode: "audio_done"` with `prewarm` and `standby` on
               (their defaults: the next connection opens at a turn's first
               speech)
  prewarm      audio_done with `standby: false` (the next connection opens
               at the finalize)
  prewarm_off  audio_done with `prewarm: false` (it opens at the next audio)

Also counted: frames that reached a connection after its audio.done (must
be 0), frames sent but never received, and the connections the server saw
per turn.
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

MODULE = "bench.turn_boundary"
VARIANTS = ("floor", "finalize", "standby", "prewarm", "prewarm_off")
EXT_PROPERTIES: dict[str, dict[str, Any]] = {
    "finalize": {},  # the default: auto, which starts with finalize
    "standby": {"finalize_mode": "audio_done"},
    "prewarm": {"finalize_mode": "audio_done", "standby": False},
    "prewarm_off": {"finalize_mode": "audio_done", "prewarm": False},
}
MODE = {
    "floor": "finalize",
    "finalize": "finalize",
    "standby": "audio_done",
    "prewarm": "audio_done",
    "prewarm_off": "audio_done",
}
# The goal is judged on the default (finalize) and on audio_done's default (standby).
GOAL_VARIANTS = ("finalize", "standby")
WINDOW_S = 0.3
GOAL_P99_MS = 5.0


# ---------------------------------------------------------------- workers


def _arrivals(observations: list[dict[str, Any]]) -> tuple[dict[int, float], int, list[int]]:
    """First arrival per marker index, duplicates, late (after audio.done) indices."""
    first: dict[int, float] = {}
    duplicates = 0
    late: list[int] = []
    for conn in observations:
        for index, at in conn["frames"]:
            if index in first:
                duplicates += 1
                first[index] = min(first[index], at)
            else:
                first[index] = at
        late.extend(conn["late_frames"])
    return first, duplicates, late


async def _floor_client(
    url: str, frames: list[bytes], finalize_after: set[int], period_s: float
) -> tuple[list[float], list[float]]:
    """(send time per frame, send time per finalize) on one connection."""
    from bench.harness import ws_connect

    sent_at: list[float] = []
    finalize_at: list[float] = []
    async with ws_connect(url) as ws:
        await asyncio.wait_for(ws.recv(), 10)  # transcript.created

        async def drain() -> None:
            async for _ in ws:
                pass

        reader = asyncio.get_running_loop().create_task(drain())
        pacer = common.Pacer(period_s)
        for k, frame in enumerate(frames):
            delay = pacer.due(k) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at.append(time.monotonic())
            await ws.send(frame)
            if k in finalize_after:
                finalize_at.append(time.monotonic())
                await ws.send('{"type": "finalize"}')
        await asyncio.sleep(0.2)  # let the last frames arrive
        reader.cancel()
    return sent_at, finalize_at


def worker(args: argparse.Namespace) -> dict[str, Any]:
    from bench import harness

    pattern, finalize_after = harness.turn_schedule(args.turns, args.speech_frames, args.gap_frames)
    frames = harness.marker_frames(pattern)
    period_s = 0.01 / args.speed
    with harness.observing_server(handshake_delay_ms=args.handshake_delay_ms) as server:
        if args.worker == "floor":
            sent_at, finalize_at = asyncio.run(
                _floor_client(server.url, frames, finalize_after, period_s)
            )
            ext_at, hop = sent_at, []
        else:
            probe = harness.ExtProbe().install()
            built = [harness.make_frame(pcm) for pcm in frames]
            tester_sent: list[float] = []

            async def script(t: harness.BenchTester) -> None:
                await t.wait_connected()
                pacer = common.Pacer(period_s)
                for k, frame in enumerate(built):
                    delay = pacer.due(k) - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tester_sent.append(time.monotonic())
                    await t.send_frame(frame)
                    if k in finalize_after:
                        await t.send_finalize(f"turn-{k}")
                await t.send_finalize("end")
                await t.wait_for(
                    "asr_finalize_end",
                    lambda p: p.get("finalize_id") == "end",
                    timeout=10,
                )

            props = harness.ext_properties(server.url, **EXT_PROPERTIES[args.worker])
            harness.run_tester(harness.EXT_ADDON, props, script, timeout_s=600)
            ext_at, finalize_at = probe.frame_at, probe.finalize_at
            hop = [e - s for e, s in zip(ext_at, tester_sent, strict=True)]
        observations = harness.dump_observations(server)

    arrivals, duplicates, late = _arrivals(observations)
    after: list[float] = []
    steady: list[float] = []
    per_turn_max: list[float] = []
    fin = sorted(finalize_at)
    window_max: dict[int, float] = {}
    missing = 0
    j = 0
    for k, at in enumerate(ext_at):
        if k not in arrivals:
            missing += 1
            continue
        delay = arrivals[k] - at
        while j + 1 < len(fin) and fin[j + 1] <= at:
            j += 1
        if fin and fin[j] <= at < fin[j] + WINDOW_S:
            after.append(delay)
            window_max[j] = max(window_max.get(j, 0.0), delay)
        else:
            steady.append(delay)
    per_turn_max = [window_max[j] for j in sorted(window_max)]
    return {
        "variant": args.worker,
        "mode": MODE[args.worker],
        "frames": len(frames),
        "finalizes": len(fin),
        "connections": len(observations),
        "connections_per_turn": round(len(observations) / args.turns, 3),
        "server_finalizes": sum(len(o["finalizes"]) for o in observations),
        "server_audio_dones": sum(1 for o in observations if o["audio_done_at"] is not None),
        "delay_after_finalize": common.summary_ms(after),
        "delay_steady": common.summary_ms(steady),
        "per_turn_max_after_finalize_ms": [round(v * 1000, 2) for v in per_turn_max],
        "runtime_hop": common.summary_ms(hop),
        "late_frames": len(late),
        "missing_frames": missing,
        "duplicate_frames": duplicates,
    }


# ---------------------------------------------------------------- driver


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
        "--handshake-delay-ms",
        str(args.handshake_delay_ms),
    ]
    reps: list[dict[str, Any]] = []
    for rep in range(args.reps):
        shift = rep % len(VARIANTS)
        order = VARIANTS[shift:] + VARIANTS[:shift]
        runs = {v: common.run_worker(MODULE, ["--worker", v, *worker_args]) for v in order}
        reps.append({"order": list(order), "runs": runs})
        print(
            f"rep {rep + 1}/{args.reps}: after-finalize / steady p99 ms: "
            + "; ".join(
                f"{v} {runs[v]['delay_after_finalize']['p99_ms']:.2f}"
                f"/{runs[v]['delay_steady']['p99_ms']:.2f}"
                for v in VARIANTS
            ),
            flush=True,
        )

    def med(variant: str, section: str, key: str) -> float:
        return common.median(r["runs"][variant][section][key] for r in reps)

    summary: dict[str, Any] = {}
    for v in VARIANTS:
        summary[v] = {
            "mode": MODE[v],
            "after_finalize_p50_ms": med(v, "delay_after_finalize", "p50_ms"),
            "after_finalize_p99_ms": med(v, "delay_after_finalize", "p99_ms"),
            "steady_p50_ms": med(v, "delay_steady", "p50_ms"),
            "steady_p99_ms": med(v, "delay_steady", "p99_ms"),
            "runtime_hop_p50_ms": med(v, "runtime_hop", "p50_ms"),
            "runtime_hop_p99_ms": med(v, "runtime_hop", "p99_ms"),
            "late_frames": sum(r["runs"][v]["late_frames"] for r in reps),
            "missing_frames": sum(r["runs"][v]["missing_frames"] for r in reps),
            "after_finalize_p99_ms_per_rep": [
                r["runs"][v]["delay_after_finalize"]["p99_ms"] for r in reps
            ],
            "connections": common.median(r["runs"][v]["connections"] for r in reps),
            "connections_per_turn": common.median(
                r["runs"][v]["connections_per_turn"] for r in reps
            ),
            "server_finalizes": [r["runs"][v]["server_finalizes"] for r in reps],
            "server_audio_dones": [r["runs"][v]["server_audio_dones"] for r in reps],
        }
    summary["goal_p99_ms"] = GOAL_P99_MS
    for v in GOAL_VARIANTS:
        x = summary[v]
        x["goal_met"] = (
            x["after_finalize_p99_ms"] < GOAL_P99_MS
            and x["steady_p99_ms"] < GOAL_P99_MS
            and x["late_frames"] == 0
            and x["missing_frames"] == 0
        )
    summary["goal_met"] = summary["finalize"]["goal_met"]  # the default
    summary["late_frames_zero"] = all(summary[v]["late_frames"] == 0 for v in VARIANTS[1:])
    return {
        "bench": "turn_boundary",
        "machine": machine,
        "params": {
            "reps": args.reps,
            "turns": args.turns,
            "speech_frames": args.speech_frames,
            "gap_frames": args.gap_frames,
            "speed": args.speed,
            "handshake_delay_ms": args.handshake_delay_ms,
            "window_after_finalize_ms": WINDOW_S * 1000,
            "variants": list(VARIANTS),
        },
        "summary": summary,
        "reps": reps,
    }


def report(result: dict[str, Any]) -> str:
    s, p = result["summary"], result["params"]
    rows = []
    for v in VARIANTS:
        x = s[v]
        rows.append(
            [
                v,
                x["mode"],
                x["after_finalize_p50_ms"],
                x["after_finalize_p99_ms"],
                x["steady_p50_ms"],
                x["steady_p99_ms"],
                None if v == "floor" else x["runtime_hop_p99_ms"],
                None if v == "floor" else x["late_frames"],
                x["missing_frames"],
                x["connections_per_turn"],
            ]
        )
    goals = "; ".join(
        f"{v} ({s[v]['mode']}) {'MET' if s[v]['goal_met'] else 'MISSED'}"
        f" (after-fin p99 per rep: "
        f"{', '.join(f'{r:.2f}' for r in s[v]['after_finalize_p99_ms_per_rep'])} ms)"
        for v in GOAL_VARIANTS
    )
    return "\n".join(
        [
            f"turn_boundary: {p['turns']} turns of {p['speech_frames'] * 10} ms utterance + "
            f"{p['gap_frames'] * 10} ms silence at {p['speed']:g}x, finalize after each "
            f"utterance, handshake delay {p['handshake_delay_ms']} ms, {p['reps']} reps "
            "(medians of per-rep percentiles; delay = server receipt - on_audio_frame)",
            common.header_lines(result["machine"]),
            "",
            common.table(
                [
                    "variant",
                    "mode",
                    "after-fin p50",
                    "after-fin p99",
                    "steady p50",
                    "steady p99",
                    "hop p99",
                    "late",
                    "missing",
                    "conns/turn",
                ],
                rows,
                digits=2,
            ),
            "(ms; after-fin = frames reaching the extension (floor: sent) within "
            f"{p['window_after_finalize_ms']:g} ms after an asr_finalize (floor: its finalize); "
            "hop = tester send -> on_audio_frame; late = frames that reached a connection after "
            "its audio.done; conns/turn = connections the server saw / turns)",
            f"goal p99 < {GOAL_P99_MS:g} ms, none late or missing: {goals}; late frames zero: "
            f"{'yes' if s['late_frames_zero'] else 'NO'}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.turn_boundary", description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--speech-frames", type=int, default=100, help="10 ms frames per utterance")
    parser.add_argument("--gap-frames", type=int, default=100, help="silence frames after it")
    parser.add_argument("--speed", type=float, default=1.0, help="multiple of real time")
    parser.add_argument("--handshake-delay-ms", type=int, default=150)
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        common.write_worker_output(args.out, worker(args))
        return 0
    if args.quick:
        args.reps, args.turns, args.speech_frames, args.gap_frames = 1, 2, 20, 40
        args.speed = 2.0
    result = drive(args)
    common.publish("turn_boundary", result, report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
