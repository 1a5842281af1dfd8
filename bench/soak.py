"""The randomized fault soak, many seeds (issue #12).

    python -m bench.soak --seeds 200 [--start 0]     # seeds start .. start+N-1
    python -m bench.soak --seed 17 [--log]           # replay one seed, with its plan

Each seed is one session under a random schedule of server faults, outages and
speech/silence/finalize timing, checked frame by frame (integration_tests/soak.py).
Prints one line per failing seed with its violations and the command that replays
it, then a count; exits 1 if any seed failed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from bench import _paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak")
    parser.add_argument("--seeds", type=int, default=50, help="how many seeds")
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--seed", type=int, help="run this one seed and show its plan")
    parser.add_argument("--log", action="store_true", help="the engine's log (with --seed)")
    args = parser.parse_args(argv)
    _paths.setup()
    sys.path.insert(0, str(_paths.ROOT / "tests"))
    sys.path.insert(0, str(_paths.ROOT / "integration_tests"))
    from soak import run_seed

    if args.seed is not None:
        if args.log:
            logging.basicConfig(level=logging.INFO, format="%(relativeCreated)6.0f %(message)s")
        result = asyncio.run(run_seed(args.seed))
        print("\n".join(result.plan))
        print(result.summary)
        for violation in result.violations:
            print(f"  VIOLATION: {violation}")
        return 0 if result.ok else 1
    # The engine's warnings are expected here (every fault is one): quiet.
    logging.basicConfig(level=logging.CRITICAL)
    failed: list[int] = []
    started = time.monotonic()
    for seed in range(args.start, args.start + args.seeds):
        result = asyncio.run(run_seed(seed))
        if not result.ok:
            failed.append(seed)
            print(f"seed {seed} FAILED: {'; '.join(result.violations)}", flush=True)
            print(f"  replay: python -m bench.soak --seed {seed} --log", flush=True)
    elapsed = time.monotonic() - started
    print(
        f"{args.seeds - len(failed)}/{args.seeds} seeds passed in {elapsed:.0f} s"
        + (f"; failing seeds: {failed}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
