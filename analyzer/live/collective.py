"""Decisions made together by every rank of a distributed run, as Lightning's EarlyStopping makes them.

Under DDP each process judges what it sees. Acting alone is unsafe: Lightning's ``save_checkpoint``
is collective (it ends in a barrier), so one rank saving hangs the job, and one rank stopping leaves
the others waiting in the next all-reduce of gradients. So the ranks meet every ``every_n_steps``
steps, at the steps where the Monitor sends its values to the host (the same steps on every rank:
they count the same optimizer steps), and reduce what each has to say in one all-reduce of a few
integers, the reduction `reduce_boolean_decision(all=False)` makes, packed: a stop or a checkpoint
wanted by any rank is done by all of them, at the same step. Only when a rank found something is
its hand-over (a few KB: the line, the restart plan, the probe spec) broadcast, so that the files
and the log lines come from rank 0 alone.

Two ways to talk: `TorchCollective` (a torch.distributed process group: plain loops, the HF Trainer)
and `StrategyCollective` (a Lightning strategy's own reduce and broadcast, whatever the backend).
torch is imported only when one is made.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

#: The bits of a rank's code in the decision all-reduce.
NEWS, STOP, CHECKPOINT = 1, 2, 4


class Collective(Protocol):
    """What the Monitor needs from a distributed runtime. ``rank`` is this process's rank among the
    ``world_size`` that decide together; rank 0 writes the files and the log lines."""

    rank: int
    world_size: int

    def sum_ints(self, values: Sequence[int]) -> list[int]:
        """The element-wise sum of ``values`` over the ranks (one all-reduce; every rank calls it)."""

    def broadcast(self, obj: Any, src: int) -> Any:
        """``obj`` of rank ``src``, on every rank (every rank calls it)."""

    def sum_tensor(self, tensor: Any) -> Any:
        """The element-wise sum of a 1-d float tensor over the ranks, on the device it was given."""

    @property
    def device(self) -> Any:
        """Where tensors for `sum_tensor` must live (CUDA for NCCL, else CPU)."""


def gather_codes(collective: Collective, code: int) -> list[int]:
    """Every rank's code (`NEWS` | `STOP` | `CHECKPOINT` bits), in one all-reduce: each rank fills its slot."""
    slots = [0] * collective.world_size
    slots[collective.rank] = code
    return collective.sum_ints(slots)


def source_rank(codes: Sequence[int]) -> int | None:
    """Whose hand-over the ranks act on: the first rank that wants a checkpoint, else the first that wants
    to stop, else the first with news; None when no rank has anything to say."""
    for bit in (CHECKPOINT, STOP, NEWS):
        for rank, code in enumerate(codes):
            if code & bit:
                return rank
    return None


class TorchCollective:
    """A torch.distributed process group (None: the default group, every rank)."""

    def __init__(self, group: Any = None) -> None:
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError("process_group: torch.distributed is not initialised; call "
                             "torch.distributed.init_process_group first (or leave process_group=None)")
        self._dist = dist
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        backend = str(dist.get_backend(group)).lower()
        self._device = (torch.device("cuda", torch.cuda.current_device()) if "nccl" in backend
                        else torch.device("cpu"))

    @property
    def device(self) -> Any:
        return self._device

    def sum_ints(self, values: Sequence[int]) -> list[int]:
        import torch

        t = torch.tensor(list(values), dtype=torch.int64, device=self._device)
        self._dist.all_reduce(t, op=self._dist.ReduceOp.SUM, group=self.group)
        return [int(v) for v in t.tolist()]  # on CUDA: the one host sync of a decision, every N steps

    def broadcast(self, obj: Any, src: int) -> Any:
        box = [obj]
        src_global = src if self.group is None else self._dist.get_global_rank(self.group, src)
        self._dist.broadcast_object_list(box, src=src_global, group=self.group)
        return box[0]

    def sum_tensor(self, tensor: Any) -> Any:
        self._dist.all_reduce(tensor, op=self._dist.ReduceOp.SUM, group=self.group)
        return tensor


class StrategyCollective:
    """A Lightning strategy's reduce and broadcast (DDP, FSDP, DeepSpeed, ...): the calls its
    ``reduce_boolean_decision`` makes, so whatever backend the strategy runs on is used as it uses it."""

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy
        self.rank = int(strategy.global_rank)
        self.world_size = int(strategy.world_size)

    @property
    def device(self) -> Any:
        return self.strategy.root_device

    def sum_ints(self, values: Sequence[int]) -> list[int]:
        import torch

        t = torch.tensor(list(values), dtype=torch.int64, device=self.strategy.root_device)
        return [int(v) for v in self.strategy.reduce(t, reduce_op="sum").tolist()]

    def broadcast(self, obj: Any, src: int) -> Any:
        return self.strategy.broadcast(obj, src=src)

    def sum_tensor(self, tensor: Any) -> Any:
        return self.strategy.reduce(tensor, reduce_op="sum")


def mean_over_ranks(collective: Collective, values: Sequence[Any]) -> tuple[Any, Any]:
    """The mean over the ranks of one value per row (a float, a tensor or None), in one all-reduce:
    (means, counts) as 1-d tensors on the collective's device; a row no rank logged has count 0."""
    import torch

    n = len(values)
    device = collective.device

    def to_device(host: Any) -> Any:  # a pinned, asynchronous copy on CUDA: no wait for the queued work
        return host.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else host.to(device)

    if all(type(v) is float for v in values):
        data = to_device(torch.tensor([*values, *([1.0] * n)], dtype=torch.float64))
    else:
        counts = to_device(torch.tensor([0.0 if v is None else 1.0 for v in values], dtype=torch.float64))
        parts = [v.detach().reshape(()).to(device, torch.float64) if hasattr(v, "detach")
                 else to_device(torch.tensor(0.0 if v is None else float(v), dtype=torch.float64)) for v in values]
        data = torch.cat([torch.stack(parts), counts])
    summed = collective.sum_tensor(data)
    sums, counts = summed[:n], summed[n:]
    return sums / counts.clamp(min=1.0), counts
