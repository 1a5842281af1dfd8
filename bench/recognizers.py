"""What the local server's recognizers hear, what they cost, how many streams they carry.

    python -m bench.recognizers [--recognizers whisper,pocketsphinx] [--quick]

For each recognizer, against a `python -m stt_server --recognizer X` process
(its worker processes included), in one run:

1. **Accuracy**: word error rate (stt_server.textnorm: spoken words, so
   "1, 2." and "one two" compare equal) of `transcript.done` on the
   project's clips (stt_server/audio, Festival) and on sentences the bench
   makes with espeak-ng when it is installed, each clip streamed at once
   (endpointing 300 ms).
2. **CPU per audio second**: the server's CPU (process tree) while the
   accuracy clips are recognised, over their audio length; the `marker`
   recognizer's (protocol cost only) is the baseline of the same run.
3. **Real-time streams**: N clients stream demo.wav twice (16.9 s) at real
   time in 100 ms frames with interim results, each rotated by i/N of its
   length (independent users: utterances end at different moments); a
   result's delay is its
   arrival time minus the moment its last audio (start + duration) was sent.
   N grows until the p95 delay exceeds 1.5 s or a result is missing; the
   figure is the largest N that met it. The baseline is the delay of one
   stream, in the same run. Each step also reports the server's CPU (cores)
   and what other processes took meanwhile (busy CPU time of the machine
   minus the server's and the client's): this machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from bench import _paths

RUNTIME = _paths.setup()

from bench.common import (  # noqa: E402
    ServerProcess,
    header_lines,
    machine_info,
    percentile,
    publish,
    table,
)
from stt_server.textnorm import word_error_rate  # noqa: E402

AUDIO = _paths.ROOT / "stt_server" / "audio"
CLIPS = {
    "hello_world.wav": "hello world, the weather is nice today",
    "numbers.wav": "one two three four five six seven eight nine ten",
    "two_sentences.wav": "please open the door. thank you very much.",
    "demo.wav": "good morning, how are you doing today. "
    "i would like to book a flight from boston to new york.",
}
# espeak-ng sentences (70 words): everyday requests, numbers and names.
ESPEAK = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "I would like a table for two at seven tonight.",
    "The meeting has been moved to Thursday afternoon.",
    "Turn left at the second traffic light.",
    "My phone number is five five five, one two three four.",
    "Can you send me the report before lunch?",
    "We need more milk, bread and cheese.",
]
DELAY_GOAL_S = 1.5
FRAME_S = 0.1
STEPS = {"whisper": [1, 2, 3, 4, 5, 6, 8], "pocketsphinx": [2, 4, 6, 8, 10, 12, 16]}


def read_pcm(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return w.readframes(w.getnframes())


def espeak_clips(directory: Path) -> list[tuple[str, bytes, str]]:
    """ESPEAK sentences spoken by espeak-ng, 16 kHz; [] when it is not installed."""
    if shutil.which("espeak-ng") is None:
        return []
    import soundfile
    import soxr

    out = []
    for i, sentence in enumerate(ESPEAK):
        path = directory / f"espeak_{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(path), sentence], check=True, timeout=30)
        audio, rate = soundfile.read(path, dtype="float32")
        audio = soxr.resample(audio, rate, 16000) if rate != 16000 else audio
        pad = np.zeros(8000, dtype=np.float32)  # 0.5 s of silence around it
        samples = np.concatenate([pad, audio, pad])
        pcm = np.clip(np.round(samples * 32768), -32768, 32767).astype("<i2").tobytes()
        out.append((f"espeak_{i}", pcm, sentence))
    return out


def tree_cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its live descendants (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += cpu.get(current, 0.0)
        todo += [child for child, parent in parents.items() if parent == current]
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy since boot (Linux /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- client


async def stream(
    url: str,
    pcm: bytes,
    *,
    realtime: bool,
    interim: bool,
    start_at: float | None = None,
) -> dict[str, Any]:
    """Send pcm (100 ms frames; paced at real time or at once); what came back and when."""
    from websockets.asyncio.client import connect

    query = "?sample_rate=16000&encoding=pcm&endpointing=300"
    query += f"&interim_results={str(interim).lower()}"
    loop = asyncio.get_running_loop()
    results: list[tuple[float, dict[str, Any]]] = []
    async with connect(
        url + query, additional_headers={"Authorization": "Bearer bench"}, max_size=None
    ) as ws:
        created = json.loads(await ws.recv())
        assert created["type"] == "transcript.created", created

        async def receive() -> dict[str, Any]:
            async for message in ws:
                event = json.loads(message)
                results.append((loop.time(), event))
                if event["type"] == "transcript.done":
                    return event
            raise RuntimeError("closed without transcript.done")

        receiver = asyncio.ensure_future(receive())
        frame = int(16000 * 2 * FRAME_S)
        t0 = start_at if start_at is not None else loop.time()
        for i, offset in enumerate(range(0, len(pcm), frame)):
            if realtime:
                delay = t0 + (i + 1) * FRAME_S - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing: the audio's own clock
            await ws.send(pcm[offset : offset + frame])
        await ws.send(json.dumps({"type": "audio.done"}))
        done = await asyncio.wait_for(receiver, 120)
    partials = [(at, e) for at, e in results if e["type"] == "transcript.partial"]
    delays = [at - (t0 + e["start"] + e["duration"]) for at, e in partials]
    finals = [d for d, (_, e) in zip(delays, partials, strict=True) if e["is_final"]]
    return {"done": done, "delays": delays, "final_delays": finals, "events": len(results)}


# ---------------------------------------------------------------- measurements


def accuracy_and_cost(
    recognizer: str, clips: list[tuple[str, bytes, str]]
) -> tuple[list[dict[str, Any]], float]:
    with ServerProcess(["stt_server", "--recognizer", recognizer, "--log-level", "WARNING"]) as srv:
        assert srv.proc is not None
        asyncio.run(stream(srv.url, clips[0][1], realtime=False, interim=False))  # warm-up
        before = tree_cpu_seconds(srv.proc.pid)
        rows = []
        for name, pcm, reference in clips:
            got = asyncio.run(stream(srv.url, pcm, realtime=False, interim=False))
            text = got["done"]["text"]
            rows.append(
                {
                    "clip": name,
                    "words": len(reference.split()),
                    "wer": word_error_rate(reference, text),
                    "text": text,
                }
            )
        cpu = tree_cpu_seconds(srv.proc.pid) - before
    audio_s = sum(len(pcm) for _, pcm, _ in clips) / 32000
    return rows, cpu / audio_s


def pooled_wer(rows: list[dict[str, Any]]) -> float:
    words = sum(r["words"] for r in rows)
    return sum(r["wer"] * r["words"] for r in rows) / max(words, 1)


async def concurrent(url: str, pcm: bytes, n: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    # Independent users: every stream plays the same audio rotated by its
    # share of the length (whole 100 ms frames), so all run for the whole
    # time but their utterances end at different moments.
    frame = int(32000 * FRAME_S)
    shift = [(len(pcm) // frame) * i // n * frame for i in range(n)]
    runs = await asyncio.gather(
        *[
            stream(url, pcm[s:] + pcm[:s], realtime=True, interim=True, start_at=start + 0.013 * i)
            for i, s in enumerate(shift)
        ],
        return_exceptions=True,
    )
    failed = [r for r in runs if isinstance(r, BaseException)]
    delays = [d for r in runs if isinstance(r, dict) for d in r["delays"]]
    final_delays = [d for r in runs if isinstance(r, dict) for d in r["final_delays"]]
    finals = [r for r in runs if isinstance(r, dict) and r["done"]["text"].strip()]
    return {
        "streams": n,
        "failed": len(failed) + (n - len(failed) - len(finals)),
        "results": len(delays),
        "delay_p50_s": percentile(delays, 50) if delays else float("nan"),
        "delay_p95_s": percentile(delays, 95) if delays else float("nan"),
        "delay_max_s": max(delays) if delays else float("nan"),
        "finals": len(final_delays),
        "final_delay_p95_s": percentile(final_delays, 95) if final_delays else float("nan"),
    }


def capacity(recognizer: str, pcm: bytes, steps: list[int]) -> list[dict[str, Any]]:
    rows = []
    with ServerProcess(["stt_server", "--recognizer", recognizer, "--log-level", "WARNING"]) as srv:
        asyncio.run(stream(srv.url, pcm[:64000], realtime=False, interim=False))  # warm-up
        assert srv.proc is not None
        for n in steps:
            # Other processes' CPU during the step (this machine is shared):
            # all busy time minus the server's and this client's.
            busy, ours, mine = machine_busy_seconds(), tree_cpu_seconds(srv.proc.pid), os.times()
            began = time.monotonic()
            row = asyncio.run(concurrent(srv.url, pcm, n))
            wall = time.monotonic() - began
            server_cpu = tree_cpu_seconds(srv.proc.pid) - ours
            now = os.times()
            client_cpu = now.user + now.system - mine.user - mine.system
            row["server_cores"] = server_cpu / wall
            row["others_cores"] = max(
                0.0, (machine_busy_seconds() - busy - server_cpu - client_cpu) / wall
            )
            row["ok"] = row["failed"] == 0 and row["delay_p95_s"] <= DELAY_GOAL_S
            rows.append(row)
            print(
                f"  {recognizer}: {n} streams p95 {row['delay_p95_s']:.2f} s "
                f"{'ok' if row['ok'] else 'over'} (server {row['server_cores']:.2f} cores, "
                f"other processes {row['others_cores']:.2f})",
                flush=True,
            )
            if not row["ok"]:
                break
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recognizers", description=__doc__)
    parser.add_argument(
        "--recognizers", default="whisper,pocketsphinx", help="comma-separated, in order"
    )
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--no-espeak", action="store_true", help="skip the espeak-ng clips")
    parser.add_argument(
        "--steps", help="stream counts to try, e.g. 2,4,6 (default: per recognizer)"
    )
    args = parser.parse_args(argv)
    recognizers = [r for r in args.recognizers.split(",") if r]
    machine = machine_info(RUNTIME)
    print(header_lines(machine), flush=True)

    project = [(name, read_pcm(AUDIO / name), text) for name, text in CLIPS.items()]
    demo = read_pcm(AUDIO / "demo.wav")
    long_audio = demo + bytes(32000) + demo  # 16.9 s, two utterances each time
    if args.quick:
        project = project[:1]
        long_audio = read_pcm(AUDIO / "hello_world.wav")
    with tempfile.TemporaryDirectory() as tmp:
        espeak = [] if args.quick or args.no_espeak else espeak_clips(Path(tmp))

    _, marker_cpu = accuracy_and_cost("marker", project)
    summary: dict[str, Any] = {
        "espeak_ng": bool(espeak),
        "marker_cpu_s_per_audio_s": marker_cpu,
    }
    details: dict[str, Any] = {}
    for recognizer in recognizers:
        rows, cpu = accuracy_and_cost(recognizer, project + espeak)
        project_rows = [r for r in rows if not r["clip"].startswith("espeak_")]
        espeak_rows = [r for r in rows if r["clip"].startswith("espeak_")]
        steps = [1] if args.quick else STEPS.get(recognizer, [1, 2, 4, 8])
        if args.steps:
            steps = [int(n) for n in args.steps.split(",")]
        load = capacity(recognizer, long_audio, steps)
        passing = [r["streams"] for r in load if r["ok"]]
        summary[recognizer] = {
            "wer_project": pooled_wer(project_rows),
            "wer_espeak": pooled_wer(espeak_rows) if espeak_rows else float("nan"),
            "cpu_s_per_audio_s": cpu,
            "realtime_streams": max(passing) if passing else 0,
            "one_stream_delay_p95_s": load[0]["delay_p95_s"] if load else float("nan"),
        }
        details[recognizer] = {"clips": rows, "load": load}

    rows = [
        [
            name,
            s["wer_project"],
            s["wer_espeak"],
            s["cpu_s_per_audio_s"],
            s["realtime_streams"],
            s["one_stream_delay_p95_s"],
        ]
        for name, s in ((n, summary[n]) for n in recognizers)
    ]
    rows.append(["marker (baseline)", None, None, marker_cpu, None, None])
    text = "\n".join(
        [
            f"recognizers (espeak-ng clips: {'yes' if espeak else 'not installed/skipped'})",
            table(
                [
                    "recognizer",
                    "WER project",
                    "WER espeak",
                    "CPU s/audio s",
                    f"RT streams (p95<{DELAY_GOAL_S}s)",
                    "1-stream p95 s",
                ],
                rows,
            ),
            "",
            *[
                f"{name}: "
                + "; ".join(
                    f"{r['streams']} streams p50 {r['delay_p50_s']:.2f} p95 {r['delay_p95_s']:.2f}"
                    f" max {r['delay_max_s']:.2f} s, finals p95 {r['final_delay_p95_s']:.2f} s"
                    f" ({r['results']} results, {r['finals']} finals; server"
                    f" {r['server_cores']:.2f} cores, others {r['others_cores']:.2f})"
                    f"{'' if r['ok'] else ' (over)'}"
                    for r in details[name]["load"]
                )
                for name in recognizers
            ],
            "",
            *[
                f"{name} {r['clip']}: WER {r['wer']:.2f}: {r['text']}"
                for name in recognizers
                for r in details[name]["clips"]
                if r["wer"] > 0
            ],
        ]
    )
    publish(
        "recognizers",
        {"bench": "recognizers", "machine": machine, "summary": summary, "details": details},
        text,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
