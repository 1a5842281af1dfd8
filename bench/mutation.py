"""The mutation run: how many deliberate bugs in the engine do the engine's fast tests catch?

    pip install -r requirements-mutation.txt          # mutmut, pinned (not a CI dependency)
    python -m bench.mutation                          # every engine module (hours: see README)
    python -m bench.mutation reconnect_manager.py delivery.py   # just these
    python -m bench.mutation --list                   # which modules, which tests
    python -m bench.mutation --sample 10 --seed 0     # 10 random mutants of every module

mutmut (3.x) rewrites each function of a module into many mutants (an operator
flipped, a constant changed, a call's argument dropped, ...) and runs the tests that
call that function (it records which tests do, once, before the run) against each
mutant: a mutant a test fails on is *killed*; one every test passes is a *survivor*,
a change of behaviour no test notices (or an equivalent program).

mutmut names a mutant by the module path it mutated and recognises a call by the
module the function was imported as, so the code must be imported under the path it
sits at. This repository's root *is* the package (imported as `xai_asr_python`
through a symlink, with relative imports), which mutmut cannot express. So the run
stages a copy: `<work>/xai_asr_python/` (the root's modules), `tests/`, `stt_server/`,
and a pyproject.toml with this repository's pytest settings and a `[tool.mutmut]`
section, then runs `mutmut run` there. The repository itself is never touched; the
staging directory (default bench/results/mutation/, git-ignored) keeps mutmut's
results for `mutmut results` / `mutmut show <name>` afterwards (run them in it).

A whole run takes hours per module on two cores (a surviving mutant runs every test
that calls its function: 2-3 minutes), so `--sample K` tests K mutants of each module,
drawn at random with `--seed` from all mutmut generates, and prints each module's
score among them with a 95% interval: random selection estimates the score of the
whole set about as well as any cleverer choice of operators does (Zhang et al.,
ICSE 2010; Gopinath et al., ISSRE 2015), and its survivors are as representative.

The modules: the root's *.py minus the extension's TEN adapters, the asyncio driver,
the WebSocket I/O and the pure declarations (EXCLUDED below): a glob, so modules
split or added later are in the run without editing this file. The tests: the core's
and the engine's (tests/test_core_*.py, tests/test_engine_*.py: the sans-I/O core and
the engine against the in-process marker server; no whisper) and config.py's own
(tests/test_config_*.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORK = ROOT / "bench" / "results" / "mutation"
PACKAGE = "xai_asr_python"

# Root modules that are not the engine's logic, and why they are left out.
EXCLUDED = {
    "__init__.py": "package marker",
    "addon.py": "TEN addon registration",
    "extension.py": "TEN adapter (tests/test_extension*.py test it, with a TEN app)",
    "session.py": "the asyncio driver (I/O: sockets, tasks, timers)",
    "recognition.py": "one WebSocket (I/O)",
    "vendor.py": "the vendor seam: wiring, its logic lives in protocol.py/utterances.py",
    "engine_io.py": "declarations: the core's event and action types",
    "session_types.py": "declarations: settings and report types",
    "redaction.py": "its tests are tests/test_redaction.py, not the engine's",
}
EXCLUDED_PREFIXES = ("ten_",)  # ten_messages.py, ten_outbox.py, ten_turns.py: TEN adapters
# test_mutants_*.py: the checks written for survivors of earlier runs;
# test_config_*.py: config.py's own (property validation, the query it builds).
TEST_GLOBS = ("test_core_*.py", "test_engine_*.py", "test_mutants_*.py", "test_config_*.py")
# Support modules the tests import, which are not tests.
NOT_TESTS = {"test_engine_support.py"}


def engine_modules() -> list[str]:
    return sorted(
        path.name
        for path in ROOT.glob("*.py")
        if path.name not in EXCLUDED and not path.name.startswith(EXCLUDED_PREFIXES)
    )


def engine_tests() -> list[str]:
    names = {p.name for pattern in TEST_GLOBS for p in (ROOT / "tests").glob(pattern)}
    return [f"tests/{name}" for name in sorted(names - NOT_TESTS)]


def check_files(modules: list[str]) -> list[str]:
    """Each mutated module's own file of checks for its survivors, existing or not."""
    return [f"tests/test_mutants_{Path(m).stem}.py" for m in modules]


def _mutmut_section(modules: list[str], tests: list[str], max_children: int) -> str:
    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(f'"{item}"' for item in items) + "]"

    return "\n".join(
        [
            "",
            "[tool.mutmut]",
            f'source_paths = ["{PACKAGE}"]',
            "only_mutate = " + toml_list([f"{PACKAGE}/{m}" for m in modules]),
            'also_copy = ["stt_server"]',
            "pytest_add_cli_args_test_selection = " + toml_list(tests),
            # Deterministic order; the suite's own per-test timeout stays the safety net.
            'pytest_add_cli_args = ["-p", "no:randomly", "-p", "no:cacheprovider"]',
            f"# max_children is given on the command line: {max_children}",
            "",
        ]
    )


def stage(work: Path, modules: list[str], tests: list[str], max_children: int) -> None:
    """A fresh staging directory laid out the way mutmut expects (see the docstring)."""
    if work.exists():
        shutil.rmtree(work)
    package = work / PACKAGE
    package.mkdir(parents=True)
    for path in ROOT.iterdir():
        if path.is_file() and path.suffix in (".py", ".json"):
            shutil.copy2(path, package / path.name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", "audio")
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    shutil.copytree(ROOT / "stt_server", work / "stt_server", ignore=ignore)
    # A mutated module with no checks of its own yet gets an empty file of them, named
    # in the test selection: the checks written for its survivors can then be copied
    # here and the survivors run again by name (`mutmut run NAME...`). mutmut records
    # which functions the new tests call and keeps the rest; a selection that changed
    # would make it record every test again and forget every result.
    for name in check_files(modules):
        checks = work / name
        if not checks.exists():
            checks.write_text('"""No checks yet: written after the mutation run."""\n')
    # This repository's pyproject.toml (its pytest settings), plus mutmut's section.
    (work / "pyproject.toml").write_text(
        (ROOT / "pyproject.toml").read_text() + _mutmut_section(modules, tests, max_children)
    )


# mutmut's own first step, without testing anything: copy the tree into mutants/,
# write every mutant, and list their names in mutants/names.json (its stdout is
# mutmut's chatter). The CLI has no command for it, so this
# calls the functions `mutmut run` calls first (mutmut is pinned: 3.8.1).
_LIST_MUTANTS = """
import json
from pathlib import Path
from mutmut.__main__ import (
    collect_source_file_mutation_data, copy_also_copy_files, copy_src_dir, create_mutants,
    set_mutant_under_test, setup_source_paths, store_lines_covered_by_tests,
)
set_mutant_under_test("mutant_generation")
Path("mutants").mkdir(exist_ok=True)
copy_src_dir(); copy_also_copy_files(); setup_source_paths(); store_lines_covered_by_tests()
create_mutants(1)
mutants, _ = collect_source_file_mutation_data(mutant_names=[])
Path("mutants/names.json").write_text(json.dumps(sorted(name for _, name, _ in mutants)))
"""


def module_of(mutant: str) -> str:
    """`xai_asr_python.books.xǁConnectionBooksǁclose__mutmut_3` -> `books.py`."""
    return mutant.split(".")[1] + ".py"


def draw_sample(names: list[str], per_module: int, seed: int) -> list[str]:
    """`per_module` mutants of each module (all of a smaller one), the same for a seed."""
    by_module: dict[str, list[str]] = {}
    for name in sorted(names):
        by_module.setdefault(module_of(name), []).append(name)
    rng = random.Random(seed)
    chosen: list[str] = []
    for module in sorted(by_module):
        pool = by_module[module]
        chosen += sorted(rng.sample(pool, min(per_module, len(pool))))
    return chosen


def wilson(killed: int, tried: int, z: float = 1.96) -> tuple[float, float]:
    """A 95% interval for the share killed among all of a module's mutants."""
    if tried == 0:
        return (0.0, 1.0)
    p = killed / tried
    centre = (p + z * z / (2 * tried)) / (1 + z * z / tried)
    half = z * math.sqrt(p * (1 - p) / tried + z * z / (4 * tried * tried)) / (1 + z * z / tried)
    return (max(0.0, centre - half), min(1.0, centre + half))


STATUS = {1: "killed", 3: "killed", 0: "survived", 33: "no tests", 5: "no tests"}
TIMEOUTS = {24, -24, 36, 152, 255}


def summarise(work: Path, names: list[str], total_by_module: dict[str, int]) -> str:
    """Markdown: each module's sampled mutants, killed, survived, and the score's interval."""
    exit_codes: dict[str, int | None] = {}
    for meta in (work / "mutants" / PACKAGE).glob("*.py.meta"):
        exit_codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    rows = ["| module | mutants | sampled | killed | survived | score (95% interval) |"]
    rows.append("| --- | --- | --- | --- | --- | --- |")
    survivors: list[str] = []
    totals = [0, 0, 0]
    for module in sorted(total_by_module):
        mine = [n for n in names if module_of(n) == module]
        codes = [exit_codes.get(n) for n in mine]
        killed = sum(1 for c in codes if STATUS.get(c) == "killed" or c in TIMEOUTS)
        survived = [
            n for n, c in zip(mine, codes, strict=True) if STATUS.get(c) in ("survived", "no tests")
        ]
        survivors += survived
        tried = killed + len(survived)
        low, high = wilson(killed, tried)
        score = f"{killed}/{tried} ({low:.0%}-{high:.0%})" if tried else "-"
        rows.append(
            f"| {module} | {total_by_module[module]} | {len(mine)} | {killed} "
            f"| {len(survived)} | {score} |"
        )
        totals = [totals[0] + len(mine), totals[1] + killed, totals[2] + len(survived)]
    low, high = wilson(totals[1], totals[1] + totals[2])
    rows.append(
        f"| all | {sum(total_by_module.values())} | {totals[0]} | {totals[1]} | {totals[2]} "
        f"| {totals[1]}/{totals[1] + totals[2]} ({low:.0%}-{high:.0%}) |"
    )
    return "\n".join([*rows, "", "survivors:", *survivors])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mutation")
    parser.add_argument(
        "modules", nargs="*", help="root modules to mutate (default: every engine module)"
    )
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="staging directory")
    parser.add_argument(
        "--max-children", type=int, default=2, help="mutants tested at once (cores to use)"
    )
    parser.add_argument(
        "--stateful-examples",
        type=int,
        default=None,
        help="CORE_STATEFUL_EXAMPLES for tests/test_core_stateful.py (its default: 200)",
    )
    parser.add_argument(
        "--sample", type=int, default=None, help="test this many random mutants of each module"
    )
    parser.add_argument("--seed", type=int, default=0, help="the sample's seed")
    parser.add_argument("--list", action="store_true", help="print modules and tests, run nothing")
    args = parser.parse_args(argv)
    modules = args.modules or engine_modules()
    unknown = [m for m in modules if not (ROOT / m).is_file()]
    if unknown:
        parser.error(f"no such module at the repository root: {unknown}")
    tests = sorted(set(engine_tests()) | set(check_files(modules)))
    if args.list:
        print("modules:", " ".join(modules))
        print("excluded:", "; ".join(f"{k} ({v})" for k, v in sorted(EXCLUDED.items())))
        print("tests:", " ".join(tests))
        return 0
    mutmut = shutil.which("mutmut") or str(Path(sys.executable).parent / "mutmut")
    if not Path(mutmut).exists():
        print("mutmut is not installed: pip install -r requirements-mutation.txt", file=sys.stderr)
        return 2
    work = args.work.resolve()
    stage(work, modules, tests, args.max_children)
    env = dict(os.environ)
    # The TEN runtime stand-in (tests/conftest.py starts a fake app), never the real
    # package layout: the tests must import the mutated copy, not this checkout.
    env["PYTHONPATH"] = str(ROOT / "runtime")
    if args.stateful_examples is not None:
        env["CORE_STATEFUL_EXAMPLES"] = str(args.stateful_examples)
    print(f"mutating {len(modules)} module(s) in {work}: {' '.join(modules)}", flush=True)
    chosen: list[str] = []
    if args.sample is not None:
        python = str(Path(mutmut).parent / "python")
        listing = subprocess.run(
            [python, "-c", _LIST_MUTANTS], cwd=work, env=env, capture_output=True, text=True
        )
        if listing.returncode != 0:
            print(listing.stdout, listing.stderr, file=sys.stderr)
            return listing.returncode
        every = json.loads((work / "mutants" / "names.json").read_text())
        total_by_module: dict[str, int] = {}
        for name in every:
            total_by_module[module_of(name)] = total_by_module.get(module_of(name), 0) + 1
        chosen = draw_sample(every, args.sample, args.seed)
        (work / "sample.json").write_text(json.dumps({"seed": args.seed, "mutants": chosen}))
        print(f"{len(every)} mutants; testing {len(chosen)} (seed {args.seed})", flush=True)
    run = subprocess.run(
        [mutmut, "run", "--max-children", str(args.max_children), *chosen], cwd=work, env=env
    )
    if run.returncode != 0:
        return run.returncode
    if chosen:
        print(summarise(work, chosen, total_by_module), flush=True)
        return 0
    print(f"\nresults (in {work}: `mutmut results`, `mutmut show <mutant>`):", flush=True)
    return subprocess.run([mutmut, "results"], cwd=work, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
