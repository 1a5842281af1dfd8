"""The randomized fault soak (issue #12) on a fixed set of seeds: every fault the
local server injects, mixed at random with speech, silence and finalize timing;
each speech frame transcribed exactly once or reported lost, every finalize ended
on time by the soak's own clock, every word at its frame's place on the user's
timeline, the status chain legal by the soak's own table. See soak.py;
`python -m bench.soak --seeds N` runs many more seeds."""

from __future__ import annotations

import pytest
from soak import run_seed

# About 4 s each on two loaded cores, mostly real time (paced audio, pauses,
# timeouts); the verdicts do not depend on the machine's speed.
# Seeds 0-9, plus 15 and 21, which fail when the liveness probes and the no-done
# repair are disabled (as 6, 7 and 9 do when drop episodes go unreported).
SEEDS = [*range(10), 15, 21]


@pytest.mark.parametrize("seed", SEEDS)
async def test_soak_seed(seed: int) -> None:
    result = await run_seed(seed)
    details = "\n".join(
        [result.summary, *result.violations, "excused:", *result.excused, "plan:", *result.plan]
    )
    assert result.ok, f"{details}\nreplay: python -m bench.soak --seed {seed} --log"
