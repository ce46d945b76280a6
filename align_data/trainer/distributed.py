"""Data-parallel training under torchrun: one process per device, each takes its share of every step's
micro-batches; token counts, loss sums and gradients are summed across processes, so a step equals one process
running all the micro-batches (same data order, same normalisation)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The process that logs, shows progress and writes checkpoints."""
        return self.rank == 0


def join_world(device: torch.device) -> World:
    """The process group already set up by the caller (e.g. a Ray Train worker), or the one torchrun describes
    (WORLD_SIZE > 1; NCCL on CUDA, gloo on CPU), else one process."""
    import torch.distributed as dist

    initialized = dist.is_available() and dist.is_initialized()
    if not initialized and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return World()
    if not initialized:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def local_device(device: torch.device, world: World) -> torch.device:
    """CUDA processes each take the GPU of their local rank; CPU stays CPU."""
    if device.type != "cuda" or world.size == 1:
        return device
    torch.cuda.set_device(world.local_rank)
    return torch.device("cuda", world.local_rank)


def sum_across(world: World, values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums of ``values`` over all processes (float64)."""
    if world.size == 1:
        return values
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def sum_gradients(world: World, params: list[torch.nn.Parameter]) -> None:
    """Replace each gradient by its sum over all processes (one flat all-reduce)."""
    if world.size == 1:
        return
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for p, g in zip(params, grads, strict=True):
        p.grad = flat[offset: offset + g.numel()].view_as(g).clone()
        offset += g.numel()


def barrier(world: World) -> None:
    """Wait for every process (e.g. until the main one has written a checkpoint)."""
    if world.size > 1:
        import torch.distributed as dist

        dist.barrier()


def leave_world(world: World, *, owned: bool) -> None:
    """Tear down the process group at the end of training if ``join_world`` created it."""
    if world.size > 1 and owned:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
