"""Each bench in bench/ runs (tiny parameters) and writes the JSON it promises.

Timings are not asserted here: figures belong to bench/README.md. This only
guards against a bench that no longer starts, crashes, or changes its output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

EXPECTED: dict[str, dict[str, Any]] = {
    "frame_cost": {
        "summary": ["cpu_ms_per_audio_s", "ext_over_ws", "null_over_ws", "own_share", "goal_met"],
        "cpu_ms_per_audio_s": ["ws", "null", "ext"],
    },
    "turn_boundary": {
        "summary": [
            "floor",
            "finalize",
            "standby",
            "prewarm",
            "prewarm_off",
            "goal_met",
            "late_frames_zero",
        ],
        **{
            variant: [
                "after_finalize_p50_ms",
                "after_finalize_p99_ms",
                "steady_p99_ms",
                "connections_per_turn",
            ]
            for variant in ("finalize", "standby")
        },
    },
    "finalize_latency": {
        "summary": [
            "floor_audio_done",
            "floor_finalize",
            "null",
            "ext_audio_done",
            "ext_finalize",
            "goal_met",
        ],
        **{
            variant: [
                "total_p99_ms",
                "server_p50_ms",
                "overhead_p50_ms",
                "overhead_p99_ms",
                "own_overhead_p99_ms",
                "connections_per_turn",
            ]
            for variant in ("ext_audio_done", "ext_finalize")
        },
    },
    "recognizers": {
        "summary": ["espeak_ng", "marker_cpu_s_per_audio_s", "whisper", "pocketsphinx"],
        "whisper": ["wer_project", "cpu_s_per_audio_s", "realtime_streams"],
        "pocketsphinx": ["wer_project", "cpu_s_per_audio_s", "realtime_streams"],
    },
    "scale": {
        "summary": [
            "max_sessions_p99_under_20ms",
            "rss_per_streaming_session_mb",
            "outage",
        ],
        "outage": ["rss_per_session_mb", "raw_audio_mb", "buffer_max_ms"],
    },
}


def check_finalize_latency_modes(result: dict[str, Any]) -> None:
    """audio_done takes a connection per turn; finalize (the default) keeps one open."""
    summary = result["summary"]
    for variant in ("floor_finalize", "ext_finalize"):
        assert summary[variant]["connections"] == [1], (variant, summary[variant])
    for variant in ("floor_audio_done", "ext_audio_done"):
        assert summary[variant]["connections_per_turn"] >= 1, (variant, summary[variant])
        assert summary[variant]["server_finalizes"] == [0], (variant, summary[variant])
    turns = result["params"]["turns"]
    assert summary["ext_finalize"]["server_finalizes"] == [turns], summary["ext_finalize"]


def check_turn_boundary_modes(result: dict[str, Any]) -> None:
    """finalize (the default, and the floor) streams every turn on one connection;
    the audio_done variants take a connection per turn."""
    summary = result["summary"]
    turns = result["params"]["turns"]
    for variant in ("floor", "finalize"):
        x = summary[variant]
        assert x["mode"] == "finalize" and x["connections"] == 1, (variant, x)
        assert x["server_finalizes"][0] >= turns, (variant, x)
    for variant in ("standby", "prewarm", "prewarm_off"):
        x = summary[variant]
        assert x["mode"] == "audio_done" and x["connections_per_turn"] >= 1, (variant, x)
        assert x["server_finalizes"] == [0] and x["server_audio_dones"][0] >= turns, (variant, x)


# Checks beyond the JSON's keys (never timings): that each bench measured what it says.
CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "finalize_latency": check_finalize_latency_modes,
    "turn_boundary": check_turn_boundary_modes,
}


def run_quick(name: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("JSON: ")]
    assert lines, done.stdout
    path = ROOT / lines[-1].removeprefix("JSON: ").strip()
    try:
        return done, json.loads(path.read_text())
    finally:
        path.unlink(missing_ok=True)  # a quick run's figures mean nothing: keep results/ clean


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bench_runs_quick_and_writes_its_json(name: str) -> None:
    done, result = run_quick(name)
    assert result["bench"] == name
    machine = result["machine"]
    for key in ("nproc", "cpu_model", "python", "runtime", "date"):
        assert key in machine, machine
    assert machine["runtime"] in ("native", "standin")
    assert "runtime:" in done.stdout  # every report says which runtime it ran on
    summary = result["summary"]
    for key in EXPECTED[name]["summary"]:
        assert key in summary, (key, summary)
    for section, keys in EXPECTED[name].items():
        if section == "summary":
            continue
        for key in keys:
            assert isinstance(summary[section][key], (int, float)), (section, key, summary)
    if name in CHECKS:
        CHECKS[name](result)
