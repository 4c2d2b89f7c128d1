"""Judging runs while they train: `steadytrain watch` over growing logs, and a Monitor inside the loop.

- `Watcher` polls log directories, reads only what each growing log appended, and re-judges the
  runs that changed (`steadytrain watch` is its command line).
- `Monitor` takes the loop's values step by step (floats or tensors, no device sync) and judges the
  in-memory history every N steps; `analyzer.live.callbacks` wraps it for Lightning and the HF Trainer.
- Both hand over a `LiveFinding`: the one-line change, the diagnosis and recommendations, the restart
  plan (the last good step) and the probe spec for `steadytrain probe`.
- Under DDP the Monitor's ranks decide together (`analyzer.live.collective`); its history goes into
  checkpoints so a resumed run is judged as one run (`analyzer.live.state`).

Nothing here imports torch, lightning or transformers at import time.
"""

from analyzer.live.finding import AT_OR_ABOVE, FailOn, HandOver, LiveFinding, compare
from analyzer.live.monitor import Monitor
from analyzer.live.watch import PollResult, Watcher

__all__ = ["AT_OR_ABOVE", "FailOn", "HandOver", "LiveFinding", "Monitor", "PollResult", "Watcher", "compare"]
