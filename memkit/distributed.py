"""Where a training process stands among several, and how a command is run again under several processes.

Owns: ``Group`` (this process's rank and the number of processes), ``current()`` (the group of an initialised
``torch.distributed`` process group, or one initialised from the launcher's environment: ``accelerate launch``
and ``torchrun`` set ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; gloo for CPU
tensors, NCCL for CUDA ones), averaging gradients and summing numbers across the group, rank 0's number handed
to every rank, and ``launch`` (a ``python -m`` command run again in N processes by ``accelerate launch``).

Must not know: what is trained or how its loss is made, models, storage or the CLI's options.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist

from memkit.errors import ConfigError


@dataclass(frozen=True)
class Group:
    """This process's place: ``rank`` in ``0..world-1``; a single process is rank 0 of a world of 1."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that logs, evaluates and writes checkpoints."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise ConfigError(f"the environment variable {name}={raw!r} is not a number; unset it or launch again "
                          f"with accelerate launch") from None


def local_rank() -> int:
    """This process's index on its machine (``LOCAL_RANK``, which launchers set; 0 without one)."""
    return _env_int("LOCAL_RANK", 0)


def current() -> Group:
    """This process's group: the initialised process group's; else, when the environment says the world has more
    than one process (``WORLD_SIZE``), a process group initialised from it; else a world of one."""
    if dist.is_available() and dist.is_initialized():
        return Group(dist.get_rank(), dist.get_world_size())
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Group()
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; train in one process (--num-processes 1)")
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise ConfigError(f"WORLD_SIZE is {world} but {name} is not set; start several processes with "
                              f"accelerate launch (or --num-processes), or unset WORLD_SIZE")
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"   # gradients live where the trained module does
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend)
    return Group(dist.get_rank(), dist.get_world_size())


def average_gradients(params: Sequence[torch.nn.Parameter], group: Group) -> None:
    """Replace each parameter's gradient by its mean over the group's processes (one all-reduce of one flat
    buffer). A parameter without a gradient counts as zero where others have one; one no process gave a
    gradient keeps none (so AdamW leaves it alone, as a single process would)."""
    if group.world <= 1 or not params:
        return
    device = params[0].device
    present = torch.tensor([float(p.grad is not None) for p in params], device=device)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float().to(device)
                      for p in params] + [present])
    dist.all_reduce(flat)
    seen = flat[-len(params):]
    offset = 0
    for i, p in enumerate(params):
        n = p.numel()
        if seen[i] > 0:
            p.grad = (flat[offset:offset + n] / group.world).view_as(p).to(dtype=p.dtype, device=p.device)
        else:
            p.grad = None
        offset += n


def sum_values(values: Sequence[float], group: Group, device: torch.device) -> list[float]:
    """Each number summed over the group's processes (the numbers themselves in a world of one)."""
    if group.world <= 1:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64 if device.type == "cpu" else torch.float32, device=device)
    dist.all_reduce(t)
    return [float(v) for v in t.tolist()]


def from_main(value: int, group: Group, device: torch.device) -> int:
    """Rank 0's ``value``, on every rank (so every process plans the same number of steps)."""
    if group.world <= 1:
        return value
    t = torch.tensor([value], dtype=torch.long, device=device)
    dist.broadcast(t, src=0)
    return int(t.item())


def finish() -> None:
    """Leave the process group, once every process has come this far (a process leaving while others still talk
    to it can abort them); nothing in a world of one."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def launch_command(num_processes: int, argv: Sequence[str], *, module: str = "cli.main", num_machines: int = 1,
                   machine_rank: int = 0, main_address: str | None = None, main_port: int = 0) -> list[str]:
    """The ``accelerate launch`` command that runs ``python -m module argv`` in ``num_processes`` processes (over
    all ``num_machines``; on more than one, each machine runs it with its ``machine_rank`` and rank 0's
    ``main_address``). Port 0: a free one."""
    if num_processes < 1:
        raise ConfigError("--num-processes must be at least 1")
    if num_machines < 1 or not 0 <= machine_rank < num_machines:
        raise ConfigError("--num-machines must be at least 1 and --machine-rank one of 0..num-machines-1")
    if num_machines > 1 and not main_address:
        raise ConfigError("training on several machines needs the address of machine 0 (--main-address)")
    if num_processes % num_machines:
        raise ConfigError(f"--num-processes {num_processes} does not split over {num_machines} machines")
    cmd = [sys.executable, "-m", "accelerate.commands.launch",
           # torchrun under accelerate: one process per rank with the environment current() reads; on a machine
           # without GPUs the processes talk over gloo (accelerate's --cpu path would need mpirun instead)
           "--multi_gpu", "--num_processes", str(num_processes), "--num_machines", str(num_machines),
           "--machine_rank", str(machine_rank), "--main_process_port", str(main_port),
           "--mixed_precision", "no", "--dynamo_backend", "no"]
    if main_address:
        cmd += ["--main_process_ip", main_address]
    return cmd + ["-m", module, *argv]


def launch(num_processes: int, argv: Sequence[str], **kw) -> int:
    """Run ``python -m cli.main argv`` (or ``module=``) in ``num_processes`` processes under ``accelerate launch``
    and wait; returns its exit status. The caller drops its own ``--num-processes`` from ``argv`` first."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.call(launch_command(num_processes, argv, **kw), env=env)
