"""A "null" ASR extension for the benches: takes frames and drops them.

It stands for what the runtime itself costs per frame (bench/frame_cost.py,
variant "null"): it receives every `pcm_frame` and does nothing with it, and
answers each `asr_finalize` with `asr_finalize_end` (so a driver knows every
frame before it has been delivered: the runtime keeps each sender's order).
"""

from . import addon  # noqa: F401  (registers the addon)
