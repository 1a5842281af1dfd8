"""Shared bench helpers: statistics, JSON results, machine facts, subprocesses.

Every bench follows the same shape: a driver (the command a user runs) that
starts one fresh *worker* subprocess per variant and repetition, so imports
and warm-up never leak from one variant into another, and a worker that
measures one thing and writes its figures to a JSON file the driver reads.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench._paths import ROOT, child_env

RESULTS_DIR = ROOT / "bench" / "results"

# ---------------------------------------------------------------- statistics


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def median(values: Iterable[float]) -> float:
    return percentile([v for v in values if not math.isnan(v)], 50)


def median_ci(values: Sequence[float], level: float = 0.9) -> tuple[float, float, float]:
    """A distribution-free confidence interval for the median: the narrowest pair of
    order statistics (k-th smallest, k-th largest) that covers the median with
    probability >= `level` (binomial, p = 1/2), and that probability. With 6 values
    it is their range (97%); with 8, the 2nd smallest to the 2nd largest (93%)."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return math.nan, math.nan, 0.0
    low, high, coverage = ordered[0], ordered[-1], 1 - 2 * 0.5**n
    for k in range(2, n // 2 + 1):
        below = sum(math.comb(n, i) for i in range(k)) / 2**n  # P(fewer than k below)
        if 1 - 2 * below < level:
            break
        low, high, coverage = ordered[k - 1], ordered[n - k], 1 - 2 * below
    return float(low), float(high), coverage


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p99/max of delays given in seconds, in milliseconds."""
    return {
        "n": len(values_s),
        "p50_ms": round(percentile(values_s, 50) * 1000, 3),
        "p99_ms": round(percentile(values_s, 99) * 1000, 3),
        "max_ms": round(max(values_s) * 1000, 3) if values_s else math.nan,
    }


# ---------------------------------------------------------------- machine & output


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else "unknown"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info(runtime: str) -> dict[str, Any]:
    from bench._paths import runtime_label

    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "runtime": runtime,
        "runtime_label": runtime_label(runtime),
        "load_avg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    n = 1
    while path.exists():
        n += 1
        path = RESULTS_DIR / f"{name}-{stamp}-{n}.json"
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    return path


def publish(name: str, result: dict[str, Any], text: str) -> Path:
    """Write `result` as JSON, then print the report and where the JSON went (returned)."""
    path = write_result(name, result)
    print()
    print(text)
    print(f"\nJSON: {path.relative_to(ROOT)}")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2) -> str:
    cells = [[fmt(c, digits) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    body = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    ]
    return "\n".join([line, sep, *body])


def header_lines(machine: dict[str, Any]) -> str:
    return (
        f"machine: nproc={machine['nproc']} cpu={machine['cpu_model']!r} "
        f"python={machine['python']} load={machine['load_avg_at_start']}\n"
        f"runtime: {machine['runtime_label']}"
    )


# ---------------------------------------------------------------- subprocesses


class ServerProcess:
    """A local STT server in its own process; `url` is read from its first line.

    `argv` is the module and its arguments, e.g. ["stt_server", "--recognizer",
    "marker", "--port", "0"] or the observing bench server (bench/_server.py).
    """

    def __init__(self, argv: Sequence[str], *, cpu: int | None = None) -> None:
        self.argv = list(argv)
        self.cpu = cpu
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> ServerProcess:
        def preexec() -> None:
            if self.cpu is not None and hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, {self.cpu})

        self.proc = subprocess.Popen(
            [sys.executable, "-m", *self.argv],
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            preexec_fn=preexec if self.cpu is not None else None,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"(ws://\S+)", line)
        if match is None:
            self.__exit__()
            raise RuntimeError(f"server did not start: {line!r}")
        self.url = match.group(1)
        return self

    def command(self, line: str, timeout: float = 30.0) -> str:
        """Send one control line (bench/_server.py only); returns its one-line answer."""
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def cpu_seconds(self) -> float | None:
        """User+system CPU the server process has used so far (Linux /proc)."""
        if self.proc is None:
            return None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def __exit__(self, *exc: object) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def run_worker(
    module: str, args: Sequence[str], *, timeout: float = 600.0, cpu: int | None = None
) -> dict[str, Any]:
    """Run `python -m module --worker ... --out FILE` in a fresh process; its JSON.
    `cpu`: pin the worker (and every thread it starts) to that CPU."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out = Path(tmp.name)

    def preexec() -> None:
        if cpu is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {cpu})

    try:
        proc = subprocess.run(
            [sys.executable, "-m", module, *args, "--out", str(out)],
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=preexec if cpu is not None else None,
        )
        if proc.returncode != 0 or not out.stat().st_size:
            tail = "\n".join((proc.stderr or "").splitlines()[-30:])
            raise RuntimeError(
                f"worker {module} {' '.join(args)} failed ({proc.returncode}):\n{tail}"
            )
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def write_worker_output(path: str, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data, default=_json_default))


def pin_to_cpu(cpu: int) -> bool:
    if not hasattr(os, "sched_setaffinity"):
        return False
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return False
    return True


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc/self/statm)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return pages * os.sysconf("SC_PAGE_SIZE")


def run_delay_s() -> float | None:
    """Time this thread has spent runnable but waiting for a CPU (Linux schedstat).

    On a shared machine this is the time other processes took from us: a
    latency figure measured while it grows is the machine's, not the code's.
    """
    try:
        return int(Path("/proc/thread-self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds (user+system) per live thread of this process, by thread name (Linux)."""
    import threading

    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid, name in names.items():
        try:
            text = Path(f"/proc/self/task/{tid}/stat").read_text()
        except (OSError, TypeError):
            continue
        fields = text.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


def thread_cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 3) for k, v in after.items()}


class GcPauses:
    """Records garbage-collector pauses (generation, seconds) while active."""

    def __init__(self) -> None:
        import gc

        self._gc = gc
        self.pauses: list[tuple[int, float]] = []
        self._started = 0.0
        self.active = False

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self.active:
            self.pauses.append((int(info["generation"]), time.perf_counter() - self._started))

    def __enter__(self) -> GcPauses:
        self._gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        self._gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, Any]:
        return {
            "count": len(self.pauses),
            "max_ms": round(max((p for _, p in self.pauses), default=0.0) * 1000, 2),
            "gen2_count": sum(1 for g, _ in self.pauses if g == 2),
            "total_ms": round(sum(p for _, p in self.pauses) * 1000, 2),
        }


class Pacer:
    """Due times of a fixed-rate stream: frame k is due at start + k * period."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self.start = time.monotonic()

    def due(self, k: int) -> float:
        return self.start + k * self.period_s

    def wait_s(self, k: int) -> float:
        return self.due(k) - time.monotonic()
