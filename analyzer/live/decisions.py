"""What a Monitor does with a finding: log it, save a checkpoint, stop the run, alone or with every rank.

In one process the actions follow the judgement at once. Under DDP they wait for the ranks' next
meeting (`Monitor._event`, every N steps, the same step on every rank): one all-reduce of each rank's
code (news / stop / checkpoint, `analyzer.live.collective`), and when a rank has news its `HandOver` is
broadcast, so that every rank saves and stops at the same step, and rank 0 alone writes the files and
the log lines. Mixed into `Monitor`, whose state it reads.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from analyzer.live.collective import CHECKPOINT, NEWS, STOP, Collective, gather_codes, source_rank
from analyzer.live.finding import FailOn, HandOver, LiveFinding, at_or_above
from analyzer.verdicts import UNSTABLE

Saver = Callable[[HandOver], "Path | None"]


class Decisions:
    """The acting half of `Monitor` (see the module doc)."""

    _collective: Collective | None
    _news: list[LiveFinding]
    _checkpointed: set[str]
    _save_fn: Callable[[Path], object] | None
    saver: Saver | None
    stop_on: FailOn | None
    checkpoint_on: FailOn | None
    checkpoint_dir: Path
    findings: list[LiveFinding]
    should_stop: bool
    checkpoints: list[Path]
    on_finding: Callable[[LiveFinding], object] | None
    log: logging.Logger

    @property
    def rank(self) -> int:
        """This process's rank among those deciding together (0 without a process group)."""
        return self._collective.rank if self._collective is not None else 0

    @property
    def is_writer(self) -> bool:
        """Whether this process writes the files and the log lines (rank 0)."""
        return self.rank == 0

    def _wants(self, finding: LiveFinding) -> tuple[bool, bool]:
        """(stop, checkpoint) that ``finding`` asks for."""
        ckpt = (self.saver is not None and at_or_above(finding.verdict, self.checkpoint_on)
                and finding.verdict not in self._checkpointed)
        return at_or_above(finding.verdict, self.stop_on), ckpt

    def _found(self, finding: LiveFinding) -> None:
        self.findings.append(finding)
        if self._collective is None:
            (self.log.warning if finding.unstable else self.log.info)("steadytrain: %s", finding.line())
            stop, ckpt = self._wants(finding)
            self._act(self._hand_over(finding, True) if ckpt else None, stop=stop, checkpoint=ckpt,
                      verdict=finding.verdict)
        else:
            self._news.append(finding)  # acted on when the ranks next decide, at the same step on all of them
        if self.on_finding is not None:
            self.on_finding(finding)

    def _decide_together(self) -> None:
        """The ranks' decision at this step: one all-reduce of each rank's code; when a rank has news, its
        hand-over broadcast; then the same actions on every rank (see `analyzer.live.collective`)."""
        coll = self._collective
        assert coll is not None
        news, self._news = self._news, []
        wants = [(finding, *self._wants(finding)) for finding in news]
        code = (NEWS if news else 0) | (STOP if any(w[1] for w in wants) else 0) \
            | (CHECKPOINT if any(w[2] for w in wants) else 0)
        # The finding this rank would hand over: the latest that asks for a checkpoint, else for a stop, else the latest.
        chosen = next((f for f, _, ckpt in reversed(wants) if ckpt), None) \
            or next((f for f, stop, _ in reversed(wants) if stop), None) or (news[-1] if news else None)
        codes = gather_codes(coll, code)
        src = source_rank(codes)
        if src is None:
            return
        checkpoint = any(c & CHECKPOINT for c in codes)
        mine = self._hand_over(chosen, checkpoint) if coll.rank == src and chosen is not None else None
        hand: HandOver = coll.broadcast(mine, src)
        if self.is_writer:
            also = [r for r, c in enumerate(codes) if c and r != src]
            unstable = hand.verdict in UNSTABLE
            (self.log.warning if unstable else self.log.info)(
                "steadytrain: [rank %d] %s%s", hand.rank, hand.line,
                f" (rank(s) {', '.join(map(str, also))} found changes too)" if also else "")
        self._act(hand, stop=any(c & STOP for c in codes), checkpoint=checkpoint, verdict=hand.verdict)

    def _hand_over(self, finding: LiveFinding, with_spec: bool) -> HandOver:
        """The finding's hand-over; never raises: the other ranks are waiting in the broadcast for it."""
        try:
            return finding.hand_over(rank=self.rank, probe_spec=with_spec)
        except Exception as exc:  # noqa: BLE001 - a rank that raised here would leave the others waiting forever
            self.log.warning("steadytrain: the restart plan could not be made (%s: %s)", type(exc).__name__, exc)
            return HandOver(finding.run_id, self.rank, finding.step, finding.verdict, None,
                            f"{finding.run_id}: {finding.verdict} [judged to step {finding.step:,}]",
                            {"run": finding.run_id, "verdict": finding.verdict, "detected_at_step": finding.step}, None)

    def _act(self, hand: HandOver | None, *, stop: bool, checkpoint: bool, verdict: str) -> None:
        if checkpoint and hand is not None and self.saver is not None:
            self._checkpointed.add(hand.verdict)
            path = self.saver(hand)
            if path is not None:
                self.checkpoints.append(path)
        if stop:
            self.should_stop = True
            if self.is_writer:
                self.log.warning("steadytrain: stopping the run (stop_on=%s): %s", self.stop_on, verdict)

    def _save_to_dir(self, hand: HandOver) -> Path | None:
        assert self._save_fn is not None
        path = self.checkpoint_dir / f"{hand.stem}.ckpt"
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)  # every rank: a sharded save writes from each
        self._save_fn(path)  # every rank (a collective save); the user's function decides who writes
        if self.is_writer:
            hand.write(self.checkpoint_dir / f"{hand.stem}.restart.json", self.checkpoint_dir / f"{hand.stem}.probe.yaml")
            self.log.warning("steadytrain: saved %s (restart from a checkpoint at or before step %s, skipping the "
                             "batches after it; plan beside it)", path, hand.last_good_step)
        return path
