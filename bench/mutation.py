"""The mutation run: how many deliberate bugs in the engine do the engine's fast tests catch?

    pip install -r requirements-mutation.txt          # mutmut, pinned (not a CI dependency)
    python -m bench.mutation                          # every engine module (hours: see README)
    python -m bench.mutation reconnect_manager.py delivery.py   # just these
    python -m bench.mutation --list                   # which modules, which tests

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

The modules: the root's *.py minus the extension's TEN adapters, the asyncio driver,
the WebSocket I/O and the pure declarations (EXCLUDED below): a glob, so modules
split or added later are in the run without editing this file. The tests: the core's
and the engine's (tests/test_core_*.py, tests/test_engine_*.py: the sans-I/O core and
the engine against the in-process marker server; no TEN app, no whisper).
"""

from __future__ import annotations

import argparse
import os
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
# test_mutants_*.py: the checks written for survivors of earlier runs.
TEST_GLOBS = ("test_core_*.py", "test_engine_*.py", "test_mutants_*.py")
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
    run = subprocess.run(
        [mutmut, "run", "--max-children", str(args.max_children)], cwd=work, env=env
    )
    if run.returncode != 0:
        return run.returncode
    print(f"\nresults (in {work}: `mutmut results`, `mutmut show <mutant>`):", flush=True)
    return subprocess.run([mutmut, "results"], cwd=work, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
