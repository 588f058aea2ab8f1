"""Data-parallel training across the processes `torchrun` starts (DistributedDataParallel).

`torchrun --nproc_per_node=N -m aectl train ...` starts N copies of `aectl train`. Each rank
loads the dataset, draws the same permutation (and input noise) from the epoch seed, and takes
its strided share of every global batch of `trainer.batch_size` examples. Gradients are
combined with weights n_rank / n_batch, so a step equals the single-process step on the whole
global batch (up to float summation order) even when the last batch does not split evenly;
only terms that are not per-example means (the sparse AE's ρ̂, a batch statistic) see the
rank's shard instead of the global batch. Only rank 0 logs, writes checkpoints and
metrics.json; checkpoints hold the plain module, the same format as a single-process run.

The trainer sees one small object: `Distributed` (one process, everything a no-op) or
`DataParallel` (a process group is up). Nothing here runs unless torchrun's variables are set.
"""

import contextlib
import os
import re
import time
from datetime import datetime
from typing import Callable

import torch
from torch import nn

from aectl.errors import AectlError, ConfigError

# Hydra's own run-folder pattern resolves ${now:...} per process; ranks started a second
# apart would write into different folders, so rank 0's clock is used for all of them.
NOW = re.compile(r"\$\{now:([^}]*)\}")
# Mixes (seed, step, rank) into one seed for the ranks' own draws (the VAE's ε).
SEED_MIX = 1_000_003
# Steps between the ranks' agreement on a stop request (a signal may reach them at different
# steps; stopping at different steps would leave the others waiting in a collective forever).
STOP_CHECK_EVERY = 10


class Distributed:
    """A single process: rank 0 of 1. Every method leaves its input as it is."""

    rank, world_size, is_main = 0, 1, True

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def own_rng(self, seed: int, step: int) -> contextlib.AbstractContextManager:
        """Context of the draws made on this rank's shard only (the VAE's ε)."""
        return contextlib.nullcontext()

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global batch."""
        return batch

    def weigh(self, terms: torch.Tensor) -> torch.Tensor:
        """Loss terms of this rank's shard → their share of the global batch mean."""
        return terms

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, in place (used at log time only, never per step)."""
        return tensor

    def agree(self, stop_requested: Callable[[], int] | None) -> Callable[[], int] | None:
        """A stop request that every rank sees at the same step."""
        return stop_requested


class DataParallel(Distributed):
    """One rank of a torchrun job: an initialised process group."""

    def __init__(self):
        import torch.distributed as dist

        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.is_main = self.rank == 0
        self.weight = 1.0 / self.world_size  # this rank's share of the current global batch

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        if device.type == "cuda" and not one_gpu_per_process():
            raise ConfigError("trainer.device", device.type, f"cpu, or one GPU per process: torchrun started "
                              f"{os.environ.get('LOCAL_WORLD_SIZE', '?')} processes on a node with "
                              f"{torch.cuda.device_count()} GPU(s); use --nproc_per_node={torch.cuda.device_count()}")
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        ddp.register_comm_hook(self, _weighted_sum_hook)
        return ddp

    def own_rng(self, seed: int, step: int) -> contextlib.AbstractContextManager:
        # Every rank holds the same RNG stream (same permutation and noise); without a fork, rank
        # r's k-th example would get the same ε as rank 0's k-th. Rank 0 keeps the main stream,
        # others draw from a stream of their own, and the main stream stays the same on all ranks.
        if not self.rank:
            return contextlib.nullcontext()
        return _seeded_fork(((seed * SEED_MIX + step) * SEED_MIX + self.rank) % 2**63)

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        local = batch[self.rank::self.world_size]
        self.weight = len(local) / len(batch)
        if len(local) == 0:  # a last batch smaller than the world: step on one example at weight 0
            local = batch[:1]
        return local

    def weigh(self, terms: torch.Tensor) -> torch.Tensor:
        return terms * self.weight

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        dist.all_reduce(tensor)
        return tensor

    def agree(self, stop_requested: Callable[[], int] | None) -> Callable[[], int] | None:
        if stop_requested is None:
            return None
        import torch.distributed as dist

        calls = 0

        def agreed() -> int:
            nonlocal calls  # every rank calls this at the same points of the loop
            calls += 1
            if calls % STOP_CHECK_EVERY:
                return 0
            signum = torch.tensor([stop_requested()], dtype=torch.int64)  # a CPU tensor: gloo, no device sync
            dist.all_reduce(signum, op=dist.ReduceOp.MAX)
            return int(signum)

        return agreed


@contextlib.contextmanager
def _seeded_fork(seed: int):
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _weighted_sum_hook(state: DataParallel, bucket):
    """DDP communication hook: Σ_r (n_r / n) · grad_r, the gradient of the global batch mean
    (DDP's default would average the ranks equally, overweighting a short last shard)."""
    import torch.distributed as dist

    buffer = bucket.buffer().mul_(state.weight)
    return dist.all_reduce(buffer, async_op=True).get_future().then(lambda fut: fut.value()[0])


def current() -> Distributed:
    """The helper of this process: DataParallel under an initialised process group."""
    import torch.distributed as dist

    return DataParallel() if dist.is_available() and dist.is_initialized() else Distributed()


def setup(args: list[str], default_run_dir: str) -> list[str]:
    """Join torchrun's process group and return the Hydra arguments of this rank: the same
    run folder as rank 0, and on other ranks no .hydra/ copy and warnings-only logging."""
    import torch.distributed as dist

    if any(a in ("-m", "--multirun") or a.startswith("--multirun") for a in args):
        raise AectlError("aectl train: -m/--multirun cannot run under torchrun: torchrun trains one run "
                         "across processes; run a sweep without torchrun (each job may use torchrun itself)")
    if one_gpu_per_process():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # gloo carries CPU tensors, NCCL CUDA ones; one group serves a run on either device. Every
    # rank must choose the same backend, hence a test that gives the same answer on all of them.
    dist.init_process_group("cpu:gloo,cuda:nccl" if one_gpu_per_process() else "gloo")
    started = torch.tensor([time.time()], dtype=torch.float64)
    dist.broadcast(started, src=0)
    args = same_run_dir(args, default_run_dir, datetime.fromtimestamp(float(started)))
    if dist.get_rank() != 0:
        args += ["hydra.output_subdir=null", "hydra/job_logging=stdout", "hydra.job_logging.root.level=WARNING"]
    return args


def one_gpu_per_process() -> bool:
    """Whether this node has a GPU for each of torchrun's processes on it."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return torch.cuda.is_available() and torch.cuda.device_count() >= local_world


def same_run_dir(args: list[str], default_run_dir: str, started: datetime) -> list[str]:
    """Pin hydra.run.dir (the user's or the config's), its ${now:...} read from `started`."""
    given = [a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")]
    run_dir = NOW.sub(lambda m: started.strftime(m.group(1)), given[-1] if given else default_run_dir)
    return [a for a in args if not a.startswith("hydra.run.dir=")] + [f"hydra.run.dir={run_dir}"]


def teardown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
