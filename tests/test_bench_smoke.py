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
        "summary": [
            "cpu_ms_per_audio_s",
            "ext_over_ws",
            "null_over_ws",
            "own_share",
            "over_forward",
            "goal_met",
        ],
        "cpu_ms_per_audio_s": ["ws", "null", "forward", "ext"],
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


def check_frame_cost_upstream(result: dict[str, Any]) -> None:
    """Upstream's variant either ran (every frame reached the server, and the
    comparison is reported) or was skipped with the reason."""
    summary = result["summary"]
    if result["params"]["upstream"] is None:
        assert summary["upstream_skipped"], summary
        assert "upstream" not in summary["cpu_ms_per_audio_s"], summary
        return
    frames = summary["upstream_frames"]
    assert frames["sent_min"] == frames["frames"], frames
    assert isinstance(summary["ours_over_upstream"], float), summary


def check_finalize_latency_upstream(result: dict[str, Any]) -> None:
    """Upstream's variant either ran in audio_done mode (a connection per turn)
    or was skipped with the reason."""
    summary = result["summary"]
    if result["params"]["upstream"] is None:
        assert summary["upstream_skipped"], summary
        return
    x = summary["upstream"]
    assert x["mode"] == "audio_done" and x["connections_per_turn"] >= 1, x
    assert x["server_finalizes"] == [0], x


def check_finalize_latency(result: dict[str, Any]) -> None:
    check_finalize_latency_modes(result)
    check_finalize_latency_upstream(result)


# Checks beyond the JSON's keys (never timings): that each bench measured what it says.
CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "finalize_latency": check_finalize_latency,
    "frame_cost": check_frame_cost_upstream,
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


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def _fake_upstream_repo(path: Path, register: str) -> Path:
    """A git repository holding a stand-in for upstream's package (not its code)."""
    from bench import upstream

    package = path / upstream.PACKAGE_PATH
    (package / "tests").mkdir(parents=True)
    (package / "addon.py").write_text(f'@register_addon_as_extension("{register}")\nclass A: ...\n')
    (package / "manifest.json").write_text(json.dumps({"name": register, "version": "9.9.9"}))
    (package / "tests" / "test_x.py").write_text("")
    _git(path, "init", "-q")
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "fake upstream")
    return path


def test_upstream_package_is_extracted_under_its_own_addon_name(tmp_path: Path) -> None:
    """Upstream registers the addon name ours has; the benches load it beside ours
    under another name, changing only its registration and manifest name."""
    from bench import upstream

    repo = _fake_upstream_repo(tmp_path / "repo", "xai_asr_python")
    extracted = upstream.extract(str(repo), "HEAD", tmp_path / "out")
    assert isinstance(extracted, upstream.Upstream), extracted
    package = extracted.package_dir
    assert package.name == upstream.ADDON
    assert (
        (package / "addon.py")
        .read_text()
        .startswith(f'@register_addon_as_extension("{upstream.ADDON}")')
    )
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest == {"name": upstream.ADDON, "version": "9.9.9"}
    assert not (package / "tests").exists()
    assert extracted.version == "9.9.9"


def test_upstream_package_that_registers_another_name_is_refused(tmp_path: Path) -> None:
    from bench import upstream

    repo = _fake_upstream_repo(tmp_path / "repo", "something_else")
    reason = upstream.extract(str(repo), "HEAD", tmp_path / "out")
    assert isinstance(reason, str) and "does not register" in reason, reason
    assert upstream.extract(str(repo), "no-such-rev", tmp_path / "out") == (
        f"no commit 'no-such-rev' in {repo}"
    )


def test_mutation_sample_is_the_same_for_a_seed_and_fair_to_every_module() -> None:
    """`bench.mutation --sample K --seed S`: a survivor can be re-run by name only if the
    same command draws the same mutants; each module gets K (all of a smaller one)."""
    from bench.mutation import draw_sample, module_of, wilson

    names = [f"xai_asr_python.big.x_f__mutmut_{i}" for i in range(1, 60)]
    names += [f"xai_asr_python.small.x_g__mutmut_{i}" for i in range(1, 4)]
    first = draw_sample(names, 10, seed=3)
    assert first == draw_sample(list(reversed(names)), 10, seed=3)
    assert first != draw_sample(names, 10, seed=4)
    per_module = [module_of(n) for n in first]
    assert per_module.count("big.py") == 10 and per_module.count("small.py") == 3
    low, high = wilson(8, 10)
    assert 0.4 < low < 0.8 < high < 1.0
    assert wilson(10, 10)[1] == 1.0 and wilson(0, 0) == (0.0, 1.0)
