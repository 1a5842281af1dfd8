"""The stand-in's graph runner and its CLI (``ten_runtime.standin``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rt_helpers import register_extension

from ten_runtime import AsyncExtension, AsyncTenEnv, Loc, StartGraphCmd, StatusCode, StopGraphCmd
from ten_runtime.standin import GraphRunner, GraphStartError

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
RUNTIME = HERE.parent


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll a condition with a deadline (file contents have no event to await)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def events_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def lifecycle_graph(
    events: Path, stop_after_ms: int = -1, names: tuple[str, ...] = ("a",)
) -> dict[str, Any]:
    return {
        "nodes": [
            {
                "type": "extension",
                "name": name,
                "addon": "lifecycle_ext",
                "extension_group": "g",
                "property": {
                    "events_file": str(events),
                    "stop_graph_after_ms": stop_after_ms if i == 0 else -1,
                },
            }
            for i, name in enumerate(names)
        ],
        "connections": [],
    }


def write_json(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def test_runner_starts_a_graph_file_and_stops_from_another_thread(tmp_path: Path) -> None:
    events = tmp_path / "events.txt"
    graph_file = write_json(tmp_path / "graph.json", lifecycle_graph(events, names=("a", "b")))
    runner = GraphRunner.from_file(str(graph_file), search_paths=[str(FIXTURES)])
    runner.start(timeout=10)
    assert {"a on_start", "b on_start"} <= set(events_of(events))  # start() waited for on_start
    assert sorted(runner.node_names) == ["a", "b"]
    assert runner.wait(0.05) is False  # still running

    stoppers = [threading.Thread(target=runner.stop) for _ in range(2)]  # thread-safe, idempotent
    started = time.monotonic()
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join(10)
    assert time.monotonic() - started < 2
    assert runner.wait(0) is True
    runner.stop()  # again: no-op
    lines = events_of(events)
    for node in ("a", "b"):
        assert [line for line in lines if line.startswith(node + " ")] == [
            f"{node} on_init",
            f"{node} on_start",
            f"{node} on_stop",
            f"{node} on_deinit",
        ]


def test_a_node_sending_stop_graph_cmd_ends_the_graph(tmp_path: Path) -> None:
    events = tmp_path / "events.txt"
    runner = GraphRunner(lifecycle_graph(events, stop_after_ms=50), search_paths=[str(FIXTURES)])
    runner.start(timeout=10)
    assert runner.wait(timeout=5) is True
    lines = events_of(events)
    assert lines.index("a stop_graph_sent") < lines.index("a on_stop") < lines.index("a on_deinit")
    assert "a stop_graph_result err=None" in lines


def test_app_property_file_picks_the_auto_start_graph(tmp_path: Path) -> None:
    events = tmp_path / "events.txt"
    write_json(tmp_path / "g2.json", lifecycle_graph(events, names=("from_file",)))
    prop = {
        "ten": {
            "predefined_graphs": [
                {
                    "name": "other",
                    "auto_start": False,
                    "graph": lifecycle_graph(events, names=("other",)),
                },
                {"name": "main", "auto_start": True, "graph": {"import_uri": "g2.json"}},
            ]
        }
    }
    prop_file = write_json(tmp_path / "property.json", prop)
    with GraphRunner.from_file(str(prop_file), search_paths=[str(FIXTURES)]) as runner:
        runner.start(timeout=10)
        assert runner.graph_name == "main"
    assert "from_file on_deinit" in events_of(events)
    assert not any(line.startswith("other ") for line in events_of(events))

    named = GraphRunner.from_file(str(prop_file), graph_name="other", search_paths=[str(FIXTURES)])
    named.start(timeout=10)
    named.stop()
    assert "other on_deinit" in events_of(events)


def test_app_property_file_with_several_graphs_needs_a_name(tmp_path: Path) -> None:
    prop = {
        "ten": {
            "predefined_graphs": [
                {"name": "g1", "graph": {"nodes": []}},
                {"name": "g2", "graph": {"nodes": []}},
            ]
        }
    }
    path = write_json(tmp_path / "property.json", prop)
    with pytest.raises(GraphStartError, match="several graphs"):
        GraphRunner.from_file(str(path))
    with pytest.raises(GraphStartError, match="no predefined graph named 'g3'"):
        GraphRunner.from_file(str(path), graph_name="g3")


@pytest.mark.parametrize(
    ("graph", "fragment"),
    [
        (
            {"nodes": [{"type": "extension", "name": "x", "addon": "no_such_addon_for_runner"}]},
            "Addon 'no_such_addon_for_runner' is not found",
        ),
        (
            {
                "nodes": [
                    {"type": "extension", "name": "x", "addon": "lifecycle_ext"},
                    {"type": "extension", "name": "x", "addon": "lifecycle_ext"},
                ]
            },
            "duplicate node name 'x'",
        ),
        (
            {
                "nodes": [
                    {
                        "type": "extension",
                        "name": "x",
                        "addon": "lifecycle_ext",
                        "property": {"events_file": "${env:RT_RUNNER_UNSET_VAR}"},
                    }
                ]
            },
            "RT_RUNNER_UNSET_VAR",
        ),
    ],
)
def test_start_failures_raise_graph_start_error(graph: dict[str, Any], fragment: str) -> None:
    os.environ.pop("RT_RUNNER_UNSET_VAR", None)
    runner = GraphRunner(graph, search_paths=[str(FIXTURES)])
    with pytest.raises(GraphStartError) as info:
        runner.start(timeout=10)
    assert fragment in str(info.value)
    assert not runner.is_running()


def _cli(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(RUNTIME))
    return subprocess.Popen(
        [sys.executable, "-m", "ten_runtime.standin", "run", *args, "--search-path", str(FIXTURES)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_cli_runs_until_sigint_and_stops_cleanly(tmp_path: Path) -> None:
    events = tmp_path / "events.txt"
    graph_file = write_json(tmp_path / "graph.json", lifecycle_graph(events))
    proc = _cli([str(graph_file)])
    try:
        assert wait_until(lambda: "a on_start" in events_of(events), timeout=10)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "graph stopped" in err
    assert events_of(events)[-2:] == ["a on_stop", "a on_deinit"]


def test_cli_exits_when_the_graph_stops_itself_and_reports_start_errors(tmp_path: Path) -> None:
    events = tmp_path / "events.txt"
    graph_file = write_json(tmp_path / "graph.json", lifecycle_graph(events, stop_after_ms=100))
    proc = _cli([str(graph_file)])
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "a on_deinit" in events_of(events)

    bad = write_json(
        tmp_path / "bad.json",
        {"nodes": [{"type": "extension", "name": "x", "addon": "no_such_addon_cli"}]},
    )
    proc = _cli([str(bad)])
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert any(
        line.startswith("error:") and "no_such_addon_cli" in line for line in err.splitlines()
    )


def test_stop_after_a_failed_start_does_not_raise_again() -> None:
    runner = GraphRunner(
        {"nodes": [{"type": "extension", "name": "x", "addon": "no_such_addon_twice"}]},
        search_paths=[str(FIXTURES)],
    )
    with pytest.raises(GraphStartError):
        runner.start(timeout=10)
    runner.stop()  # e.g. from a ``finally:``: the error was already reported
    assert runner.fatal_error is not None
    with pytest.raises(GraphStartError):
        runner.wait(0)  # wait() keeps reporting how the run ended


def test_a_node_can_start_and_stop_another_graph(tmp_path: Path) -> None:
    events = tmp_path / "events.txt"
    outcome: dict[str, Any] = {}
    done = threading.Event()

    class Starter(AsyncExtension):
        async def on_start(self, ten_env: AsyncTenEnv) -> None:
            start = StartGraphCmd.create()
            start.set_dests([Loc("")])
            start.set_graph_from_json(json.dumps(lifecycle_graph(events, names=("dyn",))))
            result, err = await ten_env.send_cmd(start)
            assert err is None and result is not None
            outcome["start"] = result.get_status_code()
            graph_id, _ = result.get_property_string("graph_id")
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: wait_until(lambda: "dyn on_start" in events_of(events))
            )

            stop = StopGraphCmd.create()
            stop.set_dests([Loc("")])
            stop.set_graph_id(graph_id)
            result, err = await ten_env.send_cmd(stop)
            outcome["stop"] = result.get_status_code() if result else err

            broken = StartGraphCmd.create()
            broken.set_dests([Loc("")])
            broken.set_graph_from_json(
                json.dumps(
                    {"nodes": [{"type": "extension", "name": "n", "addon": "no_such_dyn_addon"}]}
                )
            )
            result, err = await ten_env.send_cmd(broken)
            outcome["broken"] = result.get_status_code() if result else err
            done.set()

    addon = register_extension("runner_starter", Starter)
    runner = GraphRunner(
        {"nodes": [{"type": "extension", "name": "s", "addon": addon}]},
        search_paths=[str(FIXTURES)],
    )
    runner.start(timeout=10)
    assert done.wait(5)
    assert wait_until(lambda: "dyn on_deinit" in events_of(events))
    assert runner.is_running()  # a failed dynamic start is reported, not fatal
    runner.stop()
    assert outcome == {"start": StatusCode.OK, "stop": StatusCode.OK, "broken": StatusCode.ERROR}
    assert [line for line in events_of(events)] == [
        "dyn on_init",
        "dyn on_start",
        "dyn on_stop",
        "dyn on_deinit",
    ]
